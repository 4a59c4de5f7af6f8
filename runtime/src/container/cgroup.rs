//! Cgroup v1/v2 facts the shim needs around a container's exit: OOM kills, and removing the
//! container's cgroup dirs (and its now-empty pod dir).

use std::path::{Path, PathBuf};

/// Root of the cgroup mounts.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Parses `memory.oom_control` (v1) or `memory.events` (v2): the `oom_kill` counter.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// True when the kernel OOM-killed something in the cgroup at `path` (absolute cgroups path).
/// Read before the cgroup is deleted.
pub fn oom_killed(cgroup_root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let candidates = [
        cgroup_root
            .join("memory")
            .join(rel)
            .join("memory.oom_control"),
        cgroup_root.join(rel).join("memory.events"),
        cgroup_root.join("unified").join(rel).join("memory.events"),
    ];
    candidates
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| parse_oom_kill(&t))
        .any(|n| n > 0)
}

/// Every directory that is the root of a cgroup hierarchy under `cgroup_root` (v1 controllers,
/// the v2 `unified` mount, or `cgroup_root` itself on a pure v2 host). Symlinked aliases such
/// as `cpu -> cpu,cpuacct` are skipped.
pub fn hierarchies(cgroup_root: &Path) -> Vec<PathBuf> {
    if cgroup_root.join("cgroup.controllers").exists() {
        return vec![cgroup_root.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(cgroup_root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes the container's cgroup dir in every hierarchy, then its parent (the pod dir) when
/// that is empty. Missing dirs are fine; returns the dirs that could not be removed.
pub fn remove_container_cgroups(cgroup_root: &Path, path: &Path) -> Vec<(PathBuf, std::io::Error)> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut failed = Vec::new();
    for hierarchy in hierarchies(cgroup_root) {
        let leaf = hierarchy.join(rel);
        if let Err(e) = rmdir_if_present(&leaf) {
            failed.push((leaf.clone(), e));
            continue;
        }
        if let Some(pod) = leaf.parent().filter(|p| *p != hierarchy) {
            // Fails with ENOTEMPTY/EBUSY while other containers of the pod live: that is fine.
            let _ = std::fs::remove_dir(pod);
        }
    }
    failed
}

fn rmdir_if_present(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// True when any hierarchy still has a dir for `path`.
pub fn any_cgroup_left(cgroup_root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix("/").unwrap_or(path);
    hierarchies(cgroup_root)
        .iter()
        .any(|h| h.join(rel).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counters() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 1\noom 1\noom_kill 0\n"),
            Some(0)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn removes_leaf_and_empty_pod_dir_only() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu,cpuacct", "pids"] {
            std::fs::create_dir_all(root.path().join(h).join("parent/pod/c1")).unwrap();
        }
        std::fs::create_dir_all(root.path().join("pids/parent/pod/c2")).unwrap();
        let path = Path::new("/parent/pod/c1");
        assert!(remove_container_cgroups(root.path(), path).is_empty());
        assert!(!any_cgroup_left(root.path(), path));
        assert!(!root.path().join("memory/parent/pod").exists());
        assert!(root.path().join("memory/parent").exists());
        assert!(root.path().join("pids/parent/pod/c2").exists());
    }
}

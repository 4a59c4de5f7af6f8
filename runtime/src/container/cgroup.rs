//! Cgroup v1/v2 facts the shim needs around a container's life: the pod's pids limit, OOM
//! kills, and removing the container's cgroup dirs (and its now-empty pod dir).

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

/// Sets `pids.max` of the pod's cgroup (the parent of the container's `path`) to `limit`,
/// creating the pod dir when needed: in the v1 `pids` hierarchy, or on a pure v2 host in the
/// unified tree (enabling the pids controller on the way down). Written before every container
/// start, so a pod dir removed and made again keeps its limit.
pub fn set_pod_pids_limit(cgroup_root: &Path, path: &Path, limit: i64) -> Result<(), CgroupError> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let pod_rel = rel
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| CgroupError::NoPodDir(path.to_path_buf()))?;
    let v2 = cgroup_root.join("cgroup.controllers").exists();
    let hierarchy = if v2 {
        cgroup_root.to_path_buf()
    } else {
        cgroup_root.join("pids")
    };
    if !hierarchy.exists() {
        return Err(CgroupError::NoPidsController(hierarchy));
    }
    let pod_dir = hierarchy.join(pod_rel);
    if v2 {
        let mut dir = hierarchy.clone();
        for part in pod_rel.iter() {
            // Fails harmlessly when already enabled or when the kernel refuses; writing
            // pids.max below reports a real problem.
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+pids");
            dir = dir.join(part);
            create_dir_if_missing(&dir)?;
        }
    } else {
        std::fs::create_dir_all(&pod_dir).map_err(|source| CgroupError::Io {
            what: "creating",
            path: pod_dir.clone(),
            source,
        })?;
    }
    let file = pod_dir.join("pids.max");
    std::fs::write(&file, limit.to_string()).map_err(|source| CgroupError::Io {
        what: "writing",
        path: file,
        source,
    })
}

/// Why a pod's pids limit could not be set.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups path {0:?} has no pod directory")]
    NoPodDir(PathBuf),
    #[error("no pids cgroup controller at {0:?}: the pod pids limit cannot be applied")]
    NoPidsController(PathBuf),
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn create_dir_if_missing(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Err(source) if source.kind() != std::io::ErrorKind::AlreadyExists => Err(CgroupError::Io {
            what: "creating",
            path: dir.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
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
    fn pod_pids_limit_is_written_to_the_pod_dir() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("pids")).unwrap();
        set_pod_pids_limit(root.path(), Path::new("/parent/pod/c1"), 4096).unwrap();
        let written = std::fs::read_to_string(root.path().join("pids/parent/pod/pids.max"));
        assert_eq!(written.unwrap(), "4096");
        assert!(!root.path().join("pids/parent/pod/c1").exists());
        let none = tempfile::tempdir().unwrap();
        let err = set_pod_pids_limit(none.path(), Path::new("/parent/pod/c1"), 1).unwrap_err();
        assert!(matches!(err, CgroupError::NoPidsController(_)), "{err}");
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

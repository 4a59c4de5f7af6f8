//! Removing what a demo or benchmark agent made, even after it was killed: processes in its
//! cgroups or naming its directory (shims, containers), mounts under the directory, the pods'
//! network namespaces, cgroup directories, and the directory itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Processes of a node: in its cgroups, or naming its directory (the shims).
pub fn node_pids(dir: &Path, cgroup_parent: &str) -> Vec<i32> {
    let rel = cgroup_parent.trim_start_matches('/');
    let mut pids = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let mut dirs = Vec::new();
        collect_dirs(&h.path().join(rel), &mut dirs);
        for d in dirs {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(
                    procs
                        .split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    let needle = format!("{}/", dir.display());
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok())
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        {
            pids.push(pid);
        }
    }
    let me = std::process::id() as i32;
    pids.retain(|p| *p != me);
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes what a killed agent may have left: processes in its cgroups or naming its dir,
/// mounts, the pods' namespaces, cgroup directories, and its directory.
pub fn cleanup_leftovers(dir: &Path, cgroup_parent: &str, netns_prefix: &str) {
    for _ in 0..50 {
        let pids = node_pids(dir, cgroup_parent);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(netns_prefix) {
                let _ = Command::new("umount").arg(e.path()).status();
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let rel = cgroup_parent.trim_start_matches('/');
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let mut dirs = Vec::new();
        collect_dirs(&h.path().join(rel), &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            // Killed tasks may still be leaving: EBUSY for a moment.
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn collect_dirs(root: &Path, out: &mut Vec<PathBuf>) {
    if !root.is_dir() {
        return;
    }
    out.push(root.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

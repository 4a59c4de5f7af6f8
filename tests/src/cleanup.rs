//! Removing everything one test run made, whatever ran in it: processes (in the run's cgroups,
//! in its network namespaces, or naming its temp dir: agents, shims, containers), mounts under
//! the temp dir (container root filesystems), every network namespace whose name starts with
//! the run id (nodes, hub, pods), the temp dir, and the run's cgroup dirs in every hierarchy.

use crate::bed::ip;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long killed processes and busy cgroups are waited for.
const PATIENCE: Duration = Duration::from_secs(15);

/// Kills, unmounts and removes everything of run `run_id` (temp dir `dir`; namespaces
/// `<run_id>-...`; cgroups `<hierarchy>/<run_id>`).
pub fn purge(run_id: &str, dir: &Path) {
    remove_node(dir, run_id, &format!("{run_id}-"));
}

/// Removes what an agent (killed or not) made: every process in the cgroups at `cgroup_parent`
/// (relative to each hierarchy), in network namespaces starting with `netns_prefix` or naming
/// `dir`; the mounts under `dir`, those namespaces, the cgroup dirs, and `dir` itself.
pub fn remove_node(dir: &Path, cgroup_parent: &str, netns_prefix: &str) {
    let deadline = Instant::now() + PATIENCE;
    let cgroup = cgroup_parent.trim_start_matches('/');
    kill_until_gone(deadline, || node_pids(dir, cgroup, netns_prefix));
    unmount_under(dir);
    for ns in netns_with_prefix(netns_prefix) {
        if ip(&["netns", "del", &ns]).is_err() {
            let path = Path::new("/run/netns").join(&ns);
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(path);
        }
    }
    if mounts_under(dir).is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
    remove_cgroups(deadline, cgroup);
}

/// What a reboot does to one node of a run: every process in its cgroups (`cgroup_parent`,
/// absolute), in network namespaces starting with `netns_prefix` or naming `dir` killed, its
/// mounts under `dir` gone, those namespaces gone, its cgroups gone, and `run_dir` (a tmpfs like
/// /run) empty. The data dir stays. The agent itself must already be dead.
pub fn simulate_reboot(dir: &Path, run_dir: &Path, cgroup_parent: &str, netns_prefix: &str) {
    let deadline = Instant::now() + PATIENCE;
    let cgroup = cgroup_parent.trim_start_matches('/');
    kill_until_gone(deadline, || node_pids(dir, cgroup, netns_prefix));
    unmount_under(dir);
    for ns in netns_with_prefix(netns_prefix) {
        let _ = ip(&["netns", "del", &ns]);
    }
    remove_cgroups(deadline, cgroup);
    let _ = std::fs::remove_dir_all(run_dir);
    let _ = std::fs::create_dir_all(run_dir);
}

/// Every live process of a node (this one excepted): in the cgroups at `cgroup_parent`, in
/// network namespaces starting with `netns_prefix`, or naming `dir` on its command line.
pub fn node_pids(dir: &Path, cgroup_parent: &str, netns_prefix: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_tree(cgroup_parent.trim_start_matches('/'))
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    for ns in netns_with_prefix(netns_prefix) {
        if let Ok(out) = ip(&["netns", "pids", &ns]) {
            pids.extend(out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    pids.extend(pids_mentioning(&format!("{}/", dir.display())));
    let me = std::process::id() as i32;
    pids.retain(|p| *p != me && alive(*p));
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// SIGKILLs what `pids` lists until it lists nothing or `deadline` passes.
pub fn kill_until_gone(deadline: Instant, mut pids: impl FnMut() -> Vec<i32>) {
    loop {
        let pids = pids();
        if pids.is_empty() || Instant::now() > deadline {
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
}

fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes the cgroup dirs at `rel`, deepest first; rmdir fails with EBUSY while killed tasks
/// are still leaving, so it retries until `deadline`.
fn remove_cgroups(deadline: Instant, rel: &str) {
    loop {
        let dirs = cgroup_tree(rel);
        if dirs.is_empty() || Instant::now() > deadline {
            break;
        }
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 1..];
            after
                .split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Pids whose command line contains `needle`.
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// Network namespaces (names in /run/netns) starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup dirs at relative path `rel` (and below) under every hierarchy, deepest first.
fn cgroup_tree(rel: &str) -> Vec<PathBuf> {
    let mut tops = Vec::new();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let root = Path::new(root);
        tops.push(root.join(rel));
        if let Ok(entries) = std::fs::read_dir(root) {
            tops.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path().join(rel)),
            );
        }
    }
    let mut out = Vec::new();
    for top in tops.into_iter().filter(|d| d.is_dir()) {
        walk_dirs(&top, &mut out);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_dirs(&e.path(), out);
            }
        }
    }
}

//! Removing everything a test node made, whatever ran in it: processes (in its cgroups, in its
//! network namespaces, or naming its temp dir on their command line: agents, shims,
//! containers), mounts under the temp dir (container root filesystems, tmpfs volumes), network
//! namespaces with its prefix, its cgroup dirs in every hierarchy, and the temp dir. Also lists
//! what is left (for the tests that check cleanup) and does to a node what a reboot does.
//!
//! A node is named by [`Footprint`]: its temp dir, its cgroup parent (absolute cgroup path) and
//! the prefix of its network namespaces (names in /run/netns).

use crate::proc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const NETNS_DIR: &str = "/run/netns";

/// How long killed processes and busy cgroups are waited for.
const PATIENCE: Duration = Duration::from_secs(15);

/// Where one test node's things are.
#[derive(Debug, Clone, Copy)]
pub struct Footprint<'a> {
    /// The node's temp dir (data, run dir, rootfs mounts); processes naming it are the node's.
    pub dir: &'a Path,
    /// Absolute cgroup path of the node's pods (`--cgroup-parent`).
    pub cgroup_parent: &'a str,
    /// Every network namespace of the node starts with this.
    pub netns_prefix: &'a str,
}

/// What is left of a test node.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Processes in the node's cgroups.
    pub processes: Vec<i32>,
    /// Processes naming the node's dir (agents, shims).
    pub shims: Vec<i32>,
    pub mounts: Vec<PathBuf>,
    /// Network namespace names.
    pub netns: Vec<String>,
    pub cgroups: Vec<PathBuf>,
    pub dir_exists: bool,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

/// Roots of the cgroup hierarchies (v1 controllers and `unified`); on a pure v2 host the root.
pub fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup dir at `parent` (absolute cgroup path) and below, in every hierarchy, deepest
/// first.
pub fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let rel = parent.trim_start_matches('/');
    let mut out = Vec::new();
    for h in hierarchies() {
        let top = h.join(rel);
        if top.is_dir() {
            walk_dirs(&top, &mut out);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_dirs(&e.path(), out);
            }
        }
    }
}

/// Pids in any cgroup at or below `parent`.
pub fn cgroup_pids(parent: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(parent)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
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
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Live processes (not zombies) whose command line mentions `dir/`.
pub fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = format!("{}/", dir.display());
    proc::pids_with_cmdline(&needle)
        .into_iter()
        .filter(|pid| proc::alive(*pid))
        .collect()
}

/// Pids of processes inside the network namespace `name` (as `ip netns pids` finds them).
pub fn netns_pids(name: &str) -> Vec<i32> {
    crate::net::ip(&["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every live process of a node (this one excepted): in its cgroups, in its network
/// namespaces, or naming its dir on the command line.
pub fn node_pids(node: Footprint<'_>) -> Vec<i32> {
    let mut pids = cgroup_pids(node.cgroup_parent);
    for ns in netns_with_prefix(node.netns_prefix) {
        pids.extend(netns_pids(&ns));
    }
    pids.extend(processes_mentioning(node.dir));
    let me = std::process::id() as i32;
    pids.retain(|p| *p != me && proc::alive(*p));
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
            proc::kill9(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches every mount under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes the network namespaces starting with `prefix` (what `ip netns del` does: detach the
/// bind mount, remove the file; the veths in them go with them).
pub fn remove_netns(prefix: &str) {
    for ns in netns_with_prefix(prefix) {
        let path = Path::new(NETNS_DIR).join(&ns);
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
    }
}

/// Removes the cgroup dirs at `parent`, deepest first; rmdir fails with EBUSY while killed
/// tasks are still leaving, so it retries until `deadline`.
pub fn remove_cgroups(deadline: Instant, parent: &str) {
    loop {
        let dirs = cgroup_dirs(parent);
        if dirs.is_empty() || Instant::now() > deadline {
            break;
        }
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What is left of the node now.
pub fn leftovers(node: Footprint<'_>) -> Leftovers {
    Leftovers {
        processes: cgroup_pids(node.cgroup_parent),
        shims: processes_mentioning(node.dir),
        mounts: mounts_under(node.dir),
        netns: netns_with_prefix(node.netns_prefix),
        cgroups: cgroup_dirs(node.cgroup_parent),
        dir_exists: node.dir.exists(),
    }
}

/// Kills, unmounts and removes everything of the node, its dir included; returns what could
/// not be removed.
pub fn clean(node: Footprint<'_>) -> Leftovers {
    let deadline = Instant::now() + PATIENCE;
    kill_until_gone(deadline, || node_pids(node));
    unmount_under(node.dir);
    remove_netns(node.netns_prefix);
    remove_cgroups(deadline, node.cgroup_parent);
    if node.dir.exists() && mounts_under(node.dir).is_empty() {
        let _ = std::fs::remove_dir_all(node.dir);
    }
    leftovers(node)
}

/// What a reboot does to a node: every process of it gone (the agent included, if it still
/// runs), its mounts gone, its network namespaces gone, its cgroups gone, and `run_dir` (a
/// tmpfs like /run) empty. The rest of its dir (the data dir) stays.
pub fn simulate_reboot(node: Footprint<'_>, run_dir: &Path) {
    let deadline = Instant::now() + PATIENCE;
    kill_until_gone(deadline, || node_pids(node));
    unmount_under(node.dir);
    remove_netns(node.netns_prefix);
    remove_cgroups(deadline, node.cgroup_parent);
    let _ = std::fs::remove_dir_all(run_dir);
    let _ = std::fs::create_dir_all(run_dir);
}

/// The file in a test node's dir naming the test process that owns it (`pid start_ticks`).
pub const OWNER_FILE: &str = "owner";

/// Writes the owner file into `dir`: this test process.
pub fn write_owner(dir: &Path) {
    let me = std::process::id() as i32;
    let ticks = proc::stat(me).map(|(_, t)| t).unwrap_or(0);
    let _ = std::fs::write(dir.join(OWNER_FILE), format!("{me} {ticks}\n"));
}

/// Whether `dir` has an owner file naming a process that is gone (a test process killed by a
/// timeout runs no drop guard: its nodes are left to a sweep). No owner file: `false`.
pub fn owner_is_gone(dir: &Path) -> bool {
    let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
        return false;
    };
    let mut words = owner.split_whitespace().map(|w| w.parse::<u64>().ok());
    let (Some(Some(pid)), Some(Some(start_ticks))) = (words.next(), words.next()) else {
        return false;
    };
    !proc::ProcessId {
        pid: pid as i32,
        start_ticks,
    }
    .alive()
}

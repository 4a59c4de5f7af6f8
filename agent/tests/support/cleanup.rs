//! Removing everything a test agent made: container processes (by cgroup), shims (by command
//! line), mounts under the temp dir, network namespaces with the prefix, cgroup dirs in every
//! hierarchy, and the temp dir. Also lists what is left, for the tests that check cleanup.

use super::proc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const NETNS_DIR: &str = "/run/netns";

/// What is left of a test agent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub processes: Vec<i32>,
    pub shims: Vec<i32>,
    pub mounts: Vec<PathBuf>,
    pub netns: Vec<PathBuf>,
    pub cgroups: Vec<PathBuf>,
    pub dir_exists: bool,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

/// Roots of the cgroup hierarchies (v1 controllers and `unified`); symlinked aliases skipped.
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

/// Every cgroup dir under `parent` (absolute cgroup path) in every hierarchy, deepest first.
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

/// Pids in any cgroup under `parent`.
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

/// Files in /run/netns whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Shim processes (or anything else) whose command line mentions `dir`.
pub fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = format!("{}/", dir.display());
    proc::pids_with_cmdline(&needle)
        .into_iter()
        .filter(|pid| proc::stat(*pid).is_some_and(|(s, _)| s != 'Z' && s != 'X'))
        .collect()
}

/// What is left now.
pub fn leftovers(dir: &Path, cgroup_parent: &str, netns_prefix: &str) -> Leftovers {
    Leftovers {
        processes: cgroup_pids(cgroup_parent),
        shims: processes_mentioning(dir),
        mounts: mounts_under(dir),
        netns: netns_with_prefix(netns_prefix),
        cgroups: cgroup_dirs(cgroup_parent),
        dir_exists: dir.exists(),
    }
}

/// Kills, unmounts and removes everything; returns what could not be removed. The agent
/// itself must already be dead.
pub fn clean(dir: &Path, cgroup_parent: &str, netns_prefix: &str) -> Leftovers {
    let deadline = Instant::now() + Duration::from_secs(15);
    // Containers first (their shims then record the exit), then the shims.
    loop {
        let pids = cgroup_pids(cgroup_parent);
        let shims = processes_mentioning(dir);
        if pids.is_empty() && shims.is_empty() {
            break;
        }
        for pid in pids.iter().chain(&shims) {
            proc::signal(*pid, libc::SIGKILL);
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    for ns in netns_with_prefix(netns_prefix) {
        let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&ns);
    }
    // rmdir fails with EBUSY while killed tasks are still leaving: retry until the deadline.
    loop {
        let dirs = cgroup_dirs(cgroup_parent);
        if dirs.is_empty() {
            break;
        }
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if dir.exists() && mounts_under(dir).is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
    leftovers(dir, cgroup_parent, netns_prefix)
}

/// What a reboot does to a node: every process gone, tmpfs and overlay mounts gone, network
/// namespaces gone, cgroups gone, the run dir (a tmpfs like /run) empty. The data dir stays.
/// The agent itself must already be dead.
pub fn simulate_reboot(dir: &Path, run: &Path, cgroup_parent: &str, netns_prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pids: Vec<i32> = cgroup_pids(cgroup_parent)
            .into_iter()
            .chain(processes_mentioning(dir))
            .collect();
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            proc::signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    for ns in netns_with_prefix(netns_prefix) {
        let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&ns);
    }
    while !cgroup_dirs(cgroup_parent).is_empty() && Instant::now() < deadline {
        for d in cgroup_dirs(cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(run);
    let _ = std::fs::create_dir_all(run);
}

/// The file in a test agent's dir naming the test process that owns it (`pid start_ticks`).
pub const OWNER_FILE: &str = "owner";

/// Writes the owner file: this test process.
pub fn write_owner(dir: &Path) {
    let me = std::process::id() as i32;
    let ticks = proc::stat(me).map(|(_, t)| t).unwrap_or(0);
    let _ = std::fs::write(dir.join(OWNER_FILE), format!("{me} {ticks}\n"));
}

/// Removes what test agents of dead test processes left behind (a test process killed by a
/// timeout runs no drop guard): every `/tmp/sk-<tag>` whose owner is gone, with its cgroups
/// (`/skiff-t-<tag>`) and network namespaces (`t<tag>...`).
pub fn sweep_dead_owners() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(tag) = name.strip_prefix("sk-") else {
            continue;
        };
        if tag.len() != 6 || !tag.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(e.path().join(OWNER_FILE)) else {
            continue;
        };
        let mut words = owner.split_whitespace().map(|w| w.parse::<u64>().ok());
        let (Some(Some(pid)), Some(Some(ticks))) = (words.next(), words.next()) else {
            continue;
        };
        let owner = proc::ProcessId {
            pid: pid as i32,
            start_ticks: ticks,
        };
        if owner.alive() {
            continue;
        }
        // The owner's agent may still run: its command line names the dir.
        for pid in processes_mentioning(&e.path()) {
            proc::signal(pid, libc::SIGKILL);
        }
        let left = clean(&e.path(), &format!("/skiff-t-{tag}"), &format!("t{tag}"));
        if !left.is_empty() {
            eprintln!("sweeping {}: left {left:?}", e.path().display());
        }
    }
}

//! Per-pod network namespaces: created without forking, bind-mounted under a directory
//! (default `/run/netns`), with `lo` up inside; removed by unmounting and deleting the file.
//!
//! Creation happens on a dedicated OS thread: it calls `unshare(CLONE_NEWNET)`, brings `lo` up
//! through a netlink socket opened on that thread (so the socket lives in the new namespace),
//! then bind-mounts `/proc/thread-self/ns/net` onto the namespace file and exits. `lo` is up
//! before the bind mount exists, so a mounted namespace file always has `lo` up; a crash
//! before the mount leaves at most an empty file, which the next create reuses.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};
use rtnetlink::LinkUnspec;

use crate::error::CniError;
use crate::nsthread::with_netlink;

/// Where pod network namespaces are bind-mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsConfig {
    /// Directory holding one file per namespace (default `/run/netns`, where `ip netns` looks).
    pub dir: PathBuf,
}

impl Default for NetnsConfig {
    fn default() -> Self {
        NetnsConfig {
            dir: PathBuf::from("/run/netns"),
        }
    }
}

/// Serialises check-then-mount within this process so two callers cannot stack two mounts.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// Directories this process already made shared mount points (changing propagation again on
/// every create would walk every namespace mount below the directory).
static SHARED_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Creates the network namespace `dir/name` with `lo` up, or returns the existing one.
/// Idempotent. Never forks and never moves the calling thread.
pub fn create_netns(dir: &Path, name: &str) -> Result<PathBuf, CniError> {
    validate_netns_name(name)?;
    fs::create_dir_all(dir).map_err(|e| CniError::io("create netns directory", dir, e))?;
    {
        let mut shared = SHARED_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        if !shared.contains(dir) {
            ensure_shared_mount(dir)?;
            shared.insert(dir.to_path_buf());
        }
    }
    let path = dir.join(name);
    let _guard = CREATE_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if is_netns_mount(&path) {
        return Ok(path);
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(&path)
        .map_err(|e| CniError::io("create netns file", &path, e))?;
    let target = path.clone();
    let result = std::thread::Builder::new()
        .name("skiff-netns-new".into())
        .spawn(move || new_netns_on_this_thread(&target))
        .map_err(|e| CniError::io("spawn thread to create netns", &path, e))?
        .join()
        .unwrap_or_else(|_| {
            Err(CniError::ThreadPanicked {
                what: path.display().to_string(),
            })
        });
    if let Err(err) = result {
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    Ok(path)
}

/// Unmounts and deletes `dir/name`. Idempotent: a missing namespace is not an error.
pub fn remove_netns(dir: &Path, name: &str) -> Result<(), CniError> {
    validate_netns_name(name)?;
    let path = dir.join(name);
    // Unmount every stacked mount (a crash could in theory leave more than one).
    while is_netns_mount(&path) {
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(CniError::sys("unmount netns", &path, e)),
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io("remove netns file", &path, e)),
    }
}

/// Names of the namespaces in `dir` that start with `prefix` (sorted). Only files that are
/// mounted namespaces count; a missing directory means none.
pub fn list_netns(dir: &Path, prefix: &str) -> Result<Vec<String>, CniError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io("read netns directory", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CniError::io("read netns directory", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with(prefix) && is_netns_mount(&entry.path()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Names of every file in `dir` starting with `prefix`, mounted or not (for leak checks and gc).
pub fn list_netns_files(dir: &Path, prefix: &str) -> Result<Vec<String>, CniError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io("read netns directory", dir, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// True when `path` is a bind-mounted network namespace.
pub fn is_netns_mount(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Undoes the self bind mount that [`create_netns`] may have put on `dir` (tests use private
/// directories). Namespaces still mounted inside are detached with it.
pub fn unmount_netns_dir(dir: &Path) -> Result<(), CniError> {
    SHARED_DIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(dir);
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(CniError::sys("unmount netns directory", dir, e)),
    }
}

/// Checks a namespace name: one path component, not empty, at most 255 bytes.
pub fn validate_netns_name(name: &str) -> Result<(), CniError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some("must be a single file name")
    } else if name.len() > 255 {
        Some("must be at most 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CniError::InvalidName {
            what: "network namespace name",
            value: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Makes `dir` a shared mount point, as iproute2 does for /run/netns, so that unmounting a
/// namespace file also reaches mount namespaces created later (containers).
fn ensure_shared_mount(dir: &Path) -> Result<(), CniError> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => return Ok(()),
        Err(Errno::EINVAL) => {}
        Err(e) => return Err(CniError::sys("make shared mount of", dir, e)),
    }
    // Not a mount point yet: bind it onto itself, then mark it shared.
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| CniError::sys("bind mount netns directory", dir, e))?;
    mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
        .map_err(|e| CniError::sys("make shared mount of", dir, e))
}

/// Runs on a thread of its own: new namespace, `lo` up, bind mount. The thread then exits,
/// and the bind mount keeps the namespace alive.
fn new_netns_on_this_thread(target: &Path) -> Result<(), CniError> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| CniError::sys("unshare netns for", target, e))?;
    with_netlink(|handle| async move {
        handle
            .link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(|e| CniError::netlink("set lo up in new netns", e))
    })?;
    let own = PathBuf::from("/proc/thread-self/ns/net");
    mount(
        Some(&own),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| CniError::sys("bind mount netns onto", target, e))
}

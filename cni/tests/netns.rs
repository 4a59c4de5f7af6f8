//! Privileged tests (root) for per-pod network namespaces: create, lo up, idempotence, removal.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_cni::netns::{is_netns_mount, list_netns_files, unmount_netns_dir};
use skiff_cni::{create_netns, list_netns, remove_netns};

/// Removes every namespace under the directory and its self bind mount, even on panic.
struct DirGuard {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl DirGuard {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        DirGuard {
            dir: tmp.path().join("netns"),
            _tmp: tmp,
        }
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        for name in list_netns_files(&self.dir, "").unwrap_or_default() {
            let _ = remove_netns(&self.dir, &name);
        }
        let _ = unmount_netns_dir(&self.dir);
    }
}

fn mounts_of(path: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let needle = path.display().to_string();
    info.lines()
        .filter(|line| line.split(' ').nth(4) == Some(needle.as_str()))
        .count()
}

fn lo_flags(ns: &Path) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "link", "show", "lo"])
        .output()
        .expect("run nsenter");
    assert!(out.status.success(), "nsenter: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_brings_lo_up_is_idempotent_and_remove_leaves_nothing() {
    let guard = DirGuard::new();
    let name = format!("sktest-{}-a", std::process::id());

    let path = create_netns(&guard.dir, &name).expect("create");
    assert_eq!(path, guard.dir.join(&name));
    assert!(is_netns_mount(&path));
    let flags = lo_flags(&path);
    assert!(
        flags.contains(",UP,") || flags.contains(",UP>"),
        "lo not up: {flags}"
    );
    // Its own namespace: only lo inside.
    let all = Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "-o", "link", "show"])
        .output()
        .expect("ip link");
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 1);

    let again = create_netns(&guard.dir, &name).expect("create again");
    assert_eq!(again, path);
    assert_eq!(
        mounts_of(&path),
        1,
        "idempotent create must not stack mounts"
    );
    assert_eq!(
        list_netns(&guard.dir, "sktest-").expect("list"),
        vec![name.clone()]
    );

    remove_netns(&guard.dir, &name).expect("remove");
    assert!(!path.exists());
    assert_eq!(mounts_of(&path), 0);
    remove_netns(&guard.dir, &name).expect("remove is idempotent");
    assert!(list_netns(&guard.dir, "").expect("list").is_empty());
}

#[test]
fn leftover_unmounted_file_is_reused() {
    let guard = DirGuard::new();
    std::fs::create_dir_all(&guard.dir).expect("mkdir");
    let name = format!("sktest-{}-b", std::process::id());
    std::fs::write(guard.dir.join(&name), b"").expect("leftover file");
    assert!(list_netns(&guard.dir, "").expect("list").is_empty());
    let path = create_netns(&guard.dir, &name).expect("create over leftover");
    assert!(is_netns_mount(&path));
    remove_netns(&guard.dir, &name).expect("remove");
}

#[test]
fn bad_names_are_rejected() {
    let guard = DirGuard::new();
    for bad in ["", "..", "a/b"] {
        assert!(create_netns(&guard.dir, bad).is_err(), "{bad:?} accepted");
    }
}

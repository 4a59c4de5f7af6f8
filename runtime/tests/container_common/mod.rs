//! Shared helpers for the privileged container tests: a busybox rootfs, a per-test state root
//! and cgroup parent, a network namespace guard, and deadline-bounded waiting.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_runtime::container::{
    ContainerRuntime, ContainerSpec, ContainerState, LogConfig, ProcessSpec, ShimRuntime,
    ShimRuntimeConfig, cgroup,
};

pub const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "id", "hostname", "ls", "env", "dd", "seq", "tr", "head", "pwd",
    "touch", "test", "true", "mkdir", "tty", "stty",
];

/// Waits until `f` returns `Some`, panicking with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// Builds a rootfs from the static busybox with the applets the tests use.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["bin", "etc", "tmp", "proc", "sys", "dev", "data"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static must be installed");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1001::/tmp:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1001:\nstaff:x:50:app\n",
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    root
}

/// One test's world: a state root, a rootfs, a cgroup parent, a runtime. Dropping it removes
/// every container it knows and the cgroup parent.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub state_root: PathBuf,
    pub cgroup_parent: String,
    pub runtime: ShimRuntime,
}

/// The shim command under test: `SKIFF_TEST_SHIM` (space-separated, e.g. `target/release/skiff
/// shim`) when set, else this crate's `skiff-shim` binary.
pub fn shim_command() -> Vec<std::ffi::OsString> {
    match std::env::var("SKIFF_TEST_SHIM") {
        Ok(cmd) if !cmd.trim().is_empty() => cmd.split_whitespace().map(Into::into).collect(),
        _ => vec![env!("CARGO_BIN_EXE_skiff-shim").into()],
    }
}

pub fn shim_config(state_root: &Path) -> ShimRuntimeConfig {
    ShimRuntimeConfig {
        state_root: state_root.to_path_buf(),
        shim_command: shim_command(),
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(dir.path());
        let state_root = dir.path().join("st");
        let runtime = ShimRuntime::new(shim_config(&state_root));
        TestEnv {
            rootfs,
            state_root,
            cgroup_parent: format!("skiff-test-{}", random_suffix()),
            runtime,
            dir,
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    pub fn cgroups_path(&self, id: &str) -> PathBuf {
        PathBuf::from(format!("/{}/pod/{id}", self.cgroup_parent))
    }

    pub fn spec(&self, id: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            id: id.to_string(),
            layers: vec![self.rootfs.clone()],
            process: ProcessSpec {
                args: args.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            hostname: None,
            mounts: Vec::new(),
            resources: Default::default(),
            network_namespace: None,
            cgroups_path: self.cgroups_path(id),
            log: LogConfig {
                path: self.log_path(id),
                max_size_bytes: 1 << 20,
                max_files: 3,
                ..LogConfig::default()
            },
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            security: Default::default(),
        }
    }

    /// Waits for the container to exit and returns its state.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerState {
        wait_for(&format!("{id} to exit"), timeout, || {
            match self.runtime.state(id).unwrap() {
                s @ ContainerState::Exited { .. } => Some(s),
                _ => None,
            }
        })
    }

    pub fn log_texts(&self, id: &str) -> Vec<(String, String)> {
        skiff_runtime::container::read_log(&self.log_path(id), None)
            .unwrap()
            .into_iter()
            .map(|l| (l.stream.as_str().to_string(), l.text))
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for id in self.runtime.list().unwrap_or_default() {
            if let Err(e) = self.runtime.remove(&id) {
                eprintln!("cleanup: removing {id}: {e}");
            }
        }
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// Removes `/<parent>` and everything below it in every cgroup hierarchy (deepest first).
pub fn remove_cgroup_tree(parent: &str) {
    for hierarchy in cgroup::hierarchies(Path::new(cgroup::CGROUP_ROOT)) {
        remove_dirs_deepest_first(&hierarchy.join(parent));
    }
}

fn remove_dirs_deepest_first(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs_deepest_first(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct NetnsGuard {
    pub name: String,
}

impl NetnsGuard {
    pub fn new() -> Self {
        let name = format!("skiff-t-{}", random_suffix());
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name} failed");
        NetnsGuard { name }
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn vm_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's hard RLIMIT_NOFILE (containers get the same, capped at 1048576).
pub fn nofile_hard_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

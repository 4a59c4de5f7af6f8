//! The shim's first half (`run`): mount the rootfs, write config.json, create and start the
//! container with libcontainer, record and report the start, then re-exec as the monitor.
//! Also the cleanup both halves share.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::SystemTime;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;

use super::monitor::{Running, monitor};
use super::{MonitorArgs, ShimArgs, handoff, report, signals};
use crate::container::cgroup;
use crate::container::layout::{
    ContainerDir, ExitRecord, RunningRecord, read_record, write_record, write_record_unsynced,
};
use crate::container::oci::build_oci_spec;
use crate::container::process::read_stat;
use crate::container::rootfs;
use crate::container::security;
use crate::container::spec::ContainerSpec;
use crate::container::user::resolve_user;

/// `run`: set up, create and start the container, report, then hand over to the monitor.
/// `argv_prefix` is this process's argv up to the shim's own arguments (for the re-exec).
pub(super) fn run(args: &ShimArgs, argv_prefix: Option<&[OsString]>) -> i32 {
    // Own session and process group: signals to the agent's group never reach us.
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("shim: setsid failed: {e}");
    }
    if let Err(e) = signals::install() {
        report(&format!("error installing signal handlers: {e}"));
        return 1;
    }
    let dir = ContainerDir::new(&args.state_root, &args.id);
    let spec: ContainerSpec = match read_record(&args.id, &dir.spec()) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            report(&format!("error no spec at {:?}", dir.spec()));
            return 1;
        }
        Err(e) => {
            report(&format!("error {e}"));
            return 1;
        }
    };
    let running = match create_and_start(&dir, &spec) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("shim: start failed: {message}");
            cleanup(&dir, &spec);
            let record = ExitRecord {
                exit_code: 128,
                signal: None,
                oom_killed: false,
                started_at: None,
                finished_at: SystemTime::now(),
                reason: "StartError".into(),
                message: Some(message.clone()),
            };
            if let Err(e) = write_record(&spec.id, &dir.exit(), &record) {
                eprintln!("shim: {e}");
            }
            report(&format!("error {message}"));
            return 1;
        }
    };
    let started_at = SystemTime::now();
    let me = std::process::id() as i32;
    let record = RunningRecord {
        init_pid: running.pid,
        init_start_ticks: read_stat(running.pid).map_or(0, |s| s.start_ticks),
        shim_pid: me,
        shim_start_ticks: read_stat(me).map_or(0, |s| s.start_ticks),
        started_at,
    };
    if let Err(e) = write_record_unsynced(&spec.id, &dir.running(), &record) {
        eprintln!("shim: {e}");
    }
    report(&format!("started {}", running.pid));
    detach_stdout();
    // Shed the pages libcontainer touched: exec a fresh image of ourselves that only monitors.
    // On success this does not return; if it fails, monitor from this process.
    if let Some(prefix) = argv_prefix {
        let monitor_args = MonitorArgs {
            state_root: args.state_root.clone(),
            id: args.id.clone(),
            pid: running.pid,
            stdout_fd: running.stdout.as_raw_fd(),
            stderr_fd: running.stderr.as_raw_fd(),
        };
        let error = handoff::exec_monitor(prefix, &monitor_args, &running);
        eprintln!("shim: re-exec as monitor failed ({error}); monitoring in place");
    }
    monitor(&dir, &spec, running, started_at)
}

/// Moves the shim into a mount namespace of its own, private both ways, and returns the
/// network namespace path the container is to join. The container's mount namespace is copied
/// from this one, and its setup costs grow with what it holds (libcontainer reads the mount
/// table for each of the container's mounts): so the rootfs overlay is mounted here only (the
/// host's mount table no longer grows with each container; it goes when the shim and the
/// container are gone), and the directory of the pods' network namespace files is dropped in
/// one detach, this pod's file being bind-mounted beside the container's state first. The
/// shim is single-threaded, which unsharing a mount namespace needs.
fn private_mount_namespace(
    dir: &ContainerDir,
    spec: &ContainerSpec,
) -> Result<Option<std::path::PathBuf>, String> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("own mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("own mount namespace private: {e}"))?;
    let Some(netns) = spec.network_namespace.as_deref() else {
        return Ok(None);
    };
    let Some(netns_dir) = netns
        .parent()
        .filter(|d| rootfs::mount_points().iter().any(|m| m == d))
    else {
        return Ok(Some(netns.to_path_buf()));
    };
    let own = dir.dir.join("netns");
    std::fs::File::create(&own).map_err(|e| format!("creating {own:?}: {e}"))?;
    mount(
        Some(netns),
        &own,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("binding {netns:?} to {own:?}: {e}"))?;
    umount2(netns_dir, MntFlags::MNT_DETACH)
        .map_err(|e| format!("detaching {netns_dir:?}: {e}"))?;
    Ok(Some(own))
}

/// Mounts the rootfs, writes config.json, creates and starts the container.
fn create_and_start(dir: &ContainerDir, spec: &ContainerSpec) -> Result<Running, String> {
    let netns = private_mount_namespace(dir, spec)?;
    let spec = &ContainerSpec {
        network_namespace: netns,
        ..spec.clone()
    };
    let layers: Vec<&std::path::Path> = spec.layers.iter().map(|p| p.as_path()).collect();
    rootfs::mount_overlay(&layers, &dir.upper(), &dir.work(), &dir.rootfs())
        .map_err(|e| e.to_string())?;
    let user = resolve_user(&dir.rootfs(), &spec.process.user).map_err(|e| e.to_string())?;
    if let Some(limit) = spec.resources.pod_pids_limit {
        let root = std::path::Path::new(cgroup::CGROUP_ROOT);
        cgroup::set_pod_pids_limit(root, &spec.cgroups_path, limit)
            .map_err(|e| format!("pod pids limit: {e}"))?;
    }
    let host = security::HostSecurity::of_this_process(spec.security.privileged);
    let oci = build_oci_spec(spec, &user, nofile_hard_limit(), &host)
        .map_err(|e| format!("building config.json: {e}"))?;
    let config_json = dir.bundle().join("config.json");
    oci.save(&config_json)
        .map_err(|e| format!("writing config.json: {e}"))?;
    // It holds the container's environment (Secret values among it): root only.
    std::fs::set_permissions(
        &config_json,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .map_err(|e| format!("config.json permissions: {e}"))?;

    let stdin = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    std::fs::create_dir_all(&dir.libcontainer_root)
        .map_err(|e| format!("creating {:?}: {e}", dir.libcontainer_root))?;

    let mut container = ContainerBuilder::new(spec.id.clone(), SyscallType::default())
        .with_root_path(&dir.libcontainer_root)
        .map_err(|e| format!("libcontainer root: {e}"))?
        .with_stdin(OwnedFd::from(stdin))
        .with_stdout(out_w)
        .with_stderr(err_w)
        .validate_id()
        .map_err(|e| format!("container id: {e}"))?
        .as_init(dir.bundle())
        .with_systemd(false)
        .build()
        .map_err(|e| format!("creating container: {}", error_chain(&e)))?;
    container
        .start()
        .map_err(|e| format!("starting container: {}", error_chain(&e)))?;
    let pid = container
        .pid()
        .ok_or("container has no pid after start")?
        .as_raw();
    Ok(Running {
        pid,
        stdout: File::from(out_r),
        stderr: File::from(err_r),
    })
}

/// Deletes the libcontainer container, its cgroups (and empty pod dir) and unmounts the rootfs.
pub(super) fn cleanup(dir: &ContainerDir, spec: &ContainerSpec) {
    let state = dir.libcontainer_state();
    if state.exists() {
        match Container::load(state.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    eprintln!("shim: deleting container: {}", error_chain(&e));
                }
            }
            Err(e) => eprintln!("shim: loading container state: {}", error_chain(&e)),
        }
        let _ = std::fs::remove_dir_all(&state);
    }
    for (path, e) in cgroup::remove_container_cgroups(
        std::path::Path::new(cgroup::CGROUP_ROOT),
        &spec.cgroups_path,
    ) {
        eprintln!("shim: removing cgroup {path:?}: {e}");
    }
    if let Err(e) = rootfs::unmount(&dir.rootfs()) {
        eprintln!("shim: {e}");
    }
}

/// Points fd 1 at /dev/null so a vanished reader never hurts the shim.
fn detach_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// The hard RLIMIT_NOFILE of this process, read from /proc (no unsafe getrlimit).
fn nofile_hard_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(4)?.parse().ok()
        })
        .unwrap_or(1024)
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

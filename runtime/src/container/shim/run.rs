//! The shim's lifecycle: mount, create, start, report, pump logs until the init exits, record
//! the exit, clean up.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::logwriter::{LineSplitter, LogWriter};
use super::{ShimArgs, report, signals};
use crate::container::cgroup;
use crate::container::layout::{
    ContainerDir, ExitRecord, RunningRecord, read_record, write_record,
};
use crate::container::log::Stream;
use crate::container::oci::build_oci_spec;
use crate::container::process::{pidfd_open, read_stat};
use crate::container::rootfs;
use crate::container::spec::ContainerSpec;
use crate::container::user::resolve_user;

/// How long to keep draining stdout/stderr after the init exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

struct Running {
    pid: i32,
    stdout: File,
    stderr: File,
}

pub(super) fn run(args: &ShimArgs) -> i32 {
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
    monitor(&dir, &spec, running)
}

/// Mounts the rootfs, writes config.json, creates and starts the container.
fn create_and_start(dir: &ContainerDir, spec: &ContainerSpec) -> Result<Running, String> {
    let layers: Vec<&std::path::Path> = spec.layers.iter().map(|p| p.as_path()).collect();
    rootfs::mount_overlay(&layers, &dir.upper(), &dir.work(), &dir.rootfs())?;
    let user = resolve_user(&dir.rootfs(), &spec.process.user)?;
    let oci = build_oci_spec(spec, &user, nofile_hard_limit())
        .map_err(|e| format!("building config.json: {e}"))?;
    oci.save(dir.bundle().join("config.json"))
        .map_err(|e| format!("writing config.json: {e}"))?;

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

/// Records the start, reports it, pumps logs until the init exits, then finishes up.
fn monitor(dir: &ContainerDir, spec: &ContainerSpec, mut running: Running) -> i32 {
    let started_at = SystemTime::now();
    let pidfd = pidfd_open(running.pid);
    let me = std::process::id() as i32;
    let record = RunningRecord {
        init_pid: running.pid,
        init_start_ticks: read_stat(running.pid).map_or(0, |s| s.start_ticks),
        shim_pid: me,
        shim_start_ticks: read_stat(me).map_or(0, |s| s.start_ticks),
        started_at,
    };
    if let Err(e) = write_record(&spec.id, &dir.running(), &record) {
        eprintln!("shim: {e}");
    }
    report(&format!("started {}", running.pid));
    detach_stdout();

    let mut log = match LogWriter::open(&spec.log) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!(
                "shim: opening log {:?}: {e}; output is discarded",
                spec.log.path
            );
            None
        }
    };
    let mut pump = Pump::new(&mut log);
    match &pidfd {
        Ok(pidfd) => pump.run(&mut running, Some(pidfd.as_fd()), None),
        Err(e) => {
            eprintln!("shim: pidfd_open failed ({e}); waiting on the child instead");
            pump.run(&mut running, None, None)
        }
    }
    let status = waitpid(Pid::from_raw(running.pid), None);
    let finished_at = SystemTime::now();
    pump.run(&mut running, None, Some(Instant::now() + DRAIN_AFTER_EXIT));
    pump.finish();

    let (exit_code, signal) = match status {
        Ok(WaitStatus::Exited(_, code)) => (code, None),
        Ok(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
        other => {
            eprintln!("shim: unexpected wait status {other:?}");
            (255, None)
        }
    };
    let oom_killed = cgroup::oom_killed(
        std::path::Path::new(cgroup::CGROUP_ROOT),
        &spec.cgroups_path,
    );
    cleanup(dir, spec);
    let reason = match (oom_killed, exit_code) {
        (true, _) => "OOMKilled",
        (false, 0) => "Completed",
        _ => "Error",
    };
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed,
        started_at: Some(started_at),
        finished_at,
        reason: reason.into(),
        message: None,
    };
    if let Err(e) = write_record(&spec.id, &dir.exit(), &record) {
        eprintln!("shim: {e}");
        return 1;
    }
    0
}

/// Moves log bytes from the container's pipes into the log file.
struct Pump<'a> {
    log: &'a mut Option<LogWriter>,
    splitters: [LineSplitter; 2],
    open: [bool; 2],
}

impl<'a> Pump<'a> {
    fn new(log: &'a mut Option<LogWriter>) -> Self {
        Pump {
            log,
            splitters: Default::default(),
            open: [true, true],
        }
    }

    /// Polls the pipes (and the pidfd) until the pidfd fires, both pipes close, or `deadline`.
    fn run(
        &mut self,
        running: &mut Running,
        pidfd: Option<std::os::fd::BorrowedFd<'_>>,
        deadline: Option<Instant>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !self.open.iter().any(|o| *o) && pidfd.is_none() {
                return;
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
                // Without a pidfd, wake up now and then to check on the child.
                None if pidfd.is_none() => PollTimeout::from(200u16),
                None => PollTimeout::NONE,
            };
            // Closed pipes stay out of the set: they would report POLLHUP forever.
            let mut slots: Vec<usize> = Vec::with_capacity(3);
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
            for (i, file) in [&running.stdout, &running.stderr].into_iter().enumerate() {
                if self.open[i] {
                    slots.push(i);
                    fds.push(PollFd::new(file.as_fd(), PollFlags::POLLIN));
                }
            }
            if let Some(p) = pidfd {
                slots.push(2);
                fds.push(PollFd::new(p, PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("shim: poll failed: {e}");
                    return;
                }
                Ok(_) => {}
            }
            let mut ready = [false; 3];
            for (slot, fd) in slots.iter().zip(&fds) {
                ready[*slot] = fd.any().unwrap_or(false);
            }
            drop(fds);
            for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                if ready[i] && self.open[i] {
                    let file = if i == 0 {
                        &mut running.stdout
                    } else {
                        &mut running.stderr
                    };
                    match file.read(&mut buf) {
                        Ok(0) => self.open[i] = false,
                        Ok(n) => self.write(i, stream, &buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => self.open[i] = false,
                    }
                }
            }
            if pidfd.is_some() && ready[2] {
                return;
            }
            if pidfd.is_none() && deadline.is_none() && child_exited(running.pid) {
                return;
            }
        }
    }

    fn write(&mut self, index: usize, stream: Stream, data: &[u8]) {
        let log = &mut *self.log;
        let mut emit = |text: &[u8], partial: bool| -> std::io::Result<()> {
            if let Some(w) = log.as_mut() {
                w.write(SystemTime::now(), stream, partial, text)?;
            }
            Ok(())
        };
        if let Err(e) = self.splitters[index].push(data, &mut emit) {
            eprintln!("shim: writing log: {e}");
        }
    }

    fn finish(&mut self) {
        let log = &mut *self.log;
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let mut emit = |text: &[u8], partial: bool| -> std::io::Result<()> {
                if let Some(w) = log.as_mut() {
                    w.write(SystemTime::now(), stream, partial, text)?;
                }
                Ok(())
            };
            if let Err(e) = self.splitters[i].finish(&mut emit) {
                eprintln!("shim: writing log: {e}");
            }
        }
    }
}

fn child_exited(pid: i32) -> bool {
    read_stat(pid).is_none_or(|s| s.state == 'Z')
}

/// Deletes the libcontainer container, its cgroups (and empty pod dir) and unmounts the rootfs.
fn cleanup(dir: &ContainerDir, spec: &ContainerSpec) {
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

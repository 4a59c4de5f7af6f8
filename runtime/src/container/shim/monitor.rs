//! The shim's second half: pumps the container's stdout/stderr into the log until its init
//! exits, reaps it, records the exit (with OOM detection) and cleans up.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::logwriter::{LineSplitter, LogWriter};
use crate::container::cgroup;
use crate::container::layout::{ContainerDir, ExitRecord, write_record};
use crate::container::log::Stream;
use crate::container::process::{pidfd_open, read_stat};
use crate::container::spec::ContainerSpec;

/// How long to keep draining stdout/stderr after the init exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// A started container as the monitor sees it: the init pid and the read ends of its output.
pub(super) struct Running {
    pub pid: i32,
    pub stdout: File,
    pub stderr: File,
}

/// Pumps logs until the init exits, then records the exit and cleans up. Returns the shim's
/// exit code.
pub(super) fn monitor(
    dir: &ContainerDir,
    spec: &ContainerSpec,
    mut running: Running,
    started_at: SystemTime,
) -> i32 {
    // The init is our child and not yet reaped, so its pid cannot have been reused.
    let pidfd = pidfd_open(running.pid);

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
    super::run::cleanup(dir, spec);
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

/// `monitor`: the re-executed shim. Picks up the inherited pipes and monitors.
pub(super) fn monitor_main(args: &super::MonitorArgs) -> i32 {
    if let Err(e) = super::signals::ignore_all() {
        eprintln!("shim: ignoring signals: {e}");
    }
    let dir = ContainerDir::new(&args.state_root, &args.id);
    let spec: ContainerSpec = match crate::container::layout::read_record(&args.id, &dir.spec()) {
        Ok(Some(spec)) => spec,
        other => {
            eprintln!("shim monitor: cannot read {:?}: {other:?}", dir.spec());
            return 1;
        }
    };
    let started_at =
        crate::container::layout::read_record::<crate::container::layout::RunningRecord>(
            &args.id,
            &dir.running(),
        )
        .ok()
        .flatten()
        .map_or_else(SystemTime::now, |r| r.started_at);
    let (stdout, stderr) = match (
        super::handoff::adopt_fd(args.stdout_fd),
        super::handoff::adopt_fd(args.stderr_fd),
    ) {
        (Ok(o), Ok(e)) => (o, e),
        (o, e) => {
            eprintln!(
                "shim monitor: inherited pipes unusable: {:?} {:?}",
                o.err(),
                e.err()
            );
            return 1;
        }
    };
    super::trim::drop_clean_file_pages();
    monitor(
        &dir,
        &spec,
        Running {
            pid: args.pid,
            stdout,
            stderr,
        },
        started_at,
    )
}

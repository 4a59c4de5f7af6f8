//! The shim's `exec` step: runs one process inside a running container and relays its input
//! and output as frames (see [`crate::container::exec`]).
//!
//! The process joins the container through libcontainer's tenant builder: the init's
//! namespaces, the container's cgroup, and the container's own process settings from its
//! config.json (user and groups, capabilities, no_new_privileges, rlimits, AppArmor profile,
//! working directory, environment), with only the arguments (and the terminal) replaced. The
//! tenant builder does not carry the container's seccomp filter over, so the executor installs
//! it just before the exec; loading a filter needs no_new_privileges (the container's
//! capabilities are already dropped then), so an exec'd process of a container with a filter
//! always runs with no_new_privileges, even where the container's main process does not (its
//! setuid binaries do not gain privileges). That is stricter than Kubernetes, never looser.
//!
//! This process is single-threaded (no tokio, no threads), as libcontainer's fork needs.

use std::fs::OpenOptions;
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::container::exec::{
    ExecArgs, ExecInput, ExecOutput, FrameReader, MAX_FRAME, cannot_start_code,
};
use crate::container::layout::ContainerDir;
use crate::container::process::pidfd_open;

/// How long output is still relayed after the process exited (a background child may hold the
/// pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// How long the process's terminal may take to arrive on the console socket.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);
/// Input held for a process that does not read it before more is read from the agent.
const MAX_PENDING_INPUT: usize = 1024 * 1024;

/// Runs the exec step; returns the shim's exit code (the process's, or 126/127).
pub(in crate::container) fn exec_main(args: &ExecArgs) -> i32 {
    let mut out = Out { gone: false };
    match start(args) {
        Ok(started) => relay(started, &mut out),
        Err(message) => {
            eprintln!("shim exec: {message}");
            let code = cannot_start_code(&message);
            out.send(&ExecOutput::Failed(message));
            out.send(&ExecOutput::Exit(code));
            code
        }
    }
}

/// Frames to the agent on stdout.
struct Out {
    gone: bool,
}

impl Out {
    /// Sends a frame; false once the agent stopped reading.
    fn send(&mut self, frame: &ExecOutput) -> bool {
        if self.gone {
            return false;
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(&frame.encode())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.gone = true;
        }
        !self.gone
    }
}

/// The started process as the relay sees it.
struct Started {
    pid: Pid,
    /// Where the process's input goes (a pipe, or the terminal's master side).
    input: Option<OwnedFd>,
    /// The process's output: (fd, is stderr). With a terminal, only the master side.
    outputs: Vec<(OwnedFd, bool)>,
    /// The terminal's master side, for window sizes.
    terminal: Option<OwnedFd>,
}

/// Deletes a file when dropped (the process.json holds the container's environment).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Installs the container's seccomp filter right before the default exec.
#[derive(Clone)]
struct ExecExecutor {
    seccomp: Option<LinuxSeccomp>,
}

impl Executor for ExecExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(filter) = &self.seccomp {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| ExecutorError::Other(format!("setting no_new_privileges: {e}")))?;
            libcontainer::seccomp::initialize_seccomp(filter)
                .map_err(|e| ExecutorError::Other(format!("installing seccomp filter: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

fn start(args: &ExecArgs) -> Result<Started, String> {
    let dir = ContainerDir::new(&args.state_root, &args.id);
    let config = dir.bundle().join("config.json");
    let spec = Spec::load(&config)
        .map_err(|e| format!("container {} is not running here ({e})", args.id))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or("the container's config.json has no process")?;
    let mut env = process.env().clone().unwrap_or_default();
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process
        .set_args(Some(args.command.clone()))
        .set_terminal(Some(args.tty))
        .set_console_size(None)
        .set_env(Some(env));
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let me = std::process::id();
    let process_path = dir.dir.join(format!("exec-{me}.json"));
    let _remove_process = RemoveOnDrop(process_path.clone());
    let bytes = serde_json::to_vec(&process).map_err(|e| format!("encoding process: {e}"))?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&process_path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| format!("writing {process_path:?}: {e}"))?;

    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&dir.libcontainer_root)
        .map_err(|e| format!("container {} is not running here ({e})", args.id))?
        .with_executor(ExecExecutor { seccomp });
    let mut pipes = None;
    let mut console = None;
    if args.tty {
        let (listener, path) = console_listener(&dir.dir, me)?;
        builder = builder.with_console_socket(Some(&path));
        console = Some((listener, RemoveOnDrop(path)));
    } else {
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        builder = builder
            .with_stdin(in_r)
            .with_stdout(out_w)
            .with_stderr(err_w);
        pipes = Some((in_w, out_r, err_r));
    }
    let pid = builder
        .as_tenant()
        .with_detach(args.tty)
        .with_process(Some(&process_path))
        .build()
        .map_err(|e| super::run::error_chain(&e))?;
    match (pipes, console) {
        (Some((in_w, out_r, err_r)), _) => {
            set_nonblocking(&in_w)?;
            Ok(Started {
                pid,
                input: Some(in_w),
                outputs: vec![(out_r, false), (err_r, true)],
                terminal: None,
            })
        }
        (None, Some((listener, _remove))) => {
            let master = receive_terminal(&listener).inspect_err(|_| {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            })?;
            set_nonblocking(&master)?;
            let input = master.try_clone().map_err(|e| format!("dup: {e}"))?;
            let output = master.try_clone().map_err(|e| format!("dup: {e}"))?;
            Ok(Started {
                pid,
                input: Some(input),
                outputs: vec![(output, false)],
                terminal: Some(master),
            })
        }
        (None, None) => Err("no stdio was set up".into()),
    }
}

/// A unix socket for libcontainer to hand the terminal's master side to. It is bound by a
/// relative name inside the container's dir (the full path may exceed the 107-byte limit).
fn console_listener(dir: &Path, me: u32) -> Result<(UnixListener, PathBuf), String> {
    let name = format!("exec-{me}.sock");
    let path = dir.join(&name);
    let previous = std::env::current_dir().ok();
    std::env::set_current_dir(dir).map_err(|e| format!("entering {dir:?}: {e}"))?;
    let bound = UnixListener::bind(&name);
    if let Some(previous) = previous {
        let _ = std::env::set_current_dir(previous);
    }
    let listener = bound.map_err(|e| format!("console socket {path:?}: {e}"))?;
    Ok((listener, path))
}

/// Accepts libcontainer's connection and takes the terminal's master fd from it.
fn receive_terminal(listener: &UnixListener) -> Result<OwnedFd, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("console socket: {e}"))?;
    let deadline = Instant::now() + CONSOLE_WAIT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("the process's terminal did not arrive".into());
                }
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, timeout_of(left));
            }
            Err(e) => return Err(format!("console socket accept: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("console socket: {e}"))?;
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 64];
    rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut name)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the terminal: {e}"))?;
    for message in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err("libcontainer sent no terminal".into())
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), String> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| format!("fcntl: {e}"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(|e| format!("fcntl: {e}"))?;
    Ok(())
}

fn timeout_of(left: Duration) -> PollTimeout {
    PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX)
}

fn exit_code(status: nix::Result<WaitStatus>) -> Option<i32> {
    match status {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
        Ok(WaitStatus::StillAlive) => None,
        Ok(_) => None,
        Err(Errno::ECHILD) => Some(255),
        Err(_) => None,
    }
}

/// Relays input and output until the process exited and its output is drained (or
/// [`DRAIN_AFTER_EXIT`] passed), then reports the exit.
fn relay(mut p: Started, out: &mut Out) -> i32 {
    // The process is our child and not yet reaped, so its pid cannot have been reused.
    let pidfd = pidfd_open(p.pid.as_raw()).ok();
    let mut frames = FrameReader::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut input_ended = false;
    let mut agent_open = true;
    let mut killed = false;
    let mut exit: Option<i32> = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        if exit.is_some()
            && (p.outputs.is_empty() || drain_until.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        let mut agent_gone = false;
        let (stdin_ready, input_ready, output_ready, exited) = {
            let stdin = std::io::stdin();
            let read_stdin = agent_open && exit.is_none() && pending.len() < MAX_PENDING_INPUT;
            let mut fds = Vec::new();
            if read_stdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            let write_input = !pending.is_empty() && p.input.is_some();
            if let (true, Some(input)) = (write_input, &p.input) {
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLOUT));
            }
            for (fd, _) in &p.outputs {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let watch_exit = exit.is_none() && pidfd.is_some();
            if let (true, Some(pidfd)) = (watch_exit, &pidfd) {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            let timeout = match (drain_until, pidfd.is_some()) {
                (Some(d), _) => timeout_of(d.saturating_duration_since(Instant::now())),
                (None, false) => timeout_of(Duration::from_millis(100)),
                (None, true) => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("shim exec: poll: {e}");
                    agent_gone = true;
                }
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let stdin_ready = read_stdin && it.next().is_some_and(ready);
            let input_ready = write_input && it.next().is_some_and(ready);
            let output_ready: Vec<bool> = p
                .outputs
                .iter()
                .map(|_| it.next().is_some_and(ready))
                .collect();
            let exited = watch_exit && it.next().is_some_and(ready);
            (stdin_ready, input_ready, output_ready, exited)
        };

        if stdin_ready {
            match nix::unistd::read(0, &mut buf) {
                // The agent keeps this pipe open while it cares about the process.
                Ok(0) => {
                    agent_open = false;
                    agent_gone = true;
                }
                Ok(n) => {
                    frames.push(&buf[..n]);
                    loop {
                        match frames.next_input() {
                            Ok(Some(ExecInput::Stdin(data))) => pending.extend_from_slice(&data),
                            Ok(Some(ExecInput::StdinEnd)) => input_ended = true,
                            Ok(Some(ExecInput::Resize { cols, rows })) => {
                                if let Some(t) = &p.terminal {
                                    let size = rustix::termios::Winsize {
                                        ws_row: rows,
                                        ws_col: cols,
                                        ws_xpixel: 0,
                                        ws_ypixel: 0,
                                    };
                                    let _ = rustix::termios::tcsetwinsize(t, size);
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                eprintln!("shim exec: {e}");
                                agent_gone = true;
                                agent_open = false;
                                break;
                            }
                        }
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => {
                    agent_open = false;
                    agent_gone = true;
                }
            }
        }
        if input_ready && let Some(input) = &p.input {
            match nix::unistd::write(input, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                // The process closed its input: what is left cannot be delivered.
                Err(_) => {
                    pending.clear();
                    p.input = None;
                }
            }
        }
        // Without a terminal, the end of the caller's input closes the process's stdin.
        if input_ended && pending.is_empty() && p.terminal.is_none() {
            p.input = None;
        }
        let mut closed = Vec::new();
        for (i, ready) in output_ready.iter().enumerate() {
            if !ready {
                continue;
            }
            let (fd, is_err) = &p.outputs[i];
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                // A terminal's master answers EIO once every slave side is closed.
                Ok(0) | Err(Errno::EIO) => closed.push(i),
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    let frame = if *is_err {
                        ExecOutput::Stderr(data)
                    } else {
                        ExecOutput::Stdout(data)
                    };
                    if !out.send(&frame) {
                        agent_gone = true;
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => {
                    eprintln!("shim exec: reading output: {e}");
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            p.outputs.remove(i);
        }
        if agent_gone && !killed && exit.is_none() {
            killed = true;
            let _ = kill(p.pid, Signal::SIGKILL);
        }
        if exit.is_none() {
            let status = if exited {
                Some(waitpid(p.pid, None))
            } else if pidfd.is_none() {
                Some(waitpid(p.pid, Some(WaitPidFlag::WNOHANG)))
            } else {
                None
            };
            if let Some(code) = status.and_then(exit_code) {
                exit = Some(code);
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                p.input = None;
                pending.clear();
            }
        }
    }
    let code = exit.unwrap_or(255);
    out.send(&ExecOutput::Exit(code));
    code
}

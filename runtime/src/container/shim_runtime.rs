//! `ShimRuntime`: the agent's side of containers. Spawns one shim per container, reads the
//! records shims leave in the state dir, signals inits through pidfds, and removes containers.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::error::ContainerError;
use super::exec::ExecArgs;
use super::layout::{
    ContainerDir, ExitRecord, RunningRecord, containers_dir, read_record, write_record,
    write_record_unsynced,
};
use super::process::{is_alive, signal_if_same};
use super::shim::ShimArgs;
use super::spec::{ContainerSpec, validate_id};
use super::{ContainerRuntime, ContainerState, StartedContainer, cgroup, rootfs};

/// How long `start` waits for the shim's report.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `remove` waits for a killed container and its shim to go away.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(15);
/// unix socket paths (libcontainer's notify socket) must stay below this.
const MAX_SOCKET_PATH: usize = 107;

/// Where state lives and how to start a shim.
#[derive(Clone, Debug)]
pub struct ShimRuntimeConfig {
    /// Root of all container state; keep it short (libcontainer puts a unix socket under it).
    pub state_root: PathBuf,
    /// Program and leading args of the shim, e.g. `[current_exe, "shim"]`; the runtime appends
    /// `run --state-root <state_root> --id <id>`.
    pub shim_command: Vec<OsString>,
}

/// Runs containers through per-container shim processes.
pub struct ShimRuntime {
    config: ShimRuntimeConfig,
    /// Shims this instance spawned, reaped as they exit (shims of an earlier agent are not ours).
    children: Mutex<HashMap<String, Child>>,
}

impl ShimRuntime {
    /// The container of `id` runs but its shim is gone: SIGKILL the container (its whole pid
    /// namespace goes with its init) and write the exit record the shim could not.
    fn shim_lost(
        &self,
        id: &str,
        dir: &ContainerDir,
        running: &RunningRecord,
    ) -> Result<ContainerState, ContainerError> {
        tracing::warn!(
            "container {id}: its shim (pid {}) is gone; stopping the container so it is restarted with its logs and exit status tracked",
            running.shim_pid
        );
        let _ = signal_if_same(running.init_pid, running.init_start_ticks, libc::SIGKILL);
        let exit = ExitRecord {
            exit_code: 128 + libc::SIGKILL,
            signal: Some(libc::SIGKILL),
            oom_killed: false,
            started_at: Some(running.started_at),
            finished_at: std::time::SystemTime::now(),
            reason: "ShimLost".to_string(),
            message: Some(format!(
                "its shim process (pid {}) died: logs and exit status were no longer tracked, so the container was stopped",
                running.shim_pid
            )),
        };
        write_record(id, &dir.exit(), &exit)?;
        Ok(ContainerState::Exited {
            exit_code: exit.exit_code,
            signal: exit.signal,
            oom_killed: false,
            started_at: exit.started_at,
            finished_at: exit.finished_at,
            reason: exit.reason,
            message: exit.message,
        })
    }

    pub fn new(config: ShimRuntimeConfig) -> Self {
        ShimRuntime {
            config,
            children: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir::new(&self.config.state_root, id)
    }

    /// Reaps shims of ours that have exited, so they do not linger as zombies.
    fn reap(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.retain(|_, child| matches!(child.try_wait(), Ok(None)));
    }

    /// Reaps the shim of `id` if it has exited. A state read asks about one container, so it
    /// waits on that one shim only: reaping all of them on every read made a pass over every
    /// container's state cost one `wait4` per pair of containers.
    fn reap_one(&self, id: &str) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(child) = children.get_mut(id)
            && !matches!(child.try_wait(), Ok(None))
        {
            children.remove(id);
        }
    }

    fn spawn_shim(&self, dir: &ContainerDir) -> Result<Child, ContainerError> {
        let id = dir.id.as_str();
        let (program, leading) =
            self.config
                .shim_command
                .split_first()
                .ok_or_else(|| ContainerError::InvalidSpec {
                    id: id.to_string(),
                    reason: "shim command is empty".into(),
                })?;
        let log = std::fs::File::create(dir.shim_log())
            .map_err(|e| ContainerError::io(id, "creating", dir.shim_log(), e))?;
        let args = ShimArgs {
            state_root: self.config.state_root.clone(),
            id: id.to_string(),
        };
        Command::new(program)
            .args(leading)
            .args(args.to_args())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|source| ContainerError::SpawnShim {
                id: id.to_string(),
                command: format!("{:?}", self.config.shim_command),
                source,
            })
    }

    fn shim_log_tail(dir: &ContainerDir) -> String {
        let text = std::fs::read_to_string(dir.shim_log()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

/// Why the shim's report line did not arrive (the detail of [`ContainerError::ShimLost`]).
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("no report pipe")]
    NoPipe,
    #[error("no report within {}s", START_TIMEOUT.as_secs())]
    TimedOut,
    #[error("poll: {0}")]
    Poll(nix::errno::Errno),
    #[error("shim exited without a report")]
    Exited,
    #[error("reading report: {0}")]
    Read(std::io::Error),
}

/// Reads the shim's one report line, giving up at `deadline`.
fn read_report(child: &mut Child, deadline: Instant) -> Result<String, ReportError> {
    let Some(stdout) = child.stdout.as_mut() else {
        return Err(ReportError::NoPipe);
    };
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReportError::TimedOut);
        }
        let timeout =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(ReportError::Poll(e)),
        }
        match stdout.read(&mut buf) {
            Ok(0) => return Err(ReportError::Exited),
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if let Some(nl) = line.iter().position(|b| *b == b'\n') {
                    line.truncate(nl);
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReportError::Read(e)),
        }
    }
}

impl ContainerRuntime for ShimRuntime {
    fn pids_are_host_processes(&self) -> bool {
        true
    }

    fn start(&self, spec: &ContainerSpec) -> Result<StartedContainer, ContainerError> {
        spec.validate()?;
        self.reap();
        let id = spec.id.as_str();
        let dir = self.dir(id);
        let socket = dir.libcontainer_state().join("notify.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ContainerError::InvalidSpec {
                id: id.to_string(),
                reason: format!(
                    "state root is too long for the unix socket path {socket:?}: use a shorter one"
                ),
            });
        }
        let parent = containers_dir(&self.config.state_root);
        std::fs::create_dir_all(&parent)
            .map_err(|e| ContainerError::io(id, "creating", &parent, e))?;
        match std::fs::create_dir(&dir.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ContainerError::AlreadyExists { id: id.to_string() });
            }
            other => other.map_err(|e| ContainerError::io(id, "creating", &dir.dir, e))?,
        }
        write_record_unsynced(id, &dir.spec(), spec)?;
        let mut child = self.spawn_shim(&dir)?;
        let report = read_report(&mut child, Instant::now() + START_TIMEOUT);
        let shim_pid = child.id() as i32;
        child.stdout = None;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), child);
        let report = report.map_err(|detail| ContainerError::ShimLost {
            id: id.to_string(),
            detail: format!("{detail}; shim said: {}", Self::shim_log_tail(&dir)),
            log: dir.shim_log(),
        })?;
        if let Some(message) = report.strip_prefix("error ") {
            return Err(ContainerError::StartFailed {
                id: id.to_string(),
                message: message.to_string(),
            });
        }
        let Some(pid) = report
            .strip_prefix("started ")
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return Err(ContainerError::ShimLost {
                id: id.to_string(),
                detail: format!("unexpected report {report:?}"),
                log: dir.shim_log(),
            });
        };
        // The record names the shim itself even when the shim command wraps it.
        let record: Option<RunningRecord> = read_record(id, &dir.running())?;
        Ok(match record {
            Some(r) => StartedContainer {
                pid,
                shim_pid: r.shim_pid,
                started_at: r.started_at,
            },
            None => StartedContainer {
                pid,
                shim_pid,
                started_at: std::time::SystemTime::now(),
            },
        })
    }

    fn state(&self, id: &str) -> Result<ContainerState, ContainerError> {
        validate_id(id)?;
        self.reap_one(id);
        let dir = self.dir(id);
        if !dir.dir.exists() {
            return Ok(ContainerState::NotFound);
        }
        if let Some(exit) = read_record::<ExitRecord>(id, &dir.exit())? {
            return Ok(ContainerState::Exited {
                exit_code: exit.exit_code,
                signal: exit.signal,
                oom_killed: exit.oom_killed,
                started_at: exit.started_at,
                finished_at: exit.finished_at,
                reason: exit.reason,
                message: exit.message,
            });
        }
        // Written without an fsync: one torn by a power loss names processes that are gone.
        let running = match read_record::<RunningRecord>(id, &dir.running()) {
            Err(ContainerError::CorruptRecord { .. }) => None,
            other => other?,
        };
        let Some(running) = running else {
            return Ok(ContainerState::Unknown);
        };
        let init_alive = is_alive(running.init_pid, running.init_start_ticks);
        let shim_alive = is_alive(running.shim_pid, running.shim_start_ticks);
        if init_alive && !shim_alive {
            // Someone killed the shim: the container would run on with nobody keeping its logs
            // or its exit status. Stop it and record why, so it is restarted (tracked again).
            return self.shim_lost(id, &dir, &running);
        }
        if init_alive || shim_alive {
            // A live shim without a live init is recording the exit right now.
            return Ok(ContainerState::Running {
                pid: running.init_pid,
                started_at: running.started_at,
            });
        }
        // The shim may have written the exit record between our two reads.
        if let Some(exit) = read_record::<ExitRecord>(id, &dir.exit())? {
            return Ok(ContainerState::Exited {
                exit_code: exit.exit_code,
                signal: exit.signal,
                oom_killed: exit.oom_killed,
                started_at: exit.started_at,
                finished_at: exit.finished_at,
                reason: exit.reason,
                message: exit.message,
            });
        }
        Ok(ContainerState::Unknown)
    }

    fn list(&self) -> Result<Vec<String>, ContainerError> {
        self.reap();
        let parent = containers_dir(&self.config.state_root);
        let entries = match std::fs::read_dir(&parent) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ContainerError::io("*", "listing", &parent, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| validate_id(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.dir.exists() {
            return Err(ContainerError::NotFound { id: id.to_string() });
        }
        let not_running = || ContainerError::NotRunning { id: id.to_string() };
        if dir.exit().exists() {
            return Err(not_running());
        }
        let running = read_record::<RunningRecord>(id, &dir.running())?.ok_or_else(not_running)?;
        match signal_if_same(running.init_pid, running.init_start_ticks, signal) {
            Ok(true) => Ok(()),
            Ok(false) => Err(not_running()),
            Err(source) => Err(ContainerError::Signal {
                id: id.to_string(),
                pid: running.init_pid,
                source,
            }),
        }
    }

    fn exec_command(
        &self,
        id: &str,
        tty: bool,
        command: Vec<String>,
    ) -> Result<Command, ContainerError> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.running().exists() || dir.exit().exists() {
            return Err(ContainerError::NotRunning { id: id.to_string() });
        }
        let (program, leading) =
            self.config
                .shim_command
                .split_first()
                .ok_or_else(|| ContainerError::InvalidSpec {
                    id: id.to_string(),
                    reason: "shim command is empty".into(),
                })?;
        // The shim's diagnostics go beside the container's own shim log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.dir.join("exec.log"))
            .map_err(|e| ContainerError::io(id, "opening", dir.dir.join("exec.log"), e))?;
        let args = ExecArgs {
            state_root: self.config.state_root.clone(),
            id: id.to_string(),
            tty,
            command,
        };
        let mut cmd = Command::new(program);
        cmd.args(leading)
            .args(args.to_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        Ok(cmd)
    }

    fn remove(&self, id: &str) -> Result<(), ContainerError> {
        validate_id(id)?;
        self.reap();
        let dir = self.dir(id);
        if let Some(running) = read_record::<RunningRecord>(id, &dir.running())
            .ok()
            .flatten()
        {
            let deadline = Instant::now() + REMOVE_TIMEOUT;
            loop {
                let init_alive = is_alive(running.init_pid, running.init_start_ticks);
                let shim_alive = is_alive(running.shim_pid, running.shim_start_ticks);
                if !init_alive && !shim_alive {
                    break;
                }
                if init_alive {
                    let _ =
                        signal_if_same(running.init_pid, running.init_start_ticks, libc::SIGKILL);
                }
                if Instant::now() >= deadline {
                    return Err(ContainerError::Timeout {
                        id: id.to_string(),
                        what: "the container and its shim to exit",
                        seconds: REMOVE_TIMEOUT.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
                self.reap();
            }
        }
        // What a crashed shim may have left behind.
        rootfs::unmount(&dir.rootfs()).map_err(|e| {
            ContainerError::io(id, "unmounting", dir.rootfs(), std::io::Error::other(e))
        })?;
        if rootfs::is_mounted(&dir.rootfs()) {
            return Err(ContainerError::io(
                id,
                "unmounting",
                dir.rootfs(),
                std::io::Error::other("still mounted"),
            ));
        }
        let lc = dir.libcontainer_state();
        match std::fs::remove_dir_all(&lc) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ContainerError::io(id, "removing", lc, e));
            }
            _ => {}
        }
        if let Ok(Some(spec)) = read_record::<ContainerSpec>(id, &dir.spec()) {
            let root = std::path::Path::new(cgroup::CGROUP_ROOT);
            if let Some((path, e)) = cgroup::remove_container_cgroups(root, &spec.cgroups_path)
                .into_iter()
                .next()
            {
                return Err(ContainerError::io(id, "removing cgroup", path, e));
            }
        }
        match std::fs::remove_dir_all(&dir.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ContainerError::io(id, "removing", &dir.dir, e));
            }
            _ => {}
        }
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_record_torn_by_a_power_loss_reads_as_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = ShimRuntime::new(ShimRuntimeConfig {
            state_root: tmp.path().to_path_buf(),
            shim_command: vec!["/bin/false".into()],
        });
        let dir = ContainerDir::new(tmp.path(), "c1");
        std::fs::create_dir_all(&dir.dir).unwrap();
        // An unsynced record after a power loss: the rename landed, its bytes did not.
        std::fs::write(dir.running(), b"").unwrap();
        assert!(matches!(rt.state("c1").unwrap(), ContainerState::Unknown));
        // A torn exit record is still an error: it is written with an fsync.
        std::fs::write(dir.exit(), b"{").unwrap();
        assert!(matches!(
            rt.state("c1"),
            Err(ContainerError::CorruptRecord { .. })
        ));
    }
}

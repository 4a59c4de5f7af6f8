//! A `skiff agent` child process whose output goes to a log file: started from a prepared
//! command, `kill -9` (a crash: containers and shims keep running), SIGTERM with a deadline,
//! and its exit noticed. Dropping it kills the process.

use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The `skiff` binary for code that is not an integration test of skiff-agent (which has
/// `CARGO_BIN_EXE_skiff`): `SKIFF_BIN`, else `<target dir>/debug/skiff` (`CARGO_TARGET_DIR`
/// or the workspace's `target/`), built if missing.
pub fn skiff_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SKIFF_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("skiff");
    if !bin.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "skiff-agent", "--bin", "skiff"])
            .current_dir(&root)
            .status()
            .context("run cargo build for the skiff binary")?;
        if !status.success() {
            bail!("cargo build -p skiff-agent --bin skiff failed");
        }
    }
    Ok(bin)
}

/// A running child process with its output in a log file.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    /// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<AgentProcess> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawn {cmd:?}"))?;
        Ok(AgentProcess {
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything in the log file so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) -> Result<ExitStatus> {
        self.kill_and_reap()
    }

    fn kill_and_reap(&mut self) -> Result<ExitStatus> {
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }

    /// SIGTERM, then waits up to `timeout` for the exit (then SIGKILL and an error).
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus> {
        crate::proc::signal(self.pid(), nix::sys::signal::Signal::SIGTERM as i32);
        let exited = crate::poll::poll(timeout, Duration::from_millis(20), || {
            self.child.try_wait().ok().flatten()
        });
        match exited {
            Some(status) => Ok(status),
            None => {
                let _ = self.kill_and_reap();
                bail!(
                    "pid {} did not stop within {timeout:?} of SIGTERM",
                    self.pid()
                )
            }
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.kill_and_reap();
        }
    }
}

//! The per-container shim: a single-threaded process (no tokio, no threads) that mounts the
//! rootfs, creates and starts the container with libcontainer, holds its stdout/stderr, waits
//! for it, records the exit and cleans up.
//!
//! Command line (after whatever `shim_command` the agent uses, e.g. `skiff shim`):
//!
//! ```text
//! run --state-root <dir> --id <id>
//! ```
//!
//! The shim reads `<dir>/containers/<id>/spec.json`. It reports exactly one line on its stdout,
//! `started <pid>` or `error <message>`, then points stdout at /dev/null. Its stderr should be
//! a file (the runtime uses `<container dir>/shim.log`). It calls `setsid` itself, so the caller
//! must not make it a process group leader.

mod logwriter;
mod run;
mod signals;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

pub use logwriter::{LineSplitter, LogWriter, MAX_LINE};

/// Parsed shim command line.
#[derive(Debug, PartialEq, Eq)]
pub struct ShimArgs {
    pub state_root: PathBuf,
    pub id: String,
}

impl ShimArgs {
    /// Parses `run --state-root <dir> --id <id>`.
    pub fn parse(args: &[OsString]) -> Result<Self, String> {
        let mut it = args.iter();
        match it.next().and_then(|a| a.to_str()) {
            Some("run") => {}
            other => return Err(format!("expected subcommand 'run', got {other:?}")),
        }
        let (mut state_root, mut id) = (None, None);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag:?} needs a value"))?;
            match flag.to_str() {
                Some("--state-root") => state_root = Some(PathBuf::from(value)),
                Some("--id") => {
                    id = Some(value.to_str().ok_or("--id must be utf-8")?.to_string());
                }
                _ => return Err(format!("unknown flag {flag:?}")),
            }
        }
        Ok(ShimArgs {
            state_root: state_root.ok_or("missing --state-root")?,
            id: id.ok_or("missing --id")?,
        })
    }

    /// The arguments the runtime appends to its shim command.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            "run".into(),
            "--state-root".into(),
            self.state_root.clone().into_os_string(),
            "--id".into(),
            self.id.clone().into(),
        ]
    }
}

/// Entry point of the shim: `args` are the words after the shim command (`run --state-root ...`).
/// Must be called before any thread or async runtime exists. Returns the process exit code.
pub fn shim_main(args: Vec<OsString>) -> i32 {
    match ShimArgs::parse(&args) {
        Ok(parsed) => run::run(&parsed),
        Err(message) => {
            report(&format!("error {message}"));
            2
        }
    }
}

/// Writes the single report line to stdout (the runtime's pipe).
fn report(line: &str) {
    let line = line.replace('\n', " ");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            state_root: "/var/lib/skiff/rt".into(),
            id: "web-1".into(),
        };
        assert_eq!(ShimArgs::parse(&a.to_args()), Ok(a));
        assert!(ShimArgs::parse(&["run".into(), "--id".into()]).is_err());
        assert!(ShimArgs::parse(&["start".into()]).is_err());
        assert!(ShimArgs::parse(&["run".into(), "--id".into(), "x".into()]).is_err());
    }
}

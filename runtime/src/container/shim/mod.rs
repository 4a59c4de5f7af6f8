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
//!
//! Once the container runs, the shim re-executes itself (`/proc/self/exe`, same argv prefix) as
//!
//! ```text
//! monitor --state-root <dir> --id <id> --pid <init pid> --stdout-fd <n> --stderr-fd <n>
//! ```
//!
//! keeping its pid, session and child: the fresh image never touches libcontainer's pages until
//! cleanup, which keeps the long-lived shim small. Callers never invoke `monitor` themselves.

mod exec;
mod handoff;
mod logwriter;
mod monitor;
mod run;
mod signals;
mod trim;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

pub use logwriter::{LineSplitter, LogWriter, MAX_LINE};

/// A shim command line that does not parse (the runtime built it wrong).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShimArgsError {
    #[error("expected subcommand {expected:?}, got {got:?}")]
    Subcommand {
        expected: &'static str,
        got: Option<String>,
    },
    #[error("unexpected argument {0:?}")]
    NotAFlag(OsString),
    #[error("{0} needs a value")]
    NoValue(String),
    #[error("unknown flag {0}")]
    UnknownFlag(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} must be utf-8")]
    NotUtf8(&'static str),
    #[error("{0} must be a number")]
    NotANumber(&'static str),
}

/// Parsed shim command line.
#[derive(Debug, PartialEq, Eq)]
pub struct ShimArgs {
    pub state_root: PathBuf,
    pub id: String,
}

impl ShimArgs {
    /// Parses `run --state-root <dir> --id <id>`.
    pub fn parse(args: &[OsString]) -> Result<Self, ShimArgsError> {
        let flags = parse_flags(args, "run")?;
        let (mut state_root, mut id) = (None, None);
        for (name, value) in flags {
            match name.as_str() {
                "--state-root" => state_root = Some(PathBuf::from(value)),
                "--id" => {
                    id = Some(
                        value
                            .into_string()
                            .map_err(|_| ShimArgsError::NotUtf8("--id"))?,
                    )
                }
                _ => return Err(ShimArgsError::UnknownFlag(name)),
            }
        }
        Ok(ShimArgs {
            state_root: state_root.ok_or(ShimArgsError::Missing("--state-root"))?,
            id: id.ok_or(ShimArgsError::Missing("--id"))?,
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

/// Arguments of the internal `monitor` step (the re-executed shim).
#[derive(Debug, PartialEq, Eq)]
pub struct MonitorArgs {
    pub state_root: PathBuf,
    pub id: String,
    pub pid: i32,
    pub stdout_fd: i32,
    pub stderr_fd: i32,
}

impl MonitorArgs {
    pub fn parse(args: &[OsString]) -> Result<Self, ShimArgsError> {
        let flags = parse_flags(args, "monitor")?;
        let get = |name: &'static str| {
            flags
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or(ShimArgsError::Missing(name))
        };
        let number = |name: &'static str| -> Result<i32, ShimArgsError> {
            get(name)?
                .to_str()
                .and_then(|v| v.parse().ok())
                .ok_or(ShimArgsError::NotANumber(name))
        };
        Ok(MonitorArgs {
            state_root: PathBuf::from(get("--state-root")?),
            id: get("--id")?
                .into_string()
                .map_err(|_| ShimArgsError::NotUtf8("--id"))?,
            pid: number("--pid")?,
            stdout_fd: number("--stdout-fd")?,
            stderr_fd: number("--stderr-fd")?,
        })
    }

    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            "monitor".into(),
            "--state-root".into(),
            self.state_root.clone().into_os_string(),
            "--id".into(),
            self.id.clone().into(),
            "--pid".into(),
            self.pid.to_string().into(),
            "--stdout-fd".into(),
            self.stdout_fd.to_string().into(),
            "--stderr-fd".into(),
            self.stderr_fd.to_string().into(),
        ]
    }
}

/// Splits `<subcommand> --flag value ...` into flag/value pairs, checking the subcommand.
pub(crate) fn parse_flags(
    args: &[OsString],
    subcommand: &'static str,
) -> Result<Vec<(String, OsString)>, ShimArgsError> {
    let mut it = args.iter();
    match it.next().and_then(|a| a.to_str()) {
        Some(s) if s == subcommand => {}
        other => {
            return Err(ShimArgsError::Subcommand {
                expected: subcommand,
                got: other.map(str::to_string),
            });
        }
    }
    let mut flags = Vec::new();
    while let Some(flag) = it.next() {
        let name = flag
            .to_str()
            .filter(|f| f.starts_with("--"))
            .ok_or_else(|| ShimArgsError::NotAFlag(flag.clone()))?;
        let value = it
            .next()
            .ok_or_else(|| ShimArgsError::NoValue(name.to_string()))?;
        flags.push((name.to_string(), value.clone()));
    }
    Ok(flags)
}

/// Entry point of the shim: `args` are the words after the shim command (`run --state-root ...`).
/// Must be called before any thread or async runtime exists. Returns the process exit code.
pub fn shim_main(args: Vec<OsString>) -> i32 {
    if args.first().is_some_and(|a| a == "exec") {
        return match crate::container::exec::ExecArgs::parse(&args) {
            Ok(parsed) => exec::exec_main(&parsed),
            Err(message) => {
                eprintln!("shim exec: {message}");
                2
            }
        };
    }
    if args.first().is_some_and(|a| a == "monitor") {
        return match MonitorArgs::parse(&args) {
            Ok(parsed) => monitor::monitor_main(&parsed),
            Err(message) => {
                eprintln!("shim monitor: {message}");
                2
            }
        };
    }
    // The argv before our own arguments, to re-exec the same way we were started.
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prefix = argv
        .len()
        .checked_sub(args.len())
        .filter(|n| *n > 0 && argv[*n..] == args[..])
        .map(|n| &argv[..n]);
    match ShimArgs::parse(&args) {
        Ok(parsed) => run::run(&parsed, prefix),
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
        let m = MonitorArgs {
            state_root: "/s".into(),
            id: "c".into(),
            pid: 42,
            stdout_fd: 3,
            stderr_fd: 4,
        };
        assert_eq!(MonitorArgs::parse(&m.to_args()), Ok(m));
    }
}

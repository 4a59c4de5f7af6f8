//! A long-lived `nft -i` process for small, frequent transactions (the Service proxy's
//! diffs). A fresh `nft -f` per transaction spends most of its time after the commit: closing
//! its netlink socket waits for the kernel's deferred cleanup of the transaction, one RCU grace
//! period (measured 15-25 ms on a 1,000-chain table, against about 3 ms for the same diff sent
//! to a process that keeps its socket). So diffs go to one interactive process that lives
//! across them.
//!
//! Protocol: each transaction is one input line (the script's commands joined with `; `, which
//! `nft` runs as one batch, all or nothing), followed by `list table ip <marker>` for a table
//! that never exists. That second command always fails, and its error (which names the
//! marker) on stderr says the transaction before it is done; any other error text before it
//! is the transaction's own. The process keeps every line in its editline history, so it is
//! replaced after [`RECYCLE_AFTER_BYTES`] of input. Run [`NftSession::start`] on a thread in
//! the node's namespace; the process stays there.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::CniError;

/// Input after which the process is replaced (its line history grows with what it was sent).
pub const RECYCLE_AFTER_BYTES: usize = 4 << 20;

/// One interactive `nft` process.
pub struct NftSession {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: ChildStderr,
    sent: usize,
    markers: u64,
}

impl NftSession {
    /// Starts `nft -i` in this thread's network namespace.
    pub fn start() -> Result<NftSession, CniError> {
        let mut child = Command::new("nft")
            .arg("-i")
            // Nowhere to write its history file when it exits.
            .env("HOME", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CniError::io("run", "nft -i", e))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().ok_or_else(|| {
            CniError::io(
                "open stderr of",
                "nft -i",
                std::io::ErrorKind::BrokenPipe.into(),
            )
        })?;
        Ok(NftSession {
            child: Some(child),
            stdin,
            stderr,
            sent: 0,
            markers: 0,
        })
    }

    /// True once the process has been sent enough to be replaced.
    pub fn worn_out(&self) -> bool {
        self.sent >= RECYCLE_AFTER_BYTES
    }

    /// Runs `script` (`nft -f` syntax, one command per line) as one transaction; waits at most
    /// `limit`. After an error other than [`CniError::Nft`] the session is unusable.
    pub fn run(&mut self, action: &str, script: &str, limit: Duration) -> Result<(), CniError> {
        let Some(line) = one_line(script) else {
            return Ok(());
        };
        self.markers += 1;
        let marker = format!("skiff-done-{}-{}", std::process::id(), self.markers);
        let input = format!("{line}\nlist table ip {marker}\n");
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            CniError::io("write to", "nft -i", std::io::ErrorKind::BrokenPipe.into())
        })?;
        stdin
            .write_all(input.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| CniError::io("write script to", "nft -i", e))?;
        self.sent += input.len();
        let text = self.read_until(&marker, limit)?;
        match transaction_errors(&text, &marker) {
            None => Ok(()),
            Some(stderr) => Err(CniError::Nft {
                action: action.to_owned(),
                stderr,
            }),
        }
    }

    /// Reads stderr until `marker` appears; returns everything read.
    fn read_until(&mut self, marker: &str, limit: Duration) -> Result<String, CniError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CniError::io(
                    "wait for",
                    "nft -i",
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.stderr.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(CniError::io("poll", "nft -i", e.into())),
            }
            let n = self
                .stderr
                .read(&mut chunk)
                .map_err(|e| CniError::io("read from", "nft -i", e))?;
            if n == 0 {
                return Err(CniError::io(
                    "read from",
                    "nft -i (it exited)",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            seen.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&seen);
            // The marker's error ends with a line of carets under its name.
            if let Some(at) = text.find(marker)
                && text[at..].matches('\n').count() >= 2
            {
                return Ok(text.into_owned());
            }
        }
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        // End of input makes it exit; its exit waits for the kernel's cleanup, so it is
        // reaped off this thread.
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = std::thread::Builder::new()
            .name("skiff-nft-reap".into())
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

/// The commands of `script` as one line, or `None` when it has none.
pub fn one_line(script: &str) -> Option<String> {
    let commands: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    (!commands.is_empty()).then(|| commands.join("; "))
}

/// The transaction's own error text in `text` (stderr up to and including the marker's
/// error), or `None` when there is none.
pub fn transaction_errors(text: &str, marker: &str) -> Option<String> {
    let at = text.find(marker)?;
    // The marker's own error message starts at the last "Error:" before its name.
    let own = text[..at].rfind("Error:").unwrap_or(at);
    let before = text[..own].trim();
    (!before.is_empty()).then(|| before.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_becomes_one_line_of_commands() {
        assert_eq!(one_line("\n  \n"), None);
        assert_eq!(
            one_line("flush chain ip t a\n\nadd rule ip t a accept\n").as_deref(),
            Some("flush chain ip t a; add rule ip t a accept")
        );
        // Braces keep their own semicolons.
        assert_eq!(
            one_line("add set ip t s { type ipv4_addr; timeout 5s; }\n").as_deref(),
            Some("add set ip t s { type ipv4_addr; timeout 5s; }")
        );
    }

    #[test]
    fn only_errors_before_the_marker_belong_to_the_transaction() {
        let m = "skiff-done-7-3";
        let ok =
            format!("Error: No such file or directory\nlist table ip {m}\n              ^^^^\n");
        assert_eq!(transaction_errors(&ok, m), None);
        let failed = format!(
            "Error: Could not process rule: No such file or directory\nadd rule ip t x accept\n                ^\n{ok}"
        );
        let own = transaction_errors(&failed, m).expect("an error");
        assert!(own.starts_with("Error: Could not process rule"), "{own}");
        assert!(!own.contains(m), "{own}");
        assert_eq!(transaction_errors("nothing yet", m), None);
    }
}

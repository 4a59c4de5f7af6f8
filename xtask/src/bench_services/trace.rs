//! The proxy's `skiff::path` debug event `services programmed` (one per sync: how long the
//! `nft` transaction took, whether it was the whole table, how many Service ports and endpoints
//! it programmed, how large the script was), read from an agent's log as it grows.

use crate::bench_cluster_real::timeline::log_time;
use anyhow::{Context, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One `services programmed` event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Programmed {
    /// Seconds since midnight UTC (the scale of `timeline::now_of_day`).
    pub at: f64,
    /// The `nft -f` transaction, in microseconds.
    pub us: u64,
    /// The whole table (the first sync, or after a failure), not a difference.
    pub full: bool,
    pub ports: usize,
    pub endpoints: usize,
    pub script_bytes: usize,
}

/// The event of one log line, if it is one.
pub fn parse(line: &str) -> Option<Programmed> {
    let (_, fields) = line.split_once("services programmed")?;
    let at = log_time(line)?;
    let field = |name: &str| -> Option<&str> {
        fields
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    Some(Programmed {
        at,
        us: field("us")?.parse().ok()?,
        full: field("full")? == "true",
        ports: field("ports")?.parse().ok()?,
        endpoints: field("endpoints")?.parse().ok()?,
        script_bytes: field("script_bytes")?.parse().ok()?,
    })
}

/// Reads an agent log from a point on: only what was appended since.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    /// The end of the last read when it stopped inside a line.
    partial: String,
    /// Events read but not handed out by [`LogTail::next`] yet.
    pending: std::collections::VecDeque<Programmed>,
}

impl LogTail {
    /// From the log's current end: events written after this call.
    pub fn at_end(path: &Path) -> Result<LogTail> {
        let offset = std::fs::metadata(path)
            .with_context(|| format!("agent log {}", path.display()))?
            .len();
        Ok(LogTail {
            path: path.to_path_buf(),
            offset,
            partial: String::new(),
            pending: Default::default(),
        })
    }

    /// From the log's start.
    pub fn from_start(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            pending: Default::default(),
        }
    }

    /// The next event, in log order (None: none written yet).
    pub fn next(&mut self) -> Result<Option<Programmed>> {
        if self.pending.is_empty() {
            let read = self.read()?;
            self.pending.extend(read);
        }
        Ok(self.pending.pop_front())
    }

    /// Every event appended since the last call (and those [`LogTail::next`] left).
    pub fn events(&mut self) -> Result<Vec<Programmed>> {
        let mut out: Vec<Programmed> = self.pending.drain(..).collect();
        out.extend(self.read()?);
        Ok(out)
    }

    fn read(&mut self) -> Result<Vec<Programmed>> {
        let mut file = std::fs::File::open(&self.path)
            .with_context(|| format!("agent log {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        let mut text = std::mem::take(&mut self.partial);
        text.push_str(&String::from_utf8_lossy(&bytes));
        let complete = match text.rfind('\n') {
            Some(end) => {
                self.partial = text[end + 1..].to_string();
                &text[..end]
            }
            None => {
                self.partial = text;
                return Ok(Vec::new());
            }
        };
        Ok(complete.lines().filter_map(parse).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_the_event() {
        let line = "2026-12-04T14:21:20.500000Z DEBUG services programmed us=1234 full=false ports=3 endpoints=7 script_bytes=412";
        let e = parse(line).expect("an event");
        assert_eq!(e.us, 1234);
        assert!(!e.full);
        assert_eq!((e.ports, e.endpoints, e.script_bytes), (3, 7, 412));
        assert!((e.at - (14.0 * 3600.0 + 21.0 * 60.0 + 20.5)).abs() < 1e-6);
        assert!(parse("2026-12-04T14:21:20.5Z DEBUG stale flows deleted us=3").is_none());
    }
}

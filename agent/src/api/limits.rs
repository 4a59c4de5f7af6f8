//! What keeps the local API server within bounds: the limits (connections, request size, bytes
//! buffered across connections, time to send a request), reading one request line under them,
//! and the pure rules for accept errors (a growing delay, at most one log line a second).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The server's limits. The defaults suit a device: a request is small (manifests included).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; one more is answered with an error and closed.
    pub max_connections: usize,
    /// Longest request line, newline included.
    pub max_request_bytes: usize,
    /// Bytes buffered for request lines across every connection; a request that would go past
    /// it is answered with an error (the agent is busy) instead of growing memory.
    pub max_buffered_bytes: usize,
    /// A client that has not sent a complete request line this long after connecting is
    /// answered with an error and closed. Streams (`logs -f`) are not limited once the request
    /// was read.
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_request_bytes: 64 * 1024 * 1024,
            max_buffered_bytes: 128 * 1024 * 1024,
            request_deadline: Duration::from_secs(10),
        }
    }
}

/// `64 MiB`, `512 KiB`, `100 bytes`.
pub fn human_bytes(bytes: usize) -> String {
    const KI: usize = 1024;
    const MI: usize = 1024 * 1024;
    if bytes >= MI && bytes.is_multiple_of(MI) {
        format!("{} MiB", bytes / MI)
    } else if bytes >= KI && bytes.is_multiple_of(KI) {
        format!("{} KiB", bytes / KI)
    } else {
        format!("{bytes} bytes")
    }
}

/// How reading a request line ended.
pub enum ReadOutcome {
    /// The line (newline included, or cut by the end of the stream) and the share of the
    /// byte budget it holds.
    Line(Vec<u8>, Option<OwnedSemaphorePermit>),
    /// The client closed without sending anything.
    Closed,
    /// The line is longer than `max_request_bytes`.
    TooLarge,
    /// Buffering the line would go past `max_buffered_bytes` across connections.
    Busy,
}

/// Reads one request line. Every byte of buffer it allocates is first taken from `budget`;
/// nothing after the newline is read.
pub async fn read_request(
    read: &mut OwnedReadHalf,
    limits: &Limits,
    budget: &Arc<Semaphore>,
) -> std::io::Result<ReadOutcome> {
    let mut line: Vec<u8> = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if line.is_empty() {
                ReadOutcome::Closed
            } else {
                ReadOutcome::Line(line, held)
            });
        }
        let (part, done) = match chunk[..n].iter().position(|b| *b == b'\n') {
            Some(end) => (&chunk[..=end], true),
            None => (&chunk[..n], false),
        };
        if line.len() + part.len() > limits.max_request_bytes {
            return Ok(ReadOutcome::TooLarge);
        }
        if line.capacity() - line.len() < part.len() {
            let wanted = (line.len() + part.len())
                .max(line.capacity() * 2)
                .max(4096)
                .min(limits.max_request_bytes);
            let extra = u32::try_from(wanted - line.capacity()).unwrap_or(u32::MAX);
            let Ok(permit) = budget.clone().try_acquire_many_owned(extra) else {
                return Ok(ReadOutcome::Busy);
            };
            match &mut held {
                Some(all) => all.merge(permit),
                None => held = Some(permit),
            }
            line.reserve_exact(wanted - line.len());
        }
        line.extend_from_slice(part);
        if done {
            return Ok(ReadOutcome::Line(line, held));
        }
    }
}

/// First delay after a failed accept; it doubles with each further failure in a row.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest delay between accepts that keep failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The wait before the next accept after `failures` failed accepts in a row (EMFILE, ENFILE,
/// ENOMEM...): none after a success, then 10 ms doubling up to 1 s, so a process out of file
/// descriptors does not spin.
pub fn accept_backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => ACCEPT_BACKOFF_FIRST
            .saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX))
            .min(ACCEPT_BACKOFF_MAX),
    }
}

/// Lets a repeated log line through at most once per `interval` and counts the ones held back.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines suppressed since the last one logged)` when a line may be logged at `now`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_grows_from_10ms_to_1s() {
        let ms = Duration::from_millis;
        let table = [
            (0, ms(0)),
            (1, ms(10)),
            (2, ms(20)),
            (3, ms(40)),
            (7, ms(640)),
            (8, ms(1000)),
            (40, ms(1000)),
            (u32::MAX, ms(1000)),
        ];
        for (failures, delay) in table {
            assert_eq!(accept_backoff(failures), delay, "after {failures} failures");
        }
    }

    #[test]
    fn log_limiter_lets_one_line_a_second_through_and_counts_the_rest() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut limiter = LogLimiter::new(Duration::from_secs(1));
        let table = [
            (0, Some(0)),
            (1, None),
            (500, None),
            (999, None),
            (1000, Some(3)),
            (1001, None),
            (5000, Some(1)),
            (5001, None),
        ];
        for (ms, expected) in table {
            assert_eq!(limiter.allow(at(ms)), expected, "at {ms} ms");
        }
    }

    #[test]
    fn sizes_read_like_the_limits() {
        assert_eq!(human_bytes(64 * 1024 * 1024), "64 MiB");
        assert_eq!(human_bytes(512 * 1024), "512 KiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}

//! Deadline-bounded polling: the only way tests here wait for the cluster to change.

use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// Calls `check` until it returns `Some`, at most every `interval`, and fails after `timeout`
/// with `what` and the last observation from `describe`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok((v, start.elapsed())),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() >= timeout {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what} (last error: {e:#})")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(interval);
    }
}

/// [`wait_for`] on a boolean condition; returns how long it took.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    wait_for(what, timeout, interval, || Ok(check()?.then_some(()))).map(|(_, d)| d)
}

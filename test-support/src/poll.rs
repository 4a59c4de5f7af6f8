//! Deadline-bounded polling: the only way these tests wait for something to change. Deadlines
//! are generous (the tests share a loaded 2-core machine); a test that is about time asserts
//! its own bound.

use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// Calls `check` until it returns `Some`, sleeping `interval` in between; `None` once `timeout`
/// has passed (`check` always runs at least once, and once more at the deadline).
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Calls `check` until it returns `Some`, at most every `interval`, and fails after `timeout`
/// with `what` and the last error `check` returned. Returns the value and how long it took.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    let mut last_error = None;
    let found = poll(timeout, interval, || match check() {
        Ok(found) => found,
        Err(e) => {
            last_error = Some(e);
            None
        }
    });
    match (found, last_error) {
        (Some(v), _) => Ok((v, start.elapsed())),
        (None, Some(e)) => {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {e:#})")
        }
        (None, None) => bail!("timed out after {timeout:?} waiting for {what}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_returns_the_first_value() {
        let mut n = 0;
        let got = poll(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn wait_for_names_what_and_the_last_error() {
        let err = wait_for::<()>("the thing", Duration::ZERO, Duration::ZERO, || {
            bail!("still broken")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the thing") && err.contains("still broken"),
            "{err}"
        );
    }
}

//! Crash and image-pull backoff, as Kubernetes does it: a base delay doubling up to a cap, reset
//! after the container has run long enough. Pure: time is a parameter.

use std::time::Duration;

/// Backoff settings (from the agent config; tests use a small base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// A container that ran at least this long restarts its backoff from `base`.
    pub reset_after: Duration,
}

impl Backoff {
    /// The delay before restart number `consecutive_failures` (1 = the first restart).
    pub fn delay(&self, consecutive_failures: u32) -> Duration {
        if consecutive_failures == 0 {
            return Duration::ZERO;
        }
        let shift = (consecutive_failures - 1).min(31);
        let delay = self.base.saturating_mul(1u32 << shift);
        delay.min(self.max)
    }

    /// The new failure count after a container that ran for `ran_for` exited.
    pub fn next_failures(&self, previous_failures: u32, ran_for: Duration) -> u32 {
        if ran_for >= self.reset_after {
            1
        } else {
            previous_failures.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kube() -> Backoff {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }

    #[test]
    fn doubles_from_ten_seconds_to_five_minutes() {
        let b = kube();
        let delays: Vec<u64> = (0..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn resets_after_ten_minutes_running() {
        let b = kube();
        assert_eq!(b.next_failures(5, Duration::from_secs(599)), 6);
        assert_eq!(b.next_failures(5, Duration::from_secs(600)), 1);
        assert_eq!(b.next_failures(0, Duration::from_secs(1)), 1);
    }

    #[test]
    fn small_base_for_tests() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(5),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
    }
}

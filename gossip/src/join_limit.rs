//! Rate limiting of failed joins per source address: a token bucket per IP that each failed
//! join empties by one (a source with an empty bucket is refused before any token, file or
//! signing work), and a log throttle (at most one line per second per source, carrying the
//! number of refusals not logged since). Pure: the caller passes `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits of [`JoinLimiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JoinLimits {
    /// Failed joins a source may make in a burst.
    pub burst: f64,
    /// Failed joins per second a source earns back.
    pub per_second: f64,
    /// Shortest time between two log lines about one source.
    pub log_every: Duration,
    /// Sources tracked at most (beyond that, idle ones are forgotten first).
    pub max_sources: usize,
}

impl Default for JoinLimits {
    fn default() -> Self {
        Self {
            burst: 5.0,
            per_second: 2.0,
            log_every: Duration::from_secs(1),
            max_sources: 4096,
        }
    }
}

#[derive(Debug, Clone)]
struct Source {
    tokens: f64,
    updated: Instant,
    last_log: Option<Instant>,
    suppressed: u64,
}

/// Per-source buckets and log throttle.
#[derive(Debug)]
pub(crate) struct JoinLimiter {
    limits: JoinLimits,
    sources: HashMap<IpAddr, Source>,
}

impl JoinLimiter {
    pub fn new(limits: JoinLimits) -> Self {
        Self {
            limits,
            sources: HashMap::new(),
        }
    }

    fn refill(limits: &JoinLimits, source: &mut Source, now: Instant) {
        let earned =
            now.saturating_duration_since(source.updated).as_secs_f64() * limits.per_second;
        source.tokens = (source.tokens + earned).min(limits.burst);
        source.updated = now;
    }

    fn source(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_sources {
            self.forget_idle(now);
        }
        let limits = self.limits;
        let source = self.sources.entry(ip).or_insert(Source {
            tokens: limits.burst,
            updated: now,
            last_log: None,
            suppressed: 0,
        });
        Self::refill(&limits, source, now);
        source
    }

    /// Forgets sources whose bucket is full again and that have nothing left to log; if that
    /// frees nothing, forgets everything (the limiter fails open rather than grow).
    fn forget_idle(&mut self, now: Instant) {
        let limits = self.limits;
        self.sources.retain(|_, source| {
            Self::refill(&limits, source, now);
            source.tokens < limits.burst || source.suppressed > 0
        });
        if self.sources.len() >= limits.max_sources {
            self.sources.clear();
        }
    }

    /// True if `ip` may try a join now (its bucket is not empty).
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.source(ip, now).tokens >= 1.0
    }

    /// Notes a failed join from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        let source = self.source(ip, now);
        source.tokens = (source.tokens - 1.0).max(0.0);
    }

    /// Whether to log a refusal of `ip` now: `Some(n)` with the refusals not logged since the
    /// last line, or `None` (this one is counted instead).
    pub fn log_now(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        let every = self.limits.log_every;
        let source = self.source(ip, now);
        let due = source
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= every);
        if due {
            source.last_log = Some(now);
            Some(std::mem::take(&mut source.suppressed))
        } else {
            source.suppressed += 1;
            None
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 2));

    #[test]
    fn a_burst_of_failures_empties_the_bucket_and_it_refills() {
        let mut limiter = JoinLimiter::new(JoinLimits::default());
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(limiter.admit(A, t0), "attempt {i} of the burst");
            limiter.failed(A, t0);
        }
        assert!(
            !limiter.admit(A, t0),
            "the sixth failure in a burst is refused"
        );
        assert!(limiter.admit(B, t0), "another source is not affected");
        assert!(!limiter.admit(A, t0 + Duration::from_millis(400)));
        assert!(
            limiter.admit(A, t0 + Duration::from_millis(500)),
            "2/s earns one back"
        );
        assert!(limiter.admit(A, t0 + Duration::from_secs(60)));
        limiter.failed(A, t0 + Duration::from_secs(60));
        assert!(
            limiter.admit(A, t0 + Duration::from_secs(60)),
            "refilled to the burst only"
        );
    }

    #[test]
    fn successes_do_not_cost() {
        let mut limiter = JoinLimiter::new(JoinLimits::default());
        let t0 = Instant::now();
        for _ in 0..50 {
            assert!(limiter.admit(A, t0));
        }
    }

    #[test]
    fn logs_once_per_second_with_the_suppressed_count() {
        let mut limiter = JoinLimiter::new(JoinLimits::default());
        let t0 = Instant::now();
        assert_eq!(limiter.log_now(A, t0), Some(0));
        for i in 1..=9 {
            assert_eq!(
                limiter.log_now(A, t0 + Duration::from_millis(i * 100 - 1)),
                None
            );
        }
        assert_eq!(limiter.log_now(B, t0), Some(0), "per source");
        assert_eq!(limiter.log_now(A, t0 + Duration::from_secs(1)), Some(9));
        assert_eq!(limiter.log_now(A, t0 + Duration::from_secs(3)), Some(0));
    }

    #[test]
    fn the_table_of_sources_is_bounded() {
        let limits = JoinLimits {
            max_sources: 8,
            ..JoinLimits::default()
        };
        let mut limiter = JoinLimiter::new(limits);
        let t0 = Instant::now();
        for i in 0..100u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0xC612_0000 + i));
            limiter.failed(ip, t0);
            assert!(limiter.tracked() <= 8);
        }
    }
}

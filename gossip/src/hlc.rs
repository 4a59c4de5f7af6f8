//! Hybrid logical clock stamps: the version of every replicated desired object.
//!
//! A [`Stamp`] orders by wall-clock milliseconds, then a counter, then the writing node's name
//! (the tie-break), so two nodes never produce equal stamps and every node orders any two stamps
//! the same way. [`Hlc`] is pure: the caller passes `now_ms`; it never goes backwards, even when
//! the wall clock does, and it moves past every stamp it observes from other nodes, so an edit
//! made after seeing another node's version always wins over it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A version stamp: `(wall_ms, counter, node)`, compared in that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub wall_ms: u64,
    pub counter: u32,
    pub node: String,
}

impl fmt::Display for Stamp {
    /// `<wall_ms>.<counter>@<node>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.counter, self.node)
    }
}

/// A stamp that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version stamp {0:?}: expected <wall_ms>.<counter>@<node>")]
pub struct InvalidStamp(pub String);

impl FromStr for Stamp {
    type Err = InvalidStamp;

    fn from_str(s: &str) -> Result<Stamp, InvalidStamp> {
        let bad = || InvalidStamp(s.chars().take(64).collect());
        let (time, node) = s.split_once('@').ok_or_else(bad)?;
        let (wall, counter) = time.split_once('.').ok_or_else(bad)?;
        if node.is_empty() {
            return Err(bad());
        }
        Ok(Stamp {
            wall_ms: wall.parse().map_err(|_| bad())?,
            counter: counter.parse().map_err(|_| bad())?,
            node: node.to_string(),
        })
    }
}

/// The clock of one node.
#[derive(Debug, Clone)]
pub struct Hlc {
    node: String,
    wall_ms: u64,
    counter: u32,
}

impl Hlc {
    pub fn new(node: impl Into<String>) -> Hlc {
        Hlc {
            node: node.into(),
            wall_ms: 0,
            counter: 0,
        }
    }

    /// A new stamp for a local write, greater than every stamp issued or observed before.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        if now_ms > self.wall_ms {
            self.wall_ms = now_ms;
            self.counter = 0;
        } else {
            self.counter = self.counter.saturating_add(1);
        }
        Stamp {
            wall_ms: self.wall_ms,
            counter: self.counter,
            node: self.node.clone(),
        }
    }

    /// Moves the clock past a stamp seen from elsewhere (or loaded from the store at start).
    pub fn observe(&mut self, stamp: &Stamp) {
        if (stamp.wall_ms, stamp.counter) > (self.wall_ms, self.counter) {
            self.wall_ms = stamp.wall_ms;
            self.counter = stamp.counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall_ms: u64, counter: u32, node: &str) -> Stamp {
        Stamp {
            wall_ms,
            counter,
            node: node.into(),
        }
    }

    #[test]
    fn order_is_wall_then_counter_then_node() {
        let cases = [
            (
                stamp(2, 0, "a"),
                stamp(1, 9, "z"),
                std::cmp::Ordering::Greater,
            ),
            (
                stamp(1, 1, "a"),
                stamp(1, 0, "z"),
                std::cmp::Ordering::Greater,
            ),
            (
                stamp(1, 0, "b"),
                stamp(1, 0, "a"),
                std::cmp::Ordering::Greater,
            ),
            (
                stamp(1, 0, "a"),
                stamp(1, 0, "a"),
                std::cmp::Ordering::Equal,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.cmp(&b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn text_round_trips_and_bad_text_is_refused() {
        let s = stamp(1_700_000_000_123, 7, "edge-1");
        assert_eq!(s.to_string(), "1700000000123.7@edge-1");
        assert_eq!("1700000000123.7@edge-1".parse::<Stamp>(), Ok(s));
        for bad in ["", "1.2", "1@a", "x.1@a", "1.y@a", "1.2@", "-1.2@a"] {
            assert!(bad.parse::<Stamp>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn tick_is_monotonic_even_when_the_wall_clock_goes_back() {
        let mut clock = Hlc::new("a");
        let first = clock.tick(1_000);
        assert_eq!(first, stamp(1_000, 0, "a"));
        let same_ms = clock.tick(1_000);
        assert_eq!(same_ms, stamp(1_000, 1, "a"));
        let backwards = clock.tick(500);
        assert!(backwards > same_ms);
        assert_eq!(clock.tick(2_000), stamp(2_000, 0, "a"));
    }

    #[test]
    fn a_write_after_observing_a_future_stamp_wins_over_it() {
        let mut slow = Hlc::new("a");
        let remote = stamp(9_000, 3, "z");
        slow.observe(&remote);
        let mine = slow.tick(1_000);
        assert!(mine > remote, "{mine} should beat {remote}");
        // Observing an older stamp changes nothing.
        slow.observe(&stamp(10, 0, "b"));
        assert!(slow.tick(1_000) > mine);
    }
}

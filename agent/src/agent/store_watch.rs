//! Watching the local store. After a write fails with an I/O error (a full disk), redb refuses
//! every later write until the database is reopened. The node keeps acting on memory (pods run,
//! are deleted and started, changes are kept); once the store's filesystem has room again the
//! database is reopened in place (no agent restart) and what waited is written.

use crate::pod::Millis;
use std::path::Path;

/// How often the store is looked at.
pub const CHECK_EVERY_MS: Millis = 1_000;
/// Free bytes the store's filesystem needs before a reopen is tried (redb's recovery writes).
pub const REOPEN_FREE_BYTES: u64 = 4 * 1024 * 1024;

/// What the node loop does next about its store.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreStep {
    Nothing,
    /// The store just started refusing writes: say so.
    Failed,
    /// Try to reopen it now.
    Reopen,
}

/// The store's state as the node loop sees it.
#[derive(Debug, Default)]
pub struct StoreWatch {
    failed_since: Option<Millis>,
    next_check: Millis,
}

impl StoreWatch {
    /// What to do at `now`: `refuses_writes` asks the database, `free_bytes` the filesystem;
    /// each is asked at most once per [`CHECK_EVERY_MS`], and `free_bytes` only while failed.
    pub fn step(
        &mut self,
        now: Millis,
        refuses_writes: impl FnOnce() -> bool,
        free_bytes: impl FnOnce() -> Option<u64>,
    ) -> StoreStep {
        if now < self.next_check {
            return StoreStep::Nothing;
        }
        self.next_check = now + CHECK_EVERY_MS;
        match self.failed_since {
            None if refuses_writes() => {
                self.failed_since = Some(now);
                StoreStep::Failed
            }
            None => StoreStep::Nothing,
            Some(_) if free_bytes().is_some_and(|f| f >= REOPEN_FREE_BYTES) => StoreStep::Reopen,
            Some(_) => StoreStep::Nothing,
        }
    }

    /// Whether the store refuses writes (writes wait in memory).
    #[cfg(test)]
    pub fn failed(&self) -> bool {
        self.failed_since.is_some()
    }

    /// The store was reopened; returns how long it had refused writes.
    pub fn reopened(&mut self, now: Millis) -> Millis {
        now.saturating_sub(self.failed_since.take().unwrap_or(now))
    }
}

/// Free bytes (for an unprivileged writer) on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.parent().unwrap_or(path);
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() * s.fragment_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_store_is_reported_once_and_reopened_when_there_is_room() {
        let mut w = StoreWatch::default();
        assert_eq!(
            w.step(0, || false, || panic!("not asked")),
            StoreStep::Nothing
        );
        // Looked at once a second at most.
        assert_eq!(
            w.step(500, || panic!("not asked"), || None),
            StoreStep::Nothing
        );
        assert_eq!(w.step(1_000, || true, || None), StoreStep::Failed);
        assert!(w.failed());
        // Still full: nothing is tried, nothing said again.
        assert_eq!(
            w.step(
                2_000,
                || panic!("not asked"),
                || Some(REOPEN_FREE_BYTES - 1)
            ),
            StoreStep::Nothing
        );
        assert_eq!(
            w.step(2_500, || true, || Some(u64::MAX)),
            StoreStep::Nothing
        );
        assert_eq!(w.step(3_000, || true, || None), StoreStep::Nothing);
        assert_eq!(
            w.step(4_000, || true, || Some(REOPEN_FREE_BYTES)),
            StoreStep::Reopen
        );
        // A reopen that fails is tried again a second later.
        assert_eq!(w.step(5_000, || true, || Some(u64::MAX)), StoreStep::Reopen);
        assert_eq!(w.reopened(5_200), 4_200);
        assert!(!w.failed());
        assert_eq!(w.step(6_000, || false, || None), StoreStep::Nothing);
    }
}

//! The node's disks, looked at on the loop's tick: whether the log filesystem has room (pod
//! logs pause below the floor) and whether the store takes writes (a full disk), reopening it
//! in place once there is room and then releasing what waited.

use super::Core;
use crate::agent::store_watch::{self, StoreStep, free_bytes};
use crate::pod::Millis;
use skiff_cni::PodNetwork;
use tokio_util::task::TaskTracker;

impl<N: PodNetwork + 'static> Core<N> {
    /// Every 10 s: whether the pods' logs have stopped for lack of free space (the shims drop
    /// lines below the floor); an event when that starts and when it ends.
    pub(super) fn check_log_space(&mut self, now: Millis) {
        let (checked, low) = self.log_space;
        if self.config.log_min_free_bytes == 0 || now.saturating_sub(checked) < 10_000 {
            return;
        }
        let dir = self
            .config
            .log_dir
            .clone()
            .unwrap_or(self.config.pods_dir());
        let Ok(s) = nix::sys::statvfs::statvfs(&dir)
            .or_else(|_| nix::sys::statvfs::statvfs(&self.config.data_dir))
        else {
            return;
        };
        let free = s.blocks_available() * s.fragment_size();
        let now_low = free < self.config.log_min_free_bytes;
        self.log_space = (now, now_low);
        if now_low != low {
            let (reason, message) = if now_low {
                (
                    "LogsPaused",
                    format!(
                        "{} has {free} bytes free, below the {} byte floor: pod logs are dropped until space is freed",
                        dir.display(),
                        self.config.log_min_free_bytes
                    ),
                )
            } else {
                (
                    "LogsResumed",
                    format!("{} has room again: pod logs resume", dir.display()),
                )
            };
            self.events.record(
                now,
                now_low,
                reason,
                "Node",
                "",
                &self.config.node_name.clone(),
                &message,
            );
        }
    }

    /// Releases the network of pods torn down while the store refused writes (idempotent; a
    /// failure is left to the start-up garbage collection). A task on `tracker`: a stopping
    /// agent waits for it.
    fn release_networks(&mut self, tracker: &TaskTracker) {
        let uids = std::mem::take(&mut self.unreleased);
        let Some(net) = self.network.clone() else {
            return;
        };
        if uids.is_empty() {
            return;
        }
        tracker.spawn(async move {
            for uid in uids {
                match net.teardown_pod(&uid).await {
                    Ok(()) => tracing::info!("pod {uid}: network released"),
                    Err(e) => tracing::warn!("pod {uid}: cannot release its network: {e}"),
                }
            }
        });
    }

    /// Once a second: whether the store has started refusing writes (an I/O error such as a
    /// full disk latches redb), and, while it does, whether its disk has room again to reopen
    /// it in place. Pods keep running meanwhile and every change waits in memory.
    pub(super) fn check_store(&mut self, now: Millis, tracker: &TaskTracker) {
        let store = &self.store;
        match self
            .store_watch
            .step(now, || store.needs_reopen(), || free_bytes(store.path()))
        {
            StoreStep::Nothing => {}
            StoreStep::Failed => {
                let message = format!(
                    "{} refuses writes after an I/O error (disk full?): pods keep running and changes are kept in memory; it is reopened once its filesystem has {} MiB free",
                    self.store.path().display(),
                    store_watch::REOPEN_FREE_BYTES / (1024 * 1024)
                );
                tracing::error!("{message}");
                let node = self.config.node_name.clone();
                self.events
                    .record(now, true, "StoreFailed", "Node", "", &node, &message);
            }
            StoreStep::Reopen => match self.store.reopen() {
                Ok(()) => {
                    let failed_for = self.store_watch.reopened(now);
                    self.write_sources();
                    self.flush();
                    self.release_networks(tracker);
                    let message = format!(
                        "{} reopened after refusing writes for {:.1} s; what waited in memory is written",
                        self.store.path().display(),
                        failed_for as f64 / 1000.0
                    );
                    tracing::warn!("{message}");
                    let node = self.config.node_name.clone();
                    self.events
                        .record(now, false, "StoreReopened", "Node", "", &node, &message);
                }
                Err(e) => tracing::debug!("store not reopened yet: {e}"),
            },
        }
    }
}

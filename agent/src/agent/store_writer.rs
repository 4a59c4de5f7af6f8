//! The node loop's store writes, off the loop: the loop hands each turn's changed pod records
//! and manifest sources to this task, which commits them (one transaction, one disk sync, on
//! the blocking pool) while the loop goes on. Batches that arrive while a commit runs are
//! folded into the next one. A commit that fails (a full disk latches the store) keeps its
//! writes and tries again with the next batch or a second later, under newer writes of the
//! same keys; the loop's store watch reopens the store meanwhile.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::{Store, WriteBatch};

/// How long a failed commit waits before it is tried again without a new batch.
const RETRY: Duration = Duration::from_secs(1);

/// The loop's end of the writer.
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<WriteBatch>,
}

impl StoreWriter {
    /// Queues `batch` (nothing to do for an empty one).
    pub fn send(&self, batch: WriteBatch) {
        if !batch.is_empty() {
            let _ = self.tx.send(batch);
        }
    }
}

/// Starts the writer; it ends once every [`StoreWriter`] is dropped and what it was given is
/// written (or, with the store refusing writes, tried once more and reported).
pub fn spawn(
    store: Store,
    tracker: &tokio_util::task::TaskTracker,
) -> (StoreWriter, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (StoreWriter { tx }, tracker.spawn(run(store, rx)))
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<WriteBatch>) {
    let mut pending = WriteBatch::default();
    let mut open = true;
    let mut failing = false;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(batch) => pending = batch,
                None => return,
            }
        } else if open {
            // A failed commit: again with the next batch, or after a while.
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => pending.absorb(batch),
                    None => open = false,
                },
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
        while let Ok(batch) = rx.try_recv() {
            pending.absorb(batch);
        }
        let batch = std::mem::take(&mut pending);
        let writer = store.clone();
        let started = std::time::Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let result = writer.write_batch(&batch);
            (batch, result)
        })
        .await;
        let Ok((batch, result)) = joined else {
            tracing::error!("the store writer's commit panicked; its writes are lost");
            continue;
        };
        match result {
            Ok(()) => {
                tracing::debug!(
                    target: "skiff::loop",
                    us = started.elapsed().as_micros() as u64,
                    pods = batch.pods.len(),
                    sources = batch.files.len() + batch.applied.len(),
                    "store written"
                );
                if failing {
                    tracing::info!("pod records and manifest sources are written again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "pod records and manifest sources not stored yet (kept in memory): {e}"
                    );
                    failing = true;
                }
                let mut older = batch;
                older.absorb(std::mem::take(&mut pending));
                pending = older;
                if !open {
                    tracing::error!(
                        "the agent stops with {} pod records and {} manifest sources not stored: {e}",
                        pending.pods.len(),
                        pending.files.len() + pending.applied.len()
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_are_written_and_the_writer_drains_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("skiff.redb")).unwrap();
        let tracker = tokio_util::task::TaskTracker::new();
        let (writer, done) = spawn(store.clone(), &tracker);
        for i in 0..20 {
            let mut b = WriteBatch::default();
            b.pods.insert(
                format!("p{}", i % 5),
                Some(format!("{{\"n\":{i}}}").into_bytes()),
            );
            writer.send(b);
        }
        drop(writer);
        done.await.unwrap();
        let mut pods: Vec<serde_json::Value> = store.pods().unwrap();
        pods.sort_by_key(|v| v["n"].as_i64());
        let n: Vec<i64> = pods.iter().filter_map(|v| v["n"].as_i64()).collect();
        assert_eq!(n, [15, 16, 17, 18, 19], "the newest write of each key wins");
    }
}

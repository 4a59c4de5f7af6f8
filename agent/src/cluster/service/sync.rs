//! Keeping the replica in step with the cluster: this node's declarations ingested, other
//! nodes' adverts compared with it, bodies fetched in the background, tombstones forgotten.

use super::*;
use tokio_util::task::TaskTracker;

/// The fetches in flight: tasks the service owns, cancelled and awaited when it stops.
#[derive(Default)]
pub(super) struct Fetches {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Fetches {
    /// Cancels every fetch and waits for their tasks to end.
    pub(super) async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl ClusterService {
    /// The replica changed: the objects are rebuilt, the node loop told, adverts compared again.
    pub(super) fn replica_changed(&mut self) {
        self.objects_dirty = true;
        self.objects_stale = true;
        self.sync_needed = true;
    }

    pub(super) async fn advertise(&self, key: &str, digest: &Digest) {
        if let Err(e) = self.gossip.set_key(key, &digest.to_string()).await {
            tracing::warn!("cannot advertise {key}: {e}");
        }
    }

    pub(super) async fn ingest(&mut self, declared: &crate::desired::Objects) {
        let changed = self.replica.ingest(declared, (self.timings.clock)());
        for key in changed {
            if let Some(d) = self.replica.digest(&key) {
                self.advertise(&key, &d).await;
            }
            self.replica_changed();
        }
        // Written at the end of the step that follows, after the node has been told.
    }

    /// Writes what changed in the replica (and the followed assignment) to the store, once per
    /// step and after the step has handed its results on (memory is authoritative: a change
    /// lost to a crash before this comes back from the manifests and the cluster). A store
    /// that fails (a full disk) loses nothing: the node acts on memory and the writes are
    /// retried every step until the agent has reopened the store.
    pub(super) fn write_replica(&mut self) {
        let started = std::time::Instant::now();
        let written = self
            .replica
            .flush()
            .map(|()| self.followed.write_unwritten());
        match (written, self.store_failing) {
            (Ok(true), true) => {
                tracing::info!("desired objects written to the local store again");
                self.store_failing = false;
            }
            (Err(e), false) => {
                tracing::error!(
                    "cannot store desired objects: {e} (kept in memory, written once the store takes writes again)"
                );
                self.store_failing = true;
            }
            _ => {}
        }
        let took = started.elapsed();
        if took > std::time::Duration::from_millis(1) {
            tracing::debug!(target: "skiff::loop", us = took.as_micros() as u64, "slow replica write");
        }
    }

    pub(super) async fn on_fetched(&mut self, fetched: Fetched) {
        for key in &fetched.keys {
            self.in_flight.remove(key);
        }
        // What failed is fetched again (from another node when one has it).
        self.sync_needed = true;
        match fetched.result {
            Ok(records) => {
                for (key, record) in records {
                    if !fetched.keys.contains(&key) {
                        continue;
                    }
                    match self.replica.apply_remote(&key, record) {
                        Ok(true) => {
                            if let Some(d) = self.replica.digest(&key) {
                                self.advertise(&key, &d).await;
                            }
                            self.replica_changed();
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!("object from {}: {e}", fetched.node),
                    }
                }
            }
            Err(e) => tracing::debug!("fetch from {}: {e}", fetched.node),
        }
    }

    /// Brings the replica up to date with every node's adverts (tombstones at once, bodies
    /// fetched in the background).
    pub(super) async fn sync(&mut self, fetched_tx: &mpsc::Sender<Fetched>) {
        let me = self.gossip.node_name().to_string();
        let adverts = self
            .view
            .nodes()
            .filter(|(node, _)| *node != me)
            .flat_map(|(node, keys)| keys.adverts.iter().map(move |(k, d)| (node, k.as_str(), d)));
        let steps = plan_sync(|k| self.replica.digest_ref(k), adverts);
        let mut batches: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for step in steps {
            match step {
                SyncStep::Delete { key, digest } => {
                    let record = StoredRecord {
                        digest: digest.to_string(),
                        body: None,
                        origin: format!("{}:deleted", digest.stamp.node),
                        history: Vec::new(),
                    };
                    if let Ok(true) = self.replica.apply_remote(&key, record) {
                        self.advertise(&key, &digest).await;
                        self.replica_changed();
                    }
                }
                SyncStep::Fetch { key, from, .. } => {
                    if self.in_flight.contains(&key) {
                        continue;
                    }
                    // Spread fetches over the nodes that have the version.
                    let pick = from[(key.len() + self.in_flight.len()) % from.len()].clone();
                    batches.entry(pick).or_default().push(key);
                }
            }
        }
        for (node, keys) in batches {
            self.in_flight.extend(keys.iter().cloned());
            let fetch = self.fetcher.fetch(node.clone(), keys.clone());
            let tx = fetched_tx.clone();
            let cancel = self.fetches.cancel.clone();
            self.fetches.tracker.spawn(async move {
                // Both branches are cancel-safe (a stopped fetch is not reported).
                let result = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = tokio::time::timeout(Duration::from_secs(5), fetch) => r,
                };
                let result = result.unwrap_or(Err(FetchError::TimedOut));
                let _ = tx.send(Fetched { node, keys, result }).await;
            });
        }
    }

    /// Forgets tombstones older than the grace (at most once a minute).
    pub(super) async fn collect_garbage(&mut self, now: u64) {
        if now.saturating_sub(self.last_gc_ms) < GC_EVERY_MS {
            return;
        }
        self.last_gc_ms = now;
        let gone = self
            .replica
            .collect_garbage(now, self.timings.tombstone_grace);
        if !gone.is_empty() {
            // Served from the replica's own map: the map without them, so that the one before
            // is not kept beside it until the next change.
            *self.served.write().unwrap_or_else(|p| p.into_inner()) = self.replica.records();
        }
        for key in gone {
            let _ = self.gossip.delete_key(&key).await;
        }
    }
}

//! The node's disks, looked at on the loop's tick: whether the log filesystem has room (pod
//! logs pause below the floor), whether the store takes writes (a full disk), reopening it
//! in place once there is room and then releasing what waited, and whether a disk emptyDir
//! has outgrown its sizeLimit (the pod is evicted, as kubelet does).

use super::Core;
use crate::agent::store_watch::{self, StoreStep, free_bytes};
use crate::pod::Millis;
use crate::reconciler::sandbox::disk_usage;
use crate::reconciler::storage;
use skiff_cni::PodNetwork;
use skiff_runtime::container::layout::ContainerDir;
use skiff_runtime::container::log::rotated_path;
use tokio_util::task::TaskTracker;

impl<N: PodNetwork + 'static> Core<N> {
    /// Every `volume_check_interval`: measures what has a local storage limit (disk emptyDir
    /// volumes, containers' writable layers and logs; `reconciler::storage`) on the blocking
    /// pool and sends back the pods to evict with why. At most one measurement is in flight.
    pub(super) fn check_volumes(
        &mut self,
        now: Millis,
        done: &tokio::sync::mpsc::Sender<Vec<(String, String)>>,
        tracker: &TaskTracker,
    ) {
        let (checked, measuring) = self.volume_check;
        let every = self.config.volume_check_interval.as_millis() as Millis;
        if measuring || now.saturating_sub(checked) < every {
            return;
        }
        let state_root = self.config.containers_state_dir();
        let targets: Vec<storage::PodStorage> = self
            .pods
            .values()
            .filter(|p| {
                p.deleting_since.is_none() && p.status.failure.is_none() && p.status.sandbox_ready
            })
            .filter_map(|p| {
                let skiff_manifests::Object::Pod(pod) = p.manifest.get() else {
                    return None;
                };
                let paths = self.config.pod_paths(&p.uid);
                let running = p
                    .status
                    .all()
                    .filter_map(|c| {
                        let i = c.current.as_ref()?;
                        let log = paths.log_file(&c.name);
                        let mut files =
                            vec![ContainerDir::new(&state_root, &i.id).upper(), log.clone()];
                        files
                            .extend((1..=self.config.log_max_files).map(|n| rotated_path(&log, n)));
                        Some(storage::ContainerFiles {
                            name: c.name.clone(),
                            paths: files,
                        })
                    })
                    .collect();
                storage::watched(&p.uid, pod, |v| paths.volume(v), running)
            })
            .collect();
        self.volume_check = (now, !targets.is_empty());
        if targets.is_empty() {
            return;
        }
        let done = done.clone();
        tracker.spawn(async move {
            let found = tokio::task::spawn_blocking(move || {
                targets
                    .into_iter()
                    .filter_map(|mut pod| {
                        for m in pod.volumes.iter_mut().chain(pod.containers.iter_mut()) {
                            m.used = m.paths.iter().map(|p| disk_usage(p)).sum();
                        }
                        storage::verdict(&pod).map(|why| (pod.uid, why))
                    })
                    .collect()
            })
            .await
            .unwrap_or_default();
            let _ = done.send(found).await;
        });
    }

    /// Evicts the pods found over a storage limit: the plan then stops their containers for
    /// good and tears the sandbox down (its logs stay); a workload's pod is replaced.
    pub(super) fn on_volume_usage(&mut self, found: Vec<(String, String)>, now: Millis) {
        self.volume_check.1 = false;
        for (uid, message) in found {
            let Some(pod) = self.pods.get_mut(&uid).map(std::sync::Arc::make_mut) else {
                continue;
            };
            if pod.deleting_since.is_some() || pod.status.failure.is_some() {
                continue;
            }
            tracing::warn!("pod {}/{}: evicted: {message}", pod.namespace, pod.name);
            pod.status.failure = Some(crate::pod::PodFailure {
                reason: "Evicted".into(),
                message: message.clone(),
            });
            // A workload's pod is replaced (`desired::assigned_changes`).
            self.desired_changed |= pod.owner.is_some();
            self.dirty.insert(uid.clone());
            let (ns, name) = (pod.namespace.clone(), pod.name.clone());
            self.events
                .record(now, true, "Evicted", "Pod", &ns, &name, &message);
        }
    }

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

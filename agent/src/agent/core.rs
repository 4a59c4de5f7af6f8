//! The node loop. One task owns all state: sources, pod records, image pull state, events.
//! Each turn it folds in what happened (file events, API commands, finished actions, runtime
//! observations), asks the pure planner what to do, hands actions to executor tasks, persists
//! what changed and publishes a snapshot for the API. The loop's other jobs are child modules
//! of this one: `adopt` (start-up), `assignment` (declarations out, the cluster's objects and
//! assigned pods in), `commands` (the API), `images` (pulls) and `disk` (log space, a full
//! store); a finished job is folded by the pure `reconciler::outcome`.

use super::execute::{self, Job, JobResult, PullResult};
use super::sources::Sources;
use crate::config::AgentConfig;
use crate::events::{Event, Events};
use crate::pod::{Millis, PodRecord};
use crate::reconciler::backoff::Backoff;
use crate::reconciler::outcome::{self, to_millis};
use crate::reconciler::plan::{self, Action, Observed};
use crate::store::Store;
use crate::watcher::FileEvent;
use images::ImageEntry;
use skiff_cni::PodNetwork;
use skiff_manifests::ObjectKey;
use skiff_runtime::container::{ContainerRuntime, ContainerState};
use skiff_runtime::image::ImageStore;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[path = "adopt.rs"]
mod adopt;
#[path = "assignment.rs"]
mod assignment;
#[path = "commands.rs"]
mod commands;
#[path = "disk.rs"]
mod disk;
#[path = "images.rs"]
mod images;
#[path = "probes.rs"]
pub(super) mod probes;

pub use commands::{Command, describe_key};

/// What the API reads: a consistent copy of the node's state.
pub struct Snapshot {
    pub node_name: String,
    pub started_at: Millis,
    pub pods: Vec<Arc<PodRecord>>,
    pub objects: Arc<crate::desired::Objects>,
    pub first_seen: Arc<BTreeMap<ObjectKey, Millis>>,
    pub events: Arc<Vec<Arc<Event>>>,
    images: HashMap<String, ImageEntry>,
}

/// What the runtime said about the running containers, by pod: (container id, state).
type Observation = Vec<(String, Vec<(String, Observed)>)>;

/// Asks the runtime about each container of `targets` (blocking: file reads).
fn read_states(runtime: &dyn ContainerRuntime, targets: Vec<(String, Vec<String>)>) -> Observation {
    targets
        .into_iter()
        .map(|(uid, ids)| {
            let states = ids
                .into_iter()
                .map(|id| {
                    let seen = match runtime.state(&id) {
                        Ok(ContainerState::Running { .. }) => Observed::Running,
                        Ok(ContainerState::Exited {
                            exit_code,
                            signal,
                            oom_killed,
                            finished_at,
                            reason,
                            ..
                        }) => Observed::Exited {
                            exit_code,
                            signal,
                            oom_killed,
                            shim_lost: reason == "ShimLost",
                            finished_at: to_millis(finished_at),
                        },
                        Ok(ContainerState::Unknown | ContainerState::NotFound) => Observed::Gone,
                        Err(e) => {
                            tracing::warn!("container {id}: cannot read its state: {e}");
                            Observed::Running
                        }
                    };
                    (id, seen)
                })
                .collect();
            (uid, states)
        })
        .collect()
}

/// The node loop's state; see the module comment. `N` is the pod network: netlink in the
/// agent, `skiff_cni::fake::FakeNetwork` in the simulation tier.
pub struct Core<N = skiff_cni::NetlinkNetwork> {
    config: AgentConfig,
    store: Store,
    images: ImageStore,
    runtime: Arc<dyn ContainerRuntime>,
    network: Option<Arc<N>>,
    /// Where the loop reads the time.
    clock: crate::pod::Clock,
    sources: Sources,
    objects: Arc<crate::desired::Objects>,
    first_seen: Arc<BTreeMap<ObjectKey, Millis>>,
    /// Shared with the published snapshots: a record is copied only when it changes
    /// (`Arc::make_mut`), so a snapshot costs a pointer per pod.
    pods: BTreeMap<String, Arc<PodRecord>>,
    image_state: HashMap<String, ImageEntry>,
    in_flight: HashSet<String>,
    /// Probes whose check runs: (pod uid, container index, probe).
    pub(super) probing:
        std::collections::BTreeSet<(String, usize, crate::reconciler::probe::ProbeKind)>,
    dirty: BTreeSet<String>,
    events: Events,
    started_at: Millis,
    crash: Backoff,
    pull: Backoff,
    sandbox: Backoff,
    desired_changed: bool,
    /// When the log filesystem's free space was last checked, and whether it was below the
    /// floor (containers drop log lines meanwhile).
    log_space: (Millis, bool),
    /// When the disk emptyDir volumes were last measured, and whether a measurement runs.
    volume_check: (Millis, bool),
    /// Whether the store refuses writes (a full disk) and when it is next looked at.
    store_watch: super::store_watch::StoreWatch,
    /// Commits the loop's store writes on their own task while the loop runs.
    pub(super) writer: Option<super::store_writer::StoreWriter>,
    /// Pods removed from memory whose records could not be deleted from the store yet.
    forgotten: BTreeSet<String>,
    /// Pods torn down while the store refused writes: their network (address lease, links)
    /// is released once it is back.
    unreleased: BTreeSet<String>,
    /// A read of the containers' states is on the blocking pool.
    observing: bool,
    /// A container exited while a read was on the pool: read again once it is back.
    pub(super) observe_again: bool,
    /// Container processes watched for their exit (a pidfd each, on its own task), so that an
    /// exit is read at once instead of on the next resync tick.
    pub(super) exit_watched: BTreeSet<i32>,
    /// Pods whose last job had an action fail (a teardown that cannot unmount, say): how many
    /// times in a row, and when they are next acted on (the pull backoff, not every turn).
    failing: HashMap<String, (u32, Millis)>,
    /// This node's own declarations (files and `skiff apply`), for the cluster task.
    declared: watch::Sender<Arc<crate::desired::Objects>>,
    /// The pods the leader assigned to this node; `None` until known (nothing is changed).
    assigned: Option<Arc<Vec<crate::cluster::keys::AssignedPod>>>,
    /// What the leader could not place (events are recorded when this changes).
    pending: Arc<Vec<crate::cluster::keys::PendingWorkload>>,
    /// The Services with a ClusterIP, for the environment of containers that start.
    service_links: Arc<crate::services::ServiceLinks>,
    /// The leader's table changed or the objects did: the node's pods are recomputed.
    reports: watch::Sender<Arc<crate::cluster::service::OwnReports>>,
    /// Each pod's last report and the state it was rendered from (see `publish_reports`).
    report_cache: HashMap<String, assignment::CachedReport>,
    /// What each pod's ConfigMap and Secret volumes were last written from (see
    /// `sandbox::volume_inputs`): when the objects change, the volumes are rewritten.
    volume_marks: HashMap<String, Vec<(ObjectKey, Option<String>)>>,
}

impl<N: PodNetwork + 'static> Core<N> {
    /// The time now, from the loop's clock.
    fn now(&self) -> Millis {
        (self.clock)()
    }

    /// A copy of the node's state for the API.
    pub fn snapshot(&mut self) -> Snapshot {
        Snapshot {
            node_name: self.config.node_name.clone(),
            started_at: self.started_at,
            pods: self.pods.values().cloned().collect(),
            objects: self.objects.clone(),
            first_seen: self.first_seen.clone(),
            events: self.events.shared(),
            images: self.image_state.clone(),
        }
    }

    /// The loop; returns when `cancel` fires.
    pub async fn run(
        mut self,
        mut files: mpsc::Receiver<FileEvent>,
        mut commands: mpsc::Receiver<Command>,
        snapshot: watch::Sender<Arc<Snapshot>>,
        mut desired: watch::Receiver<crate::cluster::Desired>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) {
        let (results_tx, mut results) = mpsc::channel::<JobResult>(256);
        let (pulls_tx, mut pulls) = mpsc::channel::<PullResult>(64);
        let (observed_tx, mut observed) = mpsc::channel::<Observation>(1);
        let (probes_tx, mut probe_results) = mpsc::channel::<probes::ProbeResult>(256);
        let (usage_tx, mut usage) = mpsc::channel::<Vec<(String, String)>>(1);
        let (exits_tx, mut exits) = mpsc::channel::<i32>(64);
        let mut tick = tokio::time::interval(self.config.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (writer, written) = super::store_writer::spawn(self.store.clone(), &tracker);
        self.writer = Some(writer);
        loop {
            let now = self.now();
            let started = std::time::Instant::now();
            self.turn(now, &results_tx, &pulls_tx, &tracker);
            self.watch_exits(&exits_tx, &tracker, &cancel);
            let turned = started.elapsed();
            let snap = Arc::new(self.snapshot());
            let snapped = started.elapsed();
            self.publish_reports(&snap, now);
            snapshot.send_replace(snap);
            let took = started.elapsed();
            if took > std::time::Duration::from_millis(1) {
                tracing::debug!(
                    target: "skiff::loop",
                    turn_us = turned.as_micros() as u64,
                    snapshot_us = (snapped - turned).as_micros() as u64,
                    reports_us = (took - snapped).as_micros() as u64,
                    "slow turn"
                );
            }
            // Every branch is cancel-safe (mpsc receives, a watch change and an interval tick).
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(ev) = files.recv() => {
                    tracing::debug!(target: "skiff::path", "file event");
                    let now = self.now();
                    if self.sources.on_file_event(ev, &mut self.events, now) {
                        self.refresh_declared();
                    }
                    self.write_sources();
                    // Parsing a large file leaves its transient copies freed behind.
                    crate::memory::trim_soon();
                }
                Ok(()) = desired.changed() => {
                    let d = desired.borrow_and_update().clone();
                    self.on_desired(d, self.now());
                }
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(r) = results.recv() => self.on_job_result(r),
                Some(p) = pulls.recv() => self.on_pull_result(p),
                Some(o) = observed.recv() => {
                    self.on_observation(o, self.now());
                    if std::mem::take(&mut self.observe_again) {
                        self.start_observation(&observed_tx, &tracker);
                    }
                }
                Some(pid) = exits.recv() => {
                    // A container process ended: read the states now, not on the next tick.
                    // The pid stays in `exit_watched` until the records stop showing it
                    // running, so that it is watched (and reported) once.
                    tracing::trace!(pid, "container process exited");
                    if self.observing {
                        self.observe_again = true;
                    } else {
                        self.start_observation(&observed_tx, &tracker);
                    }
                }
                Some(r) = probe_results.recv() => self.on_probe_result(r, self.now()),
                Some(u) = usage.recv() => self.on_volume_usage(u, self.now()),
                _ = tick.tick() => {
                    self.start_observation(&observed_tx, &tracker);
                    let now = self.now();
                    self.run_probes(now, &probes_tx, &tracker);
                    self.check_log_space(now);
                    self.check_volumes(now, &usage_tx, &tracker);
                    self.check_store(now, &tracker);
                    if self.sources.settle_due(&mut self.events, now) {
                        self.refresh_declared();
                    }
                    self.write_sources();
                }
            }
        }
        self.write_sources();
        self.flush();
        // What the writer holds is on disk before the loop ends.
        self.writer = None;
        let _ = written.await;
    }

    /// The containers to ask the runtime about: those of pods with one running and no action in
    /// flight (a job's outcome says what became of those).
    fn observation_targets(&self) -> Vec<(String, Vec<String>)> {
        self.pods
            .iter()
            .filter(|(uid, p)| !self.in_flight.contains(*uid) && p.status.any_running())
            .map(|(uid, p)| {
                let ids = p
                    .status
                    .init_containers
                    .iter()
                    .chain(p.status.containers.iter())
                    .filter_map(|c| c.current.as_ref().map(|i| i.id.clone()))
                    .collect();
                (uid.clone(), ids)
            })
            .collect()
    }

    /// Reads the runtime's state of every running container on the blocking pool (a state
    /// read is a few file reads per container: with a hundred pods it must not hold up the
    /// loop) and sends it back to the loop. At most one read is in flight.
    fn start_observation(&mut self, done: &mpsc::Sender<Observation>, tracker: &TaskTracker) {
        if self.observing {
            return;
        }
        let targets = self.observation_targets();
        if targets.is_empty() {
            return;
        }
        self.observing = true;
        let runtime = self.runtime.clone();
        let done = done.clone();
        tracker.spawn(async move {
            let read = tokio::task::spawn_blocking(move || read_states(runtime.as_ref(), targets))
                .await
                .unwrap_or_default();
            let _ = done.send(read).await;
        });
    }

    /// Watches the running containers' processes not watched yet: a pidfd each, waited on by
    /// a task that reports the exit (a process already gone is reported at once). Pids no
    /// container runs any more are forgotten.
    fn watch_exits(
        &mut self,
        exits: &mpsc::Sender<i32>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        if !self.runtime.pids_are_host_processes() {
            return;
        }
        let running: BTreeSet<i32> = self
            .pods
            .values()
            .flat_map(|p| p.status.all())
            .filter_map(|c| c.current.as_ref())
            .map(|i| i.pid)
            .filter(|pid| *pid > 1)
            .collect();
        self.exit_watched.retain(|pid| running.contains(pid));
        for pid in running {
            if !self.exit_watched.insert(pid) {
                continue;
            }
            let Ok(fd) = skiff_runtime::container::process::pidfd_open(pid) else {
                let _ = exits.try_send(pid);
                continue;
            };
            let exits = exits.clone();
            let cancel = cancel.clone();
            tracker.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    // An error leaves the exit to the resync tick.
                    done = skiff_runtime::container::process::exited(fd) => {
                        if done.is_ok() {
                            let _ = exits.send(pid).await;
                        }
                    }
                }
            });
        }
    }

    /// Folds what the runtime said into the pod records. A pod that got an action in flight
    /// since the read waits for its outcome; a container started since the read is taken as
    /// running.
    fn on_observation(&mut self, read: Observation, now: Millis) {
        self.observing = false;
        for (uid, states) in read {
            if self.in_flight.contains(&uid) {
                continue;
            }
            let Some(shared) = self.pods.get_mut(&uid) else {
                continue;
            };
            if !shared.status.any_running() {
                continue;
            }
            let observe = |id: &str| {
                states
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or(Observed::Running, |(_, o)| o.clone())
            };
            // Observed on a copy: the shared record is replaced only when something changed
            // (`observe` changes the status alone).
            let mut pod = PodRecord::clone(shared);
            let noted = plan::observe(&mut pod, &observe, now, &self.crash);
            if pod.status != shared.status {
                *shared = Arc::new(pod);
                self.dirty.insert(uid.clone());
            }
            for n in noted {
                self.record_pod_event(&uid, n.warning, &n.reason, &n.message);
            }
        }
    }

    /// Records an event about pod `uid` (none if it is gone).
    fn record_pod_event(&mut self, uid: &str, warning: bool, reason: &str, message: &str) {
        if let Some(p) = self.pods.get(uid) {
            let (ns, name) = (p.namespace.clone(), p.name.clone());
            self.events
                .record(self.now(), warning, reason, "Pod", &ns, &name, message);
        }
    }

    /// One turn: desired -> pods, observe, plan, dispatch, persist.
    fn turn(
        &mut self,
        now: Millis,
        results: &mpsc::Sender<JobResult>,
        pulls: &mpsc::Sender<PullResult>,
        tracker: &TaskTracker,
    ) {
        if self.desired_changed {
            self.desired_changed = false;
            self.apply_desired(now);
            self.prefetch_new_revisions(pulls, tracker);
        }
        self.fail_overdue(now);
        // Pods with an action in flight wait for its outcome.
        let uids: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !self.in_flight.contains(*u))
            .cloned()
            .collect();
        // Plan and dispatch.
        for uid in uids {
            if self.failing.get(&uid).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            let Some(pod) = self.pods.get(&uid) else {
                continue;
            };
            let image_state = |image: &str| self.image_state_of(image);
            let mut actions = plan::plan(pod, &image_state, now);
            if actions
                .iter()
                .any(|a| matches!(a, Action::EnsureSandbox { .. }))
            {
                // Pipeline: plan the container starts as if the sandbox were ready, so one job
                // makes the sandbox and starts the containers (the executor skips the starts
                // if the sandbox fails).
                let mut ready = PodRecord::clone(pod);
                ready.status.sandbox_ready = true;
                actions.extend(
                    plan::plan(&ready, &image_state, now)
                        .into_iter()
                        .filter(|a| matches!(a, Action::StartContainer { .. })),
                );
            }
            if let Some(refresh) =
                volume_refresh(pod, &actions, &self.objects, &mut self.volume_marks)
            {
                actions.push(refresh);
            }
            if actions.is_empty() {
                continue;
            }
            let mut pod_actions = Vec::new();
            for action in actions {
                match action {
                    Action::PullImage { image } => self.start_pull(&image, pulls, tracker),
                    Action::Forget { uid } => {
                        if let Some(p) = self.pods.remove(&uid) {
                            if p.status.failure.is_some() {
                                // A failed (evicted) pod kept its logs until now.
                                let paths = self.config.pod_paths(&uid);
                                tracker.spawn_blocking(move || {
                                    let removed =
                                        crate::reconciler::sandbox::teardown(&paths, None, false);
                                    if let Err(e) = removed {
                                        tracing::warn!("pod {}: {e}", paths.dir.display());
                                    }
                                });
                            }
                            self.events.record(
                                now,
                                false,
                                "Deleted",
                                "Pod",
                                &p.namespace,
                                &p.name,
                                "pod removed",
                            );
                        }
                        self.dirty.remove(&uid);
                        self.failing.remove(&uid);
                        self.volume_marks.remove(&uid);
                        self.forgotten.insert(uid.clone());
                        self.desired_changed = true;
                    }
                    other => pod_actions.push(other),
                }
            }
            if pod_actions.is_empty() {
                continue;
            }
            let Some(pod) = self.pods.get(&uid) else {
                continue;
            };
            let job: Job<N> = Job {
                pod: PodRecord::clone(pod),
                actions: pod_actions,
                objects: self.objects.clone(),
                service_links: self.service_links.clone(),
                config: self.config.clone(),
                images: self.images.clone(),
                runtime: self.runtime.clone(),
                network: self.network.clone(),
                sandbox_network: std::sync::Mutex::new(None),
            };
            tracing::debug!(target: "skiff::path", pod = %job.pod.name, "job dispatched");
            self.in_flight.insert(uid.clone());
            let tx = results.clone();
            tracker.spawn(async move {
                let result = execute::run_job(job).await;
                let _ = tx.send(result).await;
            });
        }
        self.flush();
    }

    /// Fails the pods past their `activeDeadlineSeconds` (`plan::deadline_failure`): the plan
    /// then stops them for good; a workload's pod is replaced.
    fn fail_overdue(&mut self, now: Millis) {
        let mut failed = Vec::new();
        for shared in self.pods.values_mut() {
            if let Some(failure) = plan::deadline_failure(shared, now) {
                let pod = Arc::make_mut(shared);
                failed.push((pod.uid.clone(), failure.message.clone()));
                self.desired_changed |= pod.owner.is_some();
                pod.status.failure = Some(failure);
            }
        }
        for (uid, message) in failed {
            self.dirty.insert(uid.clone());
            self.record_pod_event(&uid, true, "DeadlineExceeded", &message);
        }
    }

    /// Writes what changed in the pod records; what cannot be written (the store refuses
    /// writes) stays marked and is tried again on a later turn (once the store is back).
    /// Writes the manifest changes the loop has acted on (after it handed them on: a sync is
    /// not on the path from a file to its pods). A store that refuses writes keeps them for
    /// its reopen (`disk`), which says so once.
    ///
    /// The commit itself runs on the store writer's task (see `store_writer`), never on the loop.
    pub(super) fn write_sources(&mut self) {
        let mut batch = crate::store::WriteBatch::default();
        for (source, content) in self.sources.take_unwritten() {
            if source.starts_with(crate::desired::API_SOURCE_PREFIX) {
                batch.applied.insert(source, content);
            } else {
                batch.files.insert(source, content);
            }
        }
        self.commit(batch);
    }

    /// Hands the changed and forgotten pod records to the store writer.
    pub(super) fn flush(&mut self) {
        let mut batch = crate::store::WriteBatch::default();
        for uid in std::mem::take(&mut self.forgotten) {
            batch.pods.insert(uid, None);
        }
        for uid in std::mem::take(&mut self.dirty) {
            let Some(pod) = self.pods.get(&uid) else {
                continue;
            };
            match serde_json::to_vec(pod) {
                Ok(bytes) => {
                    batch.pods.insert(uid, Some(bytes));
                }
                Err(e) => tracing::error!("pod {uid}: cannot encode its record: {e}"),
            }
        }
        self.commit(batch);
    }

    /// Queues `batch` on the writer (or, with no writer, commits it here).
    fn commit(&mut self, batch: crate::store::WriteBatch) {
        if batch.is_empty() {
            return;
        }
        match &self.writer {
            Some(writer) => writer.send(batch),
            None => {
                if let Err(e) = self.store.write_batch(&batch) {
                    tracing::warn!("pod records and manifest sources not stored: {e}");
                }
            }
        }
    }

    /// Folds a finished job into its pod's record (`reconciler::outcome::fold`); a failed
    /// action holds the pod back for the pull backoff.
    fn on_job_result(&mut self, r: JobResult) {
        self.in_flight.remove(&r.uid);
        let now = self.now();
        let Some(pod) = self.pods.get_mut(&r.uid).map(Arc::make_mut) else {
            // Forgotten meanwhile: nothing to fold and nothing to retry.
            self.failing.remove(&r.uid);
            return;
        };
        let backoffs = outcome::Backoffs {
            crash: self.crash,
            sandbox: self.sandbox,
        };
        let folded = outcome::fold(pod, r.outcomes, now, &backoffs);
        if folded.action_failed {
            let previous = self.failing.get(&r.uid).copied();
            let retry = outcome::retry_failing(previous, now, &self.pull);
            self.failing.insert(r.uid.clone(), retry);
        } else {
            self.failing.remove(&r.uid);
        }
        if let Some(why) = folded.network_pending {
            tracing::warn!(
                "pod {}: network released once the store is back ({why})",
                r.uid
            );
            self.unreleased.insert(r.uid.clone());
        }
        self.dirty.insert(r.uid.clone());
        for e in folded.events {
            self.record_pod_event(&r.uid, e.warning, &e.reason, &e.message);
        }
    }
}

/// Whether `pod`'s ConfigMap and Secret volumes are to be written again: their objects changed
/// since the volumes were last written (or this agent has not written them: after a restart,
/// an unchanged volume is left as it is). A sandbox being made now writes them itself.
fn volume_refresh(
    pod: &PodRecord,
    actions: &[Action],
    objects: &crate::desired::Objects,
    marks: &mut HashMap<String, Vec<(ObjectKey, Option<String>)>>,
) -> Option<Action> {
    let making = actions
        .iter()
        .any(|a| matches!(a, Action::EnsureSandbox { .. }));
    let leaving = pod.deleting_since.is_some()
        || actions
            .iter()
            .any(|a| matches!(a, Action::TeardownSandbox { .. }));
    if leaving || !(making || pod.status.sandbox_ready) {
        return None;
    }
    let skiff_manifests::Object::Pod(manifest) = pod.manifest.get() else {
        return None;
    };
    let inputs = crate::reconciler::sandbox::volume_inputs(manifest, |k| {
        objects.get(k).map(|(_, o)| o.content_hash())
    });
    if inputs.is_empty() || marks.get(&pod.uid) == Some(&inputs) {
        return None;
    }
    marks.insert(pod.uid.clone(), inputs);
    (!making).then(|| Action::RefreshVolumes {
        uid: pod.uid.clone(),
    })
}

//! The node loop. One task owns all state: sources, pod records, image pull state, events.
//! Each turn it folds in what happened (file events, API commands, finished actions, runtime
//! observations), asks the pure planner what to do, hands actions to executor tasks, persists
//! what changed and publishes a snapshot for the API.

use super::execute::{self, Job, JobResult, PullResult};
use super::sources::Sources;
use crate::cluster::keys::PodReport;
use crate::config::AgentConfig;
use crate::desired;
use crate::events::{Event, Events};
use crate::pod::{
    ContainerPlanSpec, Millis, PodPlanSpec, PodRecord, PodRuntime, PullPolicy, RestartPolicy,
    Waiting, now_millis,
};
use crate::reconciler::backoff::Backoff;
use crate::reconciler::outcome::{self, to_millis};
use crate::reconciler::plan::{self, Action, ImageState, Observed};
use crate::store::Store;
use crate::watcher::FileEvent;
use rand::Rng;
use skiff_manifests::model::workloads::Pod;
use skiff_manifests::{Object, ObjectKey, Valid};
use skiff_runtime::container::{ContainerRuntime, ContainerState};
use skiff_runtime::image::{ImageStore, normalize_reference};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A command from the API that changes state.
pub enum Command {
    /// Set or remove objects applied through the API; answers with an error for objects that a
    /// manifest file declares.
    ApplyObjects {
        objects: Vec<Valid<Object>>,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    DeleteObjects {
        keys: Vec<ObjectKey>,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    /// The image store changed (import or pull through the API).
    ImagesChanged,
}

/// Pull state of one image (by normalized reference).
#[derive(Clone, Debug, Default)]
struct ImageEntry {
    present: bool,
    pulling: bool,
    failures: u32,
    retry_at: Millis,
    message: String,
}

/// What the API reads: a consistent copy of the node's state.
pub struct Snapshot {
    pub node_name: String,
    pub started_at: Millis,
    pub pods: Vec<PodRecord>,
    pub objects: Arc<crate::desired::Objects>,
    pub first_seen: BTreeMap<ObjectKey, Millis>,
    pub events: Vec<Event>,
    images: HashMap<String, ImageEntry>,
}

impl Snapshot {
    /// The image state as the renderer wants it: state and failure count.
    pub fn image_state(&self, image: &str) -> (ImageState, u32) {
        let key = normalize_reference(image).unwrap_or_else(|_| image.to_string());
        match self.images.get(&key) {
            Some(e) => (entry_state(e), e.failures),
            None => (ImageState::Missing, 0),
        }
    }
}

fn entry_state(e: &ImageEntry) -> ImageState {
    if e.pulling {
        ImageState::Pulling
    } else if e.present {
        ImageState::Present
    } else if e.failures > 0 {
        ImageState::Failed {
            message: e.message.clone(),
            retry_at: e.retry_at,
        }
    } else {
        ImageState::Missing
    }
}

pub struct Core {
    config: AgentConfig,
    store: Store,
    images: ImageStore,
    runtime: Arc<dyn ContainerRuntime>,
    network: Option<Arc<skiff_cni::NetlinkNetwork>>,
    sources: Sources,
    objects: Arc<crate::desired::Objects>,
    first_seen: BTreeMap<ObjectKey, Millis>,
    pods: BTreeMap<String, PodRecord>,
    image_state: HashMap<String, ImageEntry>,
    in_flight: HashSet<String>,
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
    /// Whether the store refuses writes (a full disk) and when it is next looked at.
    store_watch: super::store_watch::StoreWatch,
    /// Pods removed from memory whose records could not be deleted from the store yet.
    forgotten: BTreeSet<String>,
    /// Pods torn down while the store refused writes: their network (address lease, links)
    /// is released once it is back.
    unreleased: BTreeSet<String>,
    /// Pods whose last job had an action fail (a teardown that cannot unmount, say): how many
    /// times in a row, and when they are next acted on (the pull backoff, not every turn).
    failing: HashMap<String, (u32, Millis)>,
    /// This node's own declarations (files and `skiff apply`), for the cluster task.
    declared: watch::Sender<Arc<crate::desired::Objects>>,
    /// The pods the leader assigned to this node; `None` until known (nothing is changed).
    assigned: Option<Arc<Vec<crate::cluster::keys::AssignedPod>>>,
    /// What the leader could not place (events are recorded when this changes).
    pending: Arc<Vec<crate::cluster::keys::PendingWorkload>>,
    /// The leader's table changed or the objects did: the node's pods are recomputed.
    reports: watch::Sender<Arc<BTreeMap<(String, String), PodReport>>>,
}

fn plan_spec(pod: &Valid<Pod>) -> PodPlanSpec {
    use skiff_manifests::model::pod::{PullPolicy as MP, RestartPolicy as MR};
    let c = |c: &skiff_manifests::model::pod::Container| ContainerPlanSpec {
        name: c.name.clone(),
        image: c.image.clone(),
        pull_policy: match c.image_pull_policy {
            MP::Always => PullPolicy::Always,
            MP::IfNotPresent => PullPolicy::IfNotPresent,
            MP::Never => PullPolicy::Never,
        },
    };
    PodPlanSpec {
        init_containers: pod.spec.init_containers.iter().map(c).collect(),
        containers: pod.spec.containers.iter().map(c).collect(),
        restart_policy: match pod.spec.restart_policy {
            MR::Always => RestartPolicy::Always,
            MR::OnFailure => RestartPolicy::OnFailure,
            MR::Never => RestartPolicy::Never,
        },
        grace_period: pod.spec.termination_grace_period(),
        host_network: pod.spec.host_network,
    }
}

impl Core {
    /// Loads sources and pods from the store, checks what survived (re-adoption), and removes
    /// containers and namespaces that belong to no pod.
    pub fn load(
        config: AgentConfig,
        store: Store,
        images: ImageStore,
        runtime: Arc<dyn ContainerRuntime>,
        network: Option<Arc<skiff_cni::NetlinkNetwork>>,
    ) -> anyhow::Result<Core> {
        let sources = Sources::load(&store, config.manifest_settle.as_millis() as Millis)?;
        let pods: Vec<PodRecord> = store.pods()?;
        let now = now_millis();
        let mut image_state = HashMap::new();
        for info in images.list()? {
            image_state.insert(
                info.reference.clone(),
                ImageEntry {
                    present: true,
                    ..Default::default()
                },
            );
        }
        let mut core = Core {
            crash: Backoff {
                base: config.crash_backoff_base,
                max: config.crash_backoff_max,
                reset_after: config.crash_backoff_reset,
            },
            pull: Backoff {
                base: config.image_pull_backoff_base,
                max: config.crash_backoff_max,
                reset_after: config.crash_backoff_reset,
            },
            sandbox: Backoff {
                base: config.sandbox_backoff_base,
                max: config.crash_backoff_max,
                reset_after: config.crash_backoff_reset,
            },
            objects: Arc::new(BTreeMap::new()),
            first_seen: BTreeMap::new(),
            pods: pods.into_iter().map(|p| (p.uid.clone(), p)).collect(),
            image_state,
            in_flight: HashSet::new(),
            dirty: BTreeSet::new(),
            events: Events::default(),
            started_at: now,
            desired_changed: true,
            log_space: (0, false),
            store_watch: Default::default(),
            forgotten: BTreeSet::new(),
            unreleased: BTreeSet::new(),
            failing: HashMap::new(),
            declared: watch::channel(Arc::new(BTreeMap::new())).0,
            assigned: None,
            pending: Arc::default(),
            reports: watch::channel(Arc::new(BTreeMap::new())).0,
            config,
            store,
            images,
            runtime,
            network,
            sources,
        };
        core.refresh_declared();
        core.adopt();
        // The first snapshot the API serves should not claim containers that died meanwhile.
        core.observe_all(now);
        Ok(core)
    }

    /// Hands this node's declarations to the cluster task (which replicates them and hands back
    /// the cluster's objects and this node's assignment through [`Core::on_desired`]).
    fn refresh_declared(&mut self) {
        self.declared
            .send_replace(Arc::new(self.sources.merged.objects.clone()));
    }

    /// What the cluster task says this node should hold and run.
    fn on_desired(&mut self, desired: crate::cluster::Desired, now: Millis) {
        for key in desired.objects.keys() {
            self.first_seen.entry(key.clone()).or_insert(now);
        }
        self.first_seen
            .retain(|k, _| desired.objects.contains_key(k));
        if desired::config_changed(&self.objects, &desired.objects) {
            for pod in self.pods.values_mut() {
                if pod.status.retry_config_waits() {
                    self.dirty.insert(pod.uid.clone());
                }
            }
        }
        self.objects = desired.objects;
        self.assigned = desired.assigned;
        self.desired_changed = true;
        for p in desired.pending.iter() {
            if self.pending.iter().any(|old| old == p) {
                continue;
            }
            let mut parts = p.owner.splitn(3, '/');
            let (kind, ns, name) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let reason = if p.reason.starts_with("namespace") {
                "Blocked"
            } else {
                "FailedScheduling"
            };
            self.events
                .record(now, true, reason, kind, ns, name, &p.reason);
        }
        self.pending = desired.pending;
    }

    /// This node's declarations, for the cluster task.
    pub fn declared(&self) -> watch::Receiver<Arc<crate::desired::Objects>> {
        self.declared.subscribe()
    }

    /// This node's pod reports, for the cluster task.
    pub fn reports(&self) -> watch::Receiver<Arc<BTreeMap<(String, String), PodReport>>> {
        self.reports.subscribe()
    }

    fn publish_reports(&self, snapshot: &Snapshot, now: Millis) {
        let image = |i: &str| snapshot.image_state(i);
        let ctx = crate::render::RenderContext {
            node_name: &self.config.node_name,
            now,
            image: &image,
        };
        let reports: BTreeMap<(String, String), PodReport> = self
            .pods
            .values()
            .map(|p| {
                let ip = p.status.network.as_ref().map(|n| n.ip.as_str());
                (
                    (p.namespace.clone(), p.name.clone()),
                    crate::cluster::report(p, ip, &ctx),
                )
            })
            .collect();
        self.reports.send_if_modified(|current| {
            if **current == reports {
                false
            } else {
                *current = Arc::new(reports);
                true
            }
        });
    }

    /// After a restart: sandboxes whose namespace vanished (reboot) are made again; containers
    /// and namespaces that belong to no pod are removed.
    fn adopt(&mut self) {
        let mut known: HashSet<String> = HashSet::new();
        let mut adopted = 0;
        for pod in self.pods.values_mut() {
            for c in pod
                .status
                .init_containers
                .iter()
                .chain(pod.status.containers.iter())
            {
                if let Some(i) = &c.current {
                    known.insert(i.id.clone());
                    if matches!(
                        self.runtime.state(&i.id),
                        Ok(ContainerState::Running { .. })
                    ) {
                        adopted += 1;
                    }
                }
            }
            known.extend(pod.status.pending_removal.iter().cloned());
            if pod.status.sandbox_ready && !pod.plan.host_network {
                let ns = self
                    .config
                    .netns_dir
                    .join(format!("{}{}", self.config.netns_prefix, pod.uid));
                if !ns.exists() {
                    pod.status.sandbox_ready = false;
                    self.dirty.insert(pod.uid.clone());
                }
            }
        }
        if adopted > 0 {
            tracing::info!("re-adopted {adopted} running container(s)");
        }
        match self.runtime.list() {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !known.contains(id)) {
                    tracing::info!("removing orphaned container {id}");
                    if let Err(e) = self.runtime.remove(&id) {
                        tracing::warn!("remove orphaned container {id}: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list containers: {e}"),
        }
        let prefix = &self.config.netns_prefix;
        if self.network.is_some() {
            // Pod networking's gc (run at start-up) owns namespaces, links and leases.
        } else if let Ok(names) = skiff_cni::list_netns(&self.config.netns_dir, prefix) {
            for name in names {
                let uid = name.trim_start_matches(prefix.as_str());
                if !self.pods.contains_key(uid) {
                    tracing::info!("removing orphaned network namespace {name}");
                    let _ = skiff_cni::remove_netns(&self.config.netns_dir, &name);
                }
            }
        }
    }

    /// Uids of every pod on the node (for pod networking's gc).
    pub fn pod_uids(&self) -> std::collections::BTreeSet<String> {
        self.pods.keys().cloned().collect()
    }

    /// Network requests of the pods whose networked sandbox was made and that still run
    /// (for the repair pass at start).
    pub fn wired_pod_requests(&self) -> Vec<skiff_cni::PodNetRequest> {
        self.pods
            .values()
            .filter(|p| p.status.sandbox_ready && !p.plan.host_network)
            .filter(|p| p.deleting_since.is_none() && p.status.network.is_some())
            .map(|p| super::execute::pod_net_request(&self.config, p))
            .collect()
    }

    /// Network requests and addresses of every pod that holds an address (to re-lease them
    /// after the store was rebuilt).
    pub fn leased_pod_requests(&self) -> Vec<(skiff_cni::PodNetRequest, std::net::Ipv4Addr)> {
        self.pods
            .values()
            .filter(|p| !p.plan.host_network)
            .filter_map(|p| {
                let ip = p.status.network.as_ref()?.ip.parse().ok()?;
                Some((super::execute::pod_net_request(&self.config, p), ip))
            })
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            node_name: self.config.node_name.clone(),
            started_at: self.started_at,
            pods: self.pods.values().cloned().collect(),
            objects: self.objects.clone(),
            first_seen: self.first_seen.clone(),
            events: self.events.iter().cloned().collect(),
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
        let mut tick = tokio::time::interval(self.config.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = now_millis();
            self.turn(now, &results_tx, &pulls_tx, &tracker);
            let snap = Arc::new(self.snapshot());
            self.publish_reports(&snap, now);
            snapshot.send_replace(snap);
            // Every branch is cancel-safe (mpsc receives, a watch change and an interval tick).
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(ev) = files.recv() => {
                    let now = now_millis();
                    if self.sources.on_file_event(ev, &self.store, &mut self.events, now) {
                        self.refresh_declared();
                    }
                }
                Ok(()) = desired.changed() => {
                    let d = desired.borrow_and_update().clone();
                    self.on_desired(d, now_millis());
                }
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(r) = results.recv() => self.on_job_result(r),
                Some(p) = pulls.recv() => self.on_pull_result(p),
                _ = tick.tick() => {
                    self.check_log_space(now_millis());
                    self.check_store(now_millis());
                    if self.sources.settle_due(&self.store, &mut self.events, now_millis()) {
                        self.refresh_declared();
                    }
                }
            }
        }
        self.flush();
    }

    /// Folds what the runtime says about every running container into the pod records (pods
    /// with an action in flight wait for its outcome); returns the pods looked at.
    fn observe_all(&mut self, now: Millis) -> Vec<String> {
        let uids: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !self.in_flight.contains(*u))
            .cloned()
            .collect();
        for uid in &uids {
            let runtime = self.runtime.clone();
            let observe = move |id: &str| match runtime.state(id) {
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
            let Some(pod) = self.pods.get_mut(uid) else {
                continue;
            };
            if !pod.status.any_running() {
                continue;
            }
            let before = pod.status.clone();
            let noted = plan::observe(pod, &observe, now, &self.crash);
            if pod.status != before {
                self.dirty.insert(uid.clone());
            }
            for n in noted {
                self.record_pod_event(uid, n.warning, &n.reason, &n.message);
            }
        }
        uids
    }

    /// Every 10 s: whether the pods' logs have stopped for lack of free space (the shims drop
    /// lines below the floor); an event when that starts and when it ends.
    fn check_log_space(&mut self, now: Millis) {
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

    fn record_pod_event(&mut self, uid: &str, warning: bool, reason: &str, message: &str) {
        if let Some(p) = self.pods.get(uid) {
            let (ns, name) = (p.namespace.clone(), p.name.clone());
            self.events
                .record(now_millis(), warning, reason, "Pod", &ns, &name, message);
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
        }
        let uids = self.observe_all(now);
        // Plan and dispatch.
        for uid in uids {
            if self.failing.get(&uid).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            let Some(pod) = self.pods.get(&uid) else {
                continue;
            };
            let image_state = |image: &str| {
                let key = normalize_reference(image).unwrap_or_else(|_| image.to_string());
                self.image_state
                    .get(&key)
                    .map(entry_state)
                    .unwrap_or(ImageState::Missing)
            };
            let mut actions = plan::plan(pod, &image_state, now);
            if actions
                .iter()
                .any(|a| matches!(a, Action::EnsureSandbox { .. }))
            {
                // Pipeline: plan the container starts as if the sandbox were ready, so one job
                // makes the sandbox and starts the containers (the executor skips the starts
                // if the sandbox fails).
                let mut ready = pod.clone();
                ready.status.sandbox_ready = true;
                actions.extend(
                    plan::plan(&ready, &image_state, now)
                        .into_iter()
                        .filter(|a| matches!(a, Action::StartContainer { .. })),
                );
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
            let job = Job {
                pod: pod.clone(),
                actions: pod_actions,
                objects: self.objects.clone(),
                config: self.config.clone(),
                images: self.images.clone(),
                runtime: self.runtime.clone(),
                network: self.network.clone(),
                sandbox_network: std::sync::Mutex::new(None),
            };
            self.in_flight.insert(uid.clone());
            let tx = results.clone();
            tracker.spawn(async move {
                let result = execute::run_job(job).await;
                let _ = tx.send(result).await;
            });
        }
        self.flush();
    }

    /// Writes what changed in the pod records; what cannot be written (the store refuses
    /// writes) stays marked and is tried again on a later turn (once the store is back).
    fn flush(&mut self) {
        if self.store_watch.failed() {
            return;
        }
        while let Some(uid) = self.forgotten.pop_first() {
            if let Err(e) = self.store.delete_pod(&uid) {
                tracing::warn!("pod {uid}: cannot remove its record: {e}");
                self.forgotten.insert(uid);
                break;
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        let records = dirty
            .iter()
            .filter_map(|uid| self.pods.get(uid).map(|p| (uid.as_str(), p)));
        if let Err(e) = self.store.put_pods(records) {
            tracing::warn!("cannot persist pod records: {e}");
            // Try again next turn.
            self.dirty = dirty;
        }
    }

    /// Releases the network of pods torn down while the store refused writes (idempotent; a
    /// failure is left to the start-up garbage collection).
    fn release_networks(&mut self) {
        let uids = std::mem::take(&mut self.unreleased);
        let Some(net) = self.network.clone() else {
            return;
        };
        if uids.is_empty() {
            return;
        }
        tokio::spawn(async move {
            use skiff_cni::PodNetwork;
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
    fn check_store(&mut self, now: Millis) {
        use super::store_watch::{StoreStep, free_bytes};
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
                    super::store_watch::REOPEN_FREE_BYTES / (1024 * 1024)
                );
                tracing::error!("{message}");
                let node = self.config.node_name.clone();
                self.events
                    .record(now, true, "StoreFailed", "Node", "", &node, &message);
            }
            StoreStep::Reopen => match self.store.reopen() {
                Ok(()) => {
                    let failed_for = self.store_watch.reopened(now);
                    let waiting = self.sources.write_unwritten(&self.store);
                    self.flush();
                    self.release_networks();
                    let message = format!(
                        "{} reopened after refusing writes for {:.1} s; what waited in memory is written",
                        self.store.path().display(),
                        failed_for as f64 / 1000.0
                    );
                    tracing::warn!("{message}");
                    if let Err(e) = waiting {
                        tracing::warn!("manifest sources are not all written yet: {e}");
                    }
                    let node = self.config.node_name.clone();
                    self.events
                        .record(now, false, "StoreReopened", "Node", "", &node, &message);
                }
                Err(e) => tracing::debug!("store not reopened yet: {e}"),
            },
        }
    }

    fn apply_desired(&mut self, now: Millis) {
        let records: Vec<&PodRecord> = self.pods.values().collect();
        let Some(assigned) = &self.assigned else {
            // No table yet (a fresh start before the cluster task spoke): keep everything.
            return;
        };
        let changes =
            desired::assigned_changes(&self.objects, assigned, &records, &self.config.node_name);
        for (key, reason) in &changes.blocked {
            self.events.record(
                now,
                true,
                "Blocked",
                key.kind.as_str(),
                &key.namespace,
                &key.name,
                reason,
            );
        }
        for uid in changes.delete {
            if let Some(p) = self.pods.get_mut(&uid) {
                p.deleting_since = Some(now);
                self.dirty.insert(uid.clone());
                let (ns, name) = (p.namespace.clone(), p.name.clone());
                self.events.record(
                    now,
                    false,
                    "Killing",
                    "Pod",
                    &ns,
                    &name,
                    "stopping pod: it is no longer desired or its spec changed",
                );
            }
        }
        for new in changes.create {
            let uid = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
            let plan = plan_spec(&new.pod);
            let record = PodRecord {
                uid: uid.clone(),
                namespace: new.pod.metadata.namespace.clone(),
                name: new.pod.metadata.name.clone(),
                owner: new.owner,
                spec_hash: new.spec_hash,
                manifest: new.pod.clone().into(),
                status: PodRuntime::for_plan(&plan),
                plan,
                created_at: now,
                deleting_since: None,
            };
            self.events.record(
                now,
                false,
                "Scheduled",
                "Pod",
                &record.namespace,
                &record.name,
                &format!("assigned to {}", self.config.node_name),
            );
            self.pods.insert(uid.clone(), record);
            self.dirty.insert(uid);
        }
    }

    /// Uids of the pods with a container (init included) that runs `image`.
    fn pods_using(&self, image: &str) -> Vec<String> {
        self.pods
            .values()
            .filter(|p| {
                p.plan
                    .containers
                    .iter()
                    .chain(&p.plan.init_containers)
                    .any(|c| c.image == image)
            })
            .map(|p| p.uid.clone())
            .collect()
    }

    fn start_pull(&mut self, image: &str, pulls: &mpsc::Sender<PullResult>, tracker: &TaskTracker) {
        let key = normalize_reference(image).unwrap_or_else(|_| image.to_string());
        let entry = self.image_state.entry(key.clone()).or_default();
        if entry.pulling {
            return;
        }
        entry.pulling = true;
        let images = self.images.clone();
        let opts = execute::pull_options(&self.config);
        let tx = pulls.clone();
        let image = image.to_string();
        let users = self.pods_using(&image);
        for uid in users {
            self.record_pod_event(&uid, false, "Pulling", &format!("pulling image {image:?}"));
        }
        tracker.spawn(async move {
            let started = std::time::Instant::now();
            let result = images
                .pull(&image, &opts)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = tx
                .send(PullResult {
                    key,
                    image,
                    result,
                    took: started.elapsed(),
                })
                .await;
        });
    }

    fn on_pull_result(&mut self, p: PullResult) {
        crate::memory::release_free_memory();
        let now = now_millis();
        let users = self.pods_using(&p.image);
        let entry = self.image_state.entry(p.key.clone()).or_default();
        entry.pulling = false;
        match p.result {
            Ok(()) => {
                entry.present = true;
                entry.failures = 0;
                entry.message.clear();
                for uid in &users {
                    if let Some(pod) = self.pods.get_mut(uid) {
                        for (spec, c) in plan_and_status(pod) {
                            if spec.image == p.image && !c.running() {
                                c.pulled = true;
                            }
                        }
                        self.dirty.insert(uid.clone());
                    }
                }
                for uid in users {
                    self.record_pod_event(
                        &uid,
                        false,
                        "Pulled",
                        &format!("pulled image {:?} in {:.1}s", p.image, p.took.as_secs_f64()),
                    );
                }
            }
            Err(message) => {
                entry.failures += 1;
                entry.retry_at = now + self.pull.delay(entry.failures).as_millis() as Millis;
                entry.message = message.clone();
                // A present image still counts as present, so pull policy Always would pull again
                // at once: hold those containers back until the retry time, as kubelet does.
                let (failures, retry_at) = (entry.failures, entry.retry_at);
                let reason = if failures > 1 {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                for uid in &users {
                    if let Some(pod) = self.pods.get_mut(uid) {
                        for (spec, c) in plan_and_status(pod) {
                            if spec.image == p.image
                                && spec.pull_policy == PullPolicy::Always
                                && !c.running()
                                && !c.pulled
                            {
                                c.next_start_at = Some(retry_at);
                                c.waiting = Some(Waiting {
                                    reason: reason.to_string(),
                                    message: format!(
                                        "failed to pull image {:?}: {message}",
                                        p.image
                                    ),
                                });
                            }
                        }
                        self.dirty.insert(uid.clone());
                    }
                }
                for uid in users {
                    self.record_pod_event(
                        &uid,
                        true,
                        "Failed",
                        &format!("failed to pull image {:?}: {message}", p.image),
                    );
                }
            }
        }
    }

    /// Folds a finished job into its pod's record (`reconciler::outcome::fold`); a failed
    /// action holds the pod back for the pull backoff.
    fn on_job_result(&mut self, r: JobResult) {
        self.in_flight.remove(&r.uid);
        let now = now_millis();
        let Some(pod) = self.pods.get_mut(&r.uid) else {
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

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ApplyObjects { objects, reply } => {
                let mut changes = Vec::new();
                for object in &objects {
                    let key = object.key();
                    if let Some(src) = self.sources.source_of(&key)
                        && !src.starts_with(desired::API_SOURCE_PREFIX)
                    {
                        let _ = reply.send(Err(format!(
                            "{key} is declared in manifest file {src}: edit that file instead"
                        )));
                        return;
                    }
                }
                for object in objects {
                    let key = object.key();
                    let existed = self.sources.source_of(&key).is_some();
                    match self.sources.set_api_object(&key, Some(object), &self.store) {
                        Ok(changed) => changes.push(format!(
                            "{} {}",
                            describe_key(&key),
                            match (existed, changed) {
                                (false, _) => "created",
                                (true, true) => "configured",
                                (true, false) => "unchanged",
                            }
                        )),
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                self.refresh_declared();
                let _ = reply.send(Ok(changes));
            }
            Command::DeleteObjects { keys, reply } => {
                let mut changes = Vec::new();
                for key in &keys {
                    match self.sources.source_of(key) {
                        None => {
                            let _ = reply.send(Err(format!("{key} not found")));
                            return;
                        }
                        Some(src) if !src.starts_with(desired::API_SOURCE_PREFIX) => {
                            let _ = reply.send(Err(format!(
                                "{key} is declared in manifest file {src}: remove it from that file"
                            )));
                            return;
                        }
                        Some(_) => {}
                    }
                }
                for key in keys {
                    if let Err(e) = self.sources.set_api_object(&key, None, &self.store) {
                        let _ = reply.send(Err(e.to_string()));
                        return;
                    }
                    changes.push(format!("{} deleted", describe_key(&key)));
                }
                self.refresh_declared();
                let _ = reply.send(Ok(changes));
            }
            Command::ImagesChanged => match self.images.list() {
                Ok(list) => {
                    for info in list {
                        let e = self.image_state.entry(info.reference).or_default();
                        e.present = true;
                        e.failures = 0;
                    }
                }
                Err(e) => tracing::warn!("cannot list images: {e}"),
            },
        }
    }
}

/// kubectl's spelling: `deployment.apps/web`, `pod/x`.
pub fn describe_key(key: &ObjectKey) -> String {
    let kind = key.kind.as_str().to_ascii_lowercase();
    let group = if key.kind.api_version().contains('/') {
        format!(
            "{kind}.{}",
            key.kind.api_version().split('/').next().unwrap_or("")
        )
    } else {
        kind
    };
    format!("{group}/{}", key.name)
}

/// Each container's plan spec with its mutable status, init containers first.
fn plan_and_status(
    pod: &mut PodRecord,
) -> impl Iterator<Item = (&ContainerPlanSpec, &mut crate::pod::ContainerRuntime)> {
    pod.plan
        .init_containers
        .iter()
        .zip(pod.status.init_containers.iter_mut())
        .chain(
            pod.plan
                .containers
                .iter()
                .zip(pod.status.containers.iter_mut()),
        )
}

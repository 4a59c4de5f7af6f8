//! The cluster task: one owner for the replica, the leader role and the assignment this node
//! follows. Each step (`service/step.rs`) syncs records with what other nodes advertise,
//! decides leadership (`cluster::leadership`, pure), publishes its pod reports, schedules when
//! it leads with the majority, follows the leader's table for this node, and hands the node
//! loop what to run; local declarations are ingested between steps.
//!
//! Nodes never stop pods because they lost the leader: the last accepted assignment stays in
//! force (and in the store) until a leader they follow publishes a newer one.

use super::fetch::FetchError;
use super::follow::{self, Followed};
use super::gossip_view::GossipView;
use super::keys::{
    AssignedPod, Assignment, PENDING_KEY, PendingWorkload, PodReport, assignment_key, pod_key,
    split_assignment,
};
pub use super::leadership::Quorum;
use super::leadership::{self, LeadershipDecision, LeadershipInput};
use super::replica::{Replica, StoredRecord};
use super::schedule;
use super::subnets;
use crate::pod::now_millis;
use futures::future::BoxFuture;
use skiff_cni::PeerRoute;
use skiff_gossip::{
    Digest, Generation, GossipHandle, KeyReader, NodeCondition, NodeStatus, SyncStep, TERM_KEY,
    Term, plan_sync,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod cron;
mod publish;
mod rollback;
mod services;
mod step;
mod sync;

pub use rollback::declaration;
#[cfg(test)]
pub(crate) use services::split_book;
pub use services::{BOOK_KEY, BOOK_PART_PREFIX};
pub(crate) use services::{assemble_book, parse_book_key};

/// Fetches records (bodies) for `keys` from `node`.
pub trait Fetcher: Send + Sync {
    fn fetch(
        &self,
        node: String,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<(String, StoredRecord)>, FetchError>>;
}

/// The records this node serves to others' fetches (kept current by the task).
pub type Served = Arc<std::sync::RwLock<Arc<super::replica::Records>>>;

/// Wall-clock milliseconds (simulations pass a clock that follows tokio's paused time).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How long a change of this node's own pod reports waits for more before the cluster task
/// steps on it (another input steps at once).
const REPORTS_COALESCE: Duration = Duration::from_millis(10);

/// Timings and limits of the cluster layer.
#[derive(Clone)]
pub struct ClusterTimings {
    pub clock: Clock,
    /// How often the task looks at gossip when nothing woke it.
    pub step: Duration,
    /// A node NotReady for this long loses its pods to other nodes.
    pub eviction_delay: Duration,
    /// A node whose agent stopped gracefully (Left; its pods still run) keeps them this long,
    /// so a restart or upgrade of the agent does not duplicate them elsewhere.
    pub restart_grace: Duration,
    /// A node that knows of peers waits this long after start before it leads, so a reboot
    /// without network does not reschedule the cluster before gossip had a chance.
    pub startup_grace: Duration,
    /// Tombstones are forgotten after this long.
    pub tombstone_grace: Duration,
    /// Wait out `startup_grace` even as a lone node (after `--recover-store`: the objects and
    /// the stored table came back empty, and the pods that run must not be judged before the
    /// manifests dir and the cluster have been read again).
    pub always_wait_grace: bool,
}

impl Default for ClusterTimings {
    fn default() -> Self {
        ClusterTimings {
            clock: Arc::new(now_millis),
            step: Duration::from_millis(100),
            eviction_delay: Duration::from_secs(1),
            restart_grace: Duration::from_secs(30),
            startup_grace: Duration::from_secs(3),
            tombstone_grace: Duration::from_secs(24 * 3600),
            always_wait_grace: false,
        }
    }
}

/// What the node loop runs: every live desired object of the cluster (configuration included)
/// and the pods assigned to this node.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub objects: Arc<crate::desired::Objects>,
    /// `None` until a leader's table (or the stored one) is known: the node keeps what it runs.
    pub assigned: Option<Arc<Vec<AssignedPod>>>,
    /// What the leader could not place, and why.
    pub pending: Arc<Vec<PendingWorkload>>,
    /// The Services with a ClusterIP, for the environment of containers that start.
    pub service_links: Arc<crate::services::ServiceLinks>,
}

/// The cluster as this node sees it, for the API.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub nodes: Arc<Vec<NodeStatus>>,
    /// The leader by the rule; none when that is this node still in its startup grace.
    pub leader: Option<String>,
    pub term: Term,
    /// Every node's reports, by (namespace, name): (node, report).
    pub pods: Arc<PodReports>,
    pub pending: Vec<PendingWorkload>,
    /// The leader's whole table (this node's part as it accepted it).
    pub table: Arc<Vec<AssignedPod>>,
    /// Routes to the other nodes' pod subnets.
    pub routes: Vec<PeerRoute>,
    /// How many of the nodes last seen Ready this side sees.
    pub quorum: Quorum,
    /// Every Service with its address, node ports and endpoints, as this node sees them.
    pub services: Arc<crate::services::ServiceTable>,
    /// Every Deployment's rollout (available pods, progress), as this node sees it.
    pub rollouts: Arc<super::rollouts::Rollouts>,
}

/// The default service CIDR (k3s's).
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// Every node's pod reports, by (namespace, name): (node, report).
pub type PodReports = BTreeMap<(String, String), (String, Arc<PodReport>)>;
/// This node's own pod reports by (namespace, name), as the node loop hands them on.
pub type OwnReports = BTreeMap<(String, String), Arc<PodReport>>;

/// How often expired tombstones are looked for.
const GC_EVERY_MS: u64 = 60_000;

/// Inputs of the cluster task.
pub struct ClusterInputs {
    pub declared: watch::Receiver<Arc<crate::desired::Objects>>,
    pub reports: watch::Receiver<Arc<OwnReports>>,
    /// Requests from the API about the replicated objects (`rollout history`, `rollout undo`).
    pub commands: mpsc::Receiver<ClusterCommand>,
}

/// Outputs of the cluster task.
pub struct ClusterOutputs {
    pub desired: watch::Sender<Desired>,
    pub state: watch::Sender<Arc<ClusterState>>,
    /// Events the task makes (an automatic rollback), for the node loop to record.
    pub events: Option<mpsc::UnboundedSender<crate::events::Note>>,
}

/// A request to the cluster task from the API.
pub enum ClusterCommand {
    /// A Deployment's or DaemonSet's revisions.
    History {
        key: skiff_manifests::ObjectKey,
        reply: tokio::sync::oneshot::Sender<Result<HistoryView, String>>,
    },
    /// `rollout undo`: an older template back as a new version made by this node.
    Undo {
        key: skiff_manifests::ObjectKey,
        to_revision: Option<u64>,
        reply: tokio::sync::oneshot::Sender<Result<UndoDone, String>>,
    },
}

/// A workload's revisions as the replica holds them.
#[derive(Clone, Debug)]
pub struct HistoryView {
    pub revisions: Vec<super::history::Revision>,
    /// Where the current version was declared (`<node>:<source>`).
    pub origin: String,
}

/// What `rollout undo` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoDone {
    /// The revision brought back, as numbered before.
    pub from_revision: u64,
    /// Its number now.
    pub revision: u64,
    /// Where the object was declared (`<node>:<source>`): that declaration now differs.
    pub declared: String,
    /// The content hash of the object as it now is.
    pub content_hash: String,
}

struct Fetched {
    node: String,
    keys: Vec<String>,
    result: Result<Vec<(String, StoredRecord)>, FetchError>,
}

/// The task's state.
pub struct ClusterService {
    gossip: Arc<GossipHandle>,
    /// This node's name.
    me: String,
    replica: Replica,
    followed: Followed,
    fetcher: Arc<dyn Fetcher>,
    timings: ClusterTimings,
    started_ms: u64,
    term: Term,
    led_before: bool,
    generation: Generation,
    /// Since when each node has not been Ready, and whether it left (a graceful stop) during
    /// that spell: a node that left and comes back under a new generation stays under the
    /// restart grace until it is Ready again.
    not_ready_since: BTreeMap<String, (u64, bool)>,
    /// Every Deployment's rollout, followed on every node.
    rollout_tracker: super::rollouts::RolloutTracker,
    /// What the leader has seen of every pod's readiness (rolling updates' `minReadySeconds`).
    readiness: BTreeMap<(String, String), super::schedule::Readiness>,
    /// Pods this leader took out of its table lately: see [`super::schedule::Released`].
    released: super::schedule::Released,
    /// When the next scheduling pass is due because a pod becomes available.
    wake_at_ms: Option<u64>,
    /// CronJobs (leader): see `cron.rs`.
    cron: cron::CronState,
    published_tables: BTreeMap<String, String>,
    /// Node -> how many parts its table had when this node last published it.
    published_parts: BTreeMap<String, u32>,
    /// Where ClusterIPs come from.
    service_cidr: ipnet::Ipv4Net,
    /// Where node ports come from.
    node_port_range: skiff_manifests::NodePortRange,
    /// The Service address book this node follows (its own as the scheduling leader).
    book: Arc<crate::services::Book>,
    /// The objects the book was last allocated for (allocation runs again when they change).
    allocated_for: Option<Arc<crate::desired::Objects>>,
    /// The book as last published (its version: a hash of its JSON), the book it was made
    /// of, and in how many parts.
    published_book: Option<u64>,
    published_book_of: Option<Arc<crate::services::Book>>,
    published_book_parts: u32,
    /// The book this node last told refusals of (`describe service`): held without its
    /// refusals at the start, so that they are told again after a restart.
    noted_book: Arc<crate::services::Book>,
    /// The Service table and what it was computed from.
    services: Arc<crate::services::ServiceTable>,
    service_inputs: Option<services::TableInputs>,
    /// The service links last handed to the node loop.
    service_links: Arc<crate::services::ServiceLinks>,
    /// The Service table `service_links` was made from.
    service_links_of: Option<Arc<crate::services::ServiceTable>>,
    published_pending: String,
    published_term: Term,
    last_pending: Vec<PendingWorkload>,
    served: Served,
    /// This node's pod subnet and the cluster CIDR (none: pod subnets are not managed).
    subnet: Option<(ipnet::Ipv4Net, ipnet::Ipv4Net)>,
    published_subnets: String,
    published_reports: BTreeMap<(String, String), Arc<PodReport>>,
    in_flight: HashSet<String>,
    fetches: sync::Fetches,
    /// The node loop needs a new [`Desired`].
    objects_dirty: bool,
    /// Every node's gossip keys, parsed.
    view: GossipView,
    reader: KeyReader,
    /// The adverts or the replica changed since the last sync.
    sync_needed: bool,
    /// The live objects of the replica (rebuilt when it changes).
    objects: Arc<crate::desired::Objects>,
    objects_stale: bool,
    /// Every node's reports as last merged, and the local reports they were merged with.
    pods: Arc<PodReports>,
    merged_reports: Option<Arc<OwnReports>>,
    last_gc_ms: u64,
    /// The node list as gossip last changed it.
    nodes_rx: watch::Receiver<Vec<NodeStatus>>,
    nodes: Arc<Vec<NodeStatus>>,
    /// The members this node has not reached since the last verdict (read after the node
    /// list, so it is at least as new).
    reach_rx: watch::Receiver<skiff_gossip::Reach>,
    /// A follower's copy of the leader's whole table, rebuilt when gossip or the accepted
    /// assignment changes.
    followed_table: Arc<Vec<AssignedPod>>,
    /// The leader `followed_table` was built from.
    followed_table_of: Option<String>,
    /// Writing the replica to the store failed last time (logged once until it works again).
    store_failing: bool,
    /// The last scheduling pass (a pass over unchanged inputs is skipped).
    last_pass: Option<step::LastPass>,
}

impl ClusterService {
    pub fn new(
        gossip: Arc<GossipHandle>,
        replica: Replica,
        followed: Followed,
        fetcher: Arc<dyn Fetcher>,
        timings: ClusterTimings,
        served: Served,
    ) -> ClusterService {
        let term = followed.accepted.as_ref().map_or(Term(0), |a| a.term);
        let book = Arc::new(followed.book());
        let noted_book = Arc::new(
            book.iter()
                .map(|(name, a)| {
                    let mut a = a.clone();
                    a.refused.clear();
                    (name.clone(), a)
                })
                .collect(),
        );
        let started_ms = (timings.clock)();
        let reader = gossip.key_reader();
        let mut nodes_rx = gossip.nodes();
        let nodes = Arc::new(nodes_rx.borrow_and_update().clone());
        let reach_rx = gossip.reach();
        let view = GossipView::of(gossip.node_name());
        ClusterService {
            me: gossip.node_name().to_string(),
            gossip,
            replica,
            followed,
            fetcher,
            timings,
            started_ms,
            term,
            led_before: false,
            generation: Generation(0),
            not_ready_since: BTreeMap::new(),
            readiness: BTreeMap::new(),
            released: BTreeMap::new(),
            wake_at_ms: None,
            cron: cron::CronState::default(),
            rollout_tracker: Default::default(),
            published_tables: BTreeMap::new(),
            published_parts: BTreeMap::new(),
            service_cidr: DEFAULT_SERVICE_CIDR.parse().expect("valid CIDR"),
            node_port_range: skiff_manifests::NodePortRange::DEFAULT,
            book,
            allocated_for: None,
            published_book: None,
            published_book_of: None,
            published_book_parts: 0,
            noted_book,
            services: Arc::new(crate::services::ServiceTable::new()),
            service_inputs: None,
            service_links: Arc::default(),
            service_links_of: None,
            published_pending: String::new(),
            published_term: Term(0),
            last_pending: Vec::new(),
            subnet: None,
            published_subnets: String::new(),
            served,
            published_reports: BTreeMap::new(),
            in_flight: HashSet::new(),
            fetches: sync::Fetches::default(),
            objects_dirty: true,
            view,
            reader,
            sync_needed: true,
            objects: Arc::new(BTreeMap::new()),
            objects_stale: true,
            pods: Arc::new(BTreeMap::new()),
            merged_reports: None,
            last_gc_ms: 0,
            nodes_rx,
            nodes,
            reach_rx,
            followed_table: Arc::new(Vec::new()),
            followed_table_of: None,
            store_failing: false,
            last_pass: None,
        }
    }

    /// Allocates ClusterIPs from `cidr` (as leader).
    pub fn with_service_cidr(mut self, cidr: ipnet::Ipv4Net) -> Self {
        self.service_cidr = cidr;
        self
    }

    /// Allocates node ports from `range` (as leader).
    pub fn with_node_port_range(mut self, range: skiff_manifests::NodePortRange) -> Self {
        self.node_port_range = range;
        self
    }

    /// Claims `subnet` for this node; as leader, hands out /24s of `cluster_cidr`.
    pub fn with_subnet(mut self, subnet: ipnet::Ipv4Net, cluster_cidr: ipnet::Ipv4Net) -> Self {
        self.subnet = Some((subnet, cluster_cidr));
        self
    }

    /// Runs until `cancel`.
    pub async fn run(
        mut self,
        mut inputs: ClusterInputs,
        outputs: ClusterOutputs,
        cancel: CancellationToken,
    ) {
        let (fetched_tx, mut fetched_rx) = mpsc::channel::<Fetched>(64);
        let mut nodes = self.gossip.nodes();
        let mut reach = self.gossip.reach();
        let mut tick = tokio::time::interval(self.timings.step);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Advertise what the store holds before anything else.
        for (key, digest) in self.replica.digests() {
            self.advertise(&key, &digest).await;
        }
        let mut declared_changed = true;
        'steps: loop {
            if declared_changed {
                declared_changed = false;
                let declared = inputs.declared.borrow_and_update().clone();
                self.ingest(&declared).await;
                tracing::debug!(target: "skiff::path", "declared ingested");
            }
            self.step(&inputs, &outputs, &fetched_tx).await;
            // A change of this node's pod reports alone waits up to `REPORTS_COALESCE` for more
            // (a pod start changes its report several times, and each step is a scheduling
            // pass over the whole cluster); any other input steps at once, with the reports.
            let mut reports_due: Option<tokio::time::Instant> = None;
            loop {
                let due = reports_due.unwrap_or_else(tokio::time::Instant::now);
                // Every branch is cancel-safe: watch changes, an mpsc receive, a tick, a sleep.
                tokio::select! {
                    _ = cancel.cancelled() => break 'steps,
                    Ok(()) = inputs.declared.changed() => declared_changed = true,
                    Ok(()) = inputs.reports.changed() => {
                        if reports_due.is_none() {
                            reports_due =
                                Some(tokio::time::Instant::now() + REPORTS_COALESCE);
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(due), if reports_due.is_some() => {}
                    Ok(()) = nodes.changed() => {}
                    Ok(()) = reach.changed() => {}
                    Some(f) = fetched_rx.recv() => self.on_fetched(f).await,
                    Some(cmd) = inputs.commands.recv() => self.on_command(cmd, &outputs).await,
                    _ = tick.tick() => {}
                }
                break;
            }
        }
        drop(fetched_rx); // a fetch that finished meanwhile does not wait to be heard
        self.fetches.stop().await;
    }
}

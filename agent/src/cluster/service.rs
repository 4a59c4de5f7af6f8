//! The cluster task: one owner for the replica, the leader role and the assignment this node
//! follows. Each step it ingests local declarations, syncs records with what other nodes
//! advertise, applies the leader and term rules, schedules when it leads, follows the leader's
//! table for this node, publishes its pod reports, and hands the node loop what to run.
//!
//! Nodes never stop pods because they lost the leader: the last accepted assignment stays in
//! force (and in the store) until a leader they follow publishes a newer one.

use super::fetch::FetchError;
use super::follow::{self, Followed};
use super::gossip_view::GossipView;
use super::keys::{
    ASSIGN_PREFIX, AssignedPod, Assignment, PENDING_KEY, PendingWorkload, PodReport, pod_key,
};
use super::replica::{Replica, StoredRecord};
use super::schedule;
use super::subnets;
use crate::pod::now_millis;
use futures::future::BoxFuture;
use skiff_cni::PeerRoute;
use skiff_gossip::{
    Digest, GossipHandle, KeyReader, NodeCondition, NodeStatus, SyncStep, TERM_KEY, leader_of,
    next_term, plan_sync,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod publish;
mod sync;

/// Fetches records (bodies) for `keys` from `node`.
pub trait Fetcher: Send + Sync {
    fn fetch(
        &self,
        node: String,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<(String, StoredRecord)>, FetchError>>;
}

/// The records this node serves to others' fetches (kept current by the task).
pub type Served = Arc<std::sync::RwLock<BTreeMap<String, StoredRecord>>>;

/// Wall-clock milliseconds (simulations pass a clock that follows tokio's paused time).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

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
}

/// The cluster as this node sees it, for the API.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub nodes: Arc<Vec<NodeStatus>>,
    /// The leader by the rule; none when that is this node still in its startup grace.
    pub leader: Option<String>,
    pub term: u64,
    /// Every node's reports, by (namespace, name): (node, report).
    pub pods: Arc<PodReports>,
    pub pending: Vec<PendingWorkload>,
    /// The leader's whole table (this node's part as it accepted it).
    pub table: Arc<Vec<AssignedPod>>,
    /// Routes to the other nodes' pod subnets.
    pub routes: Vec<PeerRoute>,
    /// How many of the nodes last seen Ready this side sees.
    pub quorum: Quorum,
}

/// This side's share of the cluster: the nodes last seen Ready (not left) and how many of them
/// are Ready here. Without the majority the leader places nothing (pods keep running where they
/// are, and restart there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quorum {
    pub ready: usize,
    pub members: usize,
    pub held: bool,
}

impl Quorum {
    pub fn of(
        last_seen_ready: &BTreeMap<String, std::net::SocketAddr>,
        nodes: &[NodeStatus],
        me: &str,
    ) -> Quorum {
        let mut members: std::collections::BTreeSet<String> =
            last_seen_ready.keys().cloned().collect();
        members.insert(me.to_string());
        for n in nodes {
            if n.condition == NodeCondition::Left {
                members.remove(&n.name);
            }
        }
        let ready: std::collections::BTreeSet<String> = nodes
            .iter()
            .filter(|n| n.condition == NodeCondition::Ready || n.name == me)
            .map(|n| n.name.clone())
            .chain(std::iter::once(me.to_string()))
            .collect();
        Quorum {
            ready: members.intersection(&ready).count(),
            members: members.len(),
            held: skiff_gossip::has_quorum(&members, &ready),
        }
    }
}

/// Every node's pod reports, by (namespace, name): (node, report).
pub type PodReports = BTreeMap<(String, String), (String, PodReport)>;

/// How often expired tombstones are looked for.
const GC_EVERY_MS: u64 = 60_000;

/// Inputs of the cluster task.
pub struct ClusterInputs {
    pub declared: watch::Receiver<Arc<crate::desired::Objects>>,
    pub reports: watch::Receiver<Arc<BTreeMap<(String, String), PodReport>>>,
}

/// Outputs of the cluster task.
pub struct ClusterOutputs {
    pub desired: watch::Sender<Desired>,
    pub state: watch::Sender<Arc<ClusterState>>,
}

struct Fetched {
    node: String,
    keys: Vec<String>,
    result: Result<Vec<(String, StoredRecord)>, FetchError>,
}

/// The task's state.
pub struct ClusterService {
    gossip: Arc<GossipHandle>,
    replica: Replica,
    followed: Followed,
    fetcher: Arc<dyn Fetcher>,
    timings: ClusterTimings,
    started_ms: u64,
    term: u64,
    led_before: bool,
    generation: u64,
    /// Since when each node has not been Ready, and whether it left (a graceful stop) during
    /// that spell: a node that left and comes back under a new generation stays under the
    /// restart grace until it is Ready again.
    not_ready_since: BTreeMap<String, (u64, bool)>,
    published_tables: BTreeMap<String, String>,
    published_pending: String,
    published_term: u64,
    last_pending: Vec<PendingWorkload>,
    served: Served,
    /// This node's pod subnet and the cluster CIDR (none: pod subnets are not managed).
    subnet: Option<(ipnet::Ipv4Net, ipnet::Ipv4Net)>,
    published_subnets: String,
    published_reports: BTreeMap<(String, String), PodReport>,
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
    merged_reports: Option<Arc<BTreeMap<(String, String), PodReport>>>,
    last_gc_ms: u64,
    /// The node list as gossip last changed it.
    nodes_rx: watch::Receiver<Vec<NodeStatus>>,
    nodes: Arc<Vec<NodeStatus>>,
    /// A follower's copy of the leader's whole table, rebuilt when gossip or the accepted
    /// assignment changes.
    followed_table: Arc<Vec<AssignedPod>>,
    /// The leader `followed_table` was built from.
    followed_table_of: Option<String>,
    /// Writing the replica to the store failed last time (logged once until it works again).
    store_failing: bool,
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
        let term = followed.accepted.as_ref().map_or(0, |a| a.term);
        let started_ms = (timings.clock)();
        let reader = gossip.key_reader();
        let mut nodes_rx = gossip.nodes();
        let nodes = Arc::new(nodes_rx.borrow_and_update().clone());
        ClusterService {
            gossip,
            replica,
            followed,
            fetcher,
            timings,
            started_ms,
            term,
            led_before: false,
            generation: 0,
            not_ready_since: BTreeMap::new(),
            published_tables: BTreeMap::new(),
            published_pending: String::new(),
            published_term: 0,
            last_pending: Vec::new(),
            subnet: None,
            published_subnets: String::new(),
            served,
            published_reports: BTreeMap::new(),
            in_flight: HashSet::new(),
            fetches: sync::Fetches::default(),
            objects_dirty: true,
            view: GossipView::default(),
            reader,
            sync_needed: true,
            objects: Arc::new(BTreeMap::new()),
            objects_stale: true,
            pods: Arc::new(BTreeMap::new()),
            merged_reports: None,
            last_gc_ms: 0,
            nodes_rx,
            nodes,
            followed_table: Arc::new(Vec::new()),
            followed_table_of: None,
            store_failing: false,
        }
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
        let mut tick = tokio::time::interval(self.timings.step);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Advertise what the store holds before anything else.
        for (key, digest) in self.replica.digests() {
            self.advertise(&key, &digest).await;
        }
        let mut declared_changed = true;
        loop {
            if declared_changed {
                declared_changed = false;
                let declared = inputs.declared.borrow_and_update().clone();
                self.ingest(&declared).await;
                tracing::debug!(target: "skiff::path", "declared ingested");
            }
            self.step(&inputs, &outputs, &fetched_tx).await;
            // Every branch is cancel-safe: watch changes, an mpsc receive, an interval tick.
            tokio::select! {
                _ = cancel.cancelled() => break,
                Ok(()) = inputs.declared.changed() => declared_changed = true,
                Ok(()) = inputs.reports.changed() => {}
                Ok(()) = nodes.changed() => {}
                Some(f) = fetched_rx.recv() => self.on_fetched(f).await,
                _ = tick.tick() => {}
            }
        }
        drop(fetched_rx); // a fetch that finished meanwhile does not wait to be heard
        self.fetches.stop().await;
    }

    async fn step(
        &mut self,
        inputs: &ClusterInputs,
        outputs: &ClusterOutputs,
        fetched_tx: &mpsc::Sender<Fetched>,
    ) {
        let now = (self.timings.clock)();
        let view_changed = self.view.refresh(&self.reader).await;
        self.sync_needed |= view_changed;
        if std::mem::take(&mut self.sync_needed) {
            self.sync(fetched_tx).await;
        }
        self.collect_garbage(now).await;
        if std::mem::take(&mut self.objects_stale) {
            self.objects = Arc::new(self.replica.objects());
        }
        let objects = self.objects.clone();
        if self.nodes_rx.has_changed().unwrap_or(false) {
            self.nodes = Arc::new(self.nodes_rx.borrow_and_update().clone());
            // A removed node leaves the node list; it stops counting toward the majority too.
            let removed = self.gossip.removed_names().await;
            if !removed.is_empty() {
                self.followed.forget_peers(&removed);
            }
        }
        let nodes = self.nodes.clone();
        for n in nodes.iter() {
            if n.condition == NodeCondition::Ready {
                self.not_ready_since.remove(&n.name);
            } else {
                let spell = self
                    .not_ready_since
                    .entry(n.name.clone())
                    .or_insert((now, false));
                spell.1 |= n.condition == NodeCondition::Left;
            }
        }
        // Leader and term.
        let me = self.gossip.node_name().to_string();
        let seen_max = self
            .view
            .nodes()
            .filter(|(n, _)| *n != me)
            .filter_map(|(_, k)| k.term)
            .max()
            .unwrap_or(0);
        let published_term = self.view.node(&me).and_then(|k| k.term);
        let leader = leader_of(&nodes).map(|n| n.name.clone());
        let alone = nodes
            .iter()
            .all(|n| n.is_self || n.condition == NodeCondition::Left);
        let may_lead = alone
            && self.followed.known_peers.is_empty()
            && !self.timings.always_wait_grace
            || now.saturating_sub(self.started_ms) >= self.timings.startup_grace.as_millis() as u64;
        let leading = leader.as_deref() == Some(me.as_str()) && may_lead;
        // Only a side that sees most of the nodes last seen Ready places pods (see has_quorum):
        // a leader cut off with a minority keeps the tables in force instead of multiplying
        // replicas.
        let quorum = Quorum::of(&self.followed.peer_addrs, &nodes, &me);
        let scheduling = leading && quorum.held;
        // Tables published by every node (the leader's, and stale ones of earlier leaders): only
        // a leader needs them all.
        let tables = if leading {
            self.view.tables()
        } else {
            Vec::new()
        };
        let mut term = next_term(leading, self.led_before, self.term, seen_max);
        // Two nodes can reach the same term (this one took over before it heard the other's):
        // another node's table at this term or above means the term is not this leader's own,
        // and followers would take its tables for stale ones.
        if leading
            && let Some(other) = tables
                .iter()
                .filter(|(from, _, _)| *from != me)
                .map(|(_, _, doc)| doc.term)
                .max()
            && other >= term
        {
            term = other + 1;
        }
        self.led_before = leading;
        if term != self.term || published_term != Some(term) {
            self.term = term;
            if let Err(e) = self.gossip.set_key(TERM_KEY, &term.to_string()).await {
                tracing::warn!("cannot publish the term: {e}");
            }
        }
        // Reports of every node (this node's straight from the node loop).
        let reports = inputs.reports.borrow().clone();
        self.publish_reports(&reports).await;
        if view_changed
            || !self
                .merged_reports
                .as_ref()
                .is_some_and(|m| Arc::ptr_eq(m, &reports))
        {
            let mut pods = PodReports::new();
            for (node, keys) in self.view.nodes().filter(|(n, _)| *n != me) {
                for (key, report) in &keys.pods {
                    pods.insert(key.clone(), (node.to_string(), report.clone()));
                }
            }
            for (key, report) in reports.iter() {
                pods.insert(key.clone(), (me.clone(), report.clone()));
            }
            self.pods = Arc::new(pods);
            self.merged_reports = Some(reports.clone());
        }
        let pods = self.pods.clone();
        let mut pending = Vec::new();
        let mut full_table = Arc::new(Vec::new());
        if scheduling {
            let mut previous = follow::previous_table(&tables);
            // After a restart gossip holds no table yet: this node's stored one still counts.
            if let Some(mine) = &self.followed.accepted
                && !previous.iter().any(|p| p.node == me)
            {
                previous.extend(mine.pods.iter().cloned());
            }
            let output = schedule::run(
                &nodes,
                &self.not_ready_since,
                &objects,
                &previous,
                &pods,
                now,
                schedule::Delays {
                    eviction: self.timings.eviction_delay,
                    restart_grace: self.timings.restart_grace,
                },
            );
            pending = output.pending.clone();
            full_table = Arc::new(output.table.clone());
            let mine = self
                .publish_tables(&nodes, output.table, output.pending)
                .await;
            // The leader follows its own table at once.
            if let Some(doc) = mine
                && self.followed.accept(&doc)
            {
                self.objects_dirty = true;
            }
        }
        // Follow the leader's table for this node.
        let leader_name = leader.clone().filter(|l| *l != me || leading);
        let mut followed_changed = false;
        if let Some(l) = &leader_name
            && *l != me
            && let Some(doc) = self.view.node(l).and_then(|k| k.table_for(&me))
            && self.followed.accept(doc)
        {
            self.objects_dirty = true;
            followed_changed = true;
        }
        self.followed.note_peers(&nodes, &me);
        let routes = self.subnets(&nodes, leading).await;
        if !scheduling {
            if let Some(l) = &leader_name
                && let Some(list) = self.view.node(l).and_then(|k| k.pending.clone())
            {
                pending = list;
            }
            // The whole table as the leader published it (this node's own part as accepted).
            if view_changed || followed_changed || self.followed_table_of != leader_name {
                let mut table = self
                    .followed
                    .accepted
                    .as_ref()
                    .map(|a| a.pods.clone())
                    .unwrap_or_default();
                if let Some(keys) = leader_name.as_deref().and_then(|l| self.view.node(l)) {
                    table.extend(
                        keys.tables
                            .iter()
                            .filter(|(target, _)| *target != me)
                            .flat_map(|(_, doc)| doc.pods.iter().cloned()),
                    );
                }
                self.followed_table = Arc::new(table);
                self.followed_table_of = leader_name.clone();
            }
            full_table = self.followed_table.clone();
        }
        if self.objects_dirty || pending != self.last_pending {
            self.objects_dirty = false;
            self.last_pending = pending.clone();
            *self.served.write().unwrap_or_else(|p| p.into_inner()) = self.replica.records();
            tracing::debug!(target: "skiff::path", "desired sent");
            outputs.desired.send_replace(Desired {
                objects: objects.clone(),
                assigned: self
                    .followed
                    .accepted
                    .as_ref()
                    .map(|a| Arc::new(a.pods.clone())),
                pending: Arc::new(pending.clone()),
            });
        }
        outputs.state.send_replace(Arc::new(ClusterState {
            nodes,
            // Not this node while it waits out its startup grace: it does not lead yet.
            leader: leader_name,
            term: self.term,
            pods,
            pending,
            table: full_table,
            routes,
            quorum,
        }));
        // Disk last: the commits (a sync each) do not delay the node's pods.
        self.write_replica();
    }
}

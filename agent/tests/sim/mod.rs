//! In-process skiff clusters for the cluster-layer simulations: per node a gossip node on
//! chitchat's `ChannelTransport`, the cluster service on an in-memory redb, a fetcher that
//! reads the other nodes' served records (cut links cannot fetch), and a fake runtime that runs
//! what the node is assigned and reports it. Time is tokio's paused clock; the cluster clock
//! follows it (`start wall ms + elapsed`).
#![allow(dead_code)]

mod runtime;

use futures::future::BoxFuture;
use skiff_agent::cluster::fetch::FetchError;
use skiff_agent::cluster::follow::Followed;
use skiff_agent::cluster::keys::PodReport;
use skiff_agent::cluster::replica::{Replica, StoredRecord};
use skiff_agent::cluster::service::Clock;
use skiff_agent::cluster::{
    ClusterCommand, ClusterInputs, ClusterOutputs, ClusterService, ClusterState, ClusterTimings,
    Desired, Fetcher, Served, serve_records,
};
use skiff_agent::desired::Source;
use skiff_gossip::SimNetwork;
use skiff_gossip::{
    Capacity, GossipConfig, GossipHandle, GossipNode, GossipProfile, NodeCondition, NodeMetadata,
    Term,
};
use skiff_manifests::{Object, ObjectKey, Valid};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use runtime::FakePod;

const CLUSTER: &str = "skiff-cluster-sim";
/// Wall clock at simulated time zero (any fixed value: runs replay the same stamps).
const WALL_START_MS: u64 = 1_750_000_000_000;

/// This node's declarations, as the node loop hands them to the cluster task.
pub type Declared = Arc<BTreeMap<ObjectKey, (Source, Valid<Object>)>>;

/// The seed of a randomized test, from `SKIFF_SIM_SEED` or fresh; printed for replays.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SKIFF_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: simulation seed {seed} (replay with SKIFF_SIM_SEED={seed})");
    seed
}

pub fn name(i: usize) -> String {
    format!("node-{i:03}")
}

pub fn addr(i: usize) -> SocketAddr {
    ([198, 18, 4 + (i / 250) as u8, (i % 250 + 1) as u8], 7946).into()
}

/// Knobs of a simulated cluster.
#[derive(Clone)]
pub struct SimOptions {
    pub eviction_delay: Duration,
    pub startup_grace: Duration,
    pub step: Duration,
    /// How long the fake runtime takes from assignment to a running, ready pod.
    pub start_delay: Duration,
    /// One fetch's round trip.
    pub fetch_rtt: Duration,
    /// Where ClusterIPs come from (the agent's default when `None`).
    pub service_cidr: Option<ipnet::Ipv4Net>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            eviction_delay: Duration::from_secs(2),
            startup_grace: Duration::from_secs(3),
            step: Duration::from_millis(100),
            start_delay: Duration::from_millis(100),
            fetch_rtt: Duration::from_millis(2),
            service_cidr: None,
        }
    }
}

/// What every node shares: who serves which records, and which links are cut.
#[derive(Default)]
pub struct Net {
    served: Mutex<BTreeMap<String, (SocketAddr, Served)>>,
    cut: Mutex<BTreeSet<(SocketAddr, SocketAddr)>>,
    /// Fetches answered, for the record.
    pub fetches: std::sync::atomic::AtomicU64,
    /// Every pod a fake runtime made: (node, namespace, name, wall ms).
    pub created: Mutex<Vec<(String, String, String, u64)>>,
}

impl Net {
    fn reachable(&self, a: SocketAddr, b: SocketAddr) -> bool {
        !self
            .cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(a, b))
    }
}

/// Fetches from the `Served` map of another simulated node, unless the link is cut or the
/// node is down.
struct SimFetcher {
    me: SocketAddr,
    net: Arc<Net>,
    rtt: Duration,
}

impl Fetcher for SimFetcher {
    fn fetch(
        &self,
        node: String,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<(String, StoredRecord)>, FetchError>> {
        let net = self.net.clone();
        let (me, rtt) = (self.me, self.rtt);
        Box::pin(async move {
            tokio::time::sleep(rtt).await;
            let target = net
                .served
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&node)
                .cloned();
            let (addr, served) = target.ok_or_else(|| FetchError::UnknownNode(node.clone()))?;
            if !net.reachable(me, addr) {
                return Err(FetchError::Unreachable(node));
            }
            net.fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(serve_records(&served, &keys))
        })
    }
}

/// One running simulated node.
pub struct SimNode {
    pub gossip: Arc<GossipHandle>,
    pub declared: watch::Sender<Declared>,
    pub desired: watch::Receiver<Desired>,
    pub state: watch::Receiver<Arc<ClusterState>>,
    /// Requests to the cluster task (`rollout history`, `rollout undo`).
    pub commands: mpsc::Sender<ClusterCommand>,
    /// Events the cluster task made (rollbacks).
    pub events: Arc<Mutex<Vec<skiff_agent::events::Note>>>,
    /// The fake runtime's pods, by (namespace, name).
    pub pods: Pods,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// A node's durable part: survives a kill, used by a restart.
struct Disk {
    db: skiff_agent::store::SharedDb,
    declared: Declared,
    metadata: NodeMetadata,
    generation: u64,
    /// Pods that outlived a killed agent (its containers kept running), for the restart.
    surviving_pods: Option<Pods>,
}

pub type Pods = Arc<Mutex<BTreeMap<(String, String), FakePod>>>;

/// A simulated cluster.
pub struct Sim {
    pub transport: SimNetwork,
    pub net: Arc<Net>,
    pub nodes: Vec<Option<SimNode>>,
    disks: Vec<Disk>,
    pub options: SimOptions,
    pub clock: Clock,
}

pub fn metadata() -> NodeMetadata {
    NodeMetadata {
        capacity: Capacity {
            cpu_millis: 4_000,
            memory_bytes: 8 << 30,
            pods: 110,
        },
        agent_version: "sim".into(),
        ready: true,
        ..NodeMetadata::default()
    }
}

fn memory_db() -> skiff_agent::store::SharedDb {
    skiff_agent::store::shared(
        redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("in-memory redb"),
    )
}

impl Sim {
    /// Starts `n` nodes (must run on a paused-time runtime).
    pub async fn start(n: usize, options: SimOptions) -> Sim {
        let origin = Instant::now();
        let clock: Clock = Arc::new(move || WALL_START_MS + origin.elapsed().as_millis() as u64);
        let mut sim = Sim {
            transport: SimNetwork::new(),
            net: Arc::new(Net::default()),
            nodes: Vec::with_capacity(n),
            disks: Vec::with_capacity(n),
            options,
            clock,
        };
        for i in 0..n {
            sim.disks.push(Disk {
                db: memory_db(),
                declared: Declared::default(),
                metadata: metadata(),
                generation: 1,
                surviving_pods: None,
            });
            let node = sim.spawn(i).await;
            sim.nodes.push(Some(node));
        }
        sim
    }

    /// Starts one more node (a join), with `change` applied to its metadata.
    pub async fn add_node(&mut self, change: impl FnOnce(&mut NodeMetadata)) -> usize {
        let i = self.disks.len();
        let mut metadata = metadata();
        change(&mut metadata);
        self.disks.push(Disk {
            db: memory_db(),
            declared: Declared::default(),
            metadata,
            generation: 1,
            surviving_pods: None,
        });
        let node = self.spawn(i).await;
        self.nodes.push(Some(node));
        i
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    async fn spawn(&mut self, i: usize) -> SimNode {
        let surviving = self.disks[i].surviving_pods.take();
        let disk = &self.disks[i];
        let mut config = GossipConfig::new(name(i), addr(i));
        config.seeds = (0..3)
            .filter(|s| *s != i)
            .map(|s| addr(s).to_string())
            .collect();
        config.profile = GossipProfile::Lan;
        config.generation = Some(disk.generation);
        config.metadata = disk.metadata.clone();
        // A killed node's socket closes when its aborted task is dropped, a moment later.
        let mut tries = 0;
        let gossip = loop {
            match GossipNode::spawn_simulated(config.clone(), CLUSTER, &self.transport).await {
                Ok(handle) => break Arc::new(handle),
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing::debug!("node {i} cannot start yet: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("spawn simulated gossip node {i}: {e}"),
            }
        };
        let replica = Replica::open(disk.db.clone(), &name(i)).expect("open replica");
        let followed = Followed::open(disk.db.clone()).expect("open followed");
        let served: Served = Served::default();
        self.net
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name(i), (addr(i), served.clone()));
        let fetcher = Arc::new(SimFetcher {
            me: addr(i),
            net: self.net.clone(),
            rtt: self.options.fetch_rtt,
        });
        let timings = ClusterTimings {
            clock: self.clock.clone(),
            step: self.options.step,
            eviction_delay: self.options.eviction_delay,
            startup_grace: self.options.startup_grace,
            ..ClusterTimings::default()
        };
        let mut service =
            ClusterService::new(gossip.clone(), replica, followed, fetcher, timings, served);
        if let Some(cidr) = self.options.service_cidr {
            service = service.with_service_cidr(cidr);
        }
        let (declared_tx, declared_rx) = watch::channel(disk.declared.clone());
        let (reports_tx, reports_rx) = watch::channel(Arc::new(BTreeMap::new()));
        let (desired_tx, desired_rx) = watch::channel(Desired::default());
        let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
        let cancel = CancellationToken::new();
        let pods = surviving.unwrap_or_default();
        let (commands, commands_rx) = mpsc::channel(8);
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let events: Arc<Mutex<Vec<skiff_agent::events::Note>>> = Arc::default();
        let service_task = tokio::spawn(service.run(
            ClusterInputs {
                declared: declared_rx,
                reports: reports_rx,
                commands: commands_rx,
            },
            ClusterOutputs {
                desired: desired_tx,
                state: state_tx,
                events: Some(events_tx),
            },
            cancel.clone(),
        ));
        let events_task = tokio::spawn({
            let events = events.clone();
            async move {
                while let Some(n) = events_rx.recv().await {
                    events.lock().unwrap_or_else(|p| p.into_inner()).push(n);
                }
            }
        });
        let loop_task = tokio::spawn(runtime::node_loop(runtime::LoopParts {
            me: name(i),
            desired: desired_rx.clone(),
            reports: reports_tx,
            pods: pods.clone(),
            clock: self.clock.clone(),
            start_delay: self.options.start_delay,
            cancel: cancel.clone(),
            net: self.net.clone(),
        }));
        SimNode {
            gossip,
            declared: declared_tx,
            desired: desired_rx,
            state: state_rx,
            commands,
            events,
            pods,
            cancel,
            tasks: vec![service_task, loop_task, events_task],
        }
    }

    pub fn node(&self, i: usize) -> &SimNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Replaces node `i`'s declarations (what its manifest files say).
    pub fn declare(&mut self, i: usize, objects: &[Valid<Object>]) {
        let declared: Declared = Arc::new(
            objects
                .iter()
                .map(|o| {
                    (
                        o.key(),
                        (format!("/manifests/{}.yaml", o.key().name), o.clone()),
                    )
                })
                .collect(),
        );
        self.disks[i].declared = declared.clone();
        if let Some(node) = &self.nodes[i] {
            node.declared.send_replace(declared);
        }
    }

    /// Publishes new metadata for node `i` (cordon, drain, labels).
    pub async fn set_metadata(&mut self, i: usize, change: impl FnOnce(&mut NodeMetadata)) {
        change(&mut self.disks[i].metadata);
        let metadata = self.disks[i].metadata.clone();
        self.node(i)
            .gossip
            .set_metadata(&metadata)
            .await
            .expect("publish metadata");
    }

    /// Kills node `i` like kill -9: its tasks stop, gossip stops without a leave marker, the
    /// fake runtime's pods are gone with it (the store is kept for a restart).
    pub async fn kill(&mut self, i: usize) {
        self.stop_node(i, false).await;
    }

    /// Kills node `i`'s agent only: its pods keep running and are there after a restart.
    pub async fn kill_agent(&mut self, i: usize) {
        self.stop_node(i, true).await;
    }

    /// Stops node `i`'s agent as SIGTERM does: it tells the cluster it leaves (Left) and stops
    /// once the others have heard it; its pods keep running and are there after a restart.
    pub async fn stop_agent(&mut self, i: usize) {
        if let Some(node) = &self.nodes[i] {
            node.gossip.leave().await;
        }
        let others: Vec<usize> = self.alive().into_iter().filter(|o| *o != i).collect();
        wait_until(
            "the others to see the node Left",
            Duration::from_secs(10),
            || {
                std::future::ready(others.iter().all(|o| {
                    self.node(*o)
                        .gossip
                        .nodes()
                        .borrow()
                        .iter()
                        .any(|s| s.name == name(i) && s.condition == NodeCondition::Left)
                }))
            },
        )
        .await;
        self.stop_node(i, true).await;
    }

    async fn stop_node(&mut self, i: usize, keep_pods: bool) {
        let Some(node) = self.nodes[i].take() else {
            return;
        };
        self.net
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name(i));
        for task in &node.tasks {
            task.abort();
        }
        for task in node.tasks {
            let _ = task.await;
        }
        if keep_pods {
            self.disks[i].surviving_pods = Some(node.pods);
        }
        match Arc::try_unwrap(node.gossip) {
            Ok(handle) => handle.abort(),
            Err(_) => panic!("node {i}: the gossip handle is still shared after its tasks stopped"),
        }
    }

    /// Starts node `i` again on its store, with its declarations as they are (new generation).
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} still runs");
        self.disks[i].generation += 1;
        let node = self.spawn(i).await;
        self.nodes[i] = Some(node);
    }

    /// Cuts every link between `a` and `b` (gossip and fetches, both ways).
    pub async fn cut(&self, a: &[usize], b: &[usize]) {
        for x in a {
            for y in b {
                self.transport.remove_link(addr(*x), addr(*y)).await;
                let mut cut = self.net.cut.lock().unwrap_or_else(|p| p.into_inner());
                cut.insert((addr(*x), addr(*y)));
                cut.insert((addr(*y), addr(*x)));
            }
        }
    }

    /// Restores every link between `a` and `b`.
    pub async fn heal(&self, a: &[usize], b: &[usize]) {
        for x in a {
            for y in b {
                self.transport.add_link(addr(*x), addr(*y)).await;
                let mut cut = self.net.cut.lock().unwrap_or_else(|p| p.into_inner());
                cut.remove(&(addr(*x), addr(*y)));
                cut.remove(&(addr(*y), addr(*x)));
            }
        }
    }

    pub fn state(&self, i: usize) -> Arc<ClusterState> {
        self.node(i).state.borrow().clone()
    }

    pub fn desired(&self, i: usize) -> Desired {
        self.node(i).desired.borrow().clone()
    }

    /// Node `i` holds `key` (live) with `check` true of it.
    pub fn holds(&self, i: usize, key: &ObjectKey, check: impl Fn(&Valid<Object>) -> bool) -> bool {
        self.node(i)
            .desired
            .borrow()
            .objects
            .get(key)
            .is_some_and(|(_, o)| check(o))
    }

    /// Every running node sees every node in `nodes` with `condition`.
    pub fn all_see(&self, nodes: &[usize], condition: NodeCondition) -> bool {
        self.alive().iter().all(|o| {
            let list = self.node(*o).gossip.nodes().borrow().clone();
            nodes.iter().all(|t| {
                list.iter()
                    .any(|s| s.name == name(*t) && s.condition == condition)
            })
        })
    }

    /// Every node in `observers` names `leader` as leader.
    pub fn leader_is(&self, observers: &[usize], leader: usize) -> bool {
        observers
            .iter()
            .all(|o| self.state(*o).leader.as_deref() == Some(name(leader).as_str()))
    }

    /// Pods of `owner` (`Deployment/web`) the fake runtimes of running nodes run (started),
    /// as (node index, pod name, template hash).
    pub fn running(&self, owner_kind: &str, owner_name: &str) -> Vec<(usize, String, String)> {
        self.pods_of(owner_kind, owner_name, true)
    }

    /// Like [`Sim::running`], counting pods that have not started yet too.
    pub fn held(&self, owner_kind: &str, owner_name: &str) -> Vec<(usize, String, String)> {
        self.pods_of(owner_kind, owner_name, false)
    }

    /// Names of every pod node `i`'s fake runtime holds.
    pub fn held_on(&self, i: usize) -> Vec<String> {
        let pods = self.node(i).pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.keys().map(|(_, pod)| pod.clone()).collect()
    }

    fn pods_of(&self, kind: &str, owner: &str, only_running: bool) -> Vec<(usize, String, String)> {
        let mut out = Vec::new();
        for i in self.alive() {
            let pods = self.node(i).pods.lock().unwrap_or_else(|p| p.into_inner());
            for ((_, pod), fake) in pods.iter() {
                if (fake.running || !only_running)
                    && fake.owner.kind.as_str() == kind
                    && fake.owner.name == owner
                {
                    out.push((i, pod.clone(), fake.template_hash.clone()));
                }
            }
        }
        out.sort();
        out
    }

    /// The reports node `i` sees for pods of `owner_name` (any node's), by pod name.
    pub fn reported(
        &self,
        i: usize,
        owner_name: &str,
    ) -> BTreeMap<String, (String, Arc<PodReport>)> {
        self.state(i)
            .pods
            .iter()
            .filter(|(_, (_, r))| r.owner.as_ref().is_some_and(|o| o.name == owner_name))
            .map(|((_, pod), v)| (pod.clone(), v.clone()))
            .collect()
    }

    /// Waits until all nodes see each other Ready and agree on node-000 as leader.
    pub async fn settle(&self) -> Duration {
        let everyone = self.alive();
        wait_until(
            "cluster Ready with one leader",
            Duration::from_secs(120),
            || {
                std::future::ready(
                    self.all_see(&everyone, NodeCondition::Ready)
                        && self.leader_is(&everyone, everyone[0])
                        && everyone.iter().all(|i| self.state(*i).term >= Term(1)),
                )
            },
        )
        .await
    }

    /// Stops every node (aborting, like the end of a test).
    pub async fn stop(mut self) {
        for i in 0..self.nodes.len() {
            if let Some(node) = &self.nodes[i] {
                node.cancel.cancel();
            }
            self.kill(i).await;
        }
    }
}

/// Polls `condition` every 50 ms of simulated time until it holds (returns how long that
/// took) or `within` passes (panics naming `what`).
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        if start.elapsed() >= within {
            panic!("timed out after {within:?} of simulated time waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Deployment of `replicas` pods of `image` (no resource requests).
pub fn deployment(name: &str, replicas: u32, image: &str) -> Valid<Object> {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
    );
    let parsed = skiff_manifests::parse_file("sim.yaml", yaml.as_bytes());
    parsed
        .objects()
        .into_iter()
        .next()
        .cloned()
        .expect("a valid Deployment")
}

/// A DaemonSet on the nodes labelled `role=<role>`.
pub fn daemon_set(name: &str, role: &str) -> Valid<Object> {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      nodeSelector: {{role: {role}}}\n      containers:\n      - name: app\n        image: busybox:1\n"
    );
    let parsed = skiff_manifests::parse_file("sim.yaml", yaml.as_bytes());
    parsed
        .objects()
        .into_iter()
        .next()
        .cloned()
        .expect("a valid DaemonSet")
}

/// The image of a Deployment's first container.
pub fn image_of(object: &Valid<Object>) -> Option<String> {
    match object.get() {
        Object::Deployment(d) => d
            .spec
            .template
            .spec
            .containers
            .first()
            .map(|c| c.image.clone()),
        _ => None,
    }
}

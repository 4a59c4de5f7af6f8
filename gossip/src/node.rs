//! The gossip service: [`GossipNode::spawn`] starts chitchat on the QUIC transport (or any
//! transport, for simulations) and returns a [`GossipHandle`] that publishes this node's keys,
//! exposes the node list on a `watch`, leaves gracefully and shuts down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use chitchat::transport::Transport;
use chitchat::{Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, spawn_chitchat};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::error::GossipError;
use crate::identity::NodeIdentity;
use crate::keyspace::{
    self, KEY_ISSUER, KEY_LEFT, KEY_META, KEY_STARTED, REMOVED_PREFIX, REVOKED_PREFIX,
};
use crate::members;
use crate::node_list::{NodeListTask, Reach};
use crate::observe::{ExchangeLog, PreOpened};
use crate::prober::run::{Plan, ProbeWire, Prober, Suspicions};
use crate::profile::{GossipProfile, GossipTimings};
use crate::push::{Pusher, Wake};
use crate::reader::KeyReader;
use crate::remove::NodeRemover;
use crate::rpc::{RpcClient, RpcOptions};
use crate::sim::SimNetwork;
use crate::token::unix_ms;
use crate::transport::{QuicTransport, QuicTransportOptions, TransportCounters};
use crate::view::{NodeMetadata, NodeStatus};

/// Configuration of one gossip node.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub node_name: String,
    /// Where the QUIC endpoint listens (port 0 picks a free port).
    pub listen_addr: SocketAddr,
    /// Address other nodes dial; defaults to the bound address (required if listening on 0.0.0.0).
    pub advertise_addr: Option<SocketAddr>,
    /// Peers to contact first (`ADDR:PORT` or `host:port`).
    pub seeds: Vec<String>,
    pub profile: GossipProfile,
    /// Must grow on every restart; defaults to the start time in unix ms.
    pub generation: Option<u64>,
    pub metadata: NodeMetadata,
}

impl GossipConfig {
    pub fn new(node_name: impl Into<String>, listen_addr: SocketAddr) -> Self {
        Self {
            node_name: node_name.into(),
            listen_addr,
            advertise_addr: None,
            seeds: Vec::new(),
            profile: GossipProfile::Lan,
            generation: None,
            metadata: NodeMetadata::default(),
        }
    }
}

/// What the QUIC gossip node needs from its surroundings.
pub struct GossipDeps {
    pub identity: NodeIdentity,
    /// Authenticated `skiff-rpc/1` connections arrive here (refused when `None`).
    pub rpc_sink: Option<mpsc::Sender<quinn::Connection>>,
}

/// Outcome of [`GossipHandle::leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaveOutcome {
    pub live_peers: usize,
    /// Live peers that exchanged with us after the marker was set (they were sent it).
    pub reached: usize,
}

pub struct GossipNode;

impl GossipNode {
    /// Binds the QUIC endpoint and starts gossiping with mutual TLS.
    pub async fn spawn(
        config: GossipConfig,
        deps: GossipDeps,
    ) -> Result<GossipHandle, GossipError> {
        if let Some(problem) = deps.identity.clock_problem(SystemTime::now()) {
            tracing::warn!("{problem}");
        }
        let timings = config.profile.timings();
        let quic = QuicTransport::bind(
            config.listen_addr,
            &deps.identity,
            QuicTransportOptions {
                timings: timings.transport,
                rpc_sink: deps.rpc_sink,
            },
        )?;
        let bound = quic.local_addr();
        let advertise = match config.advertise_addr {
            Some(addr) => addr,
            None if bound.ip().is_unspecified() => {
                quic.abort();
                return Err(GossipError::AdvertiseRequired { listen: bound });
            }
            None => bound,
        };
        let cluster_id = deps.identity.cluster_id();
        let probes = quic.take_probe_inbound().map(|inbound| ProbeIo {
            wire: Arc::new(quic.clone()) as Arc<dyn ProbeWire>,
            inbound,
            gossip_bytes: None,
        });
        let result = start(
            config,
            &cluster_id,
            &quic,
            bound,
            advertise,
            Some(quic.clone()),
            probes,
        )
        .await;
        match result {
            Ok(handle) => {
                let mut handle = handle;
                if deps.identity.can_issue() {
                    handle.issuer_dir = Some(deps.identity.data_dir().to_path_buf());
                    // Removal markers live in the issuer's keys: republish them after a restart.
                    let registry =
                        members::load_registry(deps.identity.data_dir()).map_err(|e| {
                            GossipError::Start {
                                detail: e.to_string(),
                            }
                        })?;
                    let mut chitchat = handle.chitchat.lock().await;
                    let state = chitchat.self_node_state();
                    keyspace::set_checked(state, KEY_ISSUER, "1")?;
                    for (name, generations) in &registry.removed {
                        let key = format!("{REMOVED_PREFIX}{name}");
                        keyspace::set_checked(state, &key, &members::encode_marker(generations))?;
                    }
                    for (key_sha256, name) in &registry.revoked_keys {
                        keyspace::set_checked(
                            state,
                            &format!("{REVOKED_PREFIX}{key_sha256}"),
                            name,
                        )?;
                    }
                }
                Ok(handle)
            }
            Err(e) => {
                quic.abort();
                Err(e)
            }
        }
    }

    /// Starts a node on a simulated network (chitchat's `ChannelTransport` and an in-memory
    /// datagram wire). `config.advertise_addr` defaults to `config.listen_addr`.
    pub async fn spawn_simulated(
        config: GossipConfig,
        cluster_id: &str,
        network: &SimNetwork,
    ) -> Result<GossipHandle, GossipError> {
        let listen = config.listen_addr;
        let advertise = config.advertise_addr.unwrap_or(listen);
        let probes = ProbeIo {
            wire: network.wire(advertise),
            inbound: network.register(advertise),
            gossip_bytes: network.gossip_bytes(),
        };
        start(
            config,
            cluster_id,
            network.transport(),
            listen,
            advertise,
            None,
            Some(probes),
        )
        .await
    }
}

/// The prober's datagram wire and inbound queue (and, simulated, the gossip byte counter).
struct ProbeIo {
    wire: Arc<dyn ProbeWire>,
    inbound: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    gossip_bytes: Option<Arc<AtomicU64>>,
}

async fn start(
    config: GossipConfig,
    cluster_id: &str,
    transport: &dyn Transport,
    listen: SocketAddr,
    advertise: SocketAddr,
    quic: Option<QuicTransport>,
    probes: Option<ProbeIo>,
) -> Result<GossipHandle, GossipError> {
    let timings = config.profile.timings();
    let started_at = unix_ms(SystemTime::now());
    let generation = config.generation.unwrap_or(started_at);
    let self_id = ChitchatId::new(config.node_name.clone(), generation, advertise);
    let meta_json = serde_json::to_string(&config.metadata).map_err(GossipError::Metadata)?;
    keyspace::check_entry(KEY_META, &meta_json)?;
    let chitchat_config = ChitchatConfig {
        chitchat_id: self_id.clone(),
        cluster_id: cluster_id.to_string(),
        gossip_interval: timings.gossip_interval,
        listen_addr: listen,
        seed_nodes: config.seeds.clone(),
        failure_detector_config: timings.failure_detector(),
        marked_for_deletion_grace_period: timings.marked_for_deletion_grace_period,
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    let exchanges = ExchangeLog::new();
    let wake = Arc::new(Wake::default());
    let sent_bytes = probes.as_ref().and_then(|p| p.gossip_bytes.clone());
    let opened = PreOpened::open(
        transport,
        listen,
        exchanges.clone(),
        wake.clone(),
        sent_bytes,
    )
    .await
    .map_err(|e| GossipError::Start {
        detail: e.to_string(),
    })?;
    let chitchat_handle = spawn_chitchat(chitchat_config, Vec::new(), &opened)
        .await
        .map_err(|e| GossipError::Start {
            detail: e.to_string(),
        })?;
    let chitchat = chitchat_handle.chitchat();
    {
        let mut guard = chitchat.lock().await;
        let state = guard.self_node_state();
        keyspace::set_checked(state, KEY_STARTED, &started_at.to_string())?;
        keyspace::set_checked(state, KEY_META, &meta_json)?;
    }
    let chitchat_handle = Arc::new(chitchat_handle);
    let (nodes_tx, nodes_rx) = watch::channel(Vec::new());
    let (plan_tx, plan_rx) = watch::channel(Arc::new(Plan::default()));
    let (suspicions_tx, suspicions_rx) = watch::channel(Suspicions::default());
    let (revived_tx, revived_rx) = mpsc::unbounded_channel();
    let (reach_tx, reach_rx) = watch::channel(Reach::default());
    let reach_tx = Arc::new(reach_tx);
    let incarnation = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Every key set (this node's or one it learned) wakes the pusher; deletes wake it from
    // `delete_key` and from the deltas the observed socket sees.
    let listener = {
        let wake = wake.clone();
        chitchat
            .lock()
            .await
            .subscribe_event("", move |_| wake.now.notify_one())
    };
    tasks.spawn(
        NodeListTask {
            chitchat: chitchat.clone(),
            nodes_tx,
            quic: quic.clone(),
            cancel: cancel.clone(),
            tick: Duration::from_secs(2),
            timings: timings.prober,
            plan_tx,
            suspicions: suspicions_rx,
            incarnation: incarnation.clone(),
            revived: revived_tx.clone(),
            reach: probes.is_some().then(|| reach_tx.clone()),
        }
        .run(),
    );
    if let Some(probes) = probes {
        tasks.spawn(
            Prober {
                me: crate::prober::ring::MemberId::new(config.node_name.clone(), generation),
                timings: timings.prober,
                wire: probes.wire,
                inbound: probes.inbound,
                plan: plan_rx.clone(),
                suspicions: suspicions_tx,
                incarnation,
                revived: revived_tx,
                reach: reach_tx,
                cancel: cancel.clone(),
            }
            .run(),
        );
    }
    let seeds: Vec<SocketAddr> = config
        .seeds
        .iter()
        .filter_map(|s| s.parse().ok())
        .filter(|a| *a != advertise)
        .collect();
    tasks.spawn(
        Pusher {
            chitchat: chitchat.clone(),
            handle: Arc::downgrade(&chitchat_handle),
            wake: wake.clone(),
            revived: revived_rx,
            plan: plan_rx.clone(),
            seeds,
            bootstrap_every: Duration::from_secs(1),
            coalesce: timings.push_coalesce,
            cancel: cancel.clone(),
        }
        .run(),
    );
    info!(node = %config.node_name, %advertise, generation, "gossip started");
    let rpc = quic
        .clone()
        .map(|quic| RpcClient::new(quic, RpcOptions::default()));
    Ok(GossipHandle {
        issuer_dir: None,
        rpc,
        chitchat_handle: Some(chitchat_handle),
        chitchat,
        self_id,
        nodes_rx,
        reach_rx,
        plan: plan_rx,
        wake,
        _listener: Arc::new(listener),
        quic,
        cancel,
        tasks,
        timings,
        exchanges,
    })
}

/// Publishes this node's metadata; only ever writes the node's own keys. Cheap to clone.
#[derive(Clone)]
pub struct MetadataWriter {
    chitchat: Arc<Mutex<Chitchat>>,
}

impl MetadataWriter {
    /// Publishes `metadata` as this node's metadata (size-checked); the change is pushed to the
    /// ring neighbours at once and floods from there.
    pub async fn set(&self, metadata: &NodeMetadata) -> Result<(), GossipError> {
        let json = serde_json::to_string(metadata).map_err(GossipError::Metadata)?;
        let mut chitchat = self.chitchat.lock().await;
        keyspace::set_checked(chitchat.self_node_state(), KEY_META, &json)
    }
}

/// Handle to a running gossip node. Dropping it stops the node abruptly (no leave marker).
pub struct GossipHandle {
    chitchat_handle: Option<Arc<ChitchatHandle>>,
    chitchat: Arc<Mutex<Chitchat>>,
    self_id: ChitchatId,
    nodes_rx: watch::Receiver<Vec<NodeStatus>>,
    reach_rx: watch::Receiver<Reach>,
    plan: watch::Receiver<Arc<Plan>>,
    wake: Arc<Wake>,
    _listener: Arc<chitchat::ListenerHandle>,
    quic: Option<QuicTransport>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    timings: GossipTimings,
    exchanges: ExchangeLog,
    rpc: Option<RpcClient>,
    /// The data dir holding the CA key and member registry (on the issuing node only).
    issuer_dir: Option<PathBuf>,
}

impl GossipHandle {
    pub fn node_name(&self) -> &str {
        &self.self_id.node_id
    }

    pub fn generation(&self) -> u64 {
        self.self_id.generation_id
    }

    pub fn advertise_addr(&self) -> SocketAddr {
        self.self_id.gossip_advertise_addr
    }

    pub fn timings(&self) -> &GossipTimings {
        &self.timings
    }

    /// Every known node (newest generation per name), kept up to date.
    pub fn nodes(&self) -> watch::Receiver<Vec<NodeStatus>> {
        self.nodes_rx.clone()
    }

    /// The members this node, as the leader by the rule, has not reached since the last
    /// verdict ([`Reach`]). It is updated before the node list: read the node list first, then
    /// this, and it is at least as new.
    pub fn reach(&self) -> watch::Receiver<Reach> {
        self.reach_rx.clone()
    }

    /// Counters of the QUIC transport (`None` on other transports).
    pub fn transport_counters(&self) -> Option<TransportCounters> {
        self.quic.as_ref().map(QuicTransport::counters)
    }

    /// The QUIC transport (for rpc dialling), if this node runs on QUIC.
    pub fn quic_transport(&self) -> Option<&QuicTransport> {
        self.quic.as_ref()
    }

    /// The rpc client dialling from this node's QUIC endpoint (`None` on other transports).
    /// Cheap to clone; clones share one connection per peer.
    pub fn rpc_client(&self) -> Option<RpcClient> {
        self.rpc.clone()
    }

    /// Publishes this node's metadata (size-checked).
    pub async fn set_metadata(&self, metadata: &NodeMetadata) -> Result<(), GossipError> {
        self.metadata_writer().set(metadata).await
    }

    /// A cloneable writer of this node's metadata, for callers that do not own the handle.
    pub fn metadata_writer(&self) -> MetadataWriter {
        MetadataWriter {
            chitchat: self.chitchat.clone(),
        }
    }

    /// What `skiff node remove` goes through on this node.
    pub fn node_remover(&self) -> NodeRemover {
        NodeRemover {
            chitchat: self.chitchat.clone(),
            gossip: self
                .chitchat_handle
                .as_ref()
                .map_or_else(Weak::new, Arc::downgrade),
            nodes: self.nodes_rx.clone(),
            plan: self.plan.clone(),
            quic: self.quic.clone(),
            issuer_dir: self.issuer_dir.clone(),
            self_name: self.self_id.node_id.to_string(),
        }
    }

    /// Publishes one key of this node (size-checked; keys under `node/` are reserved).
    pub async fn set_key(&self, key: &str, value: &str) -> Result<(), GossipError> {
        keyspace::check_user_key(key)?;
        let mut chitchat = self.chitchat.lock().await;
        keyspace::set_checked(chitchat.self_node_state(), key, value)
    }

    /// Deletes one key of this node (tombstoned, then garbage-collected cluster-wide).
    pub async fn delete_key(&self, key: &str) -> Result<(), GossipError> {
        keyspace::check_user_key(key)?;
        self.chitchat.lock().await.self_node_state().delete(key);
        // chitchat announces sets, not deletes: push this one ourselves.
        self.wake.now.notify_one();
        Ok(())
    }

    /// `(node name, key, value)` for every key starting with `prefix` on the newest generation
    /// of every known node, this one included.
    pub async fn keys_with_prefix(&self, prefix: &str) -> Vec<(String, String, String)> {
        self.key_reader().keys_with_prefix(prefix).await
    }

    /// Names that `skiff node remove` took out of the cluster (the issuer's markers): they no
    /// longer count among the nodes last seen Ready.
    pub async fn removed_names(&self) -> std::collections::BTreeSet<String> {
        let guard = self.chitchat.lock().await;
        crate::members::removed_incarnations(&guard)
            .into_keys()
            .collect()
    }

    /// A cloneable reader of every node's keys, for tasks that do not own the handle.
    pub fn key_reader(&self) -> KeyReader {
        KeyReader::new(self.chitchat.clone())
    }

    /// Publishes the leave marker and waits (at most the profile's `leave_timeout`) until every
    /// live peer has been sent it. Call before [`GossipHandle::shutdown`] on SIGTERM.
    pub async fn leave(&self) -> LeaveOutcome {
        let since = Instant::now();
        {
            let mut chitchat = self.chitchat.lock().await;
            // Infallible: a one-byte value under the size rule.
            let _ = keyspace::set_checked(chitchat.self_node_state(), KEY_LEFT, "1");
        }
        let peers = live_peers(&self.plan.borrow(), self.self_id.gossip_advertise_addr);
        if let Some(handle) = &self.chitchat_handle {
            for peer in &peers {
                let _ = handle.gossip(*peer);
            }
        }
        let deadline = since + self.timings.leave_timeout;
        let mut changes = self.exchanges.subscribe();
        loop {
            if self.exchanges.missing_since(&peers, since).is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        let missing = self.exchanges.missing_since(&peers, since).len();
        LeaveOutcome {
            live_peers: peers.len(),
            reached: peers.len() - missing,
        }
    }

    /// Stops gossip, flushes queued messages (bounded) and waits for every task.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.chitchat_handle.take() {
            let _ = handle.initiate_shutdown();
            let _ = handle.termination_watcher().await;
        }
        if let Some(quic) = &self.quic {
            quic.close(self.timings.leave_timeout).await;
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Stops at once, like a crash (no leave marker, no flush).
    pub fn abort(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.chitchat_handle.take() {
            handle.abort();
        }
        if let Some(quic) = &self.quic {
            quic.abort();
        }
    }
}

/// Every member judged alive but this node.
pub(crate) fn live_peers(plan: &Plan, me: SocketAddr) -> Vec<SocketAddr> {
    plan.by_addr
        .iter()
        .filter(|(addr, m)| **addr != me && !plan.dead.contains(m))
        .map(|(addr, _)| *addr)
        .collect()
}

impl Drop for GossipHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

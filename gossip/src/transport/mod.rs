//! chitchat's `Transport`/`Socket` over QUIC: one quinn endpoint per node serves and dials on the
//! gossip port; every gossip message travels on its own unidirectional stream (chitchat's own
//! `Serializable` encoding, one message per stream, `read_to_end` with a size limit).
//!
//! Sending never blocks the gossip loop: [`Socket::send`] encodes the message and `try_send`s it
//! into a bounded per-peer queue drained by that peer's task (`peer.rs`), which owns and reuses
//! one dialled connection, re-dials after failures, and exits when idle. Receiving is cancel-safe:
//! accept tasks (`inbound.rs`) decode frames and push them into one mpsc that
//! [`Socket::recv`] reads. Malformed, oversized or excess frames are counted and dropped.

mod codec;
#[cfg(test)]
mod fuzz_tests;
mod inbound;
mod peer;
mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Serializable};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use stats::TransportCounters;

use crate::error::GossipError;
use crate::identity::NodeIdentity;
use crate::join_limit::{JoinLimiter, JoinLimits};
use crate::tls::{self, QuicTimings};
use crate::view::NodeCondition;
use stats::{Counters, bump};

/// Largest gossip frame accepted (chitchat messages are at most 65,507 bytes).
pub const MAX_FRAME_BYTES: usize = 65_536;

/// Prober datagrams waiting for the prober task (a full queue drops them, counted).
const PROBE_QUEUE: usize = 1024;

/// Connection IDs of 4 random bytes instead of quinn's 8: every packet a node receives is 4
/// bytes shorter (about 5% of a heartbeat). quinn draws again on a collision, and a node holds
/// at most a few thousand IDs at once.
struct ShortCids;

impl quinn::ConnectionIdGenerator for ShortCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 4]>())
    }

    fn cid_len(&self) -> usize {
        4
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Tunables of the QUIC transport; see [`crate::GossipProfile`] for the presets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransportTimings {
    /// Keep-alive and idle timeout of the rpc connections this node dials.
    pub quic: QuicTimings,
    /// Idle timeout of gossip connections (they carry no keep-alive: the prober's heartbeats
    /// keep the ring neighbours' connections busy, the others close after this).
    pub gossip_idle_timeout: Duration,
    /// Bound on one outbound dial (handshake included).
    pub dial_timeout: Duration,
    /// Bound on writing one message stream; on expiry the connection is dropped and re-dialled.
    pub send_timeout: Duration,
    /// After a failed dial, messages to that peer are dropped (counted) for this long.
    pub redial_backoff: Duration,
    /// A peer task with nothing to send for this long exits (it is recreated on demand).
    pub peer_idle_exit: Duration,
    /// Outbound queue length per peer.
    pub peer_queue: usize,
    /// Inbound queue length towards the gossip loop.
    pub inbound_queue: usize,
}

pub(crate) type Frame = Vec<u8>;

/// One prober datagram and the address of the connection it arrived on.
pub(crate) type Datagram = (SocketAddr, Vec<u8>);

/// Background dials for datagrams: when the next one may start, and how many failed in a row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redial {
    pub not_before: tokio::time::Instant,
    pub failures: u32,
}

pub(crate) struct Inner {
    pub endpoint: quinn::Endpoint,
    pub local_addr: SocketAddr,
    pub gossip_client: quinn::ClientConfig,
    /// Mutual-TLS client on the join ALPN, for relaying joins to the issuer.
    pub join_client: quinn::ClientConfig,
    /// The issuing node's address as last seen in gossip (None on the issuer itself).
    pub join_issuer: Mutex<Option<SocketAddr>>,
    /// The node list's names and conditions, for the issuer's join rule.
    pub join_members: Mutex<BTreeMap<String, NodeCondition>>,
    /// Failed joins per source address (and the log throttle of refused revoked peers).
    pub join_limiter: Mutex<JoinLimiter>,
    /// Keys (SHA-256 hex) of removed nodes: connections with them are refused both ways.
    pub revoked_keys: Mutex<BTreeSet<String>>,
    pub identity: NodeIdentity,
    pub rpc_sink: Option<mpsc::Sender<quinn::Connection>>,
    pub timings: TransportTimings,
    pub peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Frame>>>,
    pub inbound_tx: mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    pub inbound_rx: Mutex<Option<mpsc::Receiver<(SocketAddr, ChitchatMessage)>>>,
    /// Prober datagrams from every gossip connection (taken once by the node).
    pub probe_tx: mpsc::Sender<Datagram>,
    pub probe_rx: Mutex<Option<mpsc::Receiver<Datagram>>>,
    /// Dials started for datagrams to peers with no connection.
    pub redials: Mutex<HashMap<SocketAddr, Redial>>,
    pub connections: Mutex<Vec<quinn::Connection>>,
    /// The newest gossip connection with each peer address, dialled or accepted: messages to a
    /// peer reuse the connection it dialled us on, so a pair of nodes shares one connection
    /// (one handshake, one keep-alive, ACKs riding on replies).
    pub gossip_conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    pub counters: Counters,
    pub cancel: CancellationToken,
    pub tasks: TaskTracker,
    pub peer_tasks: TaskTracker,
}

impl Inner {
    /// Remembers a connection for the UDP byte counters; forgets closed ones.
    pub fn track_connection(&self, conn: &quinn::Connection) {
        let mut conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        self.prune_closed(&mut conns);
        conns.push(conn.clone());
    }

    /// Remembers `conn` as the gossip connection with its remote address.
    pub fn share_gossip_connection(&self, conn: &quinn::Connection) {
        let mut conns = self.gossip_conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|_, c| c.close_reason().is_none());
        conns.insert(conn.remote_address(), conn.clone());
    }

    /// A live gossip connection with `addr`, if either side has dialled one.
    pub fn shared_gossip_connection(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        let conns = self.gossip_conns.lock().unwrap_or_else(|p| p.into_inner());
        conns
            .get(&addr)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    /// True if the peer of `conn` presents a revoked key; such a connection is closed here
    /// (counted, logged at most once a second per address).
    pub fn refuse_if_revoked(&self, conn: &quinn::Connection) -> bool {
        let revoked = {
            let keys = self.revoked_keys.lock().unwrap_or_else(|p| p.into_inner());
            !keys.is_empty() && tls::peer_key_sha256(conn).is_some_and(|key| keys.contains(&key))
        };
        if revoked {
            bump(&self.counters.revoked_peers);
            conn.close(
                inbound::CLOSE_REVOKED.into(),
                b"this node was removed from the cluster",
            );
            let peer = conn.remote_address();
            let log = self
                .join_limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .log_now(peer.ip(), std::time::Instant::now());
            if let Some(suppressed) = log {
                tracing::warn!(
                    %peer,
                    suppressed,
                    "refused a peer whose key was revoked by `skiff node remove`"
                );
            }
        }
        revoked
    }

    fn prune_closed(&self, conns: &mut Vec<quinn::Connection>) {
        conns.retain(|c| {
            if c.close_reason().is_some() {
                stats::add(
                    &self.counters.closed_udp_bytes_sent,
                    c.stats().udp_tx.bytes as usize,
                );
                false
            } else {
                true
            }
        });
    }
}

/// Options for [`QuicTransport::bind`].
pub struct QuicTransportOptions {
    pub timings: TransportTimings,
    /// Authenticated `skiff-rpc/1` connections are handed here (closed if `None`).
    pub rpc_sink: Option<mpsc::Sender<quinn::Connection>>,
}

/// The QUIC gossip transport of one node. Cheap to clone.
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

impl QuicTransport {
    /// Binds the node's endpoint on `listen_addr` (port 0 picks a free port) and starts accepting.
    pub fn bind(
        listen_addr: SocketAddr,
        identity: &NodeIdentity,
        options: QuicTransportOptions,
    ) -> Result<Self, GossipError> {
        let timings = options.timings;
        let server = tls::server_config(identity, timings.gossip_idle_timeout)?;
        let gossip_client = tls::gossip_client_config(identity, timings.gossip_idle_timeout)?;
        let join_client = tls::mutual_client_config(identity, tls::ALPN_JOIN, timings.quic)?;
        let socket =
            std::net::UdpSocket::bind(listen_addr).map_err(|source| GossipError::Bind {
                addr: listen_addr,
                source,
            })?;
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.cid_generator(|| Box::new(ShortCids));
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| GossipError::Bind {
            addr: listen_addr,
            source,
        })?;
        let local_addr = endpoint.local_addr().map_err(|source| GossipError::Bind {
            addr: listen_addr,
            source,
        })?;
        let (inbound_tx, inbound_rx) = mpsc::channel(timings.inbound_queue.max(1));
        let (probe_tx, probe_rx) = mpsc::channel(PROBE_QUEUE);
        let inner = Arc::new(Inner {
            endpoint,
            local_addr,
            gossip_client,
            join_client,
            join_issuer: Mutex::new(None),
            join_members: Mutex::new(BTreeMap::new()),
            join_limiter: Mutex::new(JoinLimiter::new(JoinLimits::default())),
            revoked_keys: Mutex::new(BTreeSet::new()),
            identity: identity.clone(),
            rpc_sink: options.rpc_sink,
            timings,
            peers: Mutex::new(HashMap::new()),
            inbound_tx,
            inbound_rx: Mutex::new(Some(inbound_rx)),
            probe_tx,
            probe_rx: Mutex::new(Some(probe_rx)),
            redials: Mutex::new(HashMap::new()),
            connections: Mutex::new(Vec::new()),
            gossip_conns: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            peer_tasks: TaskTracker::new(),
        });
        inner.tasks.spawn(inbound::accept_loop(inner.clone()));
        Ok(Self { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Tells a node without the CA key where to relay join requests (kept fresh by the node).
    pub fn set_join_issuer(&self, issuer: Option<SocketAddr>) {
        *self
            .inner
            .join_issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = issuer;
    }

    /// The issuing node's address as last seen in gossip (`None` on the issuer itself, or if
    /// no live issuer is known).
    pub fn join_issuer(&self) -> Option<SocketAddr> {
        *self
            .inner
            .join_issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The names the join rule treats as taken by gossip (kept fresh by the node).
    pub(crate) fn set_join_members(&self, members: BTreeMap<String, NodeCondition>) {
        *self
            .inner
            .join_members
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = members;
    }

    /// The keys of removed nodes (kept fresh by the node); open connections with such a peer
    /// are closed at once.
    pub(crate) fn set_revoked_keys(&self, keys: BTreeSet<String>) {
        {
            let mut current = self
                .inner
                .revoked_keys
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *current == keys {
                return;
            }
            *current = keys;
        }
        let conns: Vec<quinn::Connection> = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for conn in conns.iter().filter(|c| c.close_reason().is_none()) {
            self.inner.refuse_if_revoked(conn);
        }
    }

    /// The keys of removed nodes this transport refuses.
    pub(crate) fn revoked_keys(&self) -> BTreeSet<String> {
        self.inner
            .revoked_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets one name at once (a `node remove`, before the node list catches up).
    pub(crate) fn forget_join_member(&self, name: &str) {
        self.inner
            .join_members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    pub fn counters(&self) -> TransportCounters {
        let mut conns = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.inner.prune_closed(&mut conns);
        let live: u64 = conns.iter().map(|c| c.stats().udp_tx.bytes).sum();
        self.inner.counters.snapshot(live)
    }

    /// The prober's inbound datagrams (once; `None` after the first call).
    pub(crate) fn take_probe_inbound(&self) -> Option<mpsc::Receiver<Datagram>> {
        self.inner
            .probe_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Sends one prober datagram to `to` on the gossip connection with it, without waiting.
    /// With no connection the datagram is dropped (counted) and a dial starts in the
    /// background (backing off while the peer stays unreachable).
    pub(crate) fn send_datagram(&self, to: SocketAddr, datagram: Vec<u8>) {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return;
        }
        match inner.shared_gossip_connection(to) {
            Some(conn) => match conn.send_datagram(bytes::Bytes::from(datagram)) {
                Ok(()) => bump(&inner.counters.datagrams_sent),
                Err(_) => bump(&inner.counters.datagrams_dropped),
            },
            None => {
                bump(&inner.counters.datagrams_dropped);
                peer::dial_in_background(inner, to);
            }
        }
    }

    /// Dials `addr` with this node's client certificate on the rpc ALPN (for the agent's rpc).
    pub async fn connect_rpc(&self, addr: SocketAddr) -> Result<quinn::Connection, GossipError> {
        let config = tls::mutual_client_config(
            &self.inner.identity,
            tls::ALPN_RPC,
            self.inner.timings.quic,
        )?;
        let connecting = self
            .inner
            .endpoint
            .connect_with(config, addr, crate::pki::CLUSTER_SERVER_NAME)
            .map_err(|e| GossipError::Start {
                detail: format!("cannot dial {addr}: {e}"),
            })?;
        let conn = connecting.await.map_err(|e| GossipError::Start {
            detail: format!("cannot connect to {addr}: {e}"),
        })?;
        if self.inner.refuse_if_revoked(&conn) {
            return Err(GossipError::Start {
                detail: format!("the node at {addr} was removed from the cluster"),
            });
        }
        self.inner.track_connection(&conn);
        Ok(conn)
    }

    /// Flushes queued messages (bounded by `drain`), then closes the endpoint and every task.
    pub async fn close(&self, drain: Duration) {
        // Dropping the senders lets every peer task drain its queue and exit.
        self.inner
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.inner.peer_tasks.close();
        let _ = tokio::time::timeout(drain, self.inner.peer_tasks.wait()).await;
        self.abort();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.tasks.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Stops at once without flushing (what a crash looks like to peers, minus the close frames).
    pub fn abort(&self) {
        self.inner.cancel.cancel();
        self.inner.endpoint.close(0u32.into(), b"shutdown");
    }
}

#[async_trait::async_trait]
impl Transport for QuicTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        if listen_addr != self.inner.local_addr && listen_addr.port() != 0 {
            anyhow::bail!(
                "quic transport is bound to {}, not {listen_addr}",
                self.inner.local_addr
            );
        }
        let rx = self
            .inner
            .inbound_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("address not available `{listen_addr}`"))?;
        Ok(Box::new(QuicSocket {
            inner: self.inner.clone(),
            rx: Some(rx),
        }))
    }
}

struct QuicSocket {
    inner: Arc<Inner>,
    rx: Option<mpsc::Receiver<(SocketAddr, ChitchatMessage)>>,
}

impl Drop for QuicSocket {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            *self
                .inner
                .inbound_rx
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(rx);
        }
    }
}

#[async_trait::async_trait]
impl Socket for QuicSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let frame = codec::encode(msg.serialize_to_vec());
        peer::enqueue(&self.inner, to, frame);
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        let rx = self
            .rx
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("socket closed"))?;
        // Cancel-safe: mpsc::Receiver::recv loses nothing when dropped before completion.
        rx.recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("quic transport closed"))
    }
}

/// What one gossip message costs on the QUIC wire, estimated for simulations: the frame as this
/// transport sends it (compressed), 55 bytes of IP, UDP and QUIC per packet of at most 1,200
/// bytes, and the receiver's ACK (62 bytes).
pub(crate) fn wire_bytes(msg: &ChitchatMessage) -> u64 {
    let frame = codec::encode(msg.serialize_to_vec()).len() as u64;
    let packets = frame.div_ceil(1_200).max(1);
    frame + packets * 55 + 62
}

pub(crate) fn count_rejected(inner: &Inner) {
    bump(&inner.counters.rejected_connections);
}

impl crate::prober::run::ProbeWire for QuicTransport {
    fn send_probe(&self, to: SocketAddr, datagram: Vec<u8>) {
        self.send_datagram(to, datagram);
    }
}

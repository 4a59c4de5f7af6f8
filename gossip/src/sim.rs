//! An in-memory network for simulations: chitchat's `ChannelTransport` for the gossip messages
//! and an in-memory wire for the prober's datagrams, cut and healed together, with optional
//! random loss of datagrams (seeded) and byte counts. Runs under tokio's paused time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chitchat::transport::ChannelTransport;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::prober::run::ProbeWire;

/// QUIC's bytes around one datagram (IP, UDP, header, AEAD tag) and the ACK that answers it,
/// for the byte counts (research: 55 B per 1-RTT packet, about 62 B per ACK-only packet).
const DATAGRAM_OVERHEAD: u64 = 55 + 62;

#[derive(Default)]
struct Probes {
    inboxes: HashMap<SocketAddr, mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    cut: HashSet<(SocketAddr, SocketAddr)>,
    loss: f64,
    rng: Option<StdRng>,
    datagrams: u64,
    bytes: u64,
}

/// The simulated network of a whole in-process cluster. Cheap to clone.
#[derive(Clone)]
pub struct SimNetwork {
    transport: ChannelTransport,
    probes: Arc<Mutex<Probes>>,
    /// Gossip messages as the QUIC transport would send them (see `transport::wire_bytes`),
    /// when counted: sizing a message compresses it, which costs more than the simulation.
    gossip_bytes: Option<Arc<AtomicU64>>,
}

impl Default for SimNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl SimNetwork {
    /// A network that counts datagrams but not gossip bytes (see [`SimNetwork::counting_bytes`]).
    pub fn new() -> SimNetwork {
        SimNetwork {
            transport: ChannelTransport::with_mtu(65_507),
            probes: Arc::new(Mutex::new(Probes::default())),
            gossip_bytes: None,
        }
    }

    /// A network that also counts the bytes of every gossip message as the QUIC transport
    /// would frame it (compressed), for [`SimNetwork::bytes_sent`].
    pub fn counting_bytes() -> SimNetwork {
        SimNetwork {
            gossip_bytes: Some(Arc::new(AtomicU64::new(0))),
            ..SimNetwork::new()
        }
    }

    /// The gossip side, for [`crate::GossipNode::spawn_simulated`].
    pub fn transport(&self) -> &ChannelTransport {
        &self.transport
    }

    /// Cuts the link between `a` and `b` both ways (gossip and datagrams).
    pub async fn remove_link(&self, a: SocketAddr, b: SocketAddr) {
        self.transport.remove_link(a, b).await;
        let mut probes = self.lock();
        probes.cut.insert((a, b));
        probes.cut.insert((b, a));
    }

    /// Heals a link cut by [`SimNetwork::remove_link`].
    pub async fn add_link(&self, a: SocketAddr, b: SocketAddr) {
        self.transport.add_link(a, b).await;
        let mut probes = self.lock();
        probes.cut.remove(&(a, b));
        probes.cut.remove(&(b, a));
    }

    /// Drops this fraction of datagrams at random, from a seeded generator.
    pub fn set_datagram_loss(&self, loss: f64, seed: u64) {
        let mut probes = self.lock();
        probes.loss = loss;
        probes.rng = Some(StdRng::seed_from_u64(seed));
    }

    /// Bytes sent so far by every node, as QUIC would carry them: gossip messages compressed
    /// as the QUIC transport frames them, prober datagrams, each with the per-packet overhead
    /// and the receiver's ACK (estimated: IP, UDP and QUIC headers, AEAD tag). `None` unless
    /// the network was made with [`SimNetwork::counting_bytes`].
    pub fn bytes_sent(&self) -> Option<u64> {
        let gossip = self.gossip_bytes.as_ref()?.load(Ordering::Relaxed);
        Some(gossip + self.lock().bytes)
    }

    pub(crate) fn gossip_bytes(&self) -> Option<Arc<AtomicU64>> {
        self.gossip_bytes.clone()
    }

    /// Prober datagrams sent so far by every node.
    pub fn datagrams_sent(&self) -> u64 {
        self.lock().datagrams
    }

    pub(crate) fn register(&self, addr: SocketAddr) -> mpsc::Receiver<(SocketAddr, Vec<u8>)> {
        let (tx, rx) = mpsc::channel(1024);
        self.lock().inboxes.insert(addr, tx);
        rx
    }

    pub(crate) fn wire(&self, from: SocketAddr) -> Arc<dyn ProbeWire> {
        Arc::new(SimWire {
            from,
            probes: self.probes.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Probes> {
        self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct SimWire {
    from: SocketAddr,
    probes: Arc<Mutex<Probes>>,
}

impl ProbeWire for SimWire {
    fn send_probe(&self, to: SocketAddr, datagram: Vec<u8>) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.datagrams += 1;
        probes.bytes += datagram.len() as u64 + DATAGRAM_OVERHEAD;
        if probes.cut.contains(&(self.from, to)) {
            return;
        }
        let loss = probes.loss;
        if loss > 0.0
            && probes
                .rng
                .as_mut()
                .is_some_and(|r| r.random::<f64>() < loss)
        {
            return;
        }
        if let Some(inbox) = probes.inboxes.get(&to) {
            let _ = inbox.try_send((self.from, datagram));
        }
    }
}

//! A `Socket` wrapper that notes when each peer last started or answered a gossip exchange with
//! us. After a Syn or SynAck from a peer, chitchat answers it with a delta of our state, so
//! "a Syn/SynAck arrived from P after time t" means P is being sent everything we had at t. The
//! leave procedure uses this to wait (bounded) until the leave marker went to every live peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Serializable};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::push::Wake;

/// Shared record of the last exchange start per peer address.
#[derive(Clone)]
pub(crate) struct ExchangeLog {
    last: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
    changed: watch::Sender<u64>,
}

impl ExchangeLog {
    pub fn new() -> Self {
        Self {
            last: Arc::new(Mutex::new(HashMap::new())),
            changed: watch::channel(0).0,
        }
    }

    fn record(&self, from: SocketAddr) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(from, Instant::now());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Peers in `peers` that have not exchanged with us since `since`.
    pub fn missing_since(&self, peers: &[SocketAddr], since: Instant) -> Vec<SocketAddr> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .iter()
            .filter(|p| last.get(p).is_none_or(|t| *t < since))
            .copied()
            .collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

struct ObservedSocket {
    inner: Box<dyn Socket>,
    log: ExchangeLog,
    wake: Arc<Wake>,
    /// Simulations: the estimated QUIC bytes of every message sent.
    sent_bytes: Option<Arc<AtomicU64>>,
}

#[async_trait::async_trait]
impl Socket for ObservedSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        if let Some(counter) = &self.sent_bytes {
            counter.fetch_add(crate::transport::wire_bytes(&msg), Ordering::Relaxed);
        }
        self.inner.send(to, msg).await
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        // Cancel-safe because the inner recv is; recording happens after it completed.
        let (from, msg) = self.inner.recv().await?;
        if matches!(
            msg,
            ChitchatMessage::Syn { .. } | ChitchatMessage::SynAck { .. }
        ) {
            self.log.record(from);
        }
        // A delta with content will change our state once chitchat applies it (deletes
        // included, which chitchat's key events do not announce): the pusher looks soon.
        if let ChitchatMessage::SynAck { delta, .. } | ChitchatMessage::Ack { delta } = &msg
            && delta.serialized_len() > 1
        {
            self.wake.soon.notify_one();
        }
        Ok((from, msg))
    }
}

/// A transport that hands out one pre-opened, observed socket (chitchat opens exactly once).
pub(crate) struct PreOpened {
    socket: Mutex<Option<Box<dyn Socket>>>,
}

impl PreOpened {
    pub async fn open(
        transport: &dyn Transport,
        listen_addr: SocketAddr,
        log: ExchangeLog,
        wake: Arc<Wake>,
        sent_bytes: Option<Arc<AtomicU64>>,
    ) -> anyhow::Result<Self> {
        let inner = transport.open(listen_addr).await?;
        Ok(Self {
            socket: Mutex::new(Some(Box::new(ObservedSocket {
                inner,
                log,
                wake,
                sent_bytes,
            }))),
        })
    }
}

#[async_trait::async_trait]
impl Transport for PreOpened {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        self.socket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("socket already opened"))
    }
}

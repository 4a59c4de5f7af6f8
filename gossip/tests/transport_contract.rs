//! One transport contract, run against chitchat's in-memory `ChannelTransport` and against the
//! QUIC transport on real 127.0.0.1 sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use skiff_gossip::chitchat::transport::{ChannelTransport, Socket, Transport};
use skiff_gossip::chitchat::{ChitchatMessage, Deserializable};
use skiff_gossip::{GossipProfile, NodeIdentity, QuicTransport, QuicTransportOptions};
use tokio::time::timeout;

/// How a contract test gets sockets from one kind of transport.
#[async_trait::async_trait]
trait Harness: Send {
    /// Opens a socket on a fresh address.
    async fn open_new(&mut self) -> (SocketAddr, Box<dyn Socket>);
    /// Opens a socket again on an address whose socket was dropped.
    async fn reopen(&mut self, addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>>;
    /// An address nothing listens on.
    fn unbound(&self) -> SocketAddr;
}

struct ChannelHarness {
    transport: ChannelTransport,
    next_port: u16,
}

#[async_trait::async_trait]
impl Harness for ChannelHarness {
    async fn open_new(&mut self) -> (SocketAddr, Box<dyn Socket>) {
        self.next_port += 1;
        let addr: SocketAddr = ([198, 18, 0, 1], self.next_port).into();
        (addr, self.transport.open(addr).await.expect("open"))
    }
    async fn reopen(&mut self, addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        self.transport.open(addr).await
    }
    fn unbound(&self) -> SocketAddr {
        ([198, 18, 0, 2], 1).into()
    }
}

struct QuicHarness {
    _dir: tempfile::TempDir,
    identity: NodeIdentity,
    transports: Vec<QuicTransport>,
}

#[async_trait::async_trait]
impl Harness for QuicHarness {
    async fn open_new(&mut self) -> (SocketAddr, Box<dyn Socket>) {
        let transport = QuicTransport::bind(
            "127.0.0.1:0".parse().expect("addr"),
            &self.identity,
            QuicTransportOptions {
                timings: GossipProfile::Lan.timings().transport,
                rpc_sink: None,
            },
        )
        .expect("bind");
        let addr = transport.local_addr();
        let socket = transport.open(addr).await.expect("open");
        self.transports.push(transport);
        (addr, socket)
    }
    async fn reopen(&mut self, addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let transport = self
            .transports
            .iter()
            .find(|t| t.local_addr() == addr)
            .expect("known transport");
        transport.open(addr).await
    }
    fn unbound(&self) -> SocketAddr {
        // A port from a socket we bind and close: nothing listens there afterwards.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        socket.local_addr().expect("probe addr")
    }
}

fn channel_harness() -> ChannelHarness {
    ChannelHarness {
        transport: ChannelTransport::with_mtu(65_507),
        next_port: 10_000,
    }
}

fn quic_harness() -> QuicHarness {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = common::new_cluster(dir.path(), "contract");
    QuicHarness {
        _dir: dir,
        identity,
        transports: Vec::new(),
    }
}

/// A Syn with an empty digest, built from chitchat's wire format (its `Digest` is private):
/// magic 45139 (le u16), protocol 0, type 0 (Syn), digest of 0 nodes (le u16), cluster id
/// (le u16 length + bytes).
fn syn(cluster_id: &str) -> ChitchatMessage {
    let mut bytes = Vec::new();
    bytes.extend(45_139u16.to_le_bytes());
    bytes.extend([0u8, 0u8]);
    bytes.extend(0u16.to_le_bytes());
    bytes.extend((cluster_id.len() as u16).to_le_bytes());
    bytes.extend(cluster_id.as_bytes());
    ChitchatMessage::deserialize(&mut &bytes[..]).expect("valid syn bytes")
}

const WAIT: Duration = Duration::from_secs(5);

async fn recv_waits_then_delivers(h: &mut impl Harness) {
    let (a_addr, mut a) = h.open_new().await;
    let (b_addr, mut b) = h.open_new().await;
    assert!(
        timeout(Duration::from_millis(200), b.recv()).await.is_err(),
        "recv returned with nothing sent"
    );
    a.send(b_addr, syn("c1")).await.expect("send");
    let (from, msg) = timeout(WAIT, b.recv())
        .await
        .expect("delivered")
        .expect("recv");
    assert_eq!(from, a_addr);
    assert_eq!(msg, syn("c1"));
    // The reply goes to the address the message came from.
    b.send(from, ChitchatMessage::BadCluster)
        .await
        .expect("reply");
    let (from, msg) = timeout(WAIT, a.recv())
        .await
        .expect("reply delivered")
        .expect("recv");
    assert_eq!(from, b_addr);
    assert_eq!(msg, ChitchatMessage::BadCluster);
}

async fn recv_is_cancel_safe(h: &mut impl Harness) {
    let (_a_addr, mut a) = h.open_new().await;
    let (b_addr, mut b) = h.open_new().await;
    const N: usize = 40;
    for i in 0..N {
        a.send(b_addr, syn(&format!("m{i}"))).await.expect("send");
    }
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while received < N && tokio::time::Instant::now() < deadline {
        // A short timer races recv on purpose: a cancelled recv must not lose a message.
        tokio::select! {
            got = b.recv() => { got.expect("recv"); received += 1; }
            _ = tokio::time::sleep(Duration::from_micros(50)) => {}
        }
    }
    assert_eq!(received, N, "messages lost across cancelled recv calls");
}

async fn send_to_unbound_address_returns_at_once(h: &mut impl Harness) {
    let (_addr, mut a) = h.open_new().await;
    let unbound = h.unbound();
    for _ in 0..200 {
        timeout(Duration::from_millis(200), a.send(unbound, syn("x")))
            .await
            .expect("send must not block")
            .expect("send to an unbound address is not an error");
    }
}

async fn large_message_round_trips(h: &mut impl Harness) {
    let (_a_addr, mut a) = h.open_new().await;
    let (b_addr, mut b) = h.open_new().await;
    let big = "x".repeat(60_000);
    a.send(b_addr, syn(&big)).await.expect("send");
    let (_, msg) = timeout(WAIT, b.recv())
        .await
        .expect("delivered")
        .expect("recv");
    assert_eq!(msg, syn(&big));
}

async fn socket_can_be_reopened_after_drop(h: &mut impl Harness) {
    let (addr, socket) = h.open_new().await;
    assert!(
        h.reopen(addr).await.is_err(),
        "opened the same address twice"
    );
    drop(socket);
    let mut again = h.reopen(addr).await.expect("reopen after drop");
    let (_, mut other) = h.open_new().await;
    other.send(addr, syn("again")).await.expect("send");
    let (_, msg) = timeout(WAIT, again.recv())
        .await
        .expect("delivered")
        .expect("recv");
    assert_eq!(msg, syn("again"));
}

macro_rules! contract {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn channel() {
                $name(&mut channel_harness()).await;
            }
            #[tokio::test]
            async fn quic() {
                common::init_tracing();
                $name(&mut quic_harness()).await;
            }
        }
    };
}

contract!(recv_waits_then_delivers);
contract!(recv_is_cancel_safe);
contract!(send_to_unbound_address_returns_at_once);
contract!(large_message_round_trips);
contract!(socket_can_be_reopened_after_drop);

//! Node-to-node request/response over QUIC with mutual TLS (ALPN `skiff-rpc/1`, on the gossip
//! port). Payloads are opaque bytes: the agent chooses their encoding.
//!
//! - `wire.rs`: the frame format of one call (one bidirectional stream per call).
//! - `client.rs`: [`RpcClient`] (from [`crate::GossipHandle::rpc_client`]): one reused connection
//!   per peer address, re-dialled when closed; [`RpcClient::call`] with a deadline and a response
//!   size limit; [`RpcClient::stream`] for open-ended answers (`logs -f`); [`RpcClient::session`]
//!   for calls whose input goes on while the answer streams back (`exec`).
//! - `server.rs`: [`RpcServer`] takes the authenticated connections the QUIC endpoint hands to the
//!   rpc sink ([`rpc_channel`]), names the peer from its certificate and runs an [`RpcHandler`]
//!   per stream. Malformed or oversized requests are counted and dropped, never fatal.

mod client;
#[cfg(test)]
mod fuzz_tests;
mod server;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

pub use client::{RequestSink, ResponseStream, RpcClient};
pub use server::{
    RequestStream, ResponseWriter, RpcFailure, RpcHandler, RpcServer, RpcServerCounters,
    RpcServerOptions, rpc_channel,
};
pub use wire::MAX_CHUNK_BYTES;

/// The sending end of [`rpc_channel`]: what `GossipDeps::rpc_sink` takes.
pub type RpcSink = tokio::sync::mpsc::Sender<quinn::Connection>;
/// The receiving end of [`rpc_channel`]: what [`RpcServer::spawn`] takes.
pub type RpcConnections = tokio::sync::mpsc::Receiver<quinn::Connection>;

/// Limits of the calls an [`RpcClient`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcOptions {
    /// Bound on a whole [`RpcClient::call`] (dial, request, every response byte); for
    /// [`RpcClient::stream`] the bound on dialling and sending the request.
    pub call_timeout: Duration,
    /// Largest response [`RpcClient::call`] accepts (sum of all chunks).
    pub max_response_bytes: usize,
}

impl Default for RpcOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why an rpc call failed. `addr` is the peer that was called.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach node at {addr} over rpc: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    #[error("rpc to {addr} timed out after {after:?}; the node may be overloaded or unreachable")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("node at {addr} answered with an error: {message}")]
    Remote { addr: SocketAddr, message: String },
    #[error("node at {addr} refused the call: {reason}")]
    Refused {
        addr: SocketAddr,
        reason: &'static str,
    },
    #[error("response from {addr} is larger than {limit} bytes")]
    ResponseTooLarge { addr: SocketAddr, limit: usize },
    #[error("malformed rpc response from {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    #[error("rpc connection to {addr} failed during the call: {detail}")]
    Lost { addr: SocketAddr, detail: String },
}

impl RpcError {
    /// True if the call never reached a handler (the peer is down, unreachable or refusing us):
    /// another node may be tried.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. })
    }
}

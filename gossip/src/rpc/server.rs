//! The serving side: [`RpcServer`] reads the authenticated rpc connections the QUIC endpoint
//! hands over, names each peer from its certificate's common name (the chain was verified against
//! the cluster CA during the handshake), and runs the [`RpcHandler`] once per stream.
//!
//! A handler is cancelled (its future dropped) when the caller stops reading, the connection
//! dies or the server shuts down; its [`ResponseWriter`] then resets the stream so the caller
//! never mistakes a cut-off answer for a complete one. Every task is tracked; shutdown cancels
//! and waits.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::wire::{
    self, FrameKind, HEADER_BYTES, MAX_CHUNK_BYTES, RESET_CANCELLED, RESET_MALFORMED,
    RESET_TOO_LARGE,
};

/// How many handed-over connections may wait for the server (the endpoint refuses beyond).
const SINK_QUEUE: usize = 64;

/// The channel between the QUIC endpoint and the [`RpcServer`]: pass the sender as
/// `GossipDeps::rpc_sink` and the receiver to [`RpcServer::spawn`].
pub fn rpc_channel() -> (super::RpcSink, super::RpcConnections) {
    mpsc::channel(SINK_QUEUE)
}

/// Answers calls. `peer` is the calling node's name (from its certificate); `request` is the
/// caller's opaque payload. Write the answer to `response` (any number of chunks) and return.
/// The future is dropped if the caller goes away, so it must not leave work half-done in a way
/// that matters (it is a read path).
pub trait RpcHandler: Send + Sync + 'static {
    fn call(
        &self,
        peer: &str,
        request: Vec<u8>,
        response: &mut ResponseWriter,
    ) -> impl Future<Output = Result<(), RpcFailure>> + Send;

    /// Answers a session: like [`RpcHandler::call`], with the caller's further input in `input`
    /// while the answer is written. Handlers that serve none refuse it as malformed.
    fn session(
        &self,
        peer: &str,
        request: Vec<u8>,
        input: RequestStream,
        response: &mut ResponseWriter,
    ) -> impl Future<Output = Result<(), RpcFailure>> + Send {
        let _ = (peer, request, input, response);
        async { Err(RpcFailure::Malformed("this node serves no sessions".into())) }
    }
}

/// How a handler call ended without a complete answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    /// The request could not be decoded: counted, the stream is reset, the caller sees a refusal.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The call failed: the message goes back to the caller as its error.
    #[error("{0}")]
    Failed(String),
    /// The caller stopped reading or the connection died (writing failed).
    #[error("the caller went away")]
    CallerGone,
}

/// Limits of an [`RpcServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcServerOptions {
    /// Largest request payload accepted; larger ones are counted and refused.
    pub max_request_bytes: usize,
    /// Bound on receiving a whole request.
    pub request_timeout: Duration,
    /// Bound on writing one response chunk (a caller that stops reading is dropped).
    pub write_timeout: Duration,
}

impl Default for RpcServerOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What the server has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RpcServerCounters {
    pub connections: u64,
    /// Requests handed to the handler.
    pub calls: u64,
    pub completed: u64,
    /// Handler returned [`RpcFailure::Failed`].
    pub failed: u64,
    /// Incomplete or undecodable requests (including [`RpcFailure::Malformed`]).
    pub malformed_requests: u64,
    pub oversized_requests: u64,
    /// Calls whose caller went away or that shutdown cut off.
    pub abandoned: u64,
    /// Connections whose certificate carried no usable node name (closed).
    pub unnamed_peers: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    calls: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    malformed_requests: AtomicU64,
    oversized_requests: AtomicU64,
    abandoned: AtomicU64,
    unnamed_peers: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Shared<H> {
    handler: Arc<H>,
    options: RpcServerOptions,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// A running rpc server. Dropping it cancels every call; [`RpcServer::shutdown`] also waits.
pub struct RpcServer {
    counters: Arc<Counters>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl RpcServer {
    /// Serves every connection arriving on `connections` with `handler`.
    pub fn spawn<H: RpcHandler>(
        connections: super::RpcConnections,
        handler: Arc<H>,
        options: RpcServerOptions,
    ) -> Self {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            handler,
            options,
            counters: counters.clone(),
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        });
        tasks.spawn(accept_connections(shared, connections));
        Self {
            counters,
            cancel,
            tasks,
        }
    }

    pub fn counters(&self) -> RpcServerCounters {
        snapshot(&self.counters)
    }

    /// Cancels every call, closes the served connections and waits for every task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn snapshot(c: &Counters) -> RpcServerCounters {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    RpcServerCounters {
        connections: get(&c.connections),
        calls: get(&c.calls),
        completed: get(&c.completed),
        failed: get(&c.failed),
        malformed_requests: get(&c.malformed_requests),
        oversized_requests: get(&c.oversized_requests),
        abandoned: get(&c.abandoned),
        unnamed_peers: get(&c.unnamed_peers),
    }
}

async fn accept_connections<H: RpcHandler>(
    shared: Arc<Shared<H>>,
    mut connections: mpsc::Receiver<quinn::Connection>,
) {
    loop {
        // Cancel-safe: mpsc::Receiver::recv loses nothing when dropped.
        let conn = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            conn = connections.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
        };
        bump(&shared.counters.connections);
        shared.tasks.spawn(serve_connection(shared.clone(), conn));
    }
}

async fn serve_connection<H: RpcHandler>(shared: Arc<Shared<H>>, conn: quinn::Connection) {
    let Some(peer) = peer_node_name(&conn) else {
        bump(&shared.counters.unnamed_peers);
        warn!(peer = %conn.remote_address(), "rpc peer certificate carries no node name; closing");
        conn.close(RESET_MALFORMED.into(), b"no node name in certificate");
        return;
    };
    let peer: Arc<str> = peer.into();
    loop {
        // Cancel-safe: accept_bi loses no stream when dropped.
        let (send, recv) = tokio::select! {
            _ = shared.cancel.cancelled() => {
                conn.close(RESET_CANCELLED.into(), b"shutting down");
                break;
            }
            stream = conn.accept_bi() => match stream {
                Ok(pair) => pair,
                Err(error) => {
                    debug!(%peer, %error, "rpc connection ended");
                    break;
                }
            },
        };
        shared
            .tasks
            .spawn(serve_stream(shared.clone(), peer.clone(), send, recv));
    }
}

async fn serve_stream<H: RpcHandler>(
    shared: Arc<Shared<H>>,
    peer: Arc<str>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let counters = &shared.counters;
    let options = shared.options;
    let mut writer = ResponseWriter::new(send, options.write_timeout);
    let read = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        read = tokio::time::timeout(
            options.request_timeout,
            read_opening(&mut recv, options.max_request_bytes),
        ) => read,
    };
    let (kind, request, rest) = match read {
        Ok(Ok((kind, request, rest))) => (kind, request, rest),
        Ok(Err(RESET_TOO_LARGE)) => {
            bump(&counters.oversized_requests);
            debug!(%peer, limit = options.max_request_bytes, "rpc request over the limit; refused");
            let _ = recv.stop(RESET_TOO_LARGE.into());
            writer.reset(RESET_TOO_LARGE);
            return;
        }
        Ok(Err(_)) | Err(_) => {
            bump(&counters.malformed_requests);
            debug!(%peer, "malformed or incomplete rpc request; dropped");
            let _ = recv.stop(RESET_MALFORMED.into());
            writer.reset(RESET_MALFORMED);
            return;
        }
    };
    bump(&counters.calls);
    let stopped = writer.send.stopped();
    let handled = async {
        match kind {
            FrameKind::Session => {
                let input = RequestStream { recv, buf: rest };
                shared
                    .handler
                    .session(&peer, request, input, &mut writer)
                    .await
            }
            _ => shared.handler.call(&peer, request, &mut writer).await,
        }
    };
    // Cancel-safe: whichever branch loses is dropped, and an unfinished writer resets the stream.
    let outcome = tokio::select! {
        outcome = handled => Some(outcome),
        _ = stopped => None,
        _ = shared.cancel.cancelled() => None,
    };
    match outcome {
        Some(Ok(())) => {
            bump(&counters.completed);
            writer.finish();
        }
        Some(Err(RpcFailure::Failed(message))) => {
            bump(&counters.failed);
            let mut bytes = message.into_bytes();
            bytes.truncate(MAX_CHUNK_BYTES.min(64 * 1024));
            if writer.write_frame(FrameKind::Error, &bytes).await.is_ok() {
                writer.finish();
            }
        }
        Some(Err(RpcFailure::Malformed(detail))) => {
            bump(&counters.malformed_requests);
            debug!(%peer, %detail, "handler refused a malformed rpc request");
            writer.reset(RESET_MALFORMED);
        }
        Some(Err(RpcFailure::CallerGone)) | None => {
            bump(&counters.abandoned);
            writer.reset(RESET_CANCELLED);
        }
    }
}

/// Reads the frame a stream opens with: a request (the stream must end right after it) or a
/// session (what follows is the caller's input). `Err` carries the reset code.
async fn read_opening(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<(FrameKind, Vec<u8>, Vec<u8>), u32> {
    let mut buf = Vec::new();
    let (kind, payload, rest) = loop {
        match wire::opening(&buf, limit) {
            wire::Opening::Frame {
                kind,
                payload,
                rest,
            } => break (kind, payload, rest),
            wire::Opening::TooLarge => return Err(RESET_TOO_LARGE),
            wire::Opening::Malformed => return Err(RESET_MALFORMED),
            wire::Opening::Incomplete => {}
        }
        match recv.read_chunk(MAX_CHUNK_BYTES, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) | Err(_) => return Err(RESET_MALFORMED),
        }
    };
    if kind == FrameKind::Request {
        // Exactly one frame, then the end of the stream.
        if !rest.is_empty() {
            return Err(RESET_MALFORMED);
        }
        match recv.read_chunk(1, true).await {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return Err(RESET_MALFORMED),
        }
    }
    Ok((kind, payload, rest))
}

/// The caller's input to a session, in the chunks it sent. Cancel-safe.
pub struct RequestStream {
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

impl RequestStream {
    /// The next chunk of input; `None` once the caller finished its side. A frame that breaks
    /// the format ends the session as malformed.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RpcFailure> {
        loop {
            if let Some(head) = self.buf.get(..HEADER_BYTES) {
                let mut bytes = [0u8; HEADER_BYTES];
                bytes.copy_from_slice(head);
                let (kind, len) = wire::parse_header(bytes);
                if kind != Some(FrameKind::Data) || len > MAX_CHUNK_BYTES {
                    return Err(RpcFailure::Malformed("bad session input frame".into()));
                }
                if self.buf.len() >= HEADER_BYTES + len {
                    let payload = self.buf[HEADER_BYTES..HEADER_BYTES + len].to_vec();
                    self.buf.drain(..HEADER_BYTES + len);
                    return Ok(Some(payload));
                }
            }
            // Cancel-safe: read_chunk yields data only when it completes.
            match self.recv.read_chunk(MAX_CHUNK_BYTES, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(RpcFailure::Malformed("input ends inside a frame".into()));
                }
                Err(_) => return Err(RpcFailure::CallerGone),
            }
        }
    }
}

/// Where a handler writes its answer. Chunks arrive at the caller in order; the answer ends when
/// the handler returns `Ok`. Unless the handler finished, dropping the writer resets the stream.
pub struct ResponseWriter {
    send: quinn::SendStream,
    write_timeout: Duration,
    done: bool,
    bytes_sent: u64,
}

impl ResponseWriter {
    fn new(send: quinn::SendStream, write_timeout: Duration) -> Self {
        Self {
            send,
            write_timeout,
            done: false,
            bytes_sent: 0,
        }
    }

    /// Sends one chunk (split into frames of at most [`MAX_CHUNK_BYTES`]). Fails with
    /// [`RpcFailure::CallerGone`] if the caller stopped reading or stalls beyond the write timeout.
    pub async fn send(&mut self, chunk: &[u8]) -> Result<(), RpcFailure> {
        for part in chunk.chunks(MAX_CHUNK_BYTES) {
            self.write_frame(FrameKind::Data, part).await?;
        }
        Ok(())
    }

    /// Payload bytes sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    async fn write_frame(&mut self, kind: FrameKind, payload: &[u8]) -> Result<(), RpcFailure> {
        let head = wire::header(kind, payload.len());
        let send = &mut self.send;
        let write = async {
            send.write_all(&head).await?;
            send.write_all(payload).await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                self.bytes_sent += payload.len() as u64;
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(RpcFailure::CallerGone),
        }
    }

    fn finish(&mut self) {
        self.done = true;
        let _ = self.send.finish();
    }

    fn reset(&mut self, code: u32) {
        self.done = true;
        let _ = self.send.reset(code.into());
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        // quinn finishes a dropped stream: an abandoned answer must look abandoned instead.
        if !self.done {
            let _ = self.send.reset(RESET_CANCELLED.into());
        }
    }
}

/// The node name in the peer's certificate (its common name), if the peer presented one.
pub(crate) fn peer_node_name(conn: &quinn::Connection) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    crate::pki::validate_node_name(name).ok()?;
    Some(name.to_string())
}

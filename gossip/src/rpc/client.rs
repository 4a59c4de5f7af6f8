//! The calling side: [`RpcClient`] keeps one connection per peer address (dialled with this
//! node's certificate on the rpc ALPN, re-dialled once closed) and runs each call on its own
//! bidirectional stream. Calls must be idempotent: a call that fails because a reused connection
//! turned out dead is retried once on a fresh connection.
//!
//! Cancel-safety: every call owns its streams; dropping a call future drops them (the request is
//! then incomplete and the server discards it; an unread response is stopped). Reading frames
//! buffers inside the reader, so [`ResponseStream::next_chunk`] may be used in `select!`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tracing::debug;

use super::wire::{self, FrameKind, HEADER_BYTES, MAX_CHUNK_BYTES, STOP_NOT_INTERESTED};
use super::{RpcError, RpcOptions};
use crate::transport::QuicTransport;

/// Largest error message frame a client accepts.
const MAX_ERROR_BYTES: usize = 64 * 1024;

type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Calls other nodes over rpc. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    transport: QuicTransport,
    options: RpcOptions,
    /// One slot per peer address; its async lock makes concurrent callers share one dial.
    peers: Mutex<HashMap<SocketAddr, Slot>>,
}

impl RpcClient {
    /// A client dialling from `transport`'s endpoint (what [`crate::GossipHandle::rpc_client`]
    /// returns).
    pub fn new(transport: QuicTransport, options: RpcOptions) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                transport,
                options,
                peers: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn options(&self) -> RpcOptions {
        self.inner.options
    }

    /// Sends `request` to the node at `addr` and returns its whole response, bounded by the
    /// client's [`RpcOptions`].
    pub async fn call(&self, addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        self.call_with(addr, request, self.inner.options).await
    }

    /// [`RpcClient::call`] with other limits for this one call.
    pub async fn call_with(
        &self,
        addr: SocketAddr,
        request: &[u8],
        options: RpcOptions,
    ) -> Result<Vec<u8>, RpcError> {
        let deadline = Instant::now() + options.call_timeout;
        let body = wire::encode_request(request);
        let limit = options.max_response_bytes;
        let attempt = async {
            let (conn, reused) = self.connection(addr).await?;
            match exchange(&conn, addr, &body, limit).await {
                Err(RpcError::Lost { detail, .. }) if reused => {
                    debug!(peer = %addr, %detail, "rpc connection was dead; re-dialling once");
                    self.forget(addr, &conn);
                    let (conn, _) = self.connection(addr).await?;
                    exchange(&conn, addr, &body, limit).await
                }
                result => result,
            }
        };
        tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or(Err(RpcError::Timeout {
                addr,
                after: options.call_timeout,
            }))
    }

    /// Sends `request` and returns the response as a stream of chunks, for answers without a
    /// natural end (`logs -f`). Only dialling and sending are bounded by `call_timeout`; drop
    /// the stream to tell the server to stop.
    pub async fn stream(
        &self,
        addr: SocketAddr,
        request: &[u8],
    ) -> Result<ResponseStream, RpcError> {
        let after = self.inner.options.call_timeout;
        let body = wire::encode_request(request);
        let reader = tokio::time::timeout(after, self.open(addr, &body))
            .await
            .unwrap_or(Err(RpcError::Timeout { addr, after }))?;
        Ok(ResponseStream { reader })
    }

    /// Opens a session: sends `request`, then the caller's input through the returned
    /// [`RequestSink`] while the answer streams back (`exec`). Only dialling and sending the
    /// request are bounded by `call_timeout`. Dropping the sink ends the input; dropping the
    /// stream tells the server to stop.
    pub async fn session(
        &self,
        addr: SocketAddr,
        request: &[u8],
    ) -> Result<(RequestSink, ResponseStream), RpcError> {
        let after = self.inner.options.call_timeout;
        let body = wire::encode_frame(FrameKind::Session, request);
        let opened = async {
            let (conn, reused) = self.connection(addr).await?;
            match open_session(&conn, addr, &body).await {
                Err(RpcError::Lost { detail, .. }) if reused => {
                    debug!(peer = %addr, %detail, "rpc connection was dead; re-dialling once");
                    self.forget(addr, &conn);
                    let (conn, _) = self.connection(addr).await?;
                    open_session(&conn, addr, &body).await
                }
                result => result,
            }
        };
        tokio::time::timeout(after, opened)
            .await
            .unwrap_or(Err(RpcError::Timeout { addr, after }))
    }

    /// Opens a stream and sends the request; retries once on a fresh connection if a reused one
    /// turns out to be dead.
    async fn open(&self, addr: SocketAddr, body: &[u8]) -> Result<FrameReader, RpcError> {
        let (conn, reused) = self.connection(addr).await?;
        match send_request(&conn, addr, body).await {
            Err(RpcError::Lost { detail, .. }) if reused => {
                debug!(peer = %addr, %detail, "rpc connection was dead; re-dialling once");
                self.forget(addr, &conn);
                let (conn, _) = self.connection(addr).await?;
                send_request(&conn, addr, body).await
            }
            result => result,
        }
    }

    /// The live connection to `addr`, dialling if there is none; `true` if it was reused.
    async fn connection(&self, addr: SocketAddr) -> Result<(quinn::Connection, bool), RpcError> {
        let slot = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr)
            .or_default()
            .clone();
        // Cancel-safe: a dropped dial leaves the slot empty for the next caller.
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok((conn.clone(), true));
        }
        *guard = None;
        let conn = self
            .inner
            .transport
            .connect_rpc(addr)
            .await
            .map_err(|e| RpcError::Connect {
                addr,
                detail: e.to_string(),
            })?;
        *guard = Some(conn.clone());
        Ok((conn, false))
    }

    fn forget(&self, addr: SocketAddr, dead: &quinn::Connection) {
        let slot = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .cloned();
        if let Some(slot) = slot
            && let Ok(mut guard) = slot.try_lock()
            && guard
                .as_ref()
                .is_some_and(|c| c.stable_id() == dead.stable_id())
        {
            *guard = None;
        }
        dead.close(0u32.into(), b"dead");
    }
}

async fn exchange(
    conn: &quinn::Connection,
    addr: SocketAddr,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, RpcError> {
    send_request(conn, addr, body).await?.read_all(limit).await
}

async fn send_request(
    conn: &quinn::Connection,
    addr: SocketAddr,
    body: &[u8],
) -> Result<FrameReader, RpcError> {
    let lost = |detail: String| RpcError::Lost { addr, detail };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(e.to_string()))?;
    match send.write_all(body).await {
        Ok(()) => {}
        Err(quinn::WriteError::Stopped(code)) => {
            return Err(RpcError::Refused {
                addr,
                reason: wire::reset_reason(code),
            });
        }
        Err(e) => return Err(lost(e.to_string())),
    }
    send.finish().map_err(|e| lost(e.to_string()))?;
    Ok(FrameReader {
        addr,
        recv,
        _send: Some(send),
        buf: Vec::new(),
    })
}

async fn open_session(
    conn: &quinn::Connection,
    addr: SocketAddr,
    body: &[u8],
) -> Result<(RequestSink, ResponseStream), RpcError> {
    let lost = |detail: String| RpcError::Lost { addr, detail };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(e.to_string()))?;
    match send.write_all(body).await {
        Ok(()) => {}
        Err(quinn::WriteError::Stopped(code)) => {
            return Err(RpcError::Refused {
                addr,
                reason: wire::reset_reason(code),
            });
        }
        Err(e) => return Err(lost(e.to_string())),
    }
    let reader = FrameReader {
        addr,
        recv,
        _send: None,
        buf: Vec::new(),
    };
    Ok((RequestSink { addr, send }, ResponseStream { reader }))
}

/// The caller's input to a session. Dropping it (or [`RequestSink::finish`]) ends the input.
pub struct RequestSink {
    addr: SocketAddr,
    send: quinn::SendStream,
}

impl RequestSink {
    /// Sends one chunk of input (split into frames of at most [`MAX_CHUNK_BYTES`]).
    pub async fn send(&mut self, chunk: &[u8]) -> Result<(), RpcError> {
        for part in chunk.chunks(MAX_CHUNK_BYTES) {
            let frame = wire::encode_frame(FrameKind::Data, part);
            if let Err(e) = self.send.write_all(&frame).await {
                return Err(RpcError::Lost {
                    addr: self.addr,
                    detail: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Ends the input.
    pub fn finish(mut self) {
        let _ = self.send.finish();
    }
}

/// The chunks of a streamed response, in order. Dropping it stops the server's handler.
pub struct ResponseStream {
    reader: FrameReader,
}

impl ResponseStream {
    /// The next chunk, or `None` once the server ended the response. Cancel-safe.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RpcError> {
        match self.reader.next().await? {
            Some(Frame::Data(bytes)) => Ok(Some(bytes)),
            Some(Frame::Error(message)) => Err(RpcError::Remote {
                addr: self.reader.addr,
                message,
            }),
            None => Ok(None),
        }
    }

    /// The address of the node answering.
    pub fn peer(&self) -> SocketAddr {
        self.reader.addr
    }
}

enum Frame {
    Data(Vec<u8>),
    Error(String),
}

/// Reads response frames; partial frames stay in `buf`, so `next` is cancel-safe.
struct FrameReader {
    addr: SocketAddr,
    recv: quinn::RecvStream,
    /// Kept so the stream is not finished twice nor reset early; already finished (`None` for
    /// a session, whose sending half is the caller's [`RequestSink`]).
    _send: Option<quinn::SendStream>,
    buf: Vec<u8>,
}

impl FrameReader {
    async fn read_all(&mut self, limit: usize) -> Result<Vec<u8>, RpcError> {
        let mut out = Vec::new();
        loop {
            match self.next().await? {
                Some(Frame::Data(bytes)) => {
                    if out.len() + bytes.len() > limit {
                        let _ = self.recv.stop(STOP_NOT_INTERESTED.into());
                        return Err(RpcError::ResponseTooLarge {
                            addr: self.addr,
                            limit,
                        });
                    }
                    out.extend_from_slice(&bytes);
                }
                Some(Frame::Error(message)) => {
                    return Err(RpcError::Remote {
                        addr: self.addr,
                        message,
                    });
                }
                None => return Ok(out),
            }
        }
    }

    async fn next(&mut self) -> Result<Option<Frame>, RpcError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            // Cancel-safe: read_chunk yields data only when it completes.
            match self.recv.read_chunk(MAX_CHUNK_BYTES, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(self.protocol("the response ends inside a frame")),
                Err(quinn::ReadError::Reset(code)) => {
                    return Err(RpcError::Refused {
                        addr: self.addr,
                        reason: wire::reset_reason(code),
                    });
                }
                Err(e) => {
                    return Err(RpcError::Lost {
                        addr: self.addr,
                        detail: e.to_string(),
                    });
                }
            }
        }
    }

    /// Takes one complete frame off the front of the buffer, if there is one.
    fn take_frame(&mut self) -> Result<Option<Frame>, RpcError> {
        let Some(head) = self.buf.get(..HEADER_BYTES) else {
            return Ok(None);
        };
        let mut head_bytes = [0u8; HEADER_BYTES];
        head_bytes.copy_from_slice(head);
        let (kind, len) = wire::parse_header(head_bytes);
        let limit = match kind {
            Some(FrameKind::Data) => MAX_CHUNK_BYTES,
            Some(FrameKind::Error) => MAX_ERROR_BYTES,
            _ => return Err(self.protocol("unexpected frame kind")),
        };
        if len > limit {
            return Err(self.protocol("frame longer than the limit"));
        }
        if self.buf.len() < HEADER_BYTES + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self
            .buf
            .drain(..HEADER_BYTES + len)
            .skip(HEADER_BYTES)
            .collect();
        Ok(Some(match kind {
            Some(FrameKind::Error) => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
            _ => Frame::Data(payload),
        }))
    }

    fn protocol(&self, detail: &str) -> RpcError {
        RpcError::Protocol {
            addr: self.addr,
            detail: detail.to_string(),
        }
    }
}

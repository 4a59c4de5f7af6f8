//! Inbound side: the accept loop, per-ALPN admission (gossip and rpc need a client certificate
//! from the cluster CA, join needs none and reaches only the join handler), and the reader that
//! turns each uni stream of a gossip connection into one chitchat message.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use chitchat::{ChitchatMessage, Deserializable};
use tracing::{debug, warn};

use super::stats::{add, bump};
use super::{Inner, MAX_FRAME_BYTES, count_rejected};
use crate::tls::{ALPN_GOSSIP, ALPN_JOIN, ALPN_RPC, negotiated_alpn, peer_is_authenticated};

/// QUIC application close codes used by this endpoint.
pub(crate) const CLOSE_UNAUTHENTICATED: u32 = 0x10;
pub(crate) const CLOSE_NOT_SERVED: u32 = 0x11;
/// The peer's key was revoked (`skiff node remove`).
pub(crate) const CLOSE_REVOKED: u32 = 0x12;
/// Stream stop code for a frame over the limit.
const STOP_TOO_LARGE: u32 = 0x20;

pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    loop {
        // Cancel-safe: Endpoint::accept may be dropped before completion.
        let incoming = tokio::select! {
            _ = inner.cancel.cancelled() => break,
            incoming = inner.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let inner2 = inner.clone();
        inner.tasks.spawn(async move {
            tokio::select! {
                _ = inner2.cancel.cancelled() => {}
                _ = handle_incoming(inner2.clone(), incoming) => {}
            }
        });
    }
}

async fn handle_incoming(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(inner.timings.dial_timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            bump(&inner.counters.failed_handshakes);
            if let Some(clock) =
                clock_failure(error_code(&error), &error.to_string(), SystemTime::now())
            {
                warn!(peer = %remote, %error, "{clock}");
            } else if is_tls_failure(&error) {
                warn!(peer = %remote, %error, "refused a peer whose certificate is not from this cluster's CA");
            } else {
                debug!(peer = %remote, %error, "inbound handshake failed");
            }
            return;
        }
        Err(_) => {
            bump(&inner.counters.failed_handshakes);
            return;
        }
    };
    if inner.refuse_if_revoked(&conn) {
        return;
    }
    inner.track_connection(&conn);
    let alpn = negotiated_alpn(&conn);
    let authenticated = peer_is_authenticated(&conn);
    match alpn.as_deref() {
        Some(a) if a == ALPN_GOSSIP && authenticated => {
            inner.share_gossip_connection(&conn);
            read_gossip(inner, conn).await
        }
        Some(a) if a == ALPN_RPC && authenticated => match &inner.rpc_sink {
            Some(sink) => {
                if sink.try_send(conn.clone()).is_err() {
                    conn.close(CLOSE_NOT_SERVED.into(), b"rpc busy");
                }
            }
            None => conn.close(CLOSE_NOT_SERVED.into(), b"rpc not served"),
        },
        // The issuer decides; other nodes relay to the issuer they know from gossip.
        Some(a) if a == ALPN_JOIN => {
            let forwarder = crate::join::JoinForwarder {
                endpoint: &inner.endpoint,
                client: inner.join_client.clone(),
                issuer: *inner.join_issuer.lock().unwrap_or_else(|p| p.into_inner()),
            };
            let server = crate::join::JoinServer {
                identity: &inner.identity,
                forwarder,
                limiter: &inner.join_limiter,
                members: &inner.join_members,
            };
            crate::join::serve_join(conn, server).await
        }
        _ => {
            count_rejected(&inner);
            warn!(peer = %remote, "refusing connection without a cluster client certificate");
            conn.close(
                CLOSE_UNAUTHENTICATED.into(),
                b"client certificate from the cluster CA required",
            );
        }
    }
}

/// Serves a gossip connection: its uni streams (chitchat messages) and its datagrams (the
/// prober's), until it closes.
pub(crate) async fn read_gossip(inner: Arc<Inner>, conn: quinn::Connection) {
    tokio::join!(
        read_streams(inner.clone(), conn.clone()),
        read_datagrams(inner, conn)
    );
}

/// Hands every datagram of `conn` to the prober's queue (dropped, counted, when full).
async fn read_datagrams(inner: Arc<Inner>, conn: quinn::Connection) {
    let from = conn.remote_address();
    while let Ok(datagram) = conn.read_datagram().await {
        bump(&inner.counters.datagrams_received);
        if inner.probe_tx.try_send((from, datagram.to_vec())).is_err() {
            bump(&inner.counters.datagrams_dropped);
        }
    }
}

/// Turns every uni stream the peer opens on `conn` into a message (both ends of a connection
/// send gossip: see [`Inner::share_gossip_connection`]).
async fn read_streams(inner: Arc<Inner>, conn: quinn::Connection) {
    let from = conn.remote_address();
    loop {
        let stream = match conn.accept_uni().await {
            Ok(stream) => stream,
            Err(error) => {
                debug!(peer = %from, %error, "gossip connection ended");
                return;
            }
        };
        // One task per stream so a stalled stream cannot hold up the others; quinn's stream
        // limit bounds how many exist at once.
        let inner2 = inner.clone();
        inner.tasks.spawn(async move {
            tokio::select! {
                _ = inner2.cancel.cancelled() => {}
                _ = read_frame(&inner2, from, stream) => {}
            }
        });
    }
}

async fn read_frame(inner: &Inner, from: SocketAddr, mut stream: quinn::RecvStream) {
    let read = tokio::time::timeout(
        inner.timings.send_timeout,
        stream.read_to_end(MAX_FRAME_BYTES),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            bump(&inner.counters.oversized_frames);
            let _ = stream.stop(STOP_TOO_LARGE.into());
            return;
        }
        Ok(Err(_)) | Err(_) => {
            bump(&inner.counters.malformed_frames);
            return;
        }
    };
    let Some(message) = super::codec::decode(&bytes).and_then(|raw| decode(&raw)) else {
        bump(&inner.counters.malformed_frames);
        debug!(peer = %from, len = bytes.len(), "dropping malformed gossip frame");
        return;
    };
    bump(&inner.counters.frames_received);
    add(&inner.counters.bytes_received, bytes.len());
    if inner.inbound_tx.try_send((from, message)).is_err() {
        bump(&inner.counters.dropped_inbound_full);
    }
}

/// Decodes exactly one chitchat message; trailing bytes or a decoder panic count as malformed.
pub(crate) fn decode(bytes: &[u8]) -> Option<ChitchatMessage> {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut cursor = bytes;
        let message = ChitchatMessage::deserialize(&mut cursor).ok()?;
        cursor.is_empty().then_some(message)
    }));
    result.ok().flatten()
}

/// TLS alert `certificate_expired` (rustls sends it for expired and not-yet-valid
/// certificates) as a QUIC crypto error code.
const ALERT_CERTIFICATE_EXPIRED: u64 = 0x100 + 45;

/// A clear message for a handshake that failed on certificate validity, which is a clock
/// problem here (certificates are valid 2024-2124): this node's clock if it refused the peer,
/// the peer's (or this node's) if the peer refused us. `None` for any other failure.
pub(crate) fn clock_failure(code: Option<u64>, text: &str, now: SystemTime) -> Option<String> {
    let clock = humantime::format_rfc3339_seconds(now);
    if text.contains("certificate not valid yet") {
        Some(format!(
            "certificate not valid yet (node clock {clock}): this node's clock is behind the \
             cluster's certificates; set it (NTP or RTC)"
        ))
    } else if text.contains("certificate expired") {
        Some(format!(
            "certificate expired (node clock {clock}): this node's clock is past the cluster's \
             certificates; check it"
        ))
    } else if code == Some(ALERT_CERTIFICATE_EXPIRED) {
        Some(format!(
            "the peer refused this node's certificate as expired or not valid yet (node clock \
             {clock}): the peer's clock or this node's is wrong"
        ))
    } else {
        None
    }
}

/// The QUIC error code of a failed connection, if it has one.
pub(crate) fn error_code(error: &quinn::ConnectionError) -> Option<u64> {
    match error {
        quinn::ConnectionError::TransportError(e) => Some(u64::from(e.code)),
        quinn::ConnectionError::ConnectionClosed(close) => Some(u64::from(close.error_code)),
        _ => None,
    }
}

/// True if a connection failed on TLS (a QUIC crypto error: certificate or handshake refused).
pub(crate) fn is_tls_failure(error: &quinn::ConnectionError) -> bool {
    let code = match error {
        quinn::ConnectionError::TransportError(e) => u64::from(e.code),
        quinn::ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
        _ => return false,
    };
    (0x100..0x200).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn certificate_validity_failures_read_as_clock_problems() {
        let now = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let local = "the cryptographic handshake failed: error 42: invalid peer certificate: \
                     certificate not valid yet: verification time 1600000000 (UNIX), but \
                     certificate is not valid before 1704067200 (104067200 seconds in future)";
        let msg = clock_failure(Some(0x12a), local, now).expect("clock");
        assert!(
            msg.starts_with("certificate not valid yet (node clock 2020-09-13T12:26:40Z)"),
            "{msg}"
        );
        let expired = clock_failure(
            None,
            "invalid peer certificate: certificate expired: x",
            now,
        )
        .expect("clock");
        assert!(
            expired.starts_with("certificate expired (node clock 2020-"),
            "{expired}"
        );
        let remote = clock_failure(Some(0x12d), "closed by peer", now).expect("clock");
        assert!(
            remote.contains("peer refused this node's certificate"),
            "{remote}"
        );
        assert_eq!(
            clock_failure(Some(0x130), "invalid peer certificate: UnknownIssuer", now),
            None
        );
    }
}

//! Outbound side: one bounded queue and one task per peer address. The task sends on the newest
//! gossip connection with that peer (its own dial or the one the peer dialled us on), dials
//! lazily when there is none, one uni stream per message, drops and re-dials a broken or
//! stalled connection, backs off after a failed dial, and exits after a quiet period (leaving
//! the connection to its idle timeout: the prober may be using it). Prober datagrams to a peer
//! with no connection start a dial here too ([`dial_in_background`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::stats::{add, bump};
use super::{Frame, Inner};
use crate::pki::CLUSTER_SERVER_NAME;

/// Queues `frame` for `to` without waiting; a full queue drops the frame (counted).
pub(crate) fn enqueue(inner: &Arc<Inner>, to: SocketAddr, frame: Frame) {
    if inner.cancel.is_cancelled() {
        return;
    }
    let mut peers = inner.peers.lock().unwrap_or_else(|p| p.into_inner());
    let frame = match peers.get(&to) {
        Some(tx) => match tx.try_send(frame) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&inner.counters.dropped_queue_full);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(frame)) => frame,
        },
        None => frame,
    };
    if inner.peer_tasks.is_closed() {
        return; // shutting down: no new peer tasks
    }
    let (tx, rx) = mpsc::channel(inner.timings.peer_queue.max(1));
    // A fresh channel always has room for one frame.
    let _ = tx.try_send(frame);
    peers.insert(to, tx);
    drop(peers);
    inner.peer_tasks.spawn(run_peer(inner.clone(), to, rx));
}

async fn run_peer(inner: Arc<Inner>, addr: SocketAddr, mut rx: mpsc::Receiver<Frame>) {
    let timings = inner.timings;
    let mut conn: Option<quinn::Connection> = None;
    let mut backoff_until: Option<Instant> = None;
    let mut last_stream: Option<quinn::SendStream> = None;
    loop {
        // Cancel-safe branches: recv loses nothing; the sleep is just a timer.
        let frame = tokio::select! {
            _ = inner.cancel.cancelled() => break,
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break, // senders dropped: queue drained, transport closing
            },
            _ = tokio::time::sleep(timings.peer_idle_exit) => {
                if retire_if_idle(&inner, addr, &mut rx) {
                    break;
                }
                continue;
            }
        };
        if backoff_until.is_some_and(|until| Instant::now() < until) {
            bump(&inner.counters.dropped_unreachable);
            continue;
        }
        if conn.as_ref().is_some_and(|c| c.close_reason().is_some()) {
            conn = None;
        }
        // The newest connection with this peer, whoever dialled it (a restarted peer's new
        // connection replaces the dead one at once).
        if let Some(shared) = inner.shared_gossip_connection(addr) {
            conn = Some(shared);
        }
        let connection = match &conn {
            Some(c) => c.clone(),
            None => match dial(&inner, addr).await {
                Dial::Connected(c) => {
                    backoff_until = None;
                    conn = Some(c.clone());
                    c
                }
                failure => {
                    // A peer refusing our certificate will keep refusing: back off longer.
                    let factor = if matches!(failure, Dial::TlsRefused) {
                        20
                    } else {
                        1
                    };
                    backoff_until = Some(Instant::now() + timings.redial_backoff * factor);
                    bump(&inner.counters.dropped_unreachable);
                    continue;
                }
            },
        };
        let len = frame.len();
        match tokio::time::timeout(timings.send_timeout, write_frame(&connection, &frame)).await {
            Ok(Ok(stream)) => {
                bump(&inner.counters.frames_sent);
                add(&inner.counters.bytes_sent, len);
                last_stream = Some(stream);
            }
            _ => {
                bump(&inner.counters.send_failures);
                debug!(peer = %addr, "gossip send failed; dropping the connection");
                connection.close(1u32.into(), b"send failed");
                conn = None;
            }
        }
    }
    // Graceful close: give the last message a chance to be acknowledged before we go.
    if let Some(stream) = last_stream
        && !inner.cancel.is_cancelled()
    {
        let _ = tokio::time::timeout(timings.send_timeout, stream.stopped()).await;
    }
    // The connection stays shared (the prober's heartbeats may use it); the idle timeout
    // closes it once nothing uses it.
    drop(conn);
}

/// Longest wait between background dials to a peer that stays unreachable.
const MAX_REDIAL_FACTOR: u32 = 16;

/// Starts a dial to `to` unless one is under way or the last ones failed too recently
/// (exponential backoff from the profile's `redial_backoff`).
pub(crate) fn dial_in_background(inner: &Arc<Inner>, to: SocketAddr) {
    if inner.tasks.is_closed() {
        return;
    }
    let now = Instant::now();
    {
        let mut redials = inner.redials.lock().unwrap_or_else(|p| p.into_inner());
        let entry = redials.entry(to).or_insert(super::Redial {
            not_before: now,
            failures: 0,
        });
        if now < entry.not_before {
            return;
        }
        // Under way: no second dial until this one ends (it sets the next time).
        entry.not_before = now + inner.timings.dial_timeout * 2;
    }
    let inner2 = inner.clone();
    inner.tasks.spawn(async move {
        let outcome = tokio::select! {
            _ = inner2.cancel.cancelled() => return,
            outcome = dial(&inner2, to) => outcome,
        };
        let mut redials = inner2.redials.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Dial::Connected(_) => {
                redials.remove(&to);
            }
            _ => {
                let entry = redials.entry(to).or_insert(super::Redial {
                    not_before: Instant::now(),
                    failures: 0,
                });
                entry.failures = entry.failures.saturating_add(1);
                let factor = 1u32 << entry.failures.min(4);
                entry.not_before =
                    Instant::now() + inner2.timings.redial_backoff * factor.min(MAX_REDIAL_FACTOR);
            }
        }
    });
}

/// Removes this peer's queue if it is still empty (under the map lock, so no frame is lost).
fn retire_if_idle(inner: &Inner, addr: SocketAddr, rx: &mut mpsc::Receiver<Frame>) -> bool {
    let mut peers = inner.peers.lock().unwrap_or_else(|p| p.into_inner());
    if !rx.is_empty() {
        return false;
    }
    peers.remove(&addr);
    rx.close();
    true
}

pub(crate) enum Dial {
    Connected(quinn::Connection),
    Unreachable,
    TlsRefused,
}

pub(crate) async fn dial(inner: &Arc<Inner>, addr: SocketAddr) -> Dial {
    let Ok(connecting) =
        inner
            .endpoint
            .connect_with(inner.gossip_client.clone(), addr, CLUSTER_SERVER_NAME)
    else {
        return Dial::Unreachable;
    };
    match tokio::time::timeout(inner.timings.dial_timeout, connecting).await {
        Ok(Ok(conn)) if inner.refuse_if_revoked(&conn) => Dial::TlsRefused,
        Ok(Ok(conn)) => {
            bump(&inner.counters.dials);
            inner.track_connection(&conn);
            inner.share_gossip_connection(&conn);
            // The peer answers on this connection too.
            let (inner2, conn2) = (inner.clone(), conn.clone());
            inner.tasks.spawn(async move {
                tokio::select! {
                    _ = inner2.cancel.cancelled() => {}
                    _ = super::inbound::read_gossip(inner2.clone(), conn2) => {}
                }
            });
            Dial::Connected(conn)
        }
        Ok(Err(error)) if super::inbound::is_tls_failure(&error) => {
            let clock = super::inbound::clock_failure(
                super::inbound::error_code(&error),
                &error.to_string(),
                std::time::SystemTime::now(),
            );
            match clock {
                Some(clock) => warn!(peer = %addr, %error, "{clock}"),
                None => {
                    warn!(peer = %addr, %error, "gossip peer refused: certificate not from this cluster's CA")
                }
            }
            Dial::TlsRefused
        }
        Ok(Err(error)) => {
            debug!(peer = %addr, %error, "gossip dial failed");
            Dial::Unreachable
        }
        Err(_) => {
            debug!(peer = %addr, "gossip dial timed out");
            Dial::Unreachable
        }
    }
}

async fn write_frame(
    conn: &quinn::Connection,
    frame: &[u8],
) -> Result<quinn::SendStream, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = conn.open_uni().await?;
    stream.write_all(frame).await?;
    stream.finish()?;
    Ok(stream)
}

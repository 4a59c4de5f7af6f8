//! Transport counters: everything that is dropped is counted, never fatal.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`super::QuicTransport`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Gossip messages written to a peer stream.
    pub frames_sent: u64,
    /// Payload bytes of those messages.
    pub bytes_sent: u64,
    /// Gossip messages received and decoded.
    pub frames_received: u64,
    pub bytes_received: u64,
    /// Outbound messages dropped because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Outbound messages dropped because the peer could not be reached (dial failed or backoff).
    pub dropped_unreachable: u64,
    /// Outbound stream writes that failed or timed out (the connection is then re-dialled).
    pub send_failures: u64,
    /// Inbound messages dropped because the gossip loop's queue was full.
    pub dropped_inbound_full: u64,
    /// Inbound frames that did not decode as a chitchat message.
    pub malformed_frames: u64,
    /// Inbound frames larger than the frame limit.
    pub oversized_frames: u64,
    /// Inbound connections refused after the handshake (no client certificate, unknown ALPN).
    pub rejected_connections: u64,
    /// Inbound handshakes that failed (e.g. a client certificate from another CA).
    pub failed_handshakes: u64,
    /// Connections closed or refused because the peer's key was revoked (`node remove`).
    pub revoked_peers: u64,
    /// Successful outbound dials.
    pub dials: u64,
    /// UDP bytes sent on every connection of this endpoint so far (QUIC overhead included).
    pub udp_bytes_sent: u64,
    /// Prober datagrams handed to QUIC.
    pub datagrams_sent: u64,
    /// Prober datagrams received (before decoding).
    pub datagrams_received: u64,
    /// Prober datagrams dropped: no connection yet, QUIC refused, or the prober's queue full.
    pub datagrams_dropped: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_unreachable: AtomicU64,
    pub send_failures: AtomicU64,
    pub dropped_inbound_full: AtomicU64,
    pub malformed_frames: AtomicU64,
    pub oversized_frames: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub failed_handshakes: AtomicU64,
    pub revoked_peers: AtomicU64,
    pub dials: AtomicU64,
    pub closed_udp_bytes_sent: AtomicU64,
    pub datagrams_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagrams_dropped: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self, live_udp_bytes_sent: u64) -> TransportCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportCounters {
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            frames_received: get(&self.frames_received),
            bytes_received: get(&self.bytes_received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            send_failures: get(&self.send_failures),
            dropped_inbound_full: get(&self.dropped_inbound_full),
            malformed_frames: get(&self.malformed_frames),
            oversized_frames: get(&self.oversized_frames),
            rejected_connections: get(&self.rejected_connections),
            failed_handshakes: get(&self.failed_handshakes),
            revoked_peers: get(&self.revoked_peers),
            dials: get(&self.dials),
            udp_bytes_sent: get(&self.closed_udp_bytes_sent) + live_udp_bytes_sent,
            datagrams_sent: get(&self.datagrams_sent),
            datagrams_received: get(&self.datagrams_received),
            datagrams_dropped: get(&self.datagrams_dropped),
        }
    }
}

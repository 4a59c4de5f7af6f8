//! Timing presets: LAN (fast failure detection) and WAN (slower, tolerant of lossy links).
//!
//! chitchat's phi is `time since last heartbeat / mean heartbeat interval`, so a node is declared
//! dead after roughly `phi_threshold` mean intervals of silence. Heartbeats reach a peer at most
//! once per gossip round, so detection takes about `phi_threshold * gossip_interval`.

use std::time::Duration;

use chitchat::FailureDetectorConfig;

use crate::tls::QuicTimings;
use crate::transport::TransportTimings;

/// Every timing knob of a gossip node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GossipTimings {
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    /// Heartbeat gaps longer than this are not sampled.
    pub max_heartbeat_interval: Duration,
    /// Prior mean heartbeat interval before samples arrive.
    pub initial_heartbeat_interval: Duration,
    /// How long a dead node's state is kept (and listed as NotReady / Left).
    pub dead_node_grace_period: Duration,
    /// Retention of deleted keys (the single cluster-wide TTL of chitchat).
    pub marked_for_deletion_grace_period: Duration,
    /// Upper bound on waiting for the leave marker to reach live peers.
    pub leave_timeout: Duration,
    pub transport: TransportTimings,
}

/// A named preset or explicit timings.
#[derive(Debug, Clone, PartialEq)]
pub enum GossipProfile {
    /// Same L2 / low latency: 500 ms rounds, dead after ~2-3 s.
    Lan,
    /// Lossy or slow links: 1 s rounds, dead after ~10-15 s.
    Wan,
    Custom(Box<GossipTimings>),
}

impl GossipProfile {
    pub fn timings(&self) -> GossipTimings {
        match self {
            GossipProfile::Lan => GossipTimings {
                gossip_interval: Duration::from_millis(500),
                phi_threshold: 8.0,
                max_heartbeat_interval: Duration::from_secs(3),
                initial_heartbeat_interval: Duration::from_millis(500),
                dead_node_grace_period: Duration::from_secs(3600),
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                leave_timeout: Duration::from_secs(2),
                transport: TransportTimings {
                    quic: QuicTimings {
                        keep_alive: Duration::from_secs(1),
                        idle_timeout: Duration::from_secs(5),
                    },
                    dial_timeout: Duration::from_secs(2),
                    send_timeout: Duration::from_secs(2),
                    redial_backoff: Duration::from_millis(500),
                    peer_idle_exit: Duration::from_secs(30),
                    peer_queue: 64,
                    inbound_queue: 1024,
                },
            },
            GossipProfile::Wan => GossipTimings {
                gossip_interval: Duration::from_secs(1),
                phi_threshold: 10.0,
                max_heartbeat_interval: Duration::from_secs(10),
                initial_heartbeat_interval: Duration::from_secs(1),
                dead_node_grace_period: Duration::from_secs(24 * 3600),
                marked_for_deletion_grace_period: Duration::from_secs(6 * 3600),
                leave_timeout: Duration::from_secs(5),
                transport: TransportTimings {
                    quic: QuicTimings {
                        keep_alive: Duration::from_secs(5),
                        idle_timeout: Duration::from_secs(30),
                    },
                    dial_timeout: Duration::from_secs(10),
                    send_timeout: Duration::from_secs(10),
                    redial_backoff: Duration::from_secs(2),
                    peer_idle_exit: Duration::from_secs(120),
                    peer_queue: 64,
                    inbound_queue: 1024,
                },
            },
            GossipProfile::Custom(timings) => **timings,
        }
    }
}

impl GossipTimings {
    pub(crate) fn failure_detector(&self) -> FailureDetectorConfig {
        FailureDetectorConfig {
            phi_threshold: self.phi_threshold,
            sampling_window_size: 1_000,
            max_interval: self.max_heartbeat_interval,
            initial_interval: self.initial_heartbeat_interval,
            dead_node_grace_period: self.dead_node_grace_period,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rough failure-detection time: phi threshold times the heartbeat interval.
    fn detection_estimate(t: &GossipTimings) -> Duration {
        t.gossip_interval.mul_f64(t.phi_threshold)
    }

    #[test]
    fn lan_detects_within_seconds_and_wan_is_slower_and_gentler() {
        let lan = GossipProfile::Lan.timings();
        let wan = GossipProfile::Wan.timings();
        assert!(detection_estimate(&lan) <= Duration::from_secs(5));
        assert!(detection_estimate(&wan) > detection_estimate(&lan));
        assert!(wan.transport.quic.idle_timeout > lan.transport.quic.idle_timeout);
        // A connection must outlive a few missed keep-alives, and dials must give up before
        // the idle timeout would have closed them anyway.
        for t in [lan, wan] {
            assert!(t.transport.quic.idle_timeout >= 3 * t.transport.quic.keep_alive);
            assert!(t.transport.dial_timeout <= t.transport.quic.idle_timeout);
        }
        let custom = GossipProfile::Custom(Box::new(lan));
        assert_eq!(custom.timings(), lan);
    }
}

//! Timing presets: LAN (fast failure detection) and WAN (slower, tolerant of lossy links).
//!
//! chitchat's phi is `time since last heartbeat / mean heartbeat interval`, so a node is declared
//! dead after roughly `phi_threshold` mean intervals of silence. A node's heartbeat reaches an
//! observer mostly second-hand, in the digests of its 3 gossip partners per round: measured with
//! 20 real agents, the mean interval an observer sees is about 2/3 of a round, and a dead node's
//! last heartbeat keeps spreading for about a round, with liveness re-evaluated once per round.
//! So detection takes about `2 * gossip_interval + phi_threshold * 2/3 * gossip_interval`
//! (20 agents: 500 ms rounds and phi 8 took 3.6 s; 500 ms and phi 6, 2.9 s; 400 ms and phi 8,
//! 3.4 s).
//!
//! Bandwidth is the other side of the same knob: every round a node sends 3 Syns and answers
//! about 3, each carrying the full digest (about 45 bytes per known node before compression), so
//! bytes per second grow with `cluster size / gossip_interval`.

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
    /// Same L2 / low latency: 400 ms rounds, phi 6: dead after ~2.5 s.
    Lan,
    /// Lossy or slow links: 1 s rounds, dead after ~10-15 s.
    Wan,
    Custom(Box<GossipTimings>),
}

impl GossipProfile {
    pub fn timings(&self) -> GossipTimings {
        match self {
            GossipProfile::Lan => GossipTimings {
                gossip_interval: Duration::from_millis(400),
                phi_threshold: 6.0,
                max_heartbeat_interval: Duration::from_secs(3),
                initial_heartbeat_interval: Duration::from_millis(400),
                dead_node_grace_period: Duration::from_secs(3600),
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                leave_timeout: Duration::from_secs(2),
                transport: TransportTimings {
                    // Gossip keeps busy connections alive; a keep-alive PING (and its ACK) on
                    // every idle one was a quarter of the bytes at 20 nodes with 1 s.
                    quic: QuicTimings {
                        keep_alive: Duration::from_secs(4),
                        idle_timeout: Duration::from_secs(12),
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
            // About a minute of heartbeat intervals; each (observer, node) pair holds the window
            // as f64s up front, so 1,000 was 8 KB per pair (2 GB for a 500-node simulation).
            sampling_window_size: 200,
            max_interval: self.max_heartbeat_interval,
            initial_interval: self.initial_heartbeat_interval,
            dead_node_grace_period: self.dead_node_grace_period,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failure-detection time as measured (see the module doc): two rounds plus phi times the
    /// mean heartbeat interval an observer sees, about 2/3 of a round.
    fn detection_estimate(t: &GossipTimings) -> Duration {
        t.gossip_interval * 2 + t.gossip_interval.mul_f64(t.phi_threshold * 2.0 / 3.0)
    }

    #[test]
    fn lan_detects_within_seconds_and_wan_is_slower_and_gentler() {
        let lan = GossipProfile::Lan.timings();
        let wan = GossipProfile::Wan.timings();
        // The LAN target: dead everywhere within 3 s.
        assert!(detection_estimate(&lan) < Duration::from_secs(3));
        // Below phi 5 a few slow rounds under load would flap a live node.
        assert!(lan.phi_threshold >= 5.0 && wan.phi_threshold >= lan.phi_threshold);
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

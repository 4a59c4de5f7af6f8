//! Timing presets: LAN (fast failure detection) and WAN (slower, tolerant of lossy links).
//!
//! Liveness comes from the prober (`crate::prober`): each node heartbeats its 2 observers once
//! a `heartbeat` on the gossip connections (QUIC datagrams); an observer pings a late subject,
//! suspects it when the pings go unanswered, and every node judges it dead once a quorum of its
//! observers agree for `suspicion_min` (or one alone for `suspicion_max`). The silence that
//! makes a verdict is `heartbeat + grace_min + pings * ping_timeout + suspicion_min`: it must
//! outlast a heartbeat period plus a 1 s stall of the subject (SIGSTOP, an SD card), or a live
//! node is declared dead. A killed node's last heartbeat went out between 0 and one period
//! before the kill, so detection takes that silence minus half a period on average.
//!
//! chitchat's own rounds are slow anti-entropy (`gossip_interval`): changes are pushed to the
//! ring neighbours as they happen (`crate::push`), so the rounds only repair what a push
//! missed. Every round costs about 6 digests of the whole cluster per node, so bytes per
//! second at rest are the heartbeats (2 x about 160 B per period, their ACKs included, on
//! the veth) plus `(6 * digest + 840 B) / gossip_interval`. chitchat's phi detector still runs on the rounds,
//! for its own choice of gossip partners and garbage collection only.

use std::time::Duration;

use chitchat::FailureDetectorConfig;

use crate::prober::detector::Timings as ProberTimings;
use crate::tls::QuicTimings;
use crate::transport::TransportTimings;

/// Every timing knob of a gossip node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GossipTimings {
    /// chitchat's rounds: anti-entropy only (changes are pushed as they happen).
    pub gossip_interval: Duration,
    /// Heartbeats, pings and verdicts: the only source of Ready / NotReady.
    pub prober: ProberTimings,
    /// Changes within this window after a push go out together in the next one.
    pub push_coalesce: Duration,
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
    /// Same L2 / low latency: 1.2 s heartbeats, a killed node dead everywhere within 2.4 s.
    Lan,
    /// Lossy or slow links (LTE): 2 s heartbeats, dead within about 4.5 s.
    Wan,
    Custom(Box<GossipTimings>),
}

impl GossipProfile {
    pub fn timings(&self) -> GossipTimings {
        match self {
            GossipProfile::Lan => GossipTimings {
                gossip_interval: Duration::from_secs(120),
                prober: ProberTimings::LAN,
                push_coalesce: Duration::from_millis(50),
                phi_threshold: 8.0,
                max_heartbeat_interval: Duration::from_secs(240),
                initial_heartbeat_interval: Duration::from_secs(40),
                dead_node_grace_period: Duration::from_secs(3600),
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                leave_timeout: Duration::from_secs(2),
                transport: TransportTimings {
                    quic: QuicTimings {
                        keep_alive: Duration::from_secs(4),
                        idle_timeout: Duration::from_secs(12),
                    },
                    // Longer than a round, so anti-entropy finds its connections open.
                    gossip_idle_timeout: Duration::from_secs(300),
                    dial_timeout: Duration::from_secs(2),
                    send_timeout: Duration::from_secs(2),
                    redial_backoff: Duration::from_millis(500),
                    peer_idle_exit: Duration::from_secs(30),
                    peer_queue: 64,
                    inbound_queue: 1024,
                },
            },
            GossipProfile::Wan => GossipTimings {
                gossip_interval: Duration::from_secs(180),
                prober: ProberTimings::WAN,
                push_coalesce: Duration::from_millis(100),
                phi_threshold: 8.0,
                max_heartbeat_interval: Duration::from_secs(360),
                initial_heartbeat_interval: Duration::from_secs(60),
                dead_node_grace_period: Duration::from_secs(24 * 3600),
                marked_for_deletion_grace_period: Duration::from_secs(6 * 3600),
                leave_timeout: Duration::from_secs(5),
                transport: TransportTimings {
                    quic: QuicTimings {
                        keep_alive: Duration::from_secs(5),
                        idle_timeout: Duration::from_secs(30),
                    },
                    gossip_idle_timeout: Duration::from_secs(420),
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

    /// The silence after a subject's last heartbeat that makes it dead everywhere (quorum).
    fn verdict_silence(p: &ProberTimings) -> u64 {
        p.heartbeat + p.grace_min + u64::from(p.pings) * p.ping_timeout + p.suspicion_min
    }

    #[test]
    fn lan_detects_within_seconds_outlasts_a_stall_and_wan_is_gentler() {
        let lan = GossipProfile::Lan.timings();
        let wan = GossipProfile::Wan.timings();
        // The LAN targets: dead everywhere within 3 s (the flood of suspicions adds ms), 2 s
        // on average (the last heartbeat went out half a period before the kill).
        assert!(verdict_silence(&lan.prober) <= 2_600);
        assert!(verdict_silence(&lan.prober) - lan.prober.heartbeat / 2 <= 1_800);
        // A live node stalled for 1 s right before a heartbeat is silent for a period plus
        // 1 s; its heartbeat after the stall must clear the suspicion before the verdict.
        assert!(verdict_silence(&lan.prober) >= lan.prober.heartbeat + 1_000 + 150);
        assert!(verdict_silence(&wan.prober) > verdict_silence(&lan.prober));
        for t in [lan, wan] {
            // A connection must outlive an anti-entropy round.
            assert!(t.transport.gossip_idle_timeout > t.gossip_interval);
            assert!(t.transport.dial_timeout <= t.transport.quic.idle_timeout);
            assert!(t.transport.quic.idle_timeout >= 3 * t.transport.quic.keep_alive);
        }
        let custom = GossipProfile::Custom(Box::new(lan));
        assert_eq!(custom.timings(), lan);
    }
}

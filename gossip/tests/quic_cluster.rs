//! Five real QUIC nodes on 127.0.0.1 (LAN profile): join, converge, measure gossip traffic at
//! rest, kill one and measure how long each survivor takes to list it NotReady, then restart it
//! with a newer generation on the same port and check it is listed once, Ready.
//!
//! Run with `--nocapture` to see the numbers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use skiff_gossip::{GossipHandle, NodeCondition, create_token, join_cluster};
use tokio::time::Instant;

use common::{condition_of, new_cluster, sees_all, spawn_quic, spawn_quic_at, wait_until};

const N: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_failure_detection_and_traffic_at_rest() {
    common::init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..N)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let names: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    let first = new_cluster(dirs[0].path(), &names[0]);
    let mut nodes: Vec<Option<GossipHandle>> = vec![Some(spawn_quic(&first, vec![]).await)];
    let seed: SocketAddr = nodes[0].as_ref().expect("first").advertise_addr();
    let mut identities = vec![first];
    for i in 1..N {
        let token = create_token(dirs[0].path(), Duration::from_secs(600)).expect("token");
        let id = join_cluster(seed, &token, &names[i], dirs[i].path())
            .await
            .expect("join");
        nodes.push(Some(spawn_quic(&id, vec![seed]).await));
        identities.push(id);
    }
    let took = wait_until("5 nodes Ready everywhere", Duration::from_secs(20), || {
        std::future::ready(
            nodes
                .iter()
                .flatten()
                .all(|h| sees_all(h, &names, NodeCondition::Ready)),
        )
    })
    .await;
    eprintln!("converged in {took:?}");

    // Traffic at rest: a measurement window (not a synchronisation wait).
    let window = Duration::from_secs(5);
    let before: Vec<_> = nodes
        .iter()
        .flatten()
        .map(|h| h.transport_counters().expect("quic"))
        .collect();
    tokio::time::sleep(window).await;
    let after: Vec<_> = nodes
        .iter()
        .flatten()
        .map(|h| h.transport_counters().expect("quic"))
        .collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let secs = window.as_secs_f64();
        eprintln!(
            "node n{i} at rest: {:.0} payload bytes/s, {:.0} udp bytes/s, {:.1} msgs/s sent; \
             dropped {} queue-full {} unreachable",
            (a.bytes_sent - b.bytes_sent) as f64 / secs,
            (a.udp_bytes_sent - b.udp_bytes_sent) as f64 / secs,
            (a.frames_sent - b.frames_sent) as f64 / secs,
            a.dropped_queue_full,
            a.dropped_unreachable,
        );
        assert_eq!(a.malformed_frames, 0);
    }

    // Kill the last node abruptly and time how long each survivor takes to list it NotReady.
    let victim = N - 1;
    let victim_addr = nodes[victim].as_ref().expect("victim").advertise_addr();
    let old_generation = nodes[victim].as_ref().expect("victim").generation();
    let killed_at = Instant::now();
    if let Some(handle) = nodes[victim].take() {
        handle.abort();
    }
    let mut detection = [None; N];
    wait_until(
        "victim NotReady on all survivors",
        Duration::from_secs(20),
        || {
            for (i, node) in nodes.iter().enumerate() {
                if let Some(h) = node
                    && detection[i].is_none()
                    && condition_of(&h.nodes().borrow(), &names[victim])
                        == Some(NodeCondition::NotReady)
                {
                    detection[i] = Some(killed_at.elapsed());
                }
            }
            std::future::ready(
                (0..N)
                    .filter(|i| *i != victim)
                    .all(|i| detection[i].is_some()),
            )
        },
    )
    .await;
    let times: Vec<Duration> = detection.iter().flatten().copied().collect();
    eprintln!("time to NotReady after kill, per survivor: {times:?}");
    let worst = times.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_secs(8),
        "failure detection took {worst:?}"
    );
    let survivors: Vec<String> = names[..victim].to_vec();
    wait_until("survivors Ready", Duration::from_secs(10), || {
        std::future::ready(
            nodes
                .iter()
                .flatten()
                .all(|h| sees_all(h, &survivors, NodeCondition::Ready)),
        )
    })
    .await;

    // Restart on the same address with a newer generation: listed once, Ready.
    let restarted_at = Instant::now();
    wait_until("victim port free again", Duration::from_secs(10), || {
        std::future::ready(std::net::UdpSocket::bind(victim_addr).is_ok())
    })
    .await;
    let handle = spawn_quic_at(&identities[victim], vec![seed], victim_addr, None).await;
    assert!(handle.generation() > old_generation);
    let new_generation = handle.generation();
    nodes[victim] = Some(handle);
    wait_until(
        "restarted node Ready everywhere, listed once",
        Duration::from_secs(20),
        || {
            std::future::ready(nodes.iter().flatten().all(|h| {
                let list = h.nodes().borrow().clone();
                let rows: Vec<_> = list.iter().filter(|n| n.name == names[victim]).collect();
                list.len() == N
                    && rows.len() == 1
                    && rows[0].generation == new_generation
                    && rows[0].condition == NodeCondition::Ready
            }))
        },
    )
    .await;
    eprintln!(
        "restarted node Ready everywhere after {:?}",
        restarted_at.elapsed()
    );

    // Graceful leave of one node: others list it Left.
    let leaver = 1;
    let outcome = nodes[leaver].as_ref().expect("leaver").leave().await;
    eprintln!(
        "leave reached {}/{} live peers",
        outcome.reached, outcome.live_peers
    );
    if let Some(handle) = nodes[leaver].take() {
        handle.shutdown().await;
    }
    wait_until("leaver Left everywhere", Duration::from_secs(10), || {
        std::future::ready(nodes.iter().flatten().all(|h| {
            condition_of(&h.nodes().borrow(), &names[leaver]) == Some(NodeCondition::Left)
        }))
    })
    .await;
    for handle in nodes.into_iter().flatten() {
        handle.shutdown().await;
    }
}

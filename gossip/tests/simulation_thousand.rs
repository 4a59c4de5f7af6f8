//! The 1,000-node simulation (issue 13): chitchat's `ChannelTransport` and the prober's
//! in-memory wire under tokio's paused time, every node a real `GossipNode`. A thousand nodes
//! converge; a new key floods all of them within 2 s of simulated time; nodes killed one at a
//! time are each NotReady on every other node within 3 s. (Partition and heal, and a lossy
//! wire, are simulated at 100 nodes in `simulation.rs`: at 1,000 every verdict of a partition
//! floods a thousand nodes and the run takes many minutes.)
//!
//! Seeded like `simulation.rs` (`SKIFF_SIM_SEED=<seed>` replays our choices); about four
//! minutes of one core (this crate and the dependencies its time goes to are built with
//! opt-level 2 in the dev profile for it: see the workspace Cargo.toml). `SKIFF_SIM_NODES=<n>` runs it at another size.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use skiff_gossip::{
    GossipConfig, GossipHandle, GossipNode, GossipProfile, NodeCondition, SimNetwork,
};

use common::ready_metadata;

const NODES: usize = 1_000;
const KILLS: usize = 3;
fn nodes() -> usize {
    std::env::var("SKIFF_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(NODES)
}

fn seed() -> u64 {
    let seed = std::env::var("SKIFF_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("simulation seed: {seed} (replay with SKIFF_SIM_SEED={seed})");
    seed
}

fn addr(i: usize) -> SocketAddr {
    ([198, 18, (i / 200) as u8, (i % 200 + 1) as u8], 7946).into()
}

fn name(i: usize) -> String {
    format!("node-{i:04}")
}

/// How many nodes each running node lists with each condition: (node index, its counts).
fn tallies(nodes: &[Option<GossipHandle>]) -> Vec<(usize, HashMap<NodeCondition, usize>)> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let h = h.as_ref()?;
            let mut counts = HashMap::new();
            for s in h.nodes().borrow().iter() {
                *counts.entry(s.condition).or_default() += 1;
            }
            Some((i, counts))
        })
        .collect()
}

/// Every running node lists `ready` nodes Ready and `not_ready` NotReady.
fn counts(nodes: &[Option<GossipHandle>], ready: usize, not_ready: usize) -> bool {
    tallies(nodes).iter().all(|(_, c)| {
        c.get(&NodeCondition::Ready).copied().unwrap_or(0) == ready
            && c.get(&NodeCondition::NotReady).copied().unwrap_or(0) == not_ready
    })
}

/// Every running node in `observers` lists exactly the nodes of `who` with `condition`.
fn see(
    nodes: &[Option<GossipHandle>],
    observers: impl Fn(usize) -> bool,
    condition: NodeCondition,
    who: &[usize],
) -> bool {
    let names: Vec<String> = who.iter().map(|i| name(*i)).collect();
    nodes.iter().enumerate().all(|(i, h)| {
        let Some(h) = h.as_ref().filter(|_| observers(i)) else {
            return true;
        };
        let rx = h.nodes();
        let list = rx.borrow();
        let with: HashMap<&str, NodeCondition> = list
            .iter()
            .map(|s| (s.name.as_str(), s.condition))
            .collect();
        names
            .iter()
            .all(|n| with.get(n.as_str()) == Some(&condition))
    })
}

/// Whether every running node holds `key` = `value` as written by node `origin`.
async fn everywhere(nodes: &[Option<GossipHandle>], origin: usize, key: &str, value: &str) -> bool {
    for h in nodes.iter().flatten() {
        let keys = h.keys_with_prefix(key).await;
        if !keys
            .iter()
            .any(|(n, _, v)| *n == name(origin) && v == value)
        {
            return false;
        }
    }
    true
}

/// Polls `condition` every 100 ms of simulated time until it holds; panics after `within`.
/// (Each check reads 1,000 node lists: a coarser step than the other simulations' keeps the
/// test's own work small next to the cluster's.)
async fn poll<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_nodes_converge_flood_and_detect() {
    let n = nodes();
    let mut rng = StdRng::seed_from_u64(seed());
    let wall = std::time::Instant::now();
    let transport = SimNetwork::new();
    let mut nodes: Vec<Option<GossipHandle>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut config = GossipConfig::new(name(i), addr(i));
        config.seeds = (0..3)
            .filter(|s| *s != i)
            .map(|s| addr(s).to_string())
            .collect();
        config.profile = GossipProfile::Lan;
        config.generation = Some(1_000);
        config.metadata = ready_metadata();
        let handle = GossipNode::spawn_simulated(config, "skiff-sim-1000", &transport)
            .await
            .expect("spawn simulated node");
        nodes.push(Some(handle));
    }
    let took = poll(
        "every node Ready everywhere",
        Duration::from_secs(300),
        || {
            let t = tallies(&nodes);
            std::future::ready(
                t.iter()
                    .all(|(_, c)| c.get(&NodeCondition::Ready) == Some(&n)),
            )
        },
    )
    .await;
    eprintln!(
        "converged in {took:?} of simulated time (wall {:?})",
        wall.elapsed()
    );

    // Flood: a key set on one node is on all 1,000 within 2 s.
    let origin = rng.random_range(0..n);
    nodes[origin]
        .as_ref()
        .expect("running")
        .set_key("obj/flood", "v1")
        .await
        .expect("set key");
    let flood = poll("the new key on every node", Duration::from_secs(2), || {
        everywhere(&nodes, origin, "obj/flood", "v1")
    })
    .await;
    eprintln!(
        "a new key on all {n} nodes after {flood:?} (wall {:?})",
        wall.elapsed()
    );

    // Detection: nodes killed one at a time are each NotReady on every other node within 3 s.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let killed: Vec<usize> = order[..KILLS].to_vec();
    let mut detections = Vec::new();
    for (k, victim) in killed.iter().enumerate() {
        // At a varied offset from the victim's heartbeats.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_200))).await;
        if let Some(h) = nodes[*victim].take() {
            h.abort();
        }
        let took = poll(
            "a killed node NotReady everywhere",
            Duration::from_secs(3),
            || std::future::ready(counts(&nodes, n - k - 1, k + 1)),
        )
        .await;
        detections.push(took);
    }
    assert!(see(&nodes, |_| true, NodeCondition::NotReady, &killed));
    eprintln!("kill -9 -> NotReady on all others: {detections:?}");
    for h in nodes.into_iter().flatten() {
        h.shutdown().await;
    }
}

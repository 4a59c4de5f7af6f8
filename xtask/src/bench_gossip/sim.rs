//! The in-process half of the gossip benchmark: N skiff gossip nodes on chitchat's
//! `ChannelTransport` under tokio's paused time (LAN profile), through `skiff_gossip`'s public
//! API. All durations are simulated time; bytes are chitchat's messages as serialized
//! (uncompressed, no QUIC overhead: an overestimate of the digests the QUIC transport
//! compresses) plus the prober's datagrams with QUIC's per-packet overhead and ACKs.

use super::{Figures, median};
use anyhow::{Context, Result, bail};
use skiff_gossip::SimNetwork;
use skiff_gossip::{
    GossipConfig, GossipHandle, GossipNode, GossipProfile, NodeCondition, NodeMetadata,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

const CLUSTER: &str = "skiff-bench-sim";
const REPEATS: usize = 3;
/// Bandwidth window: two of chitchat's anti-entropy rounds (the heartbeats cost the same every
/// period; the rounds come every `gossip_interval`).
fn window() -> Duration {
    GossipProfile::Lan.timings().gossip_interval * 2
}
const POLL: Duration = Duration::from_millis(50);

fn addr(i: usize) -> SocketAddr {
    ([198, 18, 2 + (i / 250) as u8, (i % 250 + 1) as u8], 7946).into()
}

fn name(i: usize) -> String {
    format!("sim-{i:03}")
}

async fn spawn(transport: &SimNetwork, i: usize) -> Result<GossipHandle> {
    let mut config = GossipConfig::new(name(i), addr(i));
    config.seeds = (0..3)
        .filter(|s| *s != i)
        .map(|s| addr(s).to_string())
        .collect();
    config.profile = GossipProfile::Lan;
    config.generation = Some(1_000);
    config.metadata = metadata();
    GossipNode::spawn_simulated(config, CLUSTER, transport)
        .await
        .with_context(|| format!("spawn simulated node {i}"))
}

fn metadata() -> NodeMetadata {
    NodeMetadata {
        ready: true,
        agent_version: "bench".into(),
        ..NodeMetadata::default()
    }
}

/// Simulated time until `check` holds, polled every [`POLL`]; fails after `limit`.
async fn until(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("simulation: {what} not reached within {limit:?} of simulated time");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn sees(handle: &GossipHandle, target: &str, condition: NodeCondition) -> bool {
    handle
        .nodes()
        .borrow()
        .iter()
        .any(|s| s.name == target && s.condition == condition)
}

fn all_ready(nodes: &[Option<GossipHandle>]) -> bool {
    let n = nodes.len();
    nodes.iter().flatten().all(|h| {
        let rx = h.nodes();
        let list = rx.borrow();
        list.len() == n && list.iter().all(|s| s.condition == NodeCondition::Ready)
    })
}

/// Runs the simulation for `n` nodes on a paused-time runtime.
pub fn simulate(n: usize) -> Result<Figures> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let real = std::time::Instant::now();
    let figures = runtime.block_on(run(n))?;
    eprintln!(
        "bench gossip: simulation of {n} nodes took {:?} of real time",
        real.elapsed()
    );
    Ok(figures)
}

async fn run(n: usize) -> Result<Figures> {
    let transport = SimNetwork::counting_bytes();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(Some(spawn(&transport, i).await?));
    }
    let took = until(
        "all nodes Ready everywhere",
        Duration::from_secs(300),
        async || all_ready(&nodes),
    )
    .await?;
    eprintln!("bench gossip: {n} simulated nodes converged after {took:?}");

    let counted = || {
        transport
            .bytes_sent()
            .context("the simulated network counts bytes")
    };
    let before = counted()?;
    tokio::time::sleep(window()).await;
    let sent = counted()? - before;
    let bytes_per_s = sent as f64 / window().as_secs_f64() / n as f64;

    let mut keys = Vec::new();
    for rep in 0..REPEATS {
        let origin = rep % n;
        let value = format!("v{rep}");
        nodes[origin]
            .as_ref()
            .context("origin node")?
            .set_key("bench", &value)
            .await?;
        let origin_name = name(origin);
        let took = until("key on every node", Duration::from_secs(60), async || {
            for h in nodes.iter().flatten() {
                let keys = h.keys_with_prefix("bench").await;
                if !keys
                    .iter()
                    .any(|(node, _, v)| *node == origin_name && *v == value)
                {
                    return false;
                }
            }
            true
        })
        .await?;
        keys.push(took.as_secs_f64());
    }

    // A label (node metadata, as `skiff label node` publishes it): pushed at once to live peers.
    let mut labels = Vec::new();
    for rep in 0..REPEATS {
        let origin = rep % n;
        let value = format!("v{rep}");
        let node = nodes[origin].as_ref().context("origin node")?;
        let mut metadata = metadata();
        metadata.labels.insert("bench".into(), value.clone());
        node.set_metadata(&metadata).await?;
        let origin_name = name(origin);
        let took = until("label on every node", Duration::from_secs(60), async || {
            nodes.iter().flatten().all(|h| {
                let rx = h.nodes();
                let list = rx.borrow();
                list.iter().any(|s| {
                    s.name == origin_name && s.metadata.labels.get("bench") == Some(&value)
                })
            })
        })
        .await?;
        labels.push(took.as_secs_f64());
    }

    let mut failures = Vec::new();
    for rep in 0..REPEATS {
        let victim = n - 1 - rep;
        nodes[victim].take().context("victim")?.abort();
        let victim_name = name(victim);
        let took = until(
            "victim NotReady everywhere",
            Duration::from_secs(60),
            async || {
                nodes
                    .iter()
                    .flatten()
                    .all(|h| sees(h, &victim_name, NodeCondition::NotReady))
            },
        )
        .await?;
        failures.push(took.as_secs_f64());
    }
    for h in nodes.into_iter().flatten() {
        h.shutdown().await;
    }
    Ok(Figures {
        join: None,
        key: median(keys),
        tag: median(labels),
        failure: median(failures),
        failure_max: None,
        kills: 0,
        bytes_per_s: Some(bytes_per_s),
    })
}

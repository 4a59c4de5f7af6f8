//! Shared helpers for the gossip integration tests: deadline-bounded waits and node setup.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use skiff_gossip::{
    GossipConfig, GossipDeps, GossipHandle, GossipNode, GossipProfile, NodeCondition, NodeIdentity,
    NodeMetadata, NodeStatus,
};
use tokio::time::Instant;

/// Polls `condition` every `step` until it holds or `within` elapses (then panics with `what`).
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let deadline = start + within;
    loop {
        if condition().await {
            return start.elapsed();
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn ready_metadata() -> NodeMetadata {
    NodeMetadata {
        ready: true,
        agent_version: "test-0.1.0".to_string(),
        ..NodeMetadata::default()
    }
}

pub fn condition_of(list: &[NodeStatus], name: &str) -> Option<NodeCondition> {
    list.iter().find(|n| n.name == name).map(|n| n.condition)
}

/// True if `handle` lists exactly `names`, all with `condition`.
pub fn sees_all(handle: &GossipHandle, names: &[String], condition: NodeCondition) -> bool {
    let list = handle.nodes().borrow().clone();
    names
        .iter()
        .all(|name| condition_of(&list, name) == Some(condition))
}

/// Starts a QUIC gossip node on 127.0.0.1 with a free port.
pub async fn spawn_quic(identity: &NodeIdentity, seeds: Vec<SocketAddr>) -> GossipHandle {
    spawn_quic_at(identity, seeds, "127.0.0.1:0".parse().expect("addr"), None).await
}

pub async fn spawn_quic_at(
    identity: &NodeIdentity,
    seeds: Vec<SocketAddr>,
    listen: SocketAddr,
    generation: Option<u64>,
) -> GossipHandle {
    spawn_quic_with(identity, seeds, listen, generation, GossipProfile::Lan).await
}

pub async fn spawn_quic_with(
    identity: &NodeIdentity,
    seeds: Vec<SocketAddr>,
    listen: SocketAddr,
    generation: Option<u64>,
    profile: GossipProfile,
) -> GossipHandle {
    let mut config = GossipConfig::new(identity.node_name(), listen);
    config.profile = profile;
    config.seeds = seeds.iter().map(ToString::to_string).collect();
    config.metadata = ready_metadata();
    config.generation = generation;
    GossipNode::spawn(
        config,
        GossipDeps {
            identity: identity.clone(),
            rpc_sink: None,
        },
    )
    .await
    .expect("spawn quic gossip node")
}

pub fn new_cluster(dir: &Path, name: &str) -> NodeIdentity {
    NodeIdentity::load_or_create_cluster(dir, name).expect("create cluster")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

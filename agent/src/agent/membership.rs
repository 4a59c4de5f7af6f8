//! Cluster membership for the agent: the node's identity (a new cluster's CA, or a certificate
//! obtained with a join token), and the gossip node that publishes this node's metadata and
//! lists every node.

use crate::config::AgentConfig;
use anyhow::{Context, bail};
use skiff_gossip::{
    Capacity, GossipConfig, GossipDeps, GossipHandle, GossipNode, NodeIdentity, NodeMetadata,
    Token, join_cluster,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// The node's identity: the one in the data dir, else a certificate obtained with `--token`
/// from a `--join` peer, else a new cluster (this node holds its CA).
pub async fn identity(config: &AgentConfig) -> anyhow::Result<NodeIdentity> {
    if let Some(identity) = NodeIdentity::load(&config.data_dir)? {
        if identity.node_name() != config.node_name {
            bail!(
                "data dir {} belongs to node {:?}, not {:?}: use --node-name {} or another --data-dir",
                config.data_dir.display(),
                identity.node_name(),
                config.node_name,
                identity.node_name()
            );
        }
        return Ok(identity);
    }
    if config.join.is_empty() {
        tracing::info!("no --join given: starting a new cluster");
        return Ok(NodeIdentity::load_or_create_cluster(
            &config.data_dir,
            &config.node_name,
        )?);
    }
    let token: Token = config
        .token
        .as_deref()
        .context("--join needs --token (run `skiff token create` on a cluster node)")?
        .parse()
        .context("--token")?;
    let mut last_error = None;
    for peer in &config.join {
        let Some(addr) = resolve(peer) else {
            last_error = Some(anyhow::anyhow!("cannot resolve {peer}"));
            continue;
        };
        match join_cluster(addr, &token, &config.node_name, &config.data_dir).await {
            Ok(identity) => {
                tracing::info!("joined the cluster through {peer}");
                return Ok(identity);
            }
            Err(e) => {
                tracing::warn!("join through {peer}: {e}");
                last_error = Some(e.into());
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no --join peer answered")))
}

fn resolve(peer: &str) -> Option<SocketAddr> {
    peer.to_socket_addrs().ok()?.next()
}

/// The address other nodes dial: `--advertise`, else the listen address, else (listening on
/// every address) the first non-loopback IPv4 address of an interface that is up.
pub fn advertise_addr(config: &AgentConfig) -> SocketAddr {
    if let Some(a) = config.advertise {
        return a;
    }
    if !config.listen.ip().is_unspecified() {
        return config.listen;
    }
    let ip = nix::ifaddrs::getifaddrs()
        .ok()
        .and_then(|addrs| {
            addrs
                .filter(|a| {
                    a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                        && !a
                            .flags
                            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
                })
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .next()
        })
        .unwrap_or(Ipv4Addr::LOCALHOST);
    SocketAddr::new(IpAddr::V4(ip), config.listen.port())
}

/// What this node publishes: capacity, labels, version, readiness.
pub fn metadata(config: &AgentConfig) -> NodeMetadata {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    NodeMetadata {
        capacity: Capacity {
            cpu_millis: cpus * 1000,
            memory_bytes: memory,
            pods: 110,
        },
        labels: config.labels.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        ready: true,
        cordoned: false,
    }
}

/// Starts gossip with the node's identity; the `--join` peers are the seeds. Authenticated rpc
/// connections from other nodes go to `rpc_sink`.
pub async fn start(
    config: &AgentConfig,
    rpc_sink: Option<skiff_gossip::RpcSink>,
) -> anyhow::Result<GossipHandle> {
    let identity = identity(config).await?;
    let mut gossip = GossipConfig::new(config.node_name.clone(), config.listen);
    // A specific listen address (port 0 included) is advertised as bound.
    gossip.advertise_addr = (config.advertise.is_some() || config.listen.ip().is_unspecified())
        .then(|| advertise_addr(config));
    gossip.seeds = config.join.clone();
    gossip.metadata = metadata(config);
    let handle = GossipNode::spawn(gossip, GossipDeps { identity, rpc_sink })
        .await
        .with_context(|| format!("cannot start gossip on {}", config.listen))?;
    tracing::info!(
        "gossip on {} (advertised {})",
        config.listen,
        handle.advertise_addr()
    );
    Ok(handle)
}

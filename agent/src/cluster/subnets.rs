//! Pod subnets: the leader hands each node a distinct /24 of the cluster CIDR; each node
//! persists its own, claims it in gossip (`net/subnet`) and keeps it across restarts.
//!
//! [`allocate`] is the pure rule: a node keeps what it claims (the first claimant by name wins a
//! subnet claimed twice) or what the leader's table already gave it; a node with neither gets the
//! lowest free /24. Every node routes each other node's subnet via that node's address.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};

/// Key under which a node claims the subnet it uses.
pub const CLAIM_KEY: &str = "net/subnet";
/// Key under which the leader publishes the table (JSON map node -> CIDR).
pub const TABLE_KEY: &str = "sched/subnets";
/// Prefix length of a node's pod subnet.
pub const NODE_PREFIX: u8 = 24;

/// The subnet table. `nodes`: every node that should have a subnet; `claims`: what nodes say
/// they use; `previous`: the table as last published. Nodes that cannot get one (the CIDR is
/// full) are left out.
pub fn allocate(
    cidr: Ipv4Net,
    nodes: &BTreeSet<String>,
    claims: &BTreeMap<String, Ipv4Net>,
    previous: &BTreeMap<String, Ipv4Net>,
) -> BTreeMap<String, Ipv4Net> {
    let mut table: BTreeMap<String, Ipv4Net> = BTreeMap::new();
    let mut used: BTreeSet<Ipv4Net> = BTreeSet::new();
    let inside = |net: &Ipv4Net| net.prefix_len() == NODE_PREFIX && cidr.contains(net);
    // Claims first (by node name), then what the table already said.
    for source in [claims, previous] {
        for (node, net) in source {
            if !nodes.contains(node) || table.contains_key(node) || !inside(net) {
                continue;
            }
            if used.insert(*net) {
                table.insert(node.clone(), *net);
            }
        }
    }
    let mut free = cidr
        .subnets(NODE_PREFIX)
        .into_iter()
        .flatten()
        .filter(|net| !used.contains(net));
    for node in nodes {
        if table.contains_key(node) {
            continue;
        }
        match free.next() {
            Some(net) => {
                table.insert(node.clone(), net);
            }
            None => break,
        }
    }
    table
}

/// Why this node has no pod subnet at start.
#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    #[error("cluster CIDR {0} has no free /24")]
    CidrFull(Ipv4Net),
    #[error(
        "no pod subnet from the cluster's leader after {}s: check that the leader is up, or give one with --pod-subnet",
        .0.as_secs()
    )]
    NoneFromLeader(std::time::Duration),
}

/// This node's pod subnet at start: the stored one; else `--pod-subnet` if given; else, for a
/// node that starts a new cluster, the lowest /24 nobody claims; else the one the leader hands
/// out (waited for up to `wait`).
pub async fn resolve(
    config: &crate::config::AgentConfig,
    stored: Option<Ipv4Net>,
    gossip: &skiff_gossip::GossipHandle,
    wait: std::time::Duration,
) -> Result<Ipv4Net, SubnetError> {
    if let Some(net) = stored {
        if config.pod_subnet_set && net != config.pod_subnet {
            tracing::warn!(
                "--pod-subnet {} ignored: this node already uses {net} (kept across restarts)",
                config.pod_subnet
            );
        }
        return Ok(net);
    }
    if config.pod_subnet_set {
        return Ok(config.pod_subnet);
    }
    let me = gossip.node_name().to_string();
    if config.join.is_empty() {
        let claims = claims(gossip).await;
        let nodes = BTreeSet::from([me.clone()]);
        return allocate(config.cluster_cidr, &nodes, &claims, &BTreeMap::new())
            .remove(&me)
            .ok_or(SubnetError::CidrFull(config.cluster_cidr));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        for (_, _, value) in gossip.keys_with_prefix(TABLE_KEY).await {
            let table: BTreeMap<String, Ipv4Net> = serde_json::from_str(&value).unwrap_or_default();
            if let Some(net) = table.get(&me) {
                return Ok(*net);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SubnetError::NoneFromLeader(wait));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Every node's claimed subnet (`net/subnet`).
pub async fn claims(gossip: &skiff_gossip::GossipHandle) -> BTreeMap<String, Ipv4Net> {
    gossip
        .keys_with_prefix(CLAIM_KEY)
        .await
        .into_iter()
        .filter(|(_, k, _)| k == CLAIM_KEY)
        .filter_map(|(node, _, v)| Some((node, v.parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn map(list: &[(&str, &str)]) -> BTreeMap<String, Ipv4Net> {
        list.iter().map(|(n, c)| (n.to_string(), net(c))).collect()
    }

    #[test]
    fn allocation_table() {
        let cidr = net("10.42.0.0/16");
        // New nodes get the lowest free /24s in name order.
        let t = allocate(cidr, &names(&["a", "b"]), &map(&[]), &map(&[]));
        assert_eq!(t, map(&[("a", "10.42.0.0/24"), ("b", "10.42.1.0/24")]));
        // Claims are kept and skipped by new allocations.
        let t = allocate(
            cidr,
            &names(&["a", "b", "c"]),
            &map(&[("b", "10.42.0.0/24")]),
            &map(&[]),
        );
        assert_eq!(
            t,
            map(&[
                ("a", "10.42.1.0/24"),
                ("b", "10.42.0.0/24"),
                ("c", "10.42.2.0/24")
            ])
        );
        // The previous table is stable for nodes that have not claimed yet.
        let t = allocate(
            cidr,
            &names(&["a", "b"]),
            &map(&[]),
            &map(&[("b", "10.42.7.0/24")]),
        );
        assert_eq!(t, map(&[("a", "10.42.0.0/24"), ("b", "10.42.7.0/24")]));
        // A subnet claimed twice stays with the first name; the other node gets a free one.
        let t = allocate(
            cidr,
            &names(&["a", "b"]),
            &map(&[("a", "10.42.3.0/24"), ("b", "10.42.3.0/24")]),
            &map(&[]),
        );
        assert_eq!(t, map(&[("a", "10.42.3.0/24"), ("b", "10.42.0.0/24")]));
        // Claims outside the CIDR or of another size are ignored.
        let t = allocate(
            cidr,
            &names(&["a"]),
            &map(&[("a", "10.43.0.0/24")]),
            &map(&[]),
        );
        assert_eq!(t, map(&[("a", "10.42.0.0/24")]));
        // Nodes that left are dropped; a full CIDR leaves the rest out.
        let small = net("10.42.0.0/23");
        let t = allocate(
            small,
            &names(&["a", "b", "c"]),
            &map(&[]),
            &map(&[("z", "10.42.0.0/24")]),
        );
        assert_eq!(t, map(&[("a", "10.42.0.0/24"), ("b", "10.42.1.0/24")]));
    }
}

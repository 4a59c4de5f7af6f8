//! A cluster of demo agents on the network-namespace test bed of `skiff-tests`: a bridge in a
//! hub namespace, one namespace per node with 198.18.1.<i+1>/24, pods on /24s of
//! 198.19.0.0/16 handed out by the leader. Node 0 starts the cluster and prints a join token;
//! the others join with it. Nothing is created in the host's network namespace.

use super::node::{DemoAgent, NodeOptions};
use anyhow::{Context, Result, bail};
use skiff_tests::bed::TestBed;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Gossip (QUIC) port of every node, each in its own namespace.
pub const PORT: u16 = 7946;
/// The pods' range: off the bed's node addresses (198.18.1.0/24), inside 198.18.0.0/15.
pub const CLUSTER_CIDR: &str = "198.19.0.0/16";
/// Services' ClusterIPs: inside 198.18.0.0/15, off the node and pod ranges.
pub const SERVICE_CIDR: &str = "198.18.128.0/20";

/// Agents first: fields drop in order, so agents are torn down before the bed goes.
pub struct DemoCluster {
    pub agents: Vec<DemoAgent>,
    pub bed: TestBed,
}

/// Where the agents' logs are copied at teardown: `target/cluster-logs/<node>-<start>.log`
/// (the bed's temp dir goes with the cluster).
pub fn logs_dir() -> std::path::PathBuf {
    crate::root().join("target").join("cluster-logs")
}

/// Node names `n0`, `n1`, ...
pub fn node_name(i: usize) -> String {
    format!("n{i}")
}

impl DemoCluster {
    /// Starts `n` agents (`log_filter` is their `SKIFF_LOG`), each with the test image, and
    /// waits until every node lists every node Ready.
    pub fn start(skiff: &Path, image: &Path, n: usize, log_filter: &str) -> Result<DemoCluster> {
        Self::start_with(skiff, image, n, log_filter, &[])
    }

    /// [`DemoCluster::start`] with more `skiff agent` flags on every node.
    pub fn start_with(
        skiff: &Path,
        image: &Path,
        n: usize,
        log_filter: &str,
        extra_args: &[&str],
    ) -> Result<DemoCluster> {
        let bed = TestBed::flat(n)?;
        let _ = std::fs::remove_dir_all(logs_dir());
        let mut cluster = DemoCluster {
            agents: Vec::with_capacity(n),
            bed,
        };
        let seed = SocketAddr::from((cluster.bed.nodes[0].ip, PORT));
        let mut token = String::new();
        for i in 0..n {
            let name = node_name(i);
            let node = &cluster.bed.nodes[i];
            let opts = NodeOptions {
                dir: cluster.bed.node_dir(&name),
                netns: Some(node.netns.clone()),
                listen: Some(SocketAddr::from((node.ip, PORT))),
                join: (i > 0).then(|| (seed, token.clone())),
                pod_subnet: None,
                cluster_cidr: CLUSTER_CIDR.into(),
                cgroup_parent: format!("/{}/{name}", cluster.bed.run_id),
                netns_prefix: format!("{}-p{i}-", cluster.bed.run_id),
                log_filter: log_filter.into(),
                keep_logs: Some(logs_dir()),
                name,
                extra_args: ["--service-cidr", SERVICE_CIDR]
                    .iter()
                    .chain(extra_args)
                    .map(|a| a.to_string())
                    .collect(),
            };
            cluster
                .agents
                .push(DemoAgent::start_with(skiff, image, opts)?);
            if i == 0 {
                token = create_token(&cluster.agents[0])?;
            }
        }
        let names: Vec<String> = (0..n).map(node_name).collect();
        for a in &cluster.agents {
            a.wait_for(Duration::from_secs(60), "every node Ready", |a| {
                Ok(all_ready(a, &names))
            })?;
        }
        Ok(cluster)
    }
}

/// `skiff token create` on `agent`: the token line.
pub fn create_token(agent: &DemoAgent) -> Result<String> {
    let out = agent.cli(&["token", "create", "--ttl", "1h"])?;
    if !out.status.success() {
        bail!(
            "token create on {}: {}",
            agent.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .context("token create printed nothing")
}

/// Whether `agent` lists every one of `names` as a Ready node.
pub fn all_ready(agent: &DemoAgent, names: &[String]) -> bool {
    node_phases(agent).is_ok_and(|rows| {
        names.iter().all(|n| {
            rows.iter()
                .any(|(name, phase)| name == n && phase == "Ready")
        })
    })
}

/// `(name, phase)` of every node `agent` knows.
pub fn node_phases(agent: &DemoAgent) -> Result<Vec<(String, String)>> {
    let v = agent.api(&serde_json::json!({
        "op": "get", "kind": "nodes", "name": null, "namespace": null, "all_namespaces": false,
    }))?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                n["status"]["phase"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// A pod of `get pods -o json` whose containers all run: phase Running and condition Ready
/// (a pod another node runs is listed from its report, with container statuses only).
pub fn pod_ready(p: &serde_json::Value) -> bool {
    let status = &p["status"];
    if status["phase"] != "Running" {
        return false;
    }
    if let Some(conditions) = status["conditions"].as_array() {
        return conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
    }
    status["containerStatuses"]
        .as_array()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
}

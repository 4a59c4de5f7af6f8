//! In-process clusters (issue 14): scheduling constraints across nodes, end to end through
//! gossip, the leader's scheduler and the node loops: required pod anti-affinity by hostname,
//! a NoSchedule taint that keeps pods off a node and a NoExecute taint that puts them out, with
//! the pending reason naming the constraints; required node affinity by zone with a topology
//! spread over hosts, and a hard spread over zones that leaves a replica pending. Same harness as `cluster_sim.rs` (paused time,
//! ChannelTransport, fake runtime).

mod sim;

use sim::{Sim, SimOptions, name, wait_until};
use skiff_gossip::NodeTaint;
use std::time::Duration;

fn db(replicas: u32) -> skiff_manifests::Valid<skiff_manifests::Object> {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: db}}\n  template:\n    metadata:\n      labels: {{app: db}}\n    spec:\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - {{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: db}}}}}}\n      containers:\n      - name: app\n        image: busybox:1\n"
    );
    let parsed = skiff_manifests::parse_file("db.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    parsed.objects()[0].clone()
}

fn taint(key: &str, effect: &str) -> NodeTaint {
    NodeTaint {
        key: key.into(),
        value: String::new(),
        effect: effect.into(),
        added_ms: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn anti_affinity_and_taints_place_and_move_pods_across_nodes() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    for i in 0..3 {
        sim.set_metadata(i, |m| {
            m.labels.insert("kubernetes.io/hostname".into(), name(i));
            if i == 0 {
                m.taints.push(taint("dedicated", "NoSchedule"));
            }
        })
        .await;
    }
    sim.declare(1, &[db(3)]);
    wait_until(
        "db on node-001 and node-002 only",
        Duration::from_secs(20),
        || {
            let running = sim.running("Deployment", "db");
            let mut nodes: Vec<usize> = running.iter().map(|(n, _, _)| *n).collect();
            nodes.sort();
            std::future::ready(nodes == [1, 2])
        },
    )
    .await;
    wait_until(
        "the third replica pending with both reasons",
        Duration::from_secs(10),
        || {
            let pending = sim.state(2).pending.clone();
            std::future::ready(pending.iter().any(|p| {
                p.reason == "0/3 nodes: 2 didn't match pod anti-affinity, 1 had untolerated taint"
            }))
        },
    )
    .await;
    // A NoExecute taint on node-002 puts its db pod out; nowhere else to go, so it is pending.
    sim.set_metadata(2, |m| m.taints.push(taint("maintenance", "NoExecute")))
        .await;
    wait_until("db on node-001 only", Duration::from_secs(20), || {
        let running = sim.running("Deployment", "db");
        std::future::ready(running.len() == 1 && running[0].0 == 1)
    })
    .await;
    // Taints removed: the replicas come back, one per host.
    for i in [0, 2] {
        sim.set_metadata(i, |m| m.taints.clear()).await;
    }
    wait_until("db on every host", Duration::from_secs(20), || {
        let running = sim.running("Deployment", "db");
        let mut nodes: Vec<usize> = running.iter().map(|(n, _, _)| *n).collect();
        nodes.sort();
        std::future::ready(nodes == [0, 1, 2])
    })
    .await;
    sim.stop().await;
}

fn object(yaml: &str) -> skiff_manifests::Valid<skiff_manifests::Object> {
    let parsed = skiff_manifests::parse_file("web.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    parsed.objects()[0].clone()
}

/// Nodes per running replica of `name`, sorted.
fn placed(sim: &Sim, name: &str) -> Vec<usize> {
    let mut nodes: Vec<usize> = sim
        .running("Deployment", name)
        .iter()
        .map(|(n, _, _)| *n)
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test(start_paused = true)]
async fn node_affinity_and_topology_spread_across_nodes() {
    let mut sim = Sim::start(4, SimOptions::default()).await;
    sim.settle().await;
    // Zones: node-000 and node-001 in a, node-002 and node-003 in b.
    for i in 0..4 {
        sim.set_metadata(i, |m| {
            m.labels.insert("kubernetes.io/hostname".into(), name(i));
            let zone = if i < 2 { "a" } else { "b" };
            m.labels
                .insert("topology.kubernetes.io/zone".into(), zone.into());
        })
        .await;
    }
    // Required node affinity to zone b, spread evenly over its hosts (maxSkew 1).
    sim.declare(
        1,
        &[object(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms:\n            - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [b]}]\n      topologySpreadConstraints:\n      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}\n      containers:\n      - name: app\n        image: busybox:1\n",
        )],
    );
    wait_until(
        "web: two on each zone-b host",
        Duration::from_secs(20),
        || std::future::ready(placed(&sim, "web") == [2, 2, 3, 3]),
    )
    .await;
    // A hard spread over zones (maxSkew 1) with 3 replicas and zone a full of taints: one
    // replica in b, the others pending with the reasons.
    for i in 0..2 {
        sim.set_metadata(i, |m| m.taints.push(taint("dedicated", "NoSchedule")))
            .await;
    }
    sim.declare(
        2,
        &[object(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: api}\n  template:\n    metadata:\n      labels: {app: api}\n    spec:\n      topologySpreadConstraints:\n      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: api}}}\n      containers:\n      - name: app\n        image: busybox:1\n",
        )],
    );
    wait_until(
        "api: one replica in zone b, the rest pending on the spread and the taints",
        Duration::from_secs(20),
        || {
            let nodes = placed(&sim, "api");
            let pending = sim.state(0).pending.clone();
            std::future::ready(
                nodes.len() == 1
                    && nodes[0] >= 2
                    && pending.iter().any(|p| {
                        p.reason.contains("had untolerated taint")
                            && p.reason.contains("topology spread")
                    }),
            )
        },
    )
    .await;
    // The taints go: the spread places the other two, one in each zone at most one apart.
    for i in 0..2 {
        sim.set_metadata(i, |m| m.taints.clear()).await;
    }
    wait_until(
        "api spread over both zones",
        Duration::from_secs(20),
        || {
            let nodes = placed(&sim, "api");
            let in_a = nodes.iter().filter(|n| **n < 2).count();
            std::future::ready(nodes.len() == 3 && (1..=2).contains(&in_a))
        },
    )
    .await;
    sim.stop().await;
}

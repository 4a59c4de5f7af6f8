//! In-process clusters (issue 14): scheduling constraints across nodes, end to end through
//! gossip, the leader's scheduler and the node loops: required pod anti-affinity by hostname,
//! a NoSchedule taint that keeps pods off a node and a NoExecute taint that puts them out, with
//! the pending reason naming the constraints. Same harness as `cluster_sim.rs` (paused time,
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

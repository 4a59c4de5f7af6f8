//! Cluster-wide pod counts for `skiff status` and `get deployments|daemonsets`: this node's pods
//! from its records, the other nodes' from their gossip reports. A report is only as true as
//! its node: a NotReady node's pods count as neither running nor ready, and a node that left
//! (or that the node list no longer holds) counts for nothing, so a dead node's last reports
//! never inflate the counts.

use super::core::Snapshot;
use crate::cluster::ClusterState;
use crate::pod::PodRecord;
use crate::render::PodSummary;
use serde_json::{Value, json};
use skiff_gossip::NodeCondition;
use skiff_manifests::{Object, ObjectKey};
use std::sync::Arc;

/// How many pods the leader's table places for the workload `key`.
pub(super) fn placed(cluster: &ClusterState, key: &ObjectKey) -> usize {
    cluster
        .table
        .iter()
        .filter(|a| {
            a.owner.kind == key.kind && a.owner.name == key.name && a.namespace == key.namespace
        })
        .count()
}

/// Every pod of the cluster for counting (see the module comment).
pub(super) fn summaries<'a>(snap: &'a Snapshot, cluster: &'a ClusterState) -> Vec<PodSummary<'a>> {
    pod_summaries(&snap.node_name, &snap.pods, cluster)
}

fn pod_summaries<'a>(
    node_name: &str,
    records: &'a [Arc<PodRecord>],
    cluster: &'a ClusterState,
) -> Vec<PodSummary<'a>> {
    let mut out: Vec<PodSummary<'a>> = records.iter().map(|r| PodSummary::of_record(r)).collect();
    for ((ns, name), (node, report)) in cluster.pods.iter() {
        if node == node_name {
            continue;
        }
        let condition = cluster
            .nodes
            .iter()
            .find(|n| n.name == *node)
            .map(|n| n.condition);
        match condition {
            Some(NodeCondition::Ready) => out.push(PodSummary::of_report(ns, name, report)),
            Some(NodeCondition::NotReady) => {
                let mut stale = PodSummary::of_report(ns, name, report);
                stale.running = false;
                stale.ready = false;
                out.push(stale);
            }
            Some(NodeCondition::Left) | None => {}
        }
    }
    out
}

/// `skiff status`: nodes, leader and term, and each workload's desired / running / ready.
pub(super) fn status(snap: &Snapshot, cluster: &ClusterState) -> Value {
    let workloads = workloads(&snap.node_name, &snap.pods, &snap.objects, cluster);
    json!({
        "nodes": cluster.nodes.iter().map(|n| json!({
            "name": n.name, "status": n.condition.to_string(), "address": n.address.to_string(),
            "cordoned": n.metadata.cordoned,
            "pods": cluster.pods.values().filter(|(node, _)| *node == n.name).count(),
        })).collect::<Vec<_>>(),
        "leader": cluster.leader,
        "term": cluster.term,
        "quorum": if cluster.quorum.held {
            format!("{} of {} nodes ready", cluster.quorum.ready, cluster.quorum.members)
        } else {
            format!(
                "{} of {} nodes last seen Ready: a minority keeps running its pods but does not place the others' until the partition heals",
                cluster.quorum.ready, cluster.quorum.members
            )
        },
        "workloads": workloads,
        "services": services(cluster),
    })
}

/// Each Service: type, address, and its endpoints ready out of all it selects.
fn services(cluster: &ClusterState) -> Vec<Value> {
    cluster
        .services
        .values()
        .map(|v| {
            let spec = &v.service.spec;
            let address = if spec.is_headless() {
                "None".to_string()
            } else if let Some(name) = &spec.external_name {
                name.clone()
            } else {
                v.allocation
                    .cluster_ip
                    .map_or_else(|| "<pending>".to_string(), |ip| ip.to_string())
            };
            json!({
                "namespace": v.namespace(),
                "name": v.name(),
                "type": spec.type_.as_str(),
                "address": address,
                "endpoints": format!(
                    "{}/{} ready",
                    v.endpoints.iter().filter(|e| e.serving(&v.service)).count(),
                    v.selected
                ),
            })
        })
        .collect()
}

fn workloads(
    node_name: &str,
    records: &[Arc<PodRecord>],
    objects: &crate::desired::Objects,
    cluster: &ClusterState,
) -> Vec<Value> {
    let pods = pod_summaries(node_name, records, cluster);
    let mut workloads = Vec::new();
    for (key, (_, object)) in objects.iter() {
        let desired = match object.get() {
            Object::Deployment(d) => d.spec.replicas as usize,
            Object::Pod(_) => 1,
            Object::DaemonSet(_) => placed(cluster, key),
            _ => continue,
        };
        let owned: Vec<&PodSummary<'_>> = pods.iter().filter(|p| p.belongs_to(key)).collect();
        let running = owned.iter().filter(|p| p.running).count();
        let ready = owned.iter().filter(|p| p.ready).count();
        let pending: Vec<_> = cluster.pending.iter().filter(|p| p.owner.is(key)).collect();
        let mut w = json!({
            "kind": key.kind.as_str(), "namespace": key.namespace, "name": key.name,
            "desired": desired, "running": running, "ready": ready,
        });
        if !pending.is_empty() {
            let reasons: Vec<&str> = pending.iter().map(|p| p.reason.as_str()).collect();
            w["pending"] = json!(reasons.join("; "));
            w["pendingPods"] = json!(pending.iter().map(|p| u64::from(p.count)).sum::<u64>());
        }
        workloads.push(w);
    }
    workloads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::PodReport;
    use crate::pod::Owner;
    use skiff_gossip::{NodeMetadata, NodeStatus};
    use std::sync::Arc;

    fn node(name: &str, condition: NodeCondition) -> NodeStatus {
        NodeStatus {
            name: name.to_string(),
            condition,
            generation: 1,
            started_at_unix_ms: 1,
            address: "198.18.0.1:7946".parse().unwrap(),
            metadata: NodeMetadata::default(),
            is_self: name == "n1",
        }
    }

    fn report(running: bool, ready: bool) -> PodReport {
        PodReport {
            uid: "u".to_string(),
            owner: Some(Owner {
                kind: skiff_manifests::Kind::Deployment,
                name: "web".to_string(),
            }),
            template_hash: "h".to_string(),
            created_ms: 1,
            deleting: false,
            running,
            ready,
            labels: Default::default(),
            status: Value::Null,
            ports: Vec::new(),
            hostname: None,
            subdomain: None,
        }
    }

    fn web(replicas: u32) -> crate::desired::Objects {
        let yaml = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
        );
        let parsed = skiff_manifests::parse_file("web.yaml", yaml.as_bytes());
        parsed
            .objects()
            .into_iter()
            .map(|o| (o.key(), ("web.yaml".to_string(), o.clone())))
            .collect()
    }

    /// A node, its condition, and the pods it reports as `(running, ready)`.
    type NodeReports<'a> = (&'a str, NodeCondition, &'a [(bool, bool)]);

    /// `(desired, running, ready)`.
    type Counts = (u64, u64, u64);

    /// The status counts of `web` given what nodes report.
    fn counts(nodes: &[NodeReports<'_>]) -> Counts {
        let mut reports = crate::cluster::service::PodReports::new();
        for (node_name, _, pods) in nodes {
            for (i, (running, ready)) in pods.iter().enumerate() {
                let key = ("default".to_string(), format!("web-{node_name}-{i}"));
                reports.insert(
                    key,
                    (node_name.to_string(), report(*running, *ready).into()),
                );
            }
        }
        let cluster = ClusterState {
            nodes: Arc::new(
                nodes
                    .iter()
                    .map(|(name, condition, _)| node(name, *condition))
                    .collect(),
            ),
            pods: Arc::new(reports),
            ..ClusterState::default()
        };
        let out = workloads("n1", &[], &web(9), &cluster);
        let w = &out[0];
        let n = |field: &str| w[field].as_u64().unwrap();
        (n("desired"), n("running"), n("ready"))
    }

    #[test]
    fn a_dead_nodes_last_reports_are_not_counted_as_running_or_ready() {
        use NodeCondition::{Left, NotReady, Ready};
        let up: &[(bool, bool)] = &[(true, true); 3];
        let table: [(&[NodeReports<'_>], Counts); 4] = [
            // Healthy: every report counts.
            (
                &[("n2", Ready, up), ("n3", Ready, up), ("n4", Ready, up)],
                (9, 9, 9),
            ),
            // n4 died, its 3 pods were replaced on n2 and n3; its reports linger.
            (
                &[
                    ("n2", Ready, &[(true, true); 5]),
                    ("n3", Ready, &[(true, true); 4]),
                    ("n4", NotReady, up),
                ],
                (9, 9, 9),
            ),
            // A node that left, or one the node list no longer holds, counts for nothing.
            (
                &[("n2", Ready, &[(true, true); 9]), ("n4", Left, up)],
                (9, 9, 9),
            ),
            // Running but not ready pods count as running only.
            (&[("n2", Ready, &[(true, false); 2])], (9, 2, 0)),
        ];
        for (nodes, expected) in table {
            assert_eq!(counts(nodes), expected, "{nodes:?}");
        }
        // Reports of a node missing from the node list.
        let mut reports = crate::cluster::service::PodReports::new();
        reports.insert(
            ("default".to_string(), "web-x".to_string()),
            ("gone".to_string(), report(true, true).into()),
        );
        let cluster = ClusterState {
            pods: Arc::new(reports),
            ..ClusterState::default()
        };
        let out = workloads("n1", &[], &web(9), &cluster);
        assert_eq!(
            (out[0]["running"].as_u64(), out[0]["ready"].as_u64()),
            (Some(0), Some(0))
        );
    }
}

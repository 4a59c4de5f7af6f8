//! Bare Pods that no node runs yet (the leader could not place them, or has not yet): `get pods`
//! lists them as Pending and `describe pod` shows them with the scheduling reason, as kubectl
//! does, instead of answering "not found". Deployment replicas that have no place are not
//! listed one by one (there can be a billion): `status` counts them.

use super::core::Snapshot;
use crate::cluster::ClusterState;
use crate::pod::{PodRecord, rfc3339};
use serde_json::{Value, json};
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use std::sync::Arc;

/// A desired bare Pod with no node, and the leader's reason when it has given one.
pub(super) struct UnplacedPod<'a> {
    pub key: &'a ObjectKey,
    pub object: &'a Valid<Object>,
    pub reason: Option<&'a str>,
}

/// The desired bare Pods that neither this node's records nor any node's reports hold.
pub(super) fn unplaced<'a>(snap: &'a Snapshot, cluster: &'a ClusterState) -> Vec<UnplacedPod<'a>> {
    unplaced_of(&snap.pods, &snap.objects, cluster)
}

fn unplaced_of<'a>(
    records: &[Arc<PodRecord>],
    objects: &'a crate::desired::Objects,
    cluster: &'a ClusterState,
) -> Vec<UnplacedPod<'a>> {
    objects
        .iter()
        .filter(|(key, _)| key.kind == Kind::Pod)
        .filter(|(key, _)| {
            let here = records
                .iter()
                .any(|p| p.name == key.name && p.namespace == key.namespace);
            let reported = cluster
                .pods
                .contains_key(&(key.namespace.to_string(), key.name.to_string()));
            !here && !reported
        })
        .map(|(key, (_, object))| {
            let reason = cluster
                .pending
                .iter()
                .find(|p| p.owner.is(key))
                .map(|p| p.reason.as_str());
            UnplacedPod {
                key,
                object,
                reason,
            }
        })
        .collect()
}

/// The pod as `get pod -o json` shows a pod the scheduler has not placed: phase Pending,
/// PodScheduled False with the reason, no node.
pub(super) fn pod_json(pod: &UnplacedPod<'_>, first_seen: Option<u64>) -> Value {
    let mut v = serde_json::to_value(pod.object).unwrap_or_else(|_| json!({}));
    if let Some(t) = first_seen {
        v["metadata"]["creationTimestamp"] = json!(rfc3339(t));
    }
    let mut scheduled = json!({ "type": "PodScheduled", "status": "False" });
    if let Some(reason) = pod.reason {
        scheduled["reason"] = json!("Unschedulable");
        scheduled["message"] = json!(reason);
    }
    v["status"] = json!({ "phase": "Pending", "conditions": [scheduled] });
    v
}

/// `describe pod` of a bare Pod no node runs: its JSON plus this node's events about it (the
/// leader's reason is recorded as a FailedScheduling event by every node). `None` when the pod
/// is not an unplaced bare Pod.
pub(super) fn describe(
    snap: &Snapshot,
    cluster: &ClusterState,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let found = unplaced(snap, cluster);
    let pod = found
        .iter()
        .find(|p| p.key.namespace == namespace && p.key.name == name)?;
    let mut v = pod_json(pod, snap.first_seen.get(pod.key).copied());
    let mut events: Vec<Value> = snap
        .events
        .iter()
        .filter(|e| e.object_kind == "Pod" && e.object_name == name && e.namespace == namespace)
        .map(|e| {
            json!(format!(
                "{} {} {} (x{}): {}",
                rfc3339(e.last_seen),
                if e.warning { "Warning" } else { "Normal" },
                e.reason,
                e.count,
                e.message
            ))
        })
        .collect();
    if events.is_empty() {
        let why = pod.reason.unwrap_or("waiting for the leader to place it");
        events.push(json!(format!("Warning FailedScheduling: {why}")));
    }
    v["events"] = json!(events);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::{PendingWorkload, PodReport};
    use std::sync::Arc;

    fn objects(yaml: &str) -> crate::desired::Objects {
        let parsed = skiff_manifests::parse_file("pods.yaml", yaml.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.errors());
        parsed
            .objects()
            .into_iter()
            .map(|o| (o.key(), ("pods.yaml".to_string(), o.clone())))
            .collect()
    }

    const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: res\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests:\n        cpu: \"1000000\"\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: runs\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn an_unplaced_bare_pod_is_pending_with_the_scheduling_reason() {
        let objects = objects(PODS);
        let report = PodReport {
            uid: "u".into(),
            owner: None,
            template_hash: "h".into(),
            created_ms: 1,
            deleting: false,
            running: true,
            ready: true,
            labels: Default::default(),
            status: Value::Null,
            ports: Vec::new(),
            hostname: None,
            subdomain: None,
        };
        let mut reports = crate::cluster::service::PodReports::new();
        reports.insert(
            ("default".into(), "runs".into()),
            ("n2".into(), report.into()),
        );
        let cluster = ClusterState {
            pods: Arc::new(reports),
            pending: vec![PendingWorkload {
                owner: "Pod/default/res".parse().unwrap(),
                count: 1,
                reason: "0/1 nodes: 1 insufficient cpu".into(),
            }],
            ..ClusterState::default()
        };
        let found = unplaced_of(&[], &objects, &cluster);
        let names: Vec<&str> = found.iter().map(|p| p.key.name.as_str()).collect();
        assert_eq!(names, ["res"], "a pod some node reports is not pending");
        let v = pod_json(&found[0], Some(0));
        assert_eq!(v["metadata"]["name"], "res");
        assert_eq!(v["status"]["phase"], "Pending");
        assert_eq!(v["spec"]["nodeName"], Value::Null);
        assert_eq!(
            v["status"]["conditions"][0],
            json!({
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes: 1 insufficient cpu",
            })
        );
        assert_eq!(crate::cli::output::pod_display_status(&v), "Pending");

        // Before the leader has said anything it is still listed, without a reason.
        let quiet = ClusterState::default();
        let found = unplaced_of(&[], &objects, &quiet);
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|p| p.reason.is_none()));
    }
}

//! Nodes through the local API: `get nodes` / `describe node` (Kubernetes-shaped JSON from
//! gossip's node list), `cordon|uncordon|drain` (this node's metadata, or forwarded to the node
//! named) and `label node`.

use super::{Shared, err, list, ok};
use crate::agent::core::Snapshot;
use crate::agent::membership::LabelChange;
use crate::api::server::Reply;
use crate::pod::rfc3339;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `get nodes [NAME]`.
pub(super) fn get(shared: &Shared, name: Option<&str>) -> Reply {
    let nodes = shared.nodes.borrow().clone();
    let items: Vec<Value> = nodes
        .iter()
        .filter(|n| name.is_none_or(|x| x == n.name))
        .map(node_json)
        .collect();
    match name {
        Some(n) if items.is_empty() => err(format!("node {n:?} not found")),
        Some(_) => ok(items.into_iter().next().unwrap_or_default()),
        None => ok(list(items)),
    }
}

/// `describe node NAME`: as `get`, with this node's pod count.
pub(super) fn describe(shared: &Shared, snap: &Snapshot, name: &str) -> Reply {
    let nodes = shared.nodes.borrow().clone();
    match nodes.iter().find(|n| n.name == name) {
        Some(n) => {
            let mut v = node_json(n);
            if n.is_self {
                v["status"]["pods"] = json!(snap.pods.len());
            }
            ok(v)
        }
        None => err(format!("node {name:?} not found")),
    }
}

/// Waits (at most [`super::VISIBLE_WITHIN`]) until this node's own entry in the node list
/// shows what was just published, so that `get nodes` right after `label`, `taint` or
/// `cordon` sees it; the change is made (and spreads) either way.
async fn self_shows(shared: &Shared, shows: impl Fn(&skiff_gossip::NodeMetadata) -> bool) {
    let of_self = |list: &Vec<skiff_gossip::NodeStatus>| {
        list.iter()
            .find(|n| n.is_self)
            .is_some_and(|n| shows(&n.metadata))
    };
    super::until_shown(
        shared,
        shared.nodes.clone(),
        of_self,
        "a change of this node's metadata did not show in its node list",
    )
    .await;
}

/// `cordon|uncordon|drain NODE`: written by the node itself, so another node is asked over rpc.
pub(super) async fn set_scheduling(
    shared: &Shared,
    node: &str,
    cordoned: bool,
    draining: bool,
) -> Reply {
    if node != shared.node_meta.node_name() {
        return match &shared.remote {
            Some(remote) => remote.set_scheduling(node, cordoned, draining).await,
            None => err(format!("node {node:?} not found")),
        };
    }
    match shared.node_meta.set_scheduling(cordoned, draining).await {
        Ok(()) => {
            self_shows(shared, |m| {
                m.cordoned == (cordoned || draining) && m.draining == draining
            })
            .await;
            ok(json!({ "name": node }))
        }
        Err(e) => err(e.to_string()),
    }
}

/// `label node NODE k=v k-`.
pub(super) async fn label(
    shared: &Shared,
    node: &str,
    set: BTreeMap<String, String>,
    remove: Vec<String>,
    overwrite: bool,
) -> Reply {
    let change = LabelChange {
        set,
        remove,
        overwrite,
    };
    match shared.node_meta.label(node, &change).await {
        Ok(labels) => {
            self_shows(shared, |m| m.labels == labels).await;
            ok(json!({ "kind": "Node", "name": node, "labels": labels }))
        }
        Err(e) => err(e.to_string()),
    }
}

pub(super) async fn taint(shared: &Shared, node: &str, changes: &[String]) -> Reply {
    match shared.node_meta.taint(node, changes).await {
        Ok(taints) => {
            self_shows(shared, |m| m.taints == taints).await;
            ok(json!({ "kind": "Node", "name": node, "taints": taints_json(&taints) }))
        }
        Err(e) => err(e.to_string()),
    }
}

/// Taints in Kubernetes' shape (`timeAdded` in RFC 3339).
fn taints_json(taints: &[skiff_gossip::NodeTaint]) -> Value {
    taints
        .iter()
        .map(|t| {
            let mut v =
                json!({ "key": t.key, "effect": t.effect, "timeAdded": rfc3339(t.added_ms) });
            if !t.value.is_empty() {
                v["value"] = json!(t.value);
            }
            v
        })
        .collect()
}

fn node_json(n: &skiff_gossip::NodeStatus) -> Value {
    let m = &n.metadata;
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n.name,
            "labels": m.labels,
            "creationTimestamp": rfc3339(n.started_at_unix_ms),
        },
        "spec": { "unschedulable": m.cordoned, "taints": taints_json(&m.taints) },
        "status": {
            "phase": n.condition.to_string(),
            "roles": "<none>",
            "generation": n.generation,
            "addresses": [{ "type": "InternalIP", "address": n.address.ip().to_string() }],
            "gossipAddress": n.address.to_string(),
            "capacity": {
                "cpu": format!("{}m", m.capacity.cpu_millis),
                "memory": m.capacity.memory_bytes.to_string(),
                "pods": m.capacity.pods.to_string(),
            },
            "nodeInfo": { "kubeletVersion": n.version() },
            "conditions": [{ "type": "Ready", "status": if n.condition == skiff_gossip::NodeCondition::Ready { "True" } else { "False" } }],
        },
    })
}

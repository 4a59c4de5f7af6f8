//! The cluster layer of the agent: replicated desired objects, the leader's scheduling, the
//! assignment this node follows, and what it reports about its pods.
//!
//! Code map:
//! - `fetch.rs`: both ends of fetching object bodies from another node over rpc.
//! - `keys.rs`: gossip keys and the JSON values under them.
//! - `replica.rs`: this node's replica of every desired object (HLC-stamped records in redb).
//! - `history.rs`: the revisions of a workload's pod template kept with its record, and the
//!   object `rollout undo` makes (pure).
//! - `follow.rs`: the assignment this node follows (persisted) and the previous placement.
//! - `leadership.rs`: the leadership decision of a step, pure: startup grace, the lone-node
//!   exception, quorum, the term rule, the leader shown.
//! - `schedule.rs`: builds the scheduler's input from gossip and runs it (leader only).
//! - `subnets.rs`: pod subnets handed out by the leader, claimed and routed by every node.
//! - `gossip_view.rs`: every node's gossip keys, parsed once per change of that node's keys.
//! - `service.rs`: the task that ties them together; `service/step.rs` is one step as named
//!   sub-steps, `service/sync.rs` keeps the replica in step with the adverts,
//!   `service/publish.rs` writes tables, reports, subnet claims and routes.

pub mod fetch;
pub mod follow;
pub mod gossip_view;
pub mod history;
pub mod keys;
pub mod leadership;
pub mod replica;
pub mod rollouts;
pub mod schedule;
pub mod service;
pub mod subnets;

pub use fetch::serve_records;
pub use service::{
    ClusterCommand, ClusterInputs, ClusterOutputs, ClusterService, ClusterState, ClusterTimings,
    Desired, Fetcher, HistoryView, Served, UndoDone,
};

use crate::pod::PodRecord;
use crate::render::RenderContext;
use keys::PodReport;

/// What this node gossips about one of its pods: identity, owner, template and the status part
/// of `get pods -o json` (so any node renders it like the local one).
fn pod_spec(p: &PodRecord) -> Option<&skiff_manifests::PodSpec> {
    match p.manifest.get() {
        skiff_manifests::Object::Pod(pod) => Some(&pod.spec),
        _ => None,
    }
}

/// The pod's named container ports.
fn named_ports(p: &PodRecord) -> Vec<crate::services::NamedPort> {
    let skiff_manifests::Object::Pod(pod) = p.manifest.get() else {
        return Vec::new();
    };
    pod.spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|port| {
            Some(crate::services::NamedPort {
                name: port.name.clone()?,
                port: port.container_port,
                protocol: port.protocol.as_str().to_string(),
            })
        })
        .collect()
}

pub fn report(p: &PodRecord, ip: Option<&str>, ctx: &RenderContext<'_>) -> PodReport {
    let rendered = crate::render::pod(p, ip, ctx);
    let mut status = rendered
        .get("status")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    // Conditions repeat what the container states say; keep the value small.
    if let Some(o) = status.as_object_mut() {
        o.remove("conditions");
    }
    PodReport {
        uid: p.uid.clone(),
        owner: p.owner.clone(),
        template_hash: p.spec_hash.clone(),
        created_ms: p.created_at,
        deleting: p.deleting_since.is_some(),
        running: p.status.any_running(),
        ready: crate::render::pod_ready(p),
        labels: p.manifest.metadata().labels.clone(),
        status,
        ports: named_ports(p),
        hostname: pod_spec(p).and_then(|s| s.hostname.clone()),
        subdomain: pod_spec(p).and_then(|s| s.subdomain.clone()),
    }
}

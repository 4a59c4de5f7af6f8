//! The leader's scheduling pass: gossip's view (nodes, reports, the previous table) and the
//! replicated objects in, the pure scheduler (`crate::scheduler`) run, the table out.

use super::keys::{AssignedPod, PendingWorkload};
use crate::scheduler::{
    Allocatable, NodeCondition as SchedCondition, ReportedPod, SchedInput, SchedNode, schedule,
    workloads_from_objects,
};
use skiff_gossip::{NodeCondition, NodeStatus};
use skiff_manifests::naming::PodSuffix;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a node that is not Ready keeps its pods: crashed (NotReady) or stopped (Left).
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    pub eviction: Duration,
    pub restart_grace: Duration,
}

/// The table and what could not be placed.
pub struct Output {
    pub table: Vec<AssignedPod>,
    pub pending: Vec<PendingWorkload>,
}

/// The scheduler's view of a node. `not_ready`: since when it has not been Ready, and whether
/// it left (stopped gracefully) meanwhile; such a node is `Stopped` (the restart grace) until it
/// is Ready again, even while its next generation comes up NotReady.
pub fn sched_node(node: &NodeStatus, not_ready: Option<(u64, bool)>, now: u64) -> SchedNode {
    let (since_ms, left) = not_ready.unwrap_or((now, false));
    SchedNode {
        name: node.name.clone(),
        condition: match node.condition {
            NodeCondition::Ready => SchedCondition::Ready,
            NodeCondition::Left => SchedCondition::Stopped { since_ms },
            NodeCondition::NotReady if left => SchedCondition::Stopped { since_ms },
            NodeCondition::NotReady => SchedCondition::NotReady { since_ms },
        },
        cordoned: node.metadata.cordoned,
        draining: node.metadata.draining,
        labels: node.metadata.labels.clone(),
        allocatable: Allocatable {
            cpu_millis: node.metadata.capacity.cpu_millis,
            memory_bytes: node.metadata.capacity.memory_bytes,
            pods: node.metadata.capacity.pods,
        },
    }
}

/// One pass. Pure apart from the random pod name suffixes.
pub fn run(
    nodes: &[NodeStatus],
    not_ready_since: &BTreeMap<String, (u64, bool)>,
    objects: &crate::desired::Objects,
    previous: &[AssignedPod],
    pods: &super::service::PodReports,
    now: u64,
    delays: Delays,
) -> Output {
    let (workloads, blocked) = workloads_from_objects(objects.values().map(|(_, o)| o));
    let input = SchedInput {
        nodes: nodes
            .iter()
            .map(|n| sched_node(n, not_ready_since.get(&n.name).copied(), now))
            .collect(),
        workloads,
        previous: previous.to_vec(),
        reported: pods
            .iter()
            .filter(|(_, (_, r))| !r.deleting)
            .map(|((ns, name), (node, r))| ReportedPod {
                namespace: ns.clone(),
                name: name.clone(),
                owner: r.owner.clone(),
                template_hash: r.template_hash.clone(),
                node: node.clone(),
                running: r.running,
                ready: r.ready,
                started_ms: Some(r.created_ms),
            })
            .collect(),
        eviction_delay: delays.eviction,
        restart_grace: delays.restart_grace,
    };
    let mut rng = rand::rng();
    let mut suffix = || PodSuffix::random(&mut rng);
    let output = schedule(&input, now, &mut suffix);
    let mut pending = blocked;
    pending.extend(output.pending);
    Output {
        table: output.assignments,
        pending,
    }
}

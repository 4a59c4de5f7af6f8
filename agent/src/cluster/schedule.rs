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
    /// When a ready pod becomes available (its Deployment's `minReadySeconds` passed): a pass
    /// is due then, whatever else changes.
    pub wake_at_ms: Option<u64>,
}

/// What the leader has seen of a pod's readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    NotReady,
    /// Seen turning ready at this time (wall clock ms).
    ReadySince(u64),
    /// Ready when first seen: counts as available at once.
    ReadyBefore,
}

/// A pod first seen ready within this long of its creation counts as just turned ready.
const RECENT_MS: u64 = 60_000;

/// Folds the pods' reports into what the leader knows of their readiness (pods no longer
/// reported are forgotten).
pub fn track_readiness(
    seen: &mut BTreeMap<(String, String), Readiness>,
    pods: &super::service::PodReports,
    now: u64,
) {
    seen.retain(|key, _| pods.contains_key(key));
    for (key, (_, report)) in pods {
        let ready = report.ready && !report.deleting;
        let next = match (seen.get(key).copied(), ready) {
            (_, false) => Readiness::NotReady,
            // A pod made in the last minute most likely turned ready just now (its first
            // report can already say ready); an older one was ready before this node knew.
            (None, true) if now.saturating_sub(report.created_ms) < RECENT_MS => {
                Readiness::ReadySince(now)
            }
            (None, true) => Readiness::ReadyBefore,
            (Some(Readiness::NotReady), true) => Readiness::ReadySince(now),
            (Some(kept), true) => kept,
        };
        seen.insert(key.clone(), next);
    }
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

/// What the leader remembers between passes.
pub struct Seen<'a> {
    /// Per node: since when it has not been Ready, and whether it left meanwhile.
    pub not_ready_since: &'a BTreeMap<String, (u64, bool)>,
    /// Per pod: see [`track_readiness`].
    pub readiness: &'a BTreeMap<(String, String), Readiness>,
}

/// One pass. Pure apart from the random pod name suffixes.
pub fn run(
    nodes: &[NodeStatus],
    seen: Seen<'_>,
    objects: &crate::desired::Objects,
    previous: &[AssignedPod],
    pods: &super::service::PodReports,
    now: u64,
    delays: Delays,
) -> Output {
    let Seen {
        not_ready_since,
        readiness,
    } = seen;
    let (workloads, blocked) = workloads_from_objects(objects.values().map(|(_, o)| o));
    // A node that is not Ready may no longer serve what it last reported: its pods count as
    // neither running nor ready for rolling updates (they still keep their place).
    let ready_nodes: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.condition == NodeCondition::Ready)
        .map(|n| n.name.as_str())
        .collect();
    let input = SchedInput {
        nodes: nodes
            .iter()
            .map(|n| sched_node(n, not_ready_since.get(&n.name).copied(), now))
            .collect(),
        workloads,
        previous: previous.to_vec(),
        reported: pods
            .iter()
            .map(|((ns, name), (node, r))| ReportedPod {
                namespace: ns.clone(),
                name: name.clone(),
                owner: r.owner.clone(),
                template_hash: r.template_hash.clone(),
                node: node.clone(),
                running: r.running,
                ready: r.ready && ready_nodes.contains(node.as_str()),
                ready_since_ms: match readiness.get(&(ns.clone(), name.clone())) {
                    Some(Readiness::ReadySince(at)) => Some(*at),
                    _ => None,
                },
                deleting: r.deleting,
                started_ms: Some(r.created_ms),
            })
            .collect(),
        eviction_delay: delays.eviction,
        restart_grace: delays.restart_grace,
    };
    let wake_at_ms = wake_at(&input, now);
    let mut rng = rand::rng();
    let mut suffix = || PodSuffix::random(&mut rng);
    let output = schedule(&input, now, &mut suffix);
    let mut pending = blocked;
    pending.extend(output.pending);
    Output {
        table: output.assignments,
        pending,
        wake_at_ms,
    }
}

/// The first time after `now` at which a ready pod of a Deployment with `minReadySeconds`
/// becomes available.
fn wake_at(input: &SchedInput, now: u64) -> Option<u64> {
    let min_ready: BTreeMap<(&str, &str), u64> = input
        .workloads
        .iter()
        .filter_map(|w| match w.kind {
            crate::scheduler::WorkloadKind::Deployment { min_ready_ms, .. } if min_ready_ms > 0 => {
                Some(((w.namespace.as_str(), w.name.as_str()), min_ready_ms))
            }
            _ => None,
        })
        .collect();
    input
        .reported
        .iter()
        .filter_map(|p| {
            let owner = p
                .owner
                .as_ref()
                .filter(|o| o.kind == skiff_manifests::Kind::Deployment)?;
            let wait = min_ready.get(&(p.namespace.as_str(), owner.name.as_str()))?;
            let due = p.ready_since_ms?.saturating_add(*wait);
            (due > now).then_some(due)
        })
        .min()
}

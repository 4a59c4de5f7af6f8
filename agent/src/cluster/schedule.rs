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
    /// When a ready pod becomes available (its Deployment's `minReadySeconds` passed), or a
    /// Job's backoff, deadline or TTL is up: a pass is due then, whatever else changes.
    pub wake_at_ms: Option<u64>,
    /// Jobs past their `ttlSecondsAfterFinished`: the leader deletes them.
    pub expired: Vec<skiff_manifests::ObjectKey>,
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
        taints: node
            .metadata
            .taints
            .iter()
            .filter_map(|t| {
                let effect = skiff_manifests::model::pod::TaintEffect::ALL
                    .iter()
                    .find(|(name, _)| *name == t.effect)?
                    .1;
                Some(crate::scheduler::NodeTaint {
                    taint: skiff_manifests::model::pod::Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect,
                    },
                    added_ms: t.added_ms,
                })
            })
            .collect(),
    }
}

/// Pods the leader took out of its table, by (namespace, name): the node and when. Until that
/// node's report says the pod is stopping (or is gone), the report is stale, not a pod to count
/// or adopt: counting it would let a drain or a rolling update stop a second pod before the
/// first one's replacement runs. Kept a short while only, so a node that comes back long after
/// with its old pods is adopted as before.
pub type Released = BTreeMap<(String, String), (String, u64)>;

/// How long a released pod's report is taken as stale.
const RELEASE_WINDOW_MS: u64 = 10_000;

/// Forgets released pods whose node no longer reports them running (or after the window).
pub fn forget_released(released: &mut Released, pods: &super::service::PodReports, now: u64) {
    released.retain(|key, (node, at)| {
        now.saturating_sub(*at) < RELEASE_WINDOW_MS
            && pods
                .get(key)
                .is_some_and(|(reporter, r)| reporter == node && !r.deleting)
    });
}

/// Notes the pods of `previous` that `table` no longer lists on the same node.
pub fn note_released(
    released: &mut Released,
    previous: &[AssignedPod],
    table: &[AssignedPod],
    now: u64,
) {
    let kept: std::collections::BTreeSet<(&str, &str, &str)> = table
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str(), p.node.as_str()))
        .collect();
    for p in previous {
        if !kept.contains(&(p.namespace.as_str(), p.name.as_str(), p.node.as_str())) {
            released.insert((p.namespace.clone(), p.name.clone()), (p.node.clone(), now));
        }
    }
}

/// What the leader remembers between passes.
pub struct Seen<'a> {
    /// Per node: since when it has not been Ready, and whether it left meanwhile.
    pub not_ready_since: &'a BTreeMap<String, (u64, bool)>,
    /// Per pod: see [`track_readiness`].
    pub readiness: &'a BTreeMap<(String, String), Readiness>,
    /// See [`Released`].
    pub released: &'a Released,
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
        released,
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
                deleting: r.deleting
                    || released
                        .get(&(ns.clone(), name.clone()))
                        .is_some_and(|(n, _)| n == node),
                started_ms: Some(r.created_ms),
            })
            .collect(),
        eviction_delay: delays.eviction,
        restart_grace: delays.restart_grace,
    };
    let mut input = input;
    let jobs = job_steps(objects, &input, pods, now);
    input.workloads.extend(jobs.workloads);
    let wake_at_ms = [wake_at(&input, now), jobs.wake_at_ms]
        .into_iter()
        .flatten()
        .min();
    let mut rng = rand::rng();
    let mut suffix = || PodSuffix::random(&mut rng);
    let output = schedule(&input, now, &mut suffix);
    let mut pending = blocked;
    pending.extend(jobs.blocked);
    pending.extend(output.pending);
    let mut table = output.assignments;
    for entry in &mut table {
        if entry.owner.kind == skiff_manifests::Kind::Job {
            entry.job = jobs
                .marks
                .get(&(entry.namespace.clone(), entry.name.clone()))
                .cloned();
        }
    }
    table.extend(jobs.ended);
    table.sort_by(|a, b| (&a.namespace, &a.name, &a.node).cmp(&(&b.namespace, &b.name, &b.node)));
    Output {
        table,
        pending,
        wake_at_ms,
        expired: jobs.expired,
    }
}

/// What the Jobs' steps add to a pass.
#[derive(Default)]
struct JobSteps {
    /// One workload per attempt that should run.
    workloads: Vec<crate::scheduler::Workload>,
    /// The marks of those attempts, by (namespace, pod name).
    marks: BTreeMap<(String, String), crate::scheduler::JobMark>,
    /// Ended attempts, kept in the table as they are.
    ended: Vec<AssignedPod>,
    blocked: Vec<PendingWorkload>,
    wake_at_ms: Option<u64>,
    expired: Vec<skiff_manifests::ObjectKey>,
}

/// Runs `crate::jobs::step` for every Job: its entries in the previous table, its pods'
/// reports, and which nodes are lost (as the scheduler judges them).
fn job_steps(
    objects: &crate::desired::Objects,
    input: &SchedInput,
    pods: &super::service::PodReports,
    now: u64,
) -> JobSteps {
    use skiff_manifests::{Job, Kind, Object, Valid};
    let mut out = JobSteps::default();
    let namespaces: std::collections::BTreeSet<&str> = objects
        .keys()
        .filter(|k| k.kind == Kind::Namespace)
        .map(|k| k.name.as_str())
        .collect();
    let lost = |node: &str| {
        input.nodes.iter().find(|n| n.name == node).is_none_or(|n| {
            crate::scheduler::node_gone(n, now, input.eviction_delay, input.restart_grace)
        })
    };
    for (_, object) in objects.values() {
        let Object::Job(_) = object.get() else {
            continue;
        };
        let Ok(job) = Valid::<Job>::try_from(object.clone()) else {
            continue;
        };
        let (namespace, name) = (&job.metadata.namespace, &job.metadata.name);
        if namespace != skiff_manifests::DEFAULT_NAMESPACE
            && !namespaces.contains(namespace.as_str())
        {
            out.blocked.push(PendingWorkload {
                owner: crate::pod::OwnerRef::new(Kind::Job, namespace, name),
                count: 1,
                reason: format!("namespace {namespace:?} not found"),
            });
            continue;
        }
        let mine = |owner: &crate::pod::Owner| owner.kind == Kind::Job && owner.name == *name;
        let entries: Vec<&AssignedPod> = input
            .previous
            .iter()
            .filter(|p| p.namespace == *namespace && mine(&p.owner))
            .collect();
        let seen: BTreeMap<String, crate::jobs::PodSeen> = pods
            .iter()
            .filter(|((ns, _), (_, r))| ns == namespace && r.owner.as_ref().is_some_and(mine))
            .map(|((_, pod), (node, r))| (pod.clone(), crate::jobs::pod_seen(node, r)))
            .collect();
        let taken = |pod: &str| {
            input
                .previous
                .iter()
                .any(|p| p.namespace == *namespace && p.name == pod && !mine(&p.owner))
                || pods
                    .get(&(namespace.clone(), pod.to_string()))
                    .is_some_and(|(_, r)| !r.owner.as_ref().is_some_and(mine))
        };
        let step = crate::jobs::step(
            &job,
            crate::jobs::Inputs {
                entries,
                pods: &seen,
                lost: &lost,
                taken: &taken,
                now,
            },
        );
        if step.expired {
            out.expired.push(object.key());
        }
        if let Some(at) = step.wake_at_ms {
            out.wake_at_ms = Some(out.wake_at_ms.map_or(at, |w| w.min(at)));
        }
        out.ended.extend(step.ended);
        for attempt in step.active {
            out.marks
                .insert((namespace.clone(), attempt.name.clone()), attempt.mark);
            out.workloads
                .push(crate::scheduler::Workload::job_pod(&job, attempt.name));
        }
    }
    out
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

#[cfg(test)]
mod released_tests {
    use super::*;
    use crate::pod::Owner;
    use skiff_manifests::Kind;
    use std::sync::Arc;

    fn placed(name: &str, node: &str) -> AssignedPod {
        AssignedPod {
            namespace: "default".into(),
            name: name.into(),
            owner: Owner {
                kind: Kind::Deployment,
                name: "web".into(),
            },
            template_hash: "h".into(),
            node: node.into(),
            job: None,
        }
    }

    fn report(deleting: bool) -> Arc<super::super::keys::PodReport> {
        Arc::new(super::super::keys::PodReport {
            uid: "u".into(),
            owner: None,
            template_hash: "h".into(),
            created_ms: 0,
            deleting,
            running: true,
            ready: true,
            labels: BTreeMap::new(),
            status: serde_json::Value::Null,
            ports: Vec::new(),
            hostname: None,
            subdomain: None,
        })
    }

    #[test]
    fn a_released_pods_report_is_stale_until_its_node_stops_it_or_the_window_ends() {
        let key = ("default".to_string(), "a".to_string());
        let mut released = Released::new();
        note_released(
            &mut released,
            &[placed("a", "n1"), placed("b", "n2")],
            &[placed("b", "n2"), placed("c", "n3")],
            1_000,
        );
        assert_eq!(released.len(), 1, "only the pod taken out: {released:?}");
        let mut pods: super::super::service::PodReports = BTreeMap::new();
        pods.insert(key.clone(), ("n1".into(), report(false)));
        forget_released(&mut released, &pods, 2_000);
        assert!(released.contains_key(&key), "still reported running on n1");
        // A move to another node is a new pod there, not the stale one.
        let mut moved = released.clone();
        pods.insert(key.clone(), ("n2".into(), report(false)));
        forget_released(&mut moved, &pods, 2_000);
        assert!(moved.is_empty());
        pods.insert(key.clone(), ("n1".into(), report(true)));
        let mut stopping = released.clone();
        forget_released(&mut stopping, &pods, 2_000);
        assert!(stopping.is_empty(), "its node says it stops");
        pods.insert(key.clone(), ("n1".into(), report(false)));
        forget_released(&mut released, &pods, 1_000 + RELEASE_WINDOW_MS);
        assert!(released.is_empty(), "the window ended");
    }
}

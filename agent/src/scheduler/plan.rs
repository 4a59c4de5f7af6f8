//! One scheduling pass, pure: first every pod that may stay where it is stays (and takes its
//! share of its node), then every pod that needs a place gets one, or a pending reason.
//!
//! Where a pod of the previous table (or a pod a node reports running) may stay:
//! - its node is Ready or NotReady for at most the eviction delay, is not draining, and matches
//!   the workload's node selector (cordoned nodes keep their pods);
//! - a Deployment keeps at most `replicas` pods of its current template (previous-table entries
//!   first, then running ones, then the oldest); its pods of an older template, or on a draining
//!   node, are replaced as a rolling update (Kubernetes' arithmetic, one step per pass): new
//!   pods while the total stays within `replicas + maxSurge`; old pods leave, unavailable ones
//!   first, while at least `replicas - maxUnavailable` stay available (ready for
//!   `minReadySeconds`); Recreate starts no new pod while an old one is listed or stopping;
//! - a DaemonSet keeps one pod per matching node; a template change updates them in place,
//!   node by node: unavailable old pods at once, available ones while at most `maxUnavailable`
//!   nodes are without an available pod; a bare Pod keeps its one node.

use std::collections::{BTreeMap, BTreeSet};

use skiff_manifests::{Kind, ObjectKey, PodSuffix, daemon_set_pod_name, deployment_pod_name};

use super::input::{
    NodeCondition, Pending, Placement, SchedInput, SchedNode, SchedOutput, Workload, WorkloadKind,
};
use super::reason::{Misfit, Tally, Usage, has_room, misfit};
use skiff_manifests::model::pod::TaintEffect;

/// New names tried before a pod is reported pending for want of a free name.
const NAME_ATTEMPTS: usize = 64;

/// What happens to the pods a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// They stay.
    Keep,
    /// They move elsewhere, leaving once replaced (draining, or no longer matching).
    MoveOff,
    /// They are gone: the node left or has been NotReady longer than the eviction delay.
    Gone,
}

/// A pod the previous table lists or a node reports running.
#[derive(Clone, Debug)]
struct Candidate {
    name: String,
    node: usize,
    template_hash: String,
    in_previous: bool,
    /// Reported running with the template hash the candidate carries.
    running: bool,
    /// Reported ready (with that hash), and since when as far as the leader knows.
    ready: bool,
    ready_since_ms: Option<u64>,
    started_ms: Option<u64>,
}

/// A table entry being built.
#[derive(Clone, Debug)]
struct Placed {
    entry: Placement,
    node: usize,
    workload: usize,
    /// Counts toward a rolling update's available pods.
    available: bool,
    /// A Deployment pod kept only until its replacement runs.
    outgoing: bool,
}

/// What a workload still needs after the keep phase.
enum Need {
    Deployment {
        workload: usize,
        count: u32,
        available_current: u32,
    },
    DaemonSet {
        workload: usize,
        nodes: Vec<usize>,
        targets: u32,
    },
    Pod {
        workload: usize,
        fallback: Option<Candidate>,
    },
}

/// The workload a pod belongs to (a bare Pod: itself).
type OwnerKey = ObjectKey;

struct Pass<'a> {
    input: &'a SchedInput,
    /// Sorted by name; indexes below refer to this order.
    nodes: Vec<&'a SchedNode>,
    fates: Vec<Fate>,
    usage: Vec<Usage>,
    table: Vec<Option<Placed>>,
    /// `(namespace, name)` of every entry in `table`.
    kept_names: BTreeSet<(String, String)>,
    /// Names no new pod may take: kept, previous, reported.
    taken_names: BTreeSet<(String, String)>,
    pending: Vec<Pending>,
    now_ms: u64,
    /// Template hashes of pods being stopped, per owner.
    terminating: BTreeMap<OwnerKey, BTreeSet<String>>,
    /// Some workload has required pod anti-affinity (its placed pods keep others away).
    any_anti_affinity: bool,
}

/// Computes the full assignment table. Pure: `now_ms` is the wall clock the NotReady times are
/// measured against, and `suffix` supplies the random tails of new Deployment pod names.
pub fn schedule(
    input: &SchedInput,
    now_ms: u64,
    suffix: &mut dyn FnMut() -> PodSuffix,
) -> SchedOutput {
    let mut nodes: Vec<&SchedNode> = input.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    let fates = nodes
        .iter()
        .map(|node| {
            if node_gone(node, now_ms, input.eviction_delay, input.restart_grace) {
                Fate::Gone
            } else if node.draining {
                Fate::MoveOff
            } else {
                Fate::Keep
            }
        })
        .collect();
    let mut pass = Pass {
        input,
        usage: vec![Usage::default(); nodes.len()],
        nodes,
        fates,
        table: Vec::new(),
        kept_names: BTreeSet::new(),
        taken_names: BTreeSet::new(),
        pending: Vec::new(),
        now_ms,
        terminating: BTreeMap::new(),
        any_anti_affinity: input.workloads.iter().any(|w| {
            w.affinity
                .pod_anti_affinity
                .as_ref()
                .is_some_and(|a| !a.required.is_empty())
        }),
    };
    let mut candidates = pass.gather();

    // DaemonSets first (one per node, they claim their node's room), then bare Pods, then
    // Deployments; each by namespace and name.
    let mut order: Vec<usize> = (0..input.workloads.len()).collect();
    order.sort_by_key(|&i| {
        let w = &input.workloads[i];
        let rank = match w.kind {
            WorkloadKind::DaemonSet { .. } => 0,
            WorkloadKind::Pod | WorkloadKind::JobPod { .. } => 1,
            WorkloadKind::Deployment { .. } => 2,
        };
        (rank, &w.namespace, &w.name)
    });
    let mut seen: BTreeSet<OwnerKey> = BTreeSet::new();
    let mut seen_job_pods: BTreeSet<(OwnerKey, String)> = BTreeSet::new();
    let mut needs = Vec::new();
    for index in order {
        let workload = &input.workloads[index];
        let key = owner_key(workload);
        if let WorkloadKind::JobPod { pod } = &workload.kind {
            // A Job's pods share their owner: each takes its own candidates.
            if !seen_job_pods.insert((key.clone(), pod.clone())) {
                continue;
            }
            let mine: Vec<Candidate> = candidates
                .get_mut(&key)
                .map(|by_name| {
                    let names: Vec<(String, usize)> = by_name
                        .keys()
                        .filter(|(name, _)| name == pod)
                        .cloned()
                        .collect();
                    names.iter().filter_map(|k| by_name.remove(k)).collect()
                })
                .unwrap_or_default();
            needs.push(pass.keep_pod(index, mine));
            continue;
        }
        if !seen.insert(key.clone()) {
            continue; // declared twice: the first declaration wins
        }
        let mine: Vec<Candidate> = candidates
            .remove(&key)
            .map(|by_name| by_name.into_values().collect())
            .unwrap_or_default();
        needs.push(match workload.kind {
            WorkloadKind::Deployment { .. } => pass.keep_deployment(index, mine),
            WorkloadKind::DaemonSet { .. } => pass.keep_daemon_set(index, mine),
            WorkloadKind::Pod | WorkloadKind::JobPod { .. } => pass.keep_pod(index, mine),
        });
    }
    for need in needs {
        match need {
            Need::Deployment {
                workload,
                count,
                available_current,
            } => pass.place_deployment(workload, count, available_current, suffix),
            Need::DaemonSet {
                workload,
                nodes,
                targets,
            } => pass.place_daemon_set(workload, &nodes, targets, suffix),
            Need::Pod { workload, fallback } => pass.place_pod(workload, fallback),
        }
    }
    pass.finish()
}

/// True when `node`'s pods are placed elsewhere: it left for good, stopped longer than the
/// restart grace, or has been NotReady longer than the eviction delay.
pub fn node_gone(
    node: &SchedNode,
    now_ms: u64,
    eviction_delay: std::time::Duration,
    restart_grace: std::time::Duration,
) -> bool {
    let delay_ms = u64::try_from(eviction_delay.as_millis()).unwrap_or(u64::MAX);
    let restart_ms = u64::try_from(restart_grace.as_millis()).unwrap_or(u64::MAX);
    match node.condition {
        NodeCondition::Left => true,
        NodeCondition::Stopped { since_ms } => now_ms.saturating_sub(since_ms) > restart_ms,
        NodeCondition::NotReady { since_ms } => now_ms.saturating_sub(since_ms) > delay_ms,
        NodeCondition::Ready => false,
    }
}

fn owner_key(workload: &Workload) -> OwnerKey {
    ObjectKey::new(workload.object_kind(), &workload.namespace, &workload.name)
}

impl<'a> Pass<'a> {
    fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
    }

    /// The fate of `workload`'s pods on `node`: a node that no longer matches the node
    /// selector moves them off (and, for a DaemonSet, one that no longer matches its required
    /// node affinity); a NoExecute taint they do not tolerate (any longer) puts them out at
    /// once, as Kubernetes evicts them.
    fn fate(&self, node: usize, workload: &Workload) -> Fate {
        let n = self.nodes[node];
        let daemon = matches!(workload.kind, WorkloadKind::DaemonSet { .. });
        match self.fates[node] {
            Fate::Gone => Fate::Gone,
            _ if !tolerated(
                n,
                &workload.tolerations,
                &[TaintEffect::NoExecute],
                self.now_ms,
            ) =>
            {
                Fate::Gone
            }
            Fate::Keep if !workload.fits_node(n) => Fate::MoveOff,
            Fate::Keep if daemon && !node_affinity_fits(workload, n) => Fate::MoveOff,
            fate => fate,
        }
    }

    /// Ready, not cordoned, not draining and matching: may get a new pod of `workload`.
    fn takes_new(&self, node: usize, workload: &Workload) -> bool {
        let n = self.nodes[node];
        n.condition == NodeCondition::Ready
            && !n.cordoned
            && !n.draining
            && workload.fits_node(n)
            && self.constraint_misfit(workload, node).is_none()
    }

    /// A rolling update counts `candidate` available: reported ready, for at least
    /// `min_ready_ms` when the leader saw it turn ready.
    fn available(&self, candidate: &Candidate, min_ready_ms: u64) -> bool {
        candidate.ready
            && candidate
                .ready_since_ms
                .is_none_or(|since| self.now_ms.saturating_sub(since) >= min_ready_ms)
    }

    /// Puts an entry in the table unless its name is already there. True when kept.
    fn keep(&mut self, workload: usize, candidate: &Candidate, hash: &str, outgoing: bool) -> bool {
        let w = &self.input.workloads[workload];
        if !self
            .kept_names
            .insert((w.namespace.clone(), candidate.name.clone()))
        {
            return false;
        }
        self.taken_names
            .insert((w.namespace.clone(), candidate.name.clone()));
        self.usage[candidate.node].add(w);
        self.table.push(Some(Placed {
            entry: Placement {
                namespace: w.namespace.clone(),
                name: candidate.name.clone(),
                owner: w.owner(),
                template_hash: hash.to_string(),
                node: self.nodes[candidate.node].name.clone(),
                job: None,
            },
            node: candidate.node,
            workload,
            available: candidate.template_hash == hash && {
                let min_ready_ms = match w.kind {
                    WorkloadKind::Deployment { min_ready_ms, .. } => min_ready_ms,
                    _ => 0,
                };
                self.available(candidate, min_ready_ms)
            },
            outgoing,
        }));
        true
    }

    /// The nodes that may get a new pod of `workload`, by index.
    fn open_nodes(&self, workload: usize) -> Vec<usize> {
        let w = &self.input.workloads[workload];
        (0..self.nodes.len())
            .filter(|&n| self.takes_new(n, w))
            .collect()
    }

    /// Among `open` nodes, the emptiest that has room for one more pod of `workload`, fewest
    /// of its pods (`spread`) first.
    fn best_node(&self, workload: usize, open: &[usize], spread: Option<&[u32]>) -> Option<usize> {
        let w = &self.input.workloads[workload];
        open.iter()
            .copied()
            .filter(|&n| has_room(self.nodes[n], &self.usage[n], w))
            .filter(|&n| self.constraint_misfit(w, n).is_none())
            .min_by_key(|&n| {
                let count = spread.map_or(0, |counts| counts[n]);
                (
                    self.dislike(w, n),
                    count,
                    self.usage[n].load_with(self.nodes[n], w),
                    n,
                )
            })
    }

    /// Why no node takes one more pod of `workload`, over every node that has not left.
    fn tally(&self, workload: usize) -> Tally {
        let w = &self.input.workloads[workload];
        let mut tally = Tally::default();
        for (n, node) in self.nodes.iter().enumerate() {
            if node.condition != NodeCondition::Left {
                let first = misfit(node, &self.usage[n], w);
                let m = match first {
                    Some(m) if m <= Misfit::NodeSelector => Some(m),
                    _ => self.constraint_misfit(w, n).or(first),
                };
                tally.count(m);
            }
        }
        tally
    }

    fn fresh_name(&mut self, namespace: &str, mut make: impl FnMut() -> String) -> Option<String> {
        for _ in 0..NAME_ATTEMPTS {
            let name = make();
            if self
                .taken_names
                .insert((namespace.to_string(), name.clone()))
            {
                return Some(name);
            }
        }
        None
    }

    fn place_new(&mut self, workload: usize, node: usize, name: String) {
        let candidate = Candidate {
            name,
            node,
            template_hash: String::new(),
            in_previous: false,
            running: false,
            ready: false,
            ready_since_ms: None,
            started_ms: None,
        };
        let hash = self.input.workloads[workload].template_hash.clone();
        self.keep(workload, &candidate, &hash, false);
    }
}

mod constraints;
mod keep;
mod place;

pub(crate) use constraints::{node_affinity_fits, tolerated};

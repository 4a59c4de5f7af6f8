//! Whether a node can take one more pod of a workload, and the Kubernetes-style reason a pod
//! stays pending: `0/3 nodes: 2 insufficient memory, 1 cordoned`.

use std::collections::BTreeMap;

use super::input::{NodeCondition, SchedNode, Workload};

/// The most pods the scheduler puts on one node, whatever the node advertises (skiff nodes
/// advertise 110, kubelet's default): with it a pass places at most this many pods per node,
/// so one huge `replicas` cannot make a pass run for long or a table grow without bound.
pub const MAX_PODS_PER_NODE: u32 = 256;

/// The pods `node` may hold: its advertised pod capacity, at most [`MAX_PODS_PER_NODE`].
pub fn pod_capacity(node: &SchedNode) -> u32 {
    node.allocatable.pods.min(MAX_PODS_PER_NODE)
}

/// Why a node cannot take a pod. Each node counts once, under the first check it fails, in
/// this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotReady,
    Draining,
    Cordoned,
    /// Not the node `spec.nodeName` names.
    NodeName,
    NodeSelector,
    NodeAffinity,
    Taint,
    PodAffinity,
    PodAntiAffinity,
    TopologySpread,
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
    /// Every name tried for the new pod was in use (a DaemonSet whose node-derived name clashes
    /// and whose fallback names clash too: only with a broken suffix source).
    NameTaken,
}

impl Misfit {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfit::NotReady => "not ready",
            Misfit::Draining => "draining",
            Misfit::Cordoned => "cordoned",
            Misfit::NodeName => "didn't match the requested node name",
            Misfit::NodeSelector => "node selector mismatch",
            Misfit::NodeAffinity => "didn't match node affinity",
            Misfit::Taint => "had untolerated taint",
            Misfit::PodAffinity => "didn't match pod affinity",
            Misfit::PodAntiAffinity => "didn't match pod anti-affinity",
            Misfit::TopologySpread => "didn't match pod topology spread constraints",
            Misfit::TooManyPods => "too many pods",
            Misfit::InsufficientCpu => "insufficient cpu",
            Misfit::InsufficientMemory => "insufficient memory",
            Misfit::NameTaken => "pod name in use",
        }
    }
}

/// What the pods placed on a node request in total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

impl Usage {
    pub fn add(&mut self, workload: &Workload) {
        self.cpu_millis = self.cpu_millis.saturating_add(workload.requests.cpu_millis);
        self.memory_bytes = self
            .memory_bytes
            .saturating_add(workload.requests.memory_bytes);
        self.pods = self.pods.saturating_add(1);
    }

    pub fn remove(&mut self, workload: &Workload) {
        self.cpu_millis = self.cpu_millis.saturating_sub(workload.requests.cpu_millis);
        self.memory_bytes = self
            .memory_bytes
            .saturating_sub(workload.requests.memory_bytes);
        self.pods = self.pods.saturating_sub(1);
    }

    /// Lower is emptier: the requested share of cpu plus that of memory, in thousandths,
    /// counting one more pod of `workload`. A resource the node has none of counts as full
    /// once anything asks for it.
    pub fn load_with(&self, node: &SchedNode, workload: &Workload) -> u64 {
        fn share(used: u64, asked: u64, total: u64) -> u64 {
            let used = u128::from(used) + u128::from(asked);
            match total {
                0 if used == 0 => 0,
                0 => 1000,
                total => u64::try_from(used * 1000 / u128::from(total)).unwrap_or(u64::MAX),
            }
        }
        let alloc = &node.allocatable;
        share(
            self.cpu_millis,
            workload.requests.cpu_millis,
            alloc.cpu_millis,
        )
        .saturating_add(share(
            self.memory_bytes,
            workload.requests.memory_bytes,
            alloc.memory_bytes,
        ))
    }
}

/// The first reason `node` (with `used` already placed on it) cannot take one more pod of
/// `workload`, or `None` when it can. Left nodes are not asked.
pub fn misfit(node: &SchedNode, used: &Usage, workload: &Workload) -> Option<Misfit> {
    let alloc = &node.allocatable;
    let asked = &workload.requests;
    if node.condition != NodeCondition::Ready {
        Some(Misfit::NotReady)
    } else if node.draining {
        Some(Misfit::Draining)
    } else if node.cordoned {
        Some(Misfit::Cordoned)
    } else if workload.node_name.as_ref().is_some_and(|n| *n != node.name) {
        Some(Misfit::NodeName)
    } else if !workload.fits_node(node) {
        Some(Misfit::NodeSelector)
    } else if used.pods >= pod_capacity(node) {
        Some(Misfit::TooManyPods)
    } else if used.cpu_millis.saturating_add(asked.cpu_millis) > alloc.cpu_millis {
        Some(Misfit::InsufficientCpu)
    } else if used.memory_bytes.saturating_add(asked.memory_bytes) > alloc.memory_bytes {
        Some(Misfit::InsufficientMemory)
    } else {
        None
    }
}

/// True when `node` (with `used` placed on it) has the pod slot, cpu and memory for one more
/// pod of `workload`: the last three checks of [`misfit`].
pub fn has_room(node: &SchedNode, used: &Usage, workload: &Workload) -> bool {
    let alloc = &node.allocatable;
    let asked = &workload.requests;
    used.pods < pod_capacity(node)
        && used.cpu_millis.saturating_add(asked.cpu_millis) <= alloc.cpu_millis
        && used.memory_bytes.saturating_add(asked.memory_bytes) <= alloc.memory_bytes
}

/// Counts of misfits over a set of nodes, and how many nodes would take the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub available: u32,
    pub misfits: BTreeMap<Misfit, u32>,
}

impl Tally {
    pub fn count(&mut self, misfit: Option<Misfit>) {
        match misfit {
            None => self.available += 1,
            Some(m) => *self.misfits.entry(m).or_default() += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.available + self.misfits.values().sum::<u32>()
    }

    /// `0/3 nodes: 2 insufficient memory, 1 cordoned`: available/total `noun`, then each
    /// reason with its count, most frequent first (ties in check order).
    pub fn describe(&self, noun: &str) -> String {
        let mut text = format!("{}/{} {noun}", self.available, self.total());
        let mut reasons: Vec<(Misfit, u32)> = self.misfits.iter().map(|(m, c)| (*m, *c)).collect();
        reasons.sort_by_key(|(misfit, count)| (std::cmp::Reverse(*count), *misfit));
        let parts: Vec<String> = reasons
            .iter()
            .map(|(misfit, count)| format!("{count} {}", misfit.as_str()))
            .collect();
        if !parts.is_empty() {
            text.push_str(": ");
            text.push_str(&parts.join(", "));
        }
        text
    }
}

//! Tables for the scheduler: one test per rule (spread, resources, selectors, cordon, drain,
//! eviction delay, nodes leaving and coming back, extras, template changes, DaemonSets, bare
//! Pods, reasons, determinism) and a scale check. `Sim` plays the loop: schedule, publish the
//! table as the next previous table, nodes report what they run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use skiff_manifests::{Kind, PodSuffix};

use super::*;
use crate::pod::Owner;

const GI: u64 = 1 << 30;
const MI: u64 = 1 << 20;
const DELAY: Duration = Duration::from_secs(10);
const RESTART_GRACE: Duration = Duration::from_secs(30);

fn node(name: &str) -> SchedNode {
    SchedNode {
        name: name.to_string(),
        condition: NodeCondition::Ready,
        cordoned: false,
        draining: false,
        labels: BTreeMap::new(),
        allocatable: Allocatable {
            cpu_millis: 4000,
            memory_bytes: 8 * GI,
            pods: 110,
        },
        taints: Vec::new(),
    }
}

fn with(mut n: SchedNode, change: impl FnOnce(&mut SchedNode)) -> SchedNode {
    change(&mut n);
    n
}

fn sized(name: &str, cpu_millis: u64, memory_bytes: u64, pods: u32) -> SchedNode {
    with(node(name), |n| {
        n.allocatable = Allocatable {
            cpu_millis,
            memory_bytes,
            pods,
        }
    })
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> SchedNode {
    with(node(name), |n| {
        n.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn workload(kind: WorkloadKind, name: &str) -> Workload {
    Workload {
        kind,
        namespace: "default".to_string(),
        name: name.to_string(),
        template_hash: "h1".to_string(),
        requests: Resources {
            cpu_millis: 100,
            memory_bytes: 64 * MI,
        },
        node_selector: BTreeMap::new(),
        node_name: None,
        pod_labels: BTreeMap::new(),
        affinity: Default::default(),
        tolerations: Vec::new(),
        spread: Vec::new(),
    }
}

fn deployment(name: &str, replicas: u32) -> Workload {
    workload(
        WorkloadKind::Deployment {
            replicas,
            max_unavailable: 0,
            // Unbounded surge: every replacement at once (the rollout tables bound it).
            max_surge: replicas,
            min_ready_ms: 0,
            recreate: false,
            paused: false,
        },
        name,
    )
}

fn daemon_set(name: &str) -> Workload {
    workload(
        WorkloadKind::DaemonSet {
            max_unavailable: Share::Count(1),
        },
        name,
    )
}

fn bare_pod(name: &str) -> Workload {
    workload(WorkloadKind::Pod, name)
}

fn asking(mut w: Workload, cpu_millis: u64, memory_bytes: u64) -> Workload {
    w.requests = Resources {
        cpu_millis,
        memory_bytes,
    };
    w
}

fn selecting(mut w: Workload, labels: &[(&str, &str)]) -> Workload {
    w.node_selector = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    w
}

fn entry(owner: &str, name: &str, hash: &str, node: &str) -> Placement {
    let (kind, owner) = owner.split_once('/').unwrap_or(("Deployment", owner));
    Placement {
        namespace: "default".to_string(),
        name: name.to_string(),
        owner: Owner {
            kind: Kind::from_name(kind).unwrap(),
            name: owner.to_string(),
        },
        template_hash: hash.to_string(),
        node: node.to_string(),
        job: None,
    }
}

fn running(a: &Placement, started_ms: u64) -> ReportedPod {
    ReportedPod {
        namespace: a.namespace.clone(),
        name: a.name.clone(),
        owner: (a.owner.kind != Kind::Pod).then(|| a.owner.clone()),
        template_hash: a.template_hash.clone(),
        node: a.node.clone(),
        running: true,
        ready: true,
        ready_since_ms: None,
        deleting: false,
        started_ms: Some(started_ms),
    }
}

/// The scheduling loop in miniature, with predictable pod name suffixes (`s1`, `s2`, ...).
struct Sim {
    input: SchedInput,
    now_ms: u64,
    suffixes: u32,
    out: SchedOutput,
}

impl Sim {
    fn new(nodes: Vec<SchedNode>, workloads: Vec<Workload>) -> Sim {
        Sim {
            input: SchedInput {
                nodes,
                workloads,
                previous: Vec::new(),
                reported: Vec::new(),
                eviction_delay: DELAY,
                restart_grace: RESTART_GRACE,
            },
            now_ms: 1_000_000,
            suffixes: 0,
            out: SchedOutput::default(),
        }
    }

    /// One pass; its table becomes the previous table of the next pass.
    fn step(&mut self) -> &SchedOutput {
        let counter = &mut self.suffixes;
        let mut suffix = || {
            *counter += 1;
            PodSuffix::new(&format!("s{counter}")).unwrap_or_else(|e| panic!("{e}"))
        };
        self.out = schedule(&self.input, self.now_ms, &mut suffix);
        self.input.previous = self.out.assignments.clone();
        &self.out
    }

    /// Every assigned pod runs on its node (started at `now`, older pods keep their time).
    fn all_running(&mut self) {
        let before: BTreeMap<(String, String), u64> = self
            .input
            .reported
            .iter()
            .filter_map(|r| Some(((r.name.clone(), r.node.clone()), r.started_ms?)))
            .collect();
        self.input.reported = self
            .out
            .assignments
            .iter()
            .map(|a| {
                let key = (a.name.clone(), a.node.clone());
                running(a, before.get(&key).copied().unwrap_or(self.now_ms))
            })
            .collect();
    }

    fn node(&mut self, name: &str) -> &mut SchedNode {
        let found = self.input.nodes.iter_mut().find(|n| n.name == name);
        found.unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Pods per node of one owner (`web`, `DaemonSet/agent`).
    fn counts(&self, owner: &str) -> BTreeMap<String, usize> {
        let (kind, name) = owner.split_once('/').unwrap_or(("Deployment", owner));
        let mut out = BTreeMap::new();
        for a in &self.out.assignments {
            if a.owner.kind.as_str() == kind && a.owner.name == name {
                *out.entry(a.node.clone()).or_default() += 1;
            }
        }
        out
    }

    fn pairs(&self) -> Vec<(String, String)> {
        let out = self.out.assignments.iter();
        out.map(|a| (a.name.clone(), a.node.clone())).collect()
    }

    fn reasons(&self) -> Vec<(String, u32, String)> {
        let pending = self.out.pending.iter();
        pending
            .map(|p| (p.owner.to_string(), p.count, p.reason.clone()))
            .collect()
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

mod constraints;
mod kinds;
mod rollout;
mod rules;
mod scale;

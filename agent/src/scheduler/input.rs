//! What the scheduler decides from and what it hands back: nodes, workloads (built from
//! validated objects), the previous assignment table, the pods nodes report, and the new table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_manifests::model::pod::{Affinity, Taint, Toleration, TopologySpreadConstraint};
use skiff_manifests::{DEFAULT_NAMESPACE, Kind, Object, ObjectKey, PodSpec, Valid};

use crate::pod::{Owner, OwnerRef};

/// Cpu and memory, as requested by a pod or free on a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// What a node offers to pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocatable {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Most pods the node runs at once.
    pub pods: u32,
}

/// A node's health as membership sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeCondition {
    Ready,
    /// Unreachable or unhealthy since `since_ms` (wall clock, milliseconds): its pods stay
    /// assigned until the eviction delay has passed, then are placed elsewhere.
    NotReady {
        since_ms: u64,
    },
    /// Its agent stopped gracefully (Left) since `since_ms`: its pods keep running there, so
    /// they stay assigned for the restart grace (an upgrade or restart comes back to them), then
    /// are placed elsewhere.
    Stopped {
        since_ms: u64,
    },
    /// Gone for good (removed, or stopped longer than the restart grace): its pods are placed
    /// elsewhere at once.
    Left,
}

/// One node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedNode {
    pub name: String,
    pub condition: NodeCondition,
    /// Gets no new pods, keeps the ones it has.
    pub cordoned: bool,
    /// Gets no new pods; its pods move to other nodes (a Deployment's pod leaves once its
    /// replacement runs elsewhere).
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Allocatable,
    /// `skiff taint node`: pods that do not tolerate them stay off (NoSchedule), use the node
    /// last (PreferNoSchedule) or leave (NoExecute, after their tolerationSeconds).
    #[serde(default)]
    pub taints: Vec<NodeTaint>,
}

/// A node's taint and when it was set (wall clock ms), for NoExecute's tolerationSeconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTaint {
    pub taint: Taint,
    #[serde(default)]
    pub added_ms: u64,
}

/// What makes pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// `replicas` pods spread across nodes. A template change (or a drain) replaces pods as a
    /// rolling update: at most `replicas + max_surge` pods at once, at least
    /// `replicas - max_unavailable` available (ready for `min_ready_ms`); `recreate` stops
    /// every old pod before the first new one starts. `paused` holds the rollout: the pods it
    /// has are kept whatever their template, only missing ones are made.
    Deployment {
        replicas: u32,
        max_unavailable: u32,
        #[serde(default)]
        max_surge: u32,
        #[serde(default)]
        min_ready_ms: u64,
        #[serde(default)]
        recreate: bool,
        #[serde(default)]
        paused: bool,
    },
    /// One pod on every node that matches the node selector. A template change replaces them
    /// in place, node by node: at most `max_unavailable` nodes without an available pod.
    DaemonSet { max_unavailable: Share },
    /// A bare Pod: one pod, named like the object, on one node.
    Pod,
    /// One pod of a Job (the workload's name is the Job's), named `pod`: kept on its node or
    /// placed like a bare Pod. Which pods a Job wants is decided before the pass
    /// (`crate::jobs`).
    JobPod { pod: String },
}

/// A count, or a percentage of a total (rounded up; never less than one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Share {
    Count(u32),
    Percent(u32),
}

impl Share {
    pub fn of(self, total: u32) -> u32 {
        let n = match self {
            Share::Count(n) => n,
            Share::Percent(p) => {
                u32::try_from((u64::from(total) * u64::from(p)).div_ceil(100)).unwrap_or(u32::MAX)
            }
        };
        n.max(1)
    }
}

/// A desired object that makes pods, reduced to what placement needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The pod-template-hash of a Deployment or DaemonSet; the content hash of a bare Pod.
    pub template_hash: String,
    /// Per pod: the containers' requests added up, or the largest init container's if larger.
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    /// `spec.nodeName`: only the node of that name (its `kubernetes.io/hostname` label).
    pub node_name: Option<String>,
    /// The labels its pods carry (what pod affinity and spread constraints select).
    pub pod_labels: BTreeMap<String, String>,
    pub affinity: Affinity,
    pub tolerations: Vec<Toleration>,
    pub spread: Vec<TopologySpreadConstraint>,
}

impl Workload {
    /// The workload of a Deployment, DaemonSet or Pod; `None` for other kinds.
    pub fn from_object(object: &Valid<Object>) -> Option<Workload> {
        let meta = object.metadata();
        let (kind, template_hash, spec, pod_labels): (
            WorkloadKind,
            String,
            &PodSpec,
            &BTreeMap<String, String>,
        ) = match object.get() {
            Object::Deployment(d) => {
                let (max_surge, max_unavailable, recreate) = match &d.spec.strategy {
                    skiff_manifests::DeploymentStrategy::RollingUpdate { rolling_update } => {
                        let (surge, unavailable) = rolling_update.resolve(d.spec.replicas);
                        (surge, unavailable, false)
                    }
                    skiff_manifests::DeploymentStrategy::Recreate => (0, d.spec.replicas, true),
                };
                let kind = WorkloadKind::Deployment {
                    replicas: d.spec.replicas,
                    max_unavailable,
                    max_surge,
                    min_ready_ms: u64::from(d.spec.min_ready_seconds) * 1000,
                    recreate,
                    paused: d.spec.paused,
                };
                (
                    kind,
                    d.pod_template_hash(),
                    &d.spec.template.spec,
                    &d.spec.template.metadata.labels,
                )
            }
            Object::DaemonSet(d) => (
                WorkloadKind::DaemonSet {
                    max_unavailable: match d.spec.update_strategy.max_unavailable {
                        skiff_manifests::IntOrPercent::Int(n) => Share::Count(n),
                        skiff_manifests::IntOrPercent::Percent(p) => Share::Percent(p),
                    },
                },
                d.pod_template_hash(),
                &d.spec.template.spec,
                &d.spec.template.metadata.labels,
            ),
            Object::Pod(p) => (
                WorkloadKind::Pod,
                object.content_hash(),
                &p.spec,
                &p.metadata.labels,
            ),
            _ => return None,
        };
        let totals = spec.total_requests();
        Some(Workload {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            template_hash,
            requests: Resources {
                cpu_millis: totals.cpu_millis,
                memory_bytes: totals.memory_bytes,
            },
            node_selector: spec.node_selector.clone(),
            node_name: spec.node_name.clone(),
            pod_labels: pod_labels.clone(),
            affinity: spec.affinity.clone(),
            tolerations: spec.tolerations.clone(),
            spread: spec.topology_spread_constraints.clone(),
        })
    }

    pub fn object_kind(&self) -> Kind {
        match self.kind {
            WorkloadKind::Deployment { .. } => Kind::Deployment,
            WorkloadKind::DaemonSet { .. } => Kind::DaemonSet,
            WorkloadKind::Pod => Kind::Pod,
            WorkloadKind::JobPod { .. } => Kind::Job,
        }
    }

    /// The name of the one pod of a bare Pod or a Job pod.
    pub fn single_pod_name(&self) -> &str {
        match &self.kind {
            WorkloadKind::JobPod { pod } => pod,
            _ => &self.name,
        }
    }

    /// The workload of one pod `pod` of `job` (whose template is `template_hash`).
    pub fn job_pod(job: &Valid<skiff_manifests::Job>, pod: String) -> Workload {
        let spec = &job.spec.template.spec;
        let totals = spec.total_requests();
        Workload {
            kind: WorkloadKind::JobPod { pod },
            namespace: job.metadata.namespace.clone(),
            name: job.metadata.name.clone(),
            template_hash: job.pod_template_hash(),
            requests: Resources {
                cpu_millis: totals.cpu_millis,
                memory_bytes: totals.memory_bytes,
            },
            node_selector: spec.node_selector.clone(),
            node_name: spec.node_name.clone(),
            pod_labels: job.spec.template.metadata.labels.clone(),
            affinity: spec.affinity.clone(),
            tolerations: spec.tolerations.clone(),
            spread: spec.topology_spread_constraints.clone(),
        }
    }

    /// The owner carried by this workload's assignments: `Deployment/web`, `DaemonSet/agent`,
    /// and for a bare Pod `Pod/<its own name>`.
    pub fn owner(&self) -> Owner {
        Owner {
            kind: self.object_kind(),
            name: self.name.clone(),
        }
    }

    /// `Deployment/default/web`: how pending entries name the workload.
    pub fn owner_ref(&self) -> OwnerRef {
        OwnerRef::new(self.object_kind(), &self.namespace, &self.name)
    }

    /// True when `node` has every label of the node selector and is the node `nodeName`
    /// names, if set.
    pub fn fits_node(&self, node: &SchedNode) -> bool {
        self.node_name
            .as_ref()
            .is_none_or(|name| *name == node.name)
            && self
                .node_selector
                .iter()
                .all(|(key, value)| node.labels.get(key) == Some(value))
    }
}

/// The workloads among desired objects. A workload whose namespace is neither `default` nor a
/// declared Namespace is not scheduled and comes back as pending.
pub fn workloads_from_objects<'a>(
    objects: impl IntoIterator<Item = &'a Valid<Object>>,
) -> (Vec<Workload>, Vec<Pending>) {
    let objects: Vec<&Valid<Object>> = objects.into_iter().collect();
    let namespaces: Vec<ObjectKey> = objects
        .iter()
        .map(|o| o.key())
        .filter(|k| k.kind == Kind::Namespace)
        .collect();
    let mut workloads = Vec::new();
    let mut blocked = Vec::new();
    for object in objects {
        let Some(workload) = Workload::from_object(object) else {
            continue;
        };
        let namespace_known = workload.namespace == DEFAULT_NAMESPACE
            || namespaces.iter().any(|k| k.name == workload.namespace);
        if namespace_known {
            workloads.push(workload);
        } else {
            blocked.push(Pending {
                owner: workload.owner_ref(),
                count: 1,
                reason: format!("namespace {:?} not found", workload.namespace),
            });
        }
    }
    (workloads, blocked)
}

/// One pod placed on one node: an entry of the table the leader publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub namespace: String,
    pub name: String,
    pub owner: Owner,
    pub template_hash: String,
    pub node: String,
    /// A Job's pod: its place in the Job's progress (which the table records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMark>,
}

/// A Job pod's attempt, as the leader recorded it: the table is the Job's progress, so a new
/// leader carries on from it and a recorded end never changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMark {
    /// The completion index (Indexed Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Counts the Job's attempts from 1; names the pod (`Valid::<Job>::pod_name`).
    pub attempt: u32,
    /// When a leader first placed it (wall clock ms).
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<JobPodEnd>,
}

/// How a Job pod ended, once and for all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPodEnd {
    pub succeeded: bool,
    /// Wall clock ms.
    pub at_ms: u64,
    /// A failure counted against `backoffLimit` (not: ignored by the pod failure policy, or
    /// stopped because the Job ended or was suspended).
    #[serde(default)]
    pub counted: bool,
    /// Why it failed (`Error`, `NodeLost`, `DeadlineExceeded`...); empty on success.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A pod a node says it has (from its `pod/<ns>/<name>` status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedPod {
    pub namespace: String,
    pub name: String,
    /// `None` for a bare Pod.
    pub owner: Option<Owner>,
    pub template_hash: String,
    pub node: String,
    /// At least one container is running.
    pub running: bool,
    pub ready: bool,
    /// When the leader saw it turn ready (wall clock ms); `None` when ready since before the
    /// leader knew it (counts as available at once).
    #[serde(default)]
    pub ready_since_ms: Option<u64>,
    /// Being stopped: never kept, but a Recreate rollout waits for it to be gone.
    #[serde(default)]
    pub deleting: bool,
    /// When the pod started (wall clock ms), if it has: older copies are kept first.
    pub started_ms: Option<u64>,
}

/// Everything one scheduling pass looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchedInput {
    pub nodes: Vec<SchedNode>,
    pub workloads: Vec<Workload>,
    /// The table the leader (this one or the one before) published last.
    pub previous: Vec<Placement>,
    pub reported: Vec<ReportedPod>,
    /// How long a NotReady node keeps its pods before they are placed elsewhere.
    pub eviction_delay: Duration,
    /// How long a node whose agent stopped gracefully keeps its pods.
    pub restart_grace: Duration,
}

/// Pods of one workload that have no node, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// `Deployment/default/web` (serialized as that string).
    pub owner: OwnerRef,
    pub count: u32,
    /// `0/3 nodes: 2 insufficient memory, 1 cordoned`.
    pub reason: String,
}

/// The result of one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedOutput {
    /// The full table, sorted by namespace, name, node.
    pub assignments: Vec<Placement>,
    /// Sorted by owner.
    pub pending: Vec<Pending>,
    /// Draining nodes with no pods left in the table: safe to release. Sorted.
    pub drained: Vec<String>,
}

impl SchedOutput {
    /// The table split per node (what goes into `sched/assign/<node>`). Nodes with no pods
    /// are absent.
    pub fn by_node(&self) -> BTreeMap<&str, Vec<&Placement>> {
        let mut out: BTreeMap<&str, Vec<&Placement>> = BTreeMap::new();
        for entry in &self.assignments {
            out.entry(entry.node.as_str()).or_default().push(entry);
        }
        out
    }
}

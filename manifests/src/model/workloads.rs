//! Validated workload objects: Pod, Deployment (template, selector, rollout strategy) and
//! DaemonSet (one pod per matching node).

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::object::ObjectMeta;
use super::pod::PodSpec;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    /// Boxed, like every pod spec in the model: an [`crate::Object`] is as large as its largest
    /// kind, and a small object (a Service, a ConfigMap) should not pay for a pod spec.
    pub spec: Box<PodSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub metadata: ObjectMeta,
    /// Boxed: see [`Pod`]'s spec.
    pub spec: Box<DeploymentSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: u32,
    pub selector: LabelSelector,
    pub template: PodTemplate,
    pub strategy: DeploymentStrategy,
    /// A new pod counts as available once it has been ready this long (rollouts wait for it).
    #[serde(skip_serializing_if = "is_zero")]
    pub min_ready_seconds: u32,
    /// A rollout that makes no progress for this long is reported failed
    /// (`ProgressDeadlineExceeded`).
    #[serde(skip_serializing_if = "is_default_deadline")]
    pub progress_deadline_seconds: u32,
    /// Old revisions kept for `rollout undo`.
    #[serde(skip_serializing_if = "is_default_history")]
    pub revision_history_limit: u32,
    /// A paused Deployment keeps the pods it has, whatever their template: its template changes
    /// wait for `rollout resume`. It still scales; pods it needs beyond those it has (scaling
    /// up, a lost node) are made from the current template.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// Kubernetes' defaults for a Deployment.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 10;

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_default_deadline(v: &u32) -> bool {
    *v == DEFAULT_PROGRESS_DEADLINE_SECONDS
}

fn is_default_history(v: &u32) -> bool {
    *v == DEFAULT_REVISION_HISTORY_LIMIT
}

/// One pod of the template on every node that matches the template's `nodeSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonSet {
    pub metadata: ObjectMeta,
    pub spec: DaemonSetSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSpec {
    pub selector: LabelSelector,
    pub template: PodTemplate,
    #[serde(skip_serializing_if = "DaemonSetUpdate::is_default")]
    pub update_strategy: DaemonSetUpdate,
    /// Old revisions kept for `rollout undo`.
    #[serde(skip_serializing_if = "is_default_history")]
    pub revision_history_limit: u32,
}

/// A DaemonSet's `updateStrategy` (RollingUpdate): a template change replaces the pods node by
/// node, at most `max_unavailable` nodes without an available pod at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonSetUpdate {
    pub max_unavailable: IntOrPercent,
}

impl Default for DaemonSetUpdate {
    /// Kubernetes' default: one node at a time.
    fn default() -> Self {
        DaemonSetUpdate {
            max_unavailable: IntOrPercent::Int(1),
        }
    }
}

impl DaemonSetUpdate {
    fn is_default(&self) -> bool {
        *self == DaemonSetUpdate::default()
    }

    /// How many of `nodes` may be without an available pod at once: a percentage rounds up,
    /// and never less than one (as Kubernetes does when maxSurge is 0).
    pub fn resolve(&self, nodes: u32) -> u32 {
        self.max_unavailable.resolve(nodes, true).max(1)
    }
}

impl Serialize for DaemonSetUpdate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", "RollingUpdate")?;
        map.serialize_entry(
            "rollingUpdate",
            &BTreeMap::from([("maxUnavailable", self.max_unavailable)]),
        )?;
        map.end()
    }
}

/// `matchLabels` only; validation guarantees it is not empty and matches the template labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
}

impl LabelSelector {
    /// True when every selector label is present in `labels` with the same value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }
}

/// The pod a Deployment stamps out: labels and annotations plus the pod spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodTemplate {
    pub metadata: TemplateMetadata,
    pub spec: Box<PodSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TemplateMetadata {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How pods are replaced when the template changes. Stored for the rollout logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum DeploymentStrategy {
    RollingUpdate {
        #[serde(rename = "rollingUpdate")]
        rolling_update: RollingUpdate,
    },
    Recreate,
}

impl Default for DeploymentStrategy {
    fn default() -> Self {
        DeploymentStrategy::RollingUpdate {
            rolling_update: RollingUpdate::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    pub max_surge: IntOrPercent,
    pub max_unavailable: IntOrPercent,
}

impl Default for RollingUpdate {
    /// Kubernetes' defaults: 25% surge, 25% unavailable.
    fn default() -> Self {
        RollingUpdate {
            max_surge: IntOrPercent::Percent(25),
            max_unavailable: IntOrPercent::Percent(25),
        }
    }
}

impl RollingUpdate {
    /// `(max surge, max unavailable)` as pod counts for `replicas`, like Kubernetes: surge
    /// rounds up, unavailable rounds down, and if both come out 0 one pod may be unavailable.
    pub fn resolve(&self, replicas: u32) -> (u32, u32) {
        let surge = self.max_surge.resolve(replicas, true);
        let unavailable = self.max_unavailable.resolve(replicas, false);
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    }
}

/// A count (`1`) or a percentage of the replicas (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(u32),
    Percent(u32),
}

impl IntOrPercent {
    /// The count for `total` replicas.
    pub fn resolve(&self, total: u32, round_up: bool) -> u32 {
        match *self {
            IntOrPercent::Int(count) => count,
            IntOrPercent::Percent(percent) => {
                let product = u64::from(total) * u64::from(percent);
                let count = if round_up {
                    product.div_ceil(100)
                } else {
                    product / 100
                };
                u32::try_from(count).unwrap_or(u32::MAX)
            }
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrPercent::Int(count) => serializer.serialize_u32(*count),
            IntOrPercent::Percent(percent) => serializer.collect_str(&format_args!("{percent}%")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_update_counts() {
        let default = RollingUpdate::default();
        assert_eq!(default.resolve(4), (1, 1));
        assert_eq!(default.resolve(10), (3, 2));
        assert_eq!(default.resolve(1), (1, 0));
        let zero = RollingUpdate {
            max_surge: IntOrPercent::Int(0),
            max_unavailable: IntOrPercent::Percent(10),
        };
        assert_eq!(zero.resolve(3), (0, 1));
    }

    #[test]
    fn strategy_serializes_in_kubernetes_shape() {
        let json = serde_json::to_value(DeploymentStrategy::default()).ok();
        assert_eq!(
            json,
            Some(serde_json::json!({
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            }))
        );
        let recreate = serde_json::to_value(DeploymentStrategy::Recreate).ok();
        assert_eq!(recreate, Some(serde_json::json!({"type": "Recreate"})));
    }
}

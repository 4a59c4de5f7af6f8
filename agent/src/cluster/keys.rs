//! The agent's gossip keys and their values: object digests (`obj/...`), pod reports
//! (`pod/<ns>/<name>`, written by the node running the pod) and the leader's assignment table
//! (`sched/assign/<node>`, `sched/pending`). Every value is small JSON (or a digest string).

use crate::pod::Owner;
use serde::{Deserialize, Serialize};
use skiff_gossip::{Generation, RECORD_PREFIX, Term};
use skiff_manifests::{Kind, ObjectKey};

/// Prefix of pod reports.
pub const POD_PREFIX: &str = "pod/";
/// Prefix of the leader's per-node assignment tables.
pub const ASSIGN_PREFIX: &str = "sched/assign/";
/// The leader's list of workloads that cannot be placed.
pub const PENDING_KEY: &str = "sched/pending";

/// `obj/<Kind>/<namespace>/<name>` (namespace empty for cluster-wide kinds).
pub fn object_key(key: &ObjectKey) -> String {
    format!(
        "{RECORD_PREFIX}{}/{}/{}",
        key.kind.as_str(),
        key.namespace,
        key.name
    )
}

/// The object key of an `obj/...` gossip key.
pub fn parse_object_key(text: &str) -> Option<ObjectKey> {
    let rest = text.strip_prefix(RECORD_PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let kind = parts.next()?;
    let namespace = parts.next()?;
    let name = parts.next()?;
    let kind = Kind::from_name(kind)?;
    if name.is_empty() || name.contains('/') || namespace.is_empty() == kind.is_namespaced() {
        return None;
    }
    Some(ObjectKey::new(kind, namespace, name))
}

/// `pod/<ns>/<name>`.
pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{POD_PREFIX}{namespace}/{name}")
}

/// What a node reports about a pod it runs (`pod/<ns>/<name>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodReport {
    pub uid: String,
    pub owner: Option<Owner>,
    pub template_hash: String,
    pub created_ms: u64,
    #[serde(default)]
    pub deleting: bool,
    /// Some container runs.
    pub running: bool,
    /// Every container runs (the pod counts as ready).
    pub ready: bool,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The `status` of the pod as `get pods -o json` renders it on its node.
    pub status: serde_json::Value,
}

pub use crate::scheduler::{Pending as PendingWorkload, Placement as AssignedPod};

/// The table the leader publishes for one node under `sched/assign/<node>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub term: Term,
    pub generation: Generation,
    pub pods: Vec<AssignedPod>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_round_trip_and_bad_keys_are_refused() {
        let cases = [
            ObjectKey::new(Kind::Deployment, "default", "web"),
            ObjectKey::new(Kind::Namespace, "", "prod"),
            ObjectKey::new(Kind::ConfigMap, "prod", "cfg.v2"),
        ];
        for key in cases {
            let text = object_key(&key);
            assert_eq!(parse_object_key(&text), Some(key.clone()), "{text}");
        }
        assert_eq!(
            object_key(&ObjectKey::new(Kind::Deployment, "default", "web")),
            "obj/Deployment/default/web"
        );
        for bad in [
            "obj/Deployment/default/",
            "obj/Nope/default/web",
            "obj/Deployment//web",
            "obj/Namespace/x/prod",
            "pod/default/web",
            "obj/Deployment/default/a/b",
        ] {
            assert_eq!(parse_object_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn assignment_json_carries_term_and_generation_as_numbers() {
        let doc = Assignment {
            term: Term(2),
            generation: Generation(5),
            pods: Vec::new(),
        };
        let json = r#"{"term":2,"generation":5,"pods":[]}"#;
        assert_eq!(serde_json::to_string(&doc).expect("json"), json);
        assert_eq!(serde_json::from_str::<Assignment>(json).expect("json"), doc);
    }
}

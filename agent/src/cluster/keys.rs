//! The agent's gossip keys and their values: object digests (`obj/...`), pod reports
//! (`pod/<ns>/<name>`, written by the node running the pod) and the leader's assignment table
//! (`sched/assign/<node>`, `sched/pending`). Every value is small JSON (or a digest string);
//! a node's table that would not fit one gossip value is split into parts
//! (`sched/assign-part/<i>/<node>`), and a reader uses it only when every part has arrived.

use crate::pod::Owner;
use serde::{Deserialize, Serialize};
use skiff_gossip::{Generation, RECORD_PREFIX, Term};
use skiff_manifests::{Kind, ObjectKey};

/// Prefix of pod reports.
pub const POD_PREFIX: &str = "pod/";
/// Prefix of the leader's per-node assignment tables.
pub const ASSIGN_PREFIX: &str = "sched/assign/";
/// Prefix of the second and later parts of a table: `sched/assign-part/<i>/<node>`.
pub const ASSIGN_PART_PREFIX: &str = "sched/assign-part/";
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
    /// The named container ports (for Services whose targetPort is a name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::services::NamedPort>,
    /// The pod's `hostname` and `subdomain` (its DNS name under a headless Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
}

pub use crate::scheduler::{Pending as PendingWorkload, Placement as AssignedPod};

/// The table the leader publishes for one node under `sched/assign/<node>` (or one part of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub term: Term,
    pub generation: Generation,
    pub pods: Vec<AssignedPod>,
    /// How many parts the whole table has (written on part 0 and every other part; absent
    /// means 1, so a table that fits one value is encoded as it always was).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub parts: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The gossip key of part `index` of `node`'s table.
pub fn assignment_key(node: &str, index: u32) -> String {
    if index == 0 {
        format!("{ASSIGN_PREFIX}{node}")
    } else {
        format!("{ASSIGN_PART_PREFIX}{index}/{node}")
    }
}

/// (target node, part index) of an assignment key.
pub fn parse_assignment_key(key: &str) -> Option<(&str, u32)> {
    if let Some(node) = key.strip_prefix(ASSIGN_PREFIX) {
        return (!node.is_empty()).then_some((node, 0));
    }
    let (index, node) = key.strip_prefix(ASSIGN_PART_PREFIX)?.split_once('/')?;
    let index: u32 = index.parse().ok()?;
    (index > 0 && !node.is_empty()).then_some((node, index))
}

/// `doc` as JSON values of at most `limit` bytes each: part 0 first. Pods are packed in order,
/// each part holding as many as fit. A single pod too large for a part makes an error (the
/// caller logs it and publishes nothing for the node).
pub fn split_assignment(doc: &Assignment, limit: usize) -> Result<Vec<String>, usize> {
    let whole = Assignment {
        parts: 1,
        ..doc.clone()
    };
    let json = serde_json::to_string(&whole).unwrap_or_default();
    if json.len() <= limit {
        return Ok(vec![json]);
    }
    // The header of a part with a generous part count, and each pod with its comma.
    let header = serde_json::to_string(&Assignment {
        term: doc.term,
        generation: doc.generation,
        pods: Vec::new(),
        parts: u32::MAX,
    })
    .unwrap_or_default()
    .len();
    let mut groups: Vec<Vec<AssignedPod>> = vec![Vec::new()];
    let mut used = header;
    for pod in &doc.pods {
        let size = serde_json::to_string(pod).unwrap_or_default().len() + 1;
        if header + size > limit {
            return Err(header + size);
        }
        if used + size > limit {
            groups.push(Vec::new());
            used = header;
        }
        used += size;
        groups.last_mut().expect("one group").push(pod.clone());
    }
    let parts = groups.len() as u32;
    Ok(groups
        .into_iter()
        .map(|pods| {
            serde_json::to_string(&Assignment {
                term: doc.term,
                generation: doc.generation,
                pods,
                parts,
            })
            .unwrap_or_default()
        })
        .collect())
}

/// The whole table from its parts (index -> part), when every part is there and all of them
/// belong to the same table (term, generation and part count agree); `None` while a part is
/// missing or stale, so a reader keeps the last whole table it had.
pub fn assemble_assignment(
    parts: &std::collections::BTreeMap<u32, Assignment>,
) -> Option<Assignment> {
    let first = parts.get(&0)?;
    if first.parts == 0 || parts.len() < first.parts as usize {
        return None;
    }
    let mut whole = Assignment {
        term: first.term,
        generation: first.generation,
        pods: Vec::new(),
        parts: 1,
    };
    for index in 0..first.parts {
        let part = parts.get(&index)?;
        if (part.term, part.generation, part.parts) != (first.term, first.generation, first.parts) {
            return None;
        }
        whole.pods.extend(part.pods.iter().cloned());
    }
    Some(whole)
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
            parts: 1,
        };
        let json = r#"{"term":2,"generation":5,"pods":[]}"#;
        assert_eq!(serde_json::to_string(&doc).expect("json"), json);
        assert_eq!(serde_json::from_str::<Assignment>(json).expect("json"), doc);
    }

    fn pod(name: &str) -> AssignedPod {
        AssignedPod {
            namespace: "default".into(),
            name: name.into(),
            owner: crate::pod::Owner {
                kind: Kind::Deployment,
                name: "web".into(),
            },
            template_hash: "0123456789abcdef".into(),
            node: "n2".into(),
            job: None,
        }
    }

    #[test]
    fn a_large_table_is_split_into_parts_that_fit_and_reassembled_in_order() {
        let doc = Assignment {
            term: Term(3),
            generation: Generation(9),
            pods: (0..300).map(|i| pod(&format!("web-{i:04}"))).collect(),
            parts: 1,
        };
        let limit = 4096;
        let values = split_assignment(&doc, limit).expect("split");
        assert!(values.len() > 1, "300 pods do not fit 4 KiB");
        assert!(values.iter().all(|v| v.len() <= limit));
        let parts: std::collections::BTreeMap<u32, Assignment> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32, serde_json::from_str(v).expect("part json")))
            .collect();
        assert_eq!(assemble_assignment(&parts), Some(doc.clone()));
        // A missing part, or a part of another generation: no table.
        let mut missing = parts.clone();
        missing.remove(&1);
        assert_eq!(assemble_assignment(&missing), None);
        let mut stale = parts.clone();
        stale.get_mut(&1).expect("part 1").generation = Generation(8);
        assert_eq!(assemble_assignment(&stale), None);
        // A table that fits is one value, encoded as before parts existed.
        let small = Assignment {
            pods: vec![pod("a")],
            ..doc.clone()
        };
        let values = split_assignment(&small, limit).expect("split");
        assert_eq!(values.len(), 1);
        assert!(!values[0].contains("parts"), "{}", values[0]);
        // A pod that cannot fit any part.
        assert!(split_assignment(&doc, 60).is_err());
    }

    #[test]
    fn assignment_keys_round_trip() {
        for (node, index) in [("n1", 0), ("n1", 1), ("edge-7", 12)] {
            let key = assignment_key(node, index);
            assert_eq!(parse_assignment_key(&key), Some((node, index)), "{key}");
        }
        assert_eq!(assignment_key("n1", 0), "sched/assign/n1");
        for bad in [
            "sched/assign/",
            "sched/assign-part/0/n1",
            "sched/assign-part/x/n1",
            "sched/assign-part/2/",
            "sched/pending",
        ] {
            assert_eq!(parse_assignment_key(bad), None, "{bad}");
        }
    }
}

//! What a node publishes about itself ([`NodeMetadata`]) and the node list every node derives
//! from gossip ([`NodeStatus`]), built by the pure [`build_node_list`].
//!
//! Status rule: a `left` marker wins (Left); otherwise judged dead by its observers (the
//! prober, `crate::prober::judge`) is NotReady; otherwise Ready only if the node publishes `ready = true`. Only the newest generation
//! of each node name is listed, so a restarted node never shows twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Allocatable capacity a node offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

/// Metadata a node gossips about itself (its name and address come from its chitchat id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub ready: bool,
    pub cordoned: bool,
    /// Cordoned, and its pods are moving to other nodes (`skiff drain`).
    #[serde(default)]
    pub draining: bool,
    /// `skiff taint node`, in the order they were set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<NodeTaint>,
}

/// A node taint as gossiped: `key=value:effect`, and when it was set (wall clock ms). The
/// agent checks the effect (NoSchedule, PreferNoSchedule, NoExecute) before publishing it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTaint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: String,
    #[serde(default)]
    pub added_ms: u64,
}

/// Condition of a node as seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeCondition {
    Ready,
    NotReady,
    Left,
}

impl std::fmt::Display for NodeCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeCondition::Ready => "Ready",
            NodeCondition::NotReady => "NotReady",
            NodeCondition::Left => "Left",
        })
    }
}

/// One row of `skiff get nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub condition: NodeCondition,
    /// Generation of the listed incarnation (its start time in ms unless configured).
    pub generation: u64,
    /// Unix ms at which this incarnation started (0 if not yet known).
    pub started_at_unix_ms: u64,
    pub address: SocketAddr,
    /// Metadata as last published (default if none arrived yet).
    pub metadata: NodeMetadata,
    /// True for the node this list was built on.
    pub is_self: bool,
}

impl NodeStatus {
    /// Age of this incarnation at `now` (zero if its start time is unknown or in the future).
    pub fn age(&self, now: SystemTime) -> Duration {
        let started = UNIX_EPOCH + Duration::from_millis(self.started_at_unix_ms);
        if self.started_at_unix_ms == 0 {
            return Duration::ZERO;
        }
        now.duration_since(started).unwrap_or(Duration::ZERO)
    }

    pub fn version(&self) -> &str {
        &self.metadata.agent_version
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.metadata.labels
    }
}

/// One chitchat node state as observed, before the status rule.
#[derive(Debug, Clone)]
pub struct ObservedNode {
    pub name: String,
    pub generation: u64,
    pub address: SocketAddr,
    /// Not judged dead by the prober (always true for self).
    pub alive: bool,
    pub is_self: bool,
    pub metadata: Option<NodeMetadata>,
    pub started_at_unix_ms: u64,
    pub left: bool,
}

/// Applies the status rule and the newest-generation filter; sorted by name.
pub fn build_node_list(observed: impl IntoIterator<Item = ObservedNode>) -> Vec<NodeStatus> {
    let mut newest: BTreeMap<String, ObservedNode> = BTreeMap::new();
    for node in observed {
        match newest.get(&node.name) {
            Some(kept) if kept.generation >= node.generation => {}
            _ => {
                newest.insert(node.name.clone(), node);
            }
        }
    }
    newest
        .into_values()
        .map(|node| {
            let ready = node.metadata.as_ref().is_some_and(|m| m.ready);
            let condition = if node.left {
                NodeCondition::Left
            } else if node.alive && ready {
                NodeCondition::Ready
            } else {
                NodeCondition::NotReady
            };
            NodeStatus {
                name: node.name,
                condition,
                generation: node.generation,
                started_at_unix_ms: node.started_at_unix_ms,
                address: node.address,
                metadata: node.metadata.unwrap_or_default(),
                is_self: node.is_self,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(name: &str, generation: u64, alive: bool, ready: bool, left: bool) -> ObservedNode {
        ObservedNode {
            name: name.into(),
            generation,
            address: "127.0.0.1:1".parse().expect("addr"),
            alive,
            is_self: false,
            metadata: Some(NodeMetadata {
                ready,
                ..NodeMetadata::default()
            }),
            started_at_unix_ms: generation,
            left,
        }
    }

    #[test]
    fn status_rule_table() {
        let cases = [
            ((true, true, false), NodeCondition::Ready),
            ((true, false, false), NodeCondition::NotReady),
            ((false, true, false), NodeCondition::NotReady),
            ((false, true, true), NodeCondition::Left),
            ((true, true, true), NodeCondition::Left),
        ];
        for ((alive, ready, left), expected) in cases {
            let list = build_node_list([observed("a", 1, alive, ready, left)]);
            assert_eq!(
                list[0].condition, expected,
                "alive={alive} ready={ready} left={left}"
            );
        }
        let mut no_meta = observed("b", 1, true, true, false);
        no_meta.metadata = None;
        assert_eq!(
            build_node_list([no_meta])[0].condition,
            NodeCondition::NotReady
        );
    }

    #[test]
    fn only_the_newest_generation_is_listed() {
        let list = build_node_list([
            observed("a", 5, false, true, false),
            observed("a", 9, true, true, false),
            observed("a", 7, false, true, false),
            observed("b", 1, true, true, false),
        ]);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "a");
        assert_eq!(list[0].generation, 9);
        assert_eq!(list[0].condition, NodeCondition::Ready);
    }

    #[test]
    fn age_is_measured_from_start() {
        let status = build_node_list([observed("a", 1_000, true, true, false)]).remove(0);
        let now = UNIX_EPOCH + Duration::from_millis(61_000);
        assert_eq!(status.age(now), Duration::from_secs(60));
    }
}

//! Reading the keys every node publishes: whole prefix scans, and change scans that hand back
//! only the nodes whose keys changed since the caller last looked (a node's key set changes
//! exactly when its generation or its max version does), so a caller that looks ten times a
//! second does work proportional to what changed, not to the size of the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use chitchat::{Chitchat, ChitchatId, NodeState};
use tokio::sync::Mutex;

/// Where a node's keys stood when they were read: (generation, max version).
pub type KeysVersion = (u64, u64);

/// One node's keys under the scanned prefixes, read at `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKeys {
    pub node: String,
    pub version: KeysVersion,
    /// `(key, value)` in key order.
    pub keys: Vec<(String, String)>,
}

/// What changed since the versions the caller holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// Nodes whose keys changed (or that the caller did not know), with their keys now.
    pub changed: Vec<NodeKeys>,
    /// Nodes the caller knew that are no longer listed.
    pub gone: Vec<String>,
}

impl KeyChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.gone.is_empty()
    }
}

/// Reads the keys every node publishes (see [`crate::GossipHandle::keys_with_prefix`]). Cheap
/// to clone.
#[derive(Clone)]
pub struct KeyReader {
    chitchat: Arc<Mutex<Chitchat>>,
}

/// The newest generation of every known node name (incarnations removed with `skiff node
/// remove` left out).
fn newest_states(chitchat: &Chitchat) -> BTreeMap<&str, (&ChitchatId, &NodeState)> {
    let removed = crate::members::removed_incarnations(chitchat);
    let mut newest: BTreeMap<&str, (&ChitchatId, &NodeState)> = BTreeMap::new();
    for (id, state) in chitchat.node_states() {
        if crate::members::is_removed(&removed, &id.node_id, id.generation_id) {
            continue;
        }
        let entry = newest.entry(&id.node_id).or_insert((id, state));
        if id.generation_id > entry.0.generation_id {
            *entry = (id, state);
        }
    }
    newest
}

impl KeyReader {
    pub(crate) fn new(chitchat: Arc<Mutex<Chitchat>>) -> KeyReader {
        KeyReader { chitchat }
    }

    /// `(node name, key, value)` for every key starting with `prefix` on the newest generation
    /// of every known node, this one included.
    pub async fn keys_with_prefix(&self, prefix: &str) -> Vec<(String, String, String)> {
        let chitchat = self.chitchat.lock().await;
        let mut out = Vec::new();
        for (node, (_, state)) in newest_states(&chitchat) {
            for (key, value) in state.iter_prefix(prefix) {
                out.push((node.to_string(), key.to_string(), value.value.clone()));
            }
        }
        out
    }

    /// The keys under any of `prefixes` of every node whose keys changed since `known` (what
    /// the caller read before, by node name), and the known nodes no longer listed.
    pub async fn changes_since(
        &self,
        known: &BTreeMap<String, KeysVersion>,
        prefixes: &[&str],
    ) -> KeyChanges {
        self.changes_since_except(known, prefixes, None).await
    }

    /// [`KeyReader::changes_since`], reading only `own_prefixes` of the node `own.0` (a node
    /// need not copy out the keys it wrote itself to learn them again).
    pub async fn changes_since_except(
        &self,
        known: &BTreeMap<String, KeysVersion>,
        prefixes: &[&str],
        own: Option<(&str, &[&str])>,
    ) -> KeyChanges {
        let chitchat = self.chitchat.lock().await;
        let newest = newest_states(&chitchat);
        let mut changes = KeyChanges::default();
        for (node, (id, state)) in &newest {
            let version = (id.generation_id, state.max_version());
            if known.get(*node) == Some(&version) {
                continue;
            }
            let mut keys = Vec::new();
            let prefixes = match own {
                Some((name, own_prefixes)) if name == *node => own_prefixes,
                _ => prefixes,
            };
            for prefix in prefixes {
                keys.extend(
                    state
                        .iter_prefix(prefix)
                        .map(|(k, v)| (k.to_string(), v.value.clone())),
                );
            }
            keys.sort();
            keys.dedup_by(|a, b| a.0 == b.0);
            changes.changed.push(NodeKeys {
                node: node.to_string(),
                version,
                keys,
            });
        }
        changes.gone = known
            .keys()
            .filter(|n| !newest.contains_key(n.as_str()))
            .cloned()
            .collect();
        changes
    }
}

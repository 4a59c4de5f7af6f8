//! `skiff node remove` on the issuing node: [`NodeRemover`] frees a name in the member
//! registry, hides the name's known incarnations and revokes its key through the issuer's
//! `node/removed/` and `node/revoked/` gossip keys (see `members.rs`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use chitchat::{Chitchat, ChitchatHandle};
use tokio::sync::{Mutex, watch};
use tracing::info;

use crate::error::RemoveError;
use crate::keyspace::{self, REMOVED_PREFIX, REVOKED_PREFIX};
use crate::members;
use crate::transport::QuicTransport;
use crate::view::NodeStatus;

/// The result of [`NodeRemover::remove`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedNode {
    pub name: String,
    /// Incarnations (generations) of the name now hidden on every node.
    pub hidden_generations: usize,
    /// True if the removed node's key was known (certified since the registry exists) and is
    /// now refused by every node.
    pub key_revoked: bool,
}

/// Forgets replaced devices (`skiff node remove`). Only the issuing node removes: it frees the
/// name in its member registry and publishes the removal marker every node applies. Cheap to
/// clone.
#[derive(Clone)]
pub struct NodeRemover {
    pub(crate) chitchat: Arc<Mutex<Chitchat>>,
    pub(crate) gossip: Weak<ChitchatHandle>,
    pub(crate) nodes: watch::Receiver<Vec<NodeStatus>>,
    pub(crate) plan: watch::Receiver<Arc<crate::prober::run::Plan>>,
    pub(crate) quic: Option<QuicTransport>,
    pub(crate) issuer_dir: Option<PathBuf>,
    pub(crate) self_name: String,
}

impl NodeRemover {
    /// True on the node that holds the CA key (the only one that can remove).
    pub fn is_issuer(&self) -> bool {
        self.issuer_dir.is_some()
    }

    /// Address of the live issuing node as seen in gossip (`None` on the issuer itself).
    pub fn issuer_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().and_then(QuicTransport::join_issuer)
    }

    /// Forgets every known incarnation of `name` cluster-wide and frees the name for joining.
    /// A Ready node needs `force`; the issuer itself cannot be removed.
    pub async fn remove(&self, name: &str, force: bool) -> Result<RemovedNode, RemoveError> {
        let Some(data_dir) = &self.issuer_dir else {
            return Err(RemoveError::NoIssuer);
        };
        let listed = self
            .nodes
            .borrow()
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.condition);
        let registered = members::load_registry(data_dir)?.members.contains_key(name);
        members::check_removal(name, force, &self.self_name, listed, registered)?;
        let mut chitchat = self.chitchat.lock().await;
        let generations: BTreeSet<u64> = chitchat
            .node_states()
            .keys()
            .filter(|id| &*id.node_id == name)
            .map(|id| id.generation_id)
            .collect();
        let (hidden, revoked) = members::update_registry(data_dir, |registry| {
            let revoked = registry.members.remove(name).map(|m| m.key_sha256);
            if let Some(key) = &revoked {
                registry.revoked_keys.insert(key.clone(), name.to_string());
            }
            let set = registry.removed.entry(name.to_string()).or_default();
            members::add_removed(set, generations);
            Ok((set.clone(), revoked))
        })?;
        let state = chitchat.self_node_state();
        if !hidden.is_empty() {
            let key = format!("{REMOVED_PREFIX}{name}");
            keyspace::set_checked(state, &key, &members::encode_marker(&hidden))?;
        }
        if let Some(key) = &revoked {
            keyspace::set_checked(state, &format!("{REVOKED_PREFIX}{key}"), name)?;
        }
        drop(chitchat);
        let peers: Vec<SocketAddr> = {
            let plan = self.plan.borrow();
            plan.by_addr
                .iter()
                .filter(|(_, m)| m.name != self.self_name && m.name != name)
                .filter(|(_, m)| !plan.dead.contains(m))
                .map(|(addr, _)| *addr)
                .collect()
        };
        if let Some(quic) = &self.quic {
            quic.forget_join_member(name);
            if let Some(key) = revoked.clone() {
                let mut keys = quic.revoked_keys();
                keys.insert(key);
                quic.set_revoked_keys(keys);
            }
        }
        // Carry the marker to the live peers now rather than at the next rounds.
        if let Some(handle) = self.gossip.upgrade() {
            for peer in peers {
                let _ = handle.gossip(peer);
            }
        }
        info!(node = %name, generations = hidden.len(), "node removed: its name is free to join");
        Ok(RemovedNode {
            name: name.to_string(),
            hidden_generations: hidden.len(),
            key_revoked: revoked.is_some(),
        })
    }
}

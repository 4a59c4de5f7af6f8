//! Keeps a node's `watch` of [`NodeStatus`] fresh from chitchat's state, and tells the QUIC
//! transport where the CA-holding node is (for relaying joins) and which names the node list
//! holds (for the issuer's join rule). Incarnations removed with `skiff node remove` are left out.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatId};
use tokio::sync::{Mutex, Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::keyspace::{KEY_ISSUER, KEY_LEFT, KEY_META, KEY_STARTED, RESERVED_PREFIX};
use crate::members;
use crate::transport::QuicTransport;
use crate::view::{NodeStatus, ObservedNode, build_node_list};

/// Recomputes the node list when the live set changes, when any node's `node/` keys change (a
/// key listener: chitchat's live-set watch only moves at the end of a gossip round), and on a
/// slow tick as a backstop, publishing only actual changes.
pub(crate) async fn refresh_node_list(
    chitchat: Arc<Mutex<Chitchat>>,
    nodes_tx: watch::Sender<Vec<NodeStatus>>,
    quic: Option<QuicTransport>,
    cancel: CancellationToken,
    tick: Duration,
) {
    let keys_changed = Arc::new(Notify::new());
    let (mut live_rx, _listener) = {
        let guard = chitchat.lock().await;
        // Listeners run under chitchat's lock: only wake the loop.
        let notify = keys_changed.clone();
        let listener = guard.subscribe_event(RESERVED_PREFIX, move |_| notify.notify_one());
        (guard.live_nodes_watcher(), listener)
    };
    let mut ticker = tokio::time::interval(tick);
    loop {
        // Cancel-safe branches: watch::changed and interval ticks lose nothing on drop.
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = live_rx.changed() => if changed.is_err() { break },
            _ = keys_changed.notified() => {}
            _ = ticker.tick() => {}
        }
        let (list, issuer, revoked) = {
            let guard = chitchat.lock().await;
            let removed = members::removed_incarnations(&guard);
            let observed = members::hide_removed(observe(&guard), &removed);
            let revoked = members::revoked_keys(&guard);
            (build_node_list(observed), live_issuer(&guard), revoked)
        };
        if let Some(quic) = &quic {
            quic.set_revoked_keys(revoked);
            quic.set_join_issuer(issuer);
            quic.set_join_members(
                list.iter()
                    .map(|node| (node.name.clone(), node.condition))
                    .collect(),
            );
        }
        nodes_tx.send_if_modified(|current| {
            if *current == list {
                false
            } else {
                *current = list;
                true
            }
        });
    }
}

/// Address of a live node (not this one) that holds the CA key, if any.
fn live_issuer(chitchat: &Chitchat) -> Option<SocketAddr> {
    let self_id = chitchat.self_chitchat_id();
    chitchat
        .live_nodes()
        .filter(|id| *id != self_id)
        .filter(|id| {
            chitchat
                .node_state(id)
                .is_some_and(|state| state.get(KEY_ISSUER).is_some())
        })
        .map(|id| id.gossip_advertise_addr)
        .next()
}

fn observe(chitchat: &Chitchat) -> Vec<ObservedNode> {
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let self_id = chitchat.self_chitchat_id();
    chitchat
        .node_states()
        .iter()
        .map(|(id, state)| ObservedNode {
            name: id.node_id.to_string(),
            generation: id.generation_id,
            address: id.gossip_advertise_addr,
            alive: live.contains(id),
            is_self: id == self_id,
            metadata: state
                .get(KEY_META)
                .and_then(|json| serde_json::from_str(json).ok()),
            started_at_unix_ms: state
                .get(KEY_STARTED)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            left: state.get(KEY_LEFT).is_some(),
        })
        .collect()
}

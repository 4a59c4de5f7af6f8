//! Keeps a node's `watch` of [`NodeStatus`] fresh, judges liveness from the prober's
//! suspicions, and tells the QUIC transport where the CA-holding node is (for relaying joins)
//! and which names the node list holds (for the issuer's join rule). Incarnations removed with
//! `skiff node remove` are left out.
//!
//! Liveness: every observer publishes its suspicions as `node/suspect/<name>` =
//! `<generation>:<incarnation>` (an empty value withdraws one; deletes are not announced by
//! chitchat, sets are). This task reads them from every node's keys, lets the pure
//! [`Judge`] decide who is dead, publishes this node's own suspicions for the prober, raises
//! this node's incarnation (`node/incarnation`) to refute a suspicion of itself, and hands the
//! prober its plan (whom to heartbeat, whom to watch). chitchat's phi detector plays no part.
//!
//! Reachability after a verdict ([`Reach`]): observers judge a partition's far side one ring
//! step at a time (a far member whose observers are all far is judged only after the rings
//! move), so for a few seconds a minority can see a majority Ready. When a verdict lands on
//! the node the leader rule picks, that node asks every member it still judges alive for a
//! prober check; the ones that have not answered are `unconfirmed` and do not count toward its
//! majority (`Reach` is sent before the node list, so a reader that sees the new list sees
//! the reach of it too).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chitchat::{Chitchat, ChitchatId};
use tokio::sync::{Mutex, Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::keyspace::{
    self, KEY_INCARNATION, KEY_ISSUER, KEY_LEFT, KEY_META, KEY_STARTED, RESERVED_PREFIX,
    SUSPECT_PREFIX,
};
use crate::leader::leader_of;
use crate::members;
use crate::prober::detector::Timings as ProberTimings;
use crate::prober::judge::{Judge, Member, Suspicion};
use crate::prober::ring::MemberId;
use crate::prober::run::{Check, Plan, Revived, Suspicions};
use crate::transport::QuicTransport;
use crate::view::{NodeCondition, NodeStatus, ObservedNode, build_node_list};

/// The members this node (as the leader by the rule) judges alive but has not reached since
/// the last verdict. They do not count toward its majority until they answer a check (or are
/// judged dead). Empty on every other node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Counts the checks started (one per verdict seen as the leader).
    pub round: u64,
    /// Names of the members not yet reached in this round.
    pub unconfirmed: BTreeSet<String>,
}

pub(crate) struct NodeListTask {
    pub chitchat: Arc<Mutex<Chitchat>>,
    pub nodes_tx: watch::Sender<Vec<NodeStatus>>,
    pub quic: Option<QuicTransport>,
    pub cancel: CancellationToken,
    /// Backstop: recompute at least this often.
    pub tick: Duration,
    pub timings: ProberTimings,
    pub plan_tx: watch::Sender<Arc<Plan>>,
    pub suspicions: watch::Receiver<Suspicions>,
    pub incarnation: Arc<AtomicU64>,
    pub revived: Revived,
    /// Where unreached members are published (the prober removes the ones that answer);
    /// `None` without a prober (nothing would answer a check).
    pub reach: Option<Arc<watch::Sender<Reach>>>,
}

impl NodeListTask {
    pub async fn run(mut self) {
        let start = Instant::now();
        let keys_changed = Arc::new(Notify::new());
        let (mut live_rx, _listener, me) = {
            let guard = self.chitchat.lock().await;
            // Listeners run under chitchat's lock: only wake the loop.
            let notify = keys_changed.clone();
            let listener = guard.subscribe_event(RESERVED_PREFIX, move |_| notify.notify_one());
            let id = guard.self_chitchat_id();
            let me = MemberId::new(id.node_id.to_string(), id.generation_id);
            (guard.live_nodes_watcher(), listener, me)
        };
        let mut judge = Judge::new(self.timings);
        let mut published: BTreeMap<String, String> = BTreeMap::new();
        let mut dead_before: BTreeSet<MemberId> = BTreeSet::new();
        let mut due: Option<Instant> = None;
        let mut check = Check::default();
        loop {
            let backstop = Instant::now() + self.tick;
            let wake_at = due.map_or(backstop, |d| d.min(backstop));
            // Cancel-safe branches: watch::changed, Notify and sleeps lose nothing on drop.
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                changed = live_rx.changed() => if changed.is_err() { break },
                _ = keys_changed.notified() => {}
                changed = self.suspicions.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(wake_at) => {}
            }
            let mine = self.suspicions.borrow_and_update().clone();
            self.publish_suspicions(&mine, &mut published).await;
            let now = start.elapsed().as_millis() as u64;
            let (observed, members, suspicions, revoked, issuers) = {
                let guard = self.chitchat.lock().await;
                let removed = members::removed_incarnations(&guard);
                let observed = members::hide_removed(observe(&guard), &removed);
                let (members, suspicions) = members_and_suspicions(&guard, &observed);
                let issuers: Vec<(MemberId, SocketAddr)> = guard
                    .node_states()
                    .iter()
                    .filter(|(_, state)| state.get(KEY_ISSUER).is_some())
                    .map(|(id, _)| (member_id(id), id.gossip_advertise_addr))
                    .collect();
                (
                    observed,
                    members,
                    suspicions,
                    members::revoked_keys(&guard),
                    issuers,
                )
            };
            let judgement = judge.judge(&me, &members, &suspicions, now);
            due = judgement.due.map(|d| start + Duration::from_millis(d));
            if let Some(incarnation) = judgement.refute {
                self.refute(incarnation).await;
            }
            let ids: BTreeSet<&MemberId> = members.iter().map(|m| &m.id).collect();
            let address: BTreeMap<MemberId, SocketAddr> = observed
                .iter()
                .map(|n| (MemberId::new(n.name.clone(), n.generation), n.address))
                .filter(|(m, _)| ids.contains(m))
                .collect();
            let observed: Vec<ObservedNode> = observed
                .into_iter()
                .map(|mut n| {
                    let id = MemberId::new(n.name.clone(), n.generation);
                    n.alive = n.is_self || !judgement.dead.contains(&id);
                    n
                })
                .collect();
            let list = build_node_list(observed);
            for m in judgement.dead.difference(&dead_before) {
                warn!(node = %m.name, generation = m.generation, "node judged dead by its observers");
            }
            for m in dead_before.difference(&judgement.dead) {
                if ids.contains(m) {
                    info!(node = %m.name, "node heard again: alive");
                    if let Some(addr) = address.get(m) {
                        let _ = self.revived.send(*addr);
                    }
                }
            }
            let verdict = !judgement.dead.is_subset(&dead_before);
            dead_before = judgement.dead.clone();
            self.update_check(&mut check, &list, verdict);
            let incarnations: BTreeMap<&MemberId, u64> =
                members.iter().map(|m| (&m.id, m.incarnation)).collect();
            let plan = Plan {
                observers: judgement
                    .observers_of(&me)
                    .into_iter()
                    .filter_map(|m| address.get(&m).map(|a| (m.clone(), *a)))
                    .collect(),
                subjects: judgement
                    .subjects_of(&me)
                    .into_iter()
                    .filter_map(|m| {
                        let inc = incarnations.get(&m).copied().unwrap_or(0);
                        address.get(&m).map(|a| (m.clone(), *a, inc))
                    })
                    .collect(),
                by_addr: address.iter().map(|(m, a)| (*a, m.clone())).collect(),
                dead: judgement.dead.clone(),
                push_to: judgement
                    .rings
                    .neighbours_of(&me)
                    .into_iter()
                    .filter_map(|m| address.get(&m).copied())
                    .collect(),
                check: check.clone(),
            };
            self.plan_tx.send_replace(Arc::new(plan));
            let issuer = issuers
                .into_iter()
                .find(|(id, _)| *id != me && ids.contains(id) && !judgement.dead.contains(id))
                .map(|(_, addr)| addr);
            if let Some(quic) = &self.quic {
                quic.set_revoked_keys(revoked);
                quic.set_join_issuer(issuer);
                quic.set_join_members(
                    list.iter()
                        .map(|node| (node.name.clone(), node.condition))
                        .collect(),
                );
            }
            self.nodes_tx.send_if_modified(|current| {
                if *current == list {
                    false
                } else {
                    *current = list;
                    true
                }
            });
        }
    }

    /// Starts a check of every member judged alive when a verdict lands on the leader by the
    /// rule; otherwise narrows the running one to the members still judged alive (and ends it
    /// when this node no longer leads). Publishes the unreached ones before the node list.
    fn update_check(&self, check: &mut Check, list: &[NodeStatus], verdict: bool) {
        let Some(reach) = &self.reach else { return };
        let leads = leader_of(list).is_some_and(|n| n.is_self);
        let alive: Vec<(String, SocketAddr)> = list
            .iter()
            .filter(|n| !n.is_self && n.condition == NodeCondition::Ready)
            .map(|n| (n.name.clone(), n.address))
            .collect();
        if leads && verdict {
            check.round += 1;
            check.members = Arc::new(alive);
            let unconfirmed = check.members.iter().map(|(n, _)| n.clone()).collect();
            info!(
                round = check.round,
                members = check.members.len(),
                "a verdict as the leader: checking the members judged alive"
            );
            reach.send_replace(Reach {
                round: check.round,
                unconfirmed,
            });
            return;
        }
        let kept: Vec<(String, SocketAddr)> = if leads {
            check
                .members
                .iter()
                .filter(|m| alive.contains(m))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if kept.len() != check.members.len() {
            check.members = Arc::new(kept);
        }
        let names: BTreeSet<&String> = check.members.iter().map(|(n, _)| n).collect();
        reach.send_if_modified(|r| {
            let before = r.unconfirmed.len();
            r.unconfirmed.retain(|n| names.contains(n));
            r.unconfirmed.len() != before
        });
    }

    /// Writes this node's suspicions as keys; a withdrawn one becomes an empty value.
    async fn publish_suspicions(
        &self,
        mine: &Suspicions,
        published: &mut BTreeMap<String, String>,
    ) {
        let mut wanted: BTreeMap<String, String> = published
            .keys()
            .map(|name| (name.clone(), String::new()))
            .collect();
        for (subject, incarnation) in mine {
            wanted.insert(
                subject.name.clone(),
                format!("{}:{incarnation}", subject.generation),
            );
        }
        if wanted == *published {
            return;
        }
        let mut guard = self.chitchat.lock().await;
        let state = guard.self_node_state();
        for (name, value) in &wanted {
            if published.get(name) != Some(value) {
                let key = format!("{SUSPECT_PREFIX}{name}");
                if let Err(error) = keyspace::set_checked(state, &key, value) {
                    warn!(%error, "cannot publish a suspicion");
                }
            }
        }
        *published = wanted;
    }

    async fn refute(&self, incarnation: u64) {
        info!(incarnation, "refuting a suspicion of this node");
        self.incarnation.store(incarnation, Ordering::Relaxed);
        let mut guard = self.chitchat.lock().await;
        let _ = keyspace::set_checked(
            guard.self_node_state(),
            KEY_INCARNATION,
            &incarnation.to_string(),
        );
    }
}

fn member_id(id: &ChitchatId) -> MemberId {
    MemberId::new(id.node_id.to_string(), id.generation_id)
}

/// The members (newest generation of every name not Left nor removed) with their announced
/// incarnations, and every published suspicion.
fn members_and_suspicions(
    chitchat: &Chitchat,
    observed: &[ObservedNode],
) -> (Vec<Member>, Vec<Suspicion>) {
    let mut newest: BTreeMap<&str, &ObservedNode> = BTreeMap::new();
    for node in observed {
        match newest.get(node.name.as_str()) {
            Some(kept) if kept.generation >= node.generation => {}
            _ => {
                newest.insert(&node.name, node);
            }
        }
    }
    let incarnations: BTreeMap<MemberId, u64> = chitchat
        .node_states()
        .iter()
        .filter_map(|(id, state)| {
            let inc = state.get(KEY_INCARNATION)?.parse().ok()?;
            Some((member_id(id), inc))
        })
        .collect();
    let mut members = Vec::new();
    for node in newest.values().filter(|n| !n.left) {
        let id = MemberId::new(node.name.clone(), node.generation);
        let incarnation = incarnations.get(&id).copied().unwrap_or(0);
        members.push(Member { id, incarnation });
    }
    let mut suspicions = Vec::new();
    for (id, state) in chitchat.node_states() {
        let observer = member_id(id);
        for (key, value) in state.iter_prefix(SUSPECT_PREFIX) {
            let name = &key[SUSPECT_PREFIX.len()..];
            if let Some((generation, incarnation)) = parse_suspicion(&value.value) {
                suspicions.push(Suspicion {
                    observer: observer.clone(),
                    subject: MemberId::new(name, generation),
                    incarnation,
                });
            }
        }
    }
    (members, suspicions)
}

/// `<generation>:<incarnation>`; empty (withdrawn) or malformed is `None`.
fn parse_suspicion(value: &str) -> Option<(u64, u64)> {
    let (generation, incarnation) = value.split_once(':')?;
    Some((generation.parse().ok()?, incarnation.parse().ok()?))
}

fn observe(chitchat: &Chitchat) -> Vec<ObservedNode> {
    let self_id = chitchat.self_chitchat_id();
    chitchat
        .node_states()
        .iter()
        .map(|(id, state)| ObservedNode {
            name: id.node_id.to_string(),
            generation: id.generation_id,
            address: id.gossip_advertise_addr,
            // Decided by the judge.
            alive: true,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_values_parse_or_count_as_withdrawn() {
        assert_eq!(parse_suspicion("17:3"), Some((17, 3)));
        assert_eq!(parse_suspicion(""), None);
        assert_eq!(parse_suspicion("17"), None);
        assert_eq!(parse_suspicion("x:1"), None);
    }
}

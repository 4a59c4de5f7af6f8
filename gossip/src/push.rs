//! Changes pushed, not waited for: when this node's state changes (a key it set or deleted, or
//! one it learned from a peer), it starts a chitchat exchange at once with its ring neighbours,
//! so a change floods the cluster in a few hops while chitchat's own rounds stay slow
//! (anti-entropy). Pushes are coalesced: the first change goes at once, later ones within the
//! window go together at its end, and only a state that differs from the last pushed one goes
//! (a fingerprint of every node's version). A member judged dead that is heard again, a new ring
//! neighbour (it may have missed what flooded before it was one), and the seeds while this node
//! knows no other member, get an exchange of their own.

use std::collections::BTreeSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chitchat::{Chitchat, ChitchatHandle};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::prober::run::Plan;

/// Why the pusher was woken.
#[derive(Default)]
pub(crate) struct Wake {
    /// A key was set or deleted (the state already changed): push at once.
    pub now: Notify,
    /// A peer sent us a delta that chitchat is about to apply: look after the window.
    pub soon: Notify,
}

pub(crate) struct Pusher {
    pub chitchat: Arc<Mutex<Chitchat>>,
    pub handle: Weak<ChitchatHandle>,
    pub wake: Arc<Wake>,
    pub revived: mpsc::UnboundedReceiver<SocketAddr>,
    pub plan: watch::Receiver<Arc<Plan>>,
    /// Seed addresses, tried every `bootstrap_every` while no other member is known.
    pub seeds: Vec<SocketAddr>,
    pub bootstrap_every: Duration,
    pub coalesce: Duration,
    pub cancel: CancellationToken,
}

impl Pusher {
    pub async fn run(mut self) {
        let mut last_push: Option<Instant> = None;
        let mut last_print: Option<u64> = None;
        let mut bootstrap = tokio::time::interval(self.bootstrap_every);
        let mut known: BTreeSet<SocketAddr> = BTreeSet::new();
        loop {
            // Cancel-safe branches: Notify, mpsc, watch and interval lose nothing when dropped.
            let delay = tokio::select! {
                _ = self.cancel.cancelled() => break,
                changed = self.plan.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // A new neighbour may have missed floods that went along the rings before
                    // it was on them: one exchange brings both sides level.
                    let neighbours = self.plan.borrow_and_update().neighbours();
                    let new: Vec<SocketAddr> = neighbours.difference(&known).copied().collect();
                    known = neighbours;
                    self.gossip(&new);
                    continue;
                }
                _ = self.wake.now.notified() => Duration::ZERO,
                _ = self.wake.soon.notified() => self.coalesce,
                addr = self.revived.recv() => {
                    let Some(addr) = addr else { break };
                    self.gossip(&[addr]);
                    continue;
                }
                _ = bootstrap.tick() => {
                    let alone = self.plan.borrow().by_addr.len() <= 1;
                    if alone && !self.seeds.is_empty() {
                        let seeds = self.seeds.clone();
                        self.gossip(&seeds);
                    }
                    continue;
                }
            };
            // Leading edge at once; within the window of the last push, at its end.
            let mut at = Instant::now() + delay;
            if let Some(last) = last_push {
                at = at.max(last + self.coalesce);
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep_until(at) => {}
            }
            let print = fingerprint(&*self.chitchat.lock().await);
            if last_print == Some(print) {
                continue;
            }
            last_print = Some(print);
            last_push = Some(Instant::now());
            let neighbours: Vec<SocketAddr> = self.plan.borrow().neighbours().into_iter().collect();
            self.gossip(&neighbours);
        }
    }

    fn gossip(&self, peers: &[SocketAddr]) {
        if let Some(handle) = self.handle.upgrade() {
            for peer in peers {
                let _ = handle.gossip(*peer);
            }
        }
    }
}

/// Every node state's identity and newest version: it moves with any set or delete.
fn fingerprint(chitchat: &Chitchat) -> u64 {
    let mut h = DefaultHasher::new();
    for (id, state) in chitchat.node_states() {
        id.hash(&mut h);
        state.max_version().hash(&mut h);
    }
    h.finish()
}

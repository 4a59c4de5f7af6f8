//! The prober task: sends this node's heartbeats to its observers, watches its subjects,
//! pings the late ones, answers pings, and hands its suspicions to the node-list task (which
//! publishes them as gossip keys). It never takes a lock that waits and never touches disk: its
//! inputs arrive on channels (the plan on a `watch`, datagrams on an mpsc) and its outputs
//! leave on channels, so a stalled store or a busy chitchat cannot make this node look dead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::detector::{Action, Timings, Watcher};
use super::ring::MemberId;
use super::wire::Probe;
use crate::node_list::Reach;

/// Sends prober datagrams (QUIC datagrams on the gossip connections, or an in-memory wire).
pub trait ProbeWire: Send + Sync + 'static {
    /// Sends without waiting; a datagram that cannot go now is dropped.
    fn send_probe(&self, to: SocketAddr, datagram: Vec<u8>);
}

/// What the prober acts on, from the node-list task's judgement.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    /// Whom this node heartbeats.
    pub observers: Vec<(MemberId, SocketAddr)>,
    /// Whom this node watches, with the incarnation each announced.
    pub subjects: Vec<(MemberId, SocketAddr, u64)>,
    /// Every member by address (datagrams name no one: the connection does).
    pub by_addr: HashMap<SocketAddr, MemberId>,
    /// Members judged dead.
    pub dead: BTreeSet<MemberId>,
    /// Ring neighbours judged alive, on every ring.
    pub push_to: Vec<SocketAddr>,
    /// The members to check for reachability (the leader's, after a verdict).
    pub check: Check,
}

/// A reachability check: every member in it is asked (a check datagram, again with backoff)
/// until it answers or leaves the check. A new round starts over.
#[derive(Clone, Debug, Default)]
pub(crate) struct Check {
    pub round: u64,
    pub members: Arc<Vec<(String, SocketAddr)>>,
}

impl Plan {
    /// Ring neighbours judged alive (on every ring, observers and subjects included): where
    /// changes are pushed.
    pub fn neighbours(&self) -> BTreeSet<SocketAddr> {
        self.observers
            .iter()
            .map(|(_, a)| *a)
            .chain(self.push_to.iter().copied())
            .chain(
                self.subjects
                    .iter()
                    .filter(|(m, _, _)| !self.dead.contains(m))
                    .map(|(_, a, _)| *a),
            )
            .collect()
    }
}

/// This node's suspicions: subject -> the incarnation suspected.
pub(crate) type Suspicions = BTreeMap<MemberId, u64>;

/// A member judged dead was heard again: it wants an exchange at once.
pub(crate) type Revived = mpsc::UnboundedSender<SocketAddr>;

pub(crate) struct Prober {
    /// This node (for the log).
    pub me: MemberId,
    pub timings: Timings,
    pub wire: Arc<dyn ProbeWire>,
    pub inbound: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    pub plan: watch::Receiver<Arc<Plan>>,
    pub suspicions: watch::Sender<Suspicions>,
    /// This node's incarnation (raised by the node-list task to refute a suspicion).
    pub incarnation: Arc<AtomicU64>,
    pub revived: Revived,
    /// Members of the running check that answered are taken out of it here.
    pub reach: Arc<watch::Sender<Reach>>,
    pub cancel: CancellationToken,
}

/// The running reachability check, as the prober keeps it.
#[derive(Default)]
struct Checking {
    round: u64,
    pending: HashMap<SocketAddr, String>,
    next: u64,
    every: u64,
}

/// A node that pinged us gets our heartbeats for this many periods (its view of the rings
/// may differ from ours for a while).
const PINGER_PERIODS: u64 = 10;

impl Prober {
    pub async fn run(mut self) {
        let start = Instant::now();
        let ms = move || start.elapsed().as_millis() as u64;
        let period = Duration::from_millis(self.timings.heartbeat.max(1));
        let mut watcher = Watcher::new(self.timings);
        let mut plan = self.plan.borrow_and_update().clone();
        let mut pingers: HashMap<SocketAddr, u64> = HashMap::new();
        let mut revived_at: HashMap<SocketAddr, u64> = HashMap::new();
        let mut suspected_since: HashMap<MemberId, u64> = HashMap::new();
        let mut next_reprobe: HashMap<MemberId, u64> = HashMap::new();
        let mut nonce: u32 = 0;
        let mut checking = Checking::default();
        let actions = watcher.set_subjects(&subject_ids(&plan), ms());
        self.apply(actions, &plan, &mut nonce);
        self.follow_check(&mut checking, &plan, &mut nonce, ms());
        let mut beat = tokio::time::interval(period);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let due = watcher
                .next_due()
                .into_iter()
                .chain(next_reprobe.values().copied())
                .chain((!checking.pending.is_empty()).then_some(checking.next))
                .min()
                .map(|d| start + Duration::from_millis(d))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            // Cancel-safe branches: interval ticks, watch changes, mpsc recv and sleeps lose
            // nothing when another branch wins.
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = beat.tick() => {
                    let now = ms();
                    pingers.retain(|_, until| *until > now);
                    let beat = Probe::Heartbeat {
                        incarnation: self.incarnation.load(Ordering::Relaxed),
                    }
                    .encode();
                    let mut sent = BTreeSet::new();
                    for addr in plan.observers.iter().map(|(_, a)| *a).chain(pingers.keys().copied()) {
                        if sent.insert(addr) {
                            self.wire.send_probe(addr, beat.clone());
                        }
                    }
                }
                changed = self.plan.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    plan = self.plan.borrow_and_update().clone();
                    debug!(
                        node = %self.me.name,
                        subjects = ?subject_ids(&plan).iter().map(|m| &m.name).collect::<Vec<_>>(),
                        observers = ?plan.observers.iter().map(|(m, _)| &m.name).collect::<Vec<_>>(),
                        "prober plan"
                    );
                    let actions = watcher.set_subjects(&subject_ids(&plan), ms());
                    self.apply(actions, &plan, &mut nonce);
                    self.follow_check(&mut checking, &plan, &mut nonce, ms());
                }
                datagram = self.inbound.recv() => {
                    let Some((from, bytes)) = datagram else { break };
                    let now = ms();
                    let probe = match Probe::decode(&bytes) {
                        Ok(probe) => probe,
                        Err(error) => {
                            debug!(peer = %from, %error, "dropping a malformed prober datagram");
                            continue;
                        }
                    };
                    let member = plan.by_addr.get(&from).cloned();
                    // Anything it sends proves it reachable.
                    if let Some(name) = checking.pending.remove(&from) {
                        let round = checking.round;
                        self.reach.send_if_modified(|r| r.round == round && r.unconfirmed.remove(&name));
                    }
                    let actions = match (probe, &member) {
                        (Probe::Heartbeat { incarnation }, Some(m)) => {
                            watcher.heartbeat(m, incarnation, now)
                        }
                        (Probe::Pong { incarnation, .. }, Some(m)) => watcher.pong(m, incarnation, now),
                        (Probe::Ping { nonce }, _) => {
                            let pong = Probe::Pong {
                                nonce,
                                incarnation: self.incarnation.load(Ordering::Relaxed),
                            };
                            self.wire.send_probe(from, pong.encode());
                            if member.is_some() {
                                pingers.insert(from, now + PINGER_PERIODS * self.timings.heartbeat);
                            }
                            Vec::new()
                        }
                        (Probe::Check { nonce }, _) => {
                            let pong = Probe::Pong {
                                nonce,
                                incarnation: self.incarnation.load(Ordering::Relaxed),
                            };
                            self.wire.send_probe(from, pong.encode());
                            Vec::new()
                        }
                        _ => Vec::new(),
                    };
                    self.apply(actions, &plan, &mut nonce);
                    // A member judged dead that speaks again wants an exchange now (a healed
                    // partition repairs in one exchange, not in rounds).
                    if member.as_ref().is_some_and(|m| plan.dead.contains(m)) {
                        let last = revived_at.get(&from).copied();
                        if last.is_none_or(|t| now >= t + 2 * self.timings.heartbeat) {
                            revived_at.insert(from, now);
                            let _ = self.revived.send(from);
                        }
                    }
                }
                _ = tokio::time::sleep_until(due) => {
                    let now = ms();
                    let actions = watcher.tick(now);
                    self.apply(actions, &plan, &mut nonce);
                }
            }
            let now = ms();
            if !checking.pending.is_empty() && now >= checking.next {
                self.send_checks(&mut checking, &mut nonce, now);
            }
            // Suspected subjects are pinged now and then, less often the longer they stay
            // silent (a powered-off node costs little), so a return is noticed.
            let suspected: BTreeSet<MemberId> = watcher.suspected().cloned().collect();
            suspected_since.retain(|m, _| suspected.contains(m));
            next_reprobe.retain(|m, _| suspected.contains(m));
            for m in &suspected {
                let since = *suspected_since.entry(m.clone()).or_insert(now);
                let next = next_reprobe
                    .entry(m.clone())
                    .or_insert(now + 2 * self.timings.heartbeat);
                if now >= *next {
                    if let Some(addr) = address_of(&plan, m) {
                        nonce = nonce.wrapping_add(1);
                        self.wire.send_probe(addr, Probe::Ping { nonce }.encode());
                    }
                    let every = ((now - since) / 8).clamp(2 * self.timings.heartbeat, 30_000);
                    *next = now + every;
                }
            }
        }
    }

    /// Starts the plan's check when its round is new (asking every member at once), or keeps
    /// only the members still in it.
    fn follow_check(&self, checking: &mut Checking, plan: &Plan, nonce: &mut u32, now: u64) {
        if plan.check.round != checking.round {
            checking.round = plan.check.round;
            checking.pending = plan
                .check
                .members
                .iter()
                .map(|(name, addr)| (*addr, name.clone()))
                .collect();
            checking.every = self.timings.ping_timeout.max(1);
            self.send_checks(checking, nonce, now);
        } else {
            let kept: BTreeSet<SocketAddr> = plan.check.members.iter().map(|(_, a)| *a).collect();
            checking.pending.retain(|a, _| kept.contains(a));
        }
    }

    /// Asks every member of the check that has not answered, and backs off (a member that
    /// stays silent is judged by its observers soon; asking more often proves nothing more).
    fn send_checks(&self, checking: &mut Checking, nonce: &mut u32, now: u64) {
        for addr in checking.pending.keys() {
            *nonce = nonce.wrapping_add(1);
            self.wire
                .send_probe(*addr, Probe::Check { nonce: *nonce }.encode());
        }
        checking.next = now + checking.every;
        checking.every = (checking.every * 2).min(2 * self.timings.heartbeat.max(1));
    }

    fn apply(&self, actions: Vec<Action>, plan: &Plan, nonce: &mut u32) {
        for action in actions {
            debug!(node = %self.me.name, ?action, "prober action");
            match action {
                Action::Ping(m) => {
                    if let Some(addr) = address_of(plan, &m) {
                        *nonce = nonce.wrapping_add(1);
                        self.wire
                            .send_probe(addr, Probe::Ping { nonce: *nonce }.encode());
                    }
                }
                Action::Suspect {
                    subject,
                    incarnation,
                } => {
                    // At least the incarnation it announced in gossip (a new subject's watcher
                    // has heard no heartbeat yet).
                    let announced = plan
                        .subjects
                        .iter()
                        .find(|(m, _, _)| *m == subject)
                        .map_or(0, |(_, _, inc)| *inc);
                    let incarnation = incarnation.max(announced);
                    debug!(subject = %subject.name, incarnation, "suspecting a silent subject");
                    self.suspicions.send_modify(|s| {
                        s.insert(subject, incarnation);
                    });
                }
                Action::Clear(m) => {
                    self.suspicions.send_if_modified(|s| s.remove(&m).is_some());
                }
            }
        }
    }
}

fn subject_ids(plan: &Plan) -> Vec<MemberId> {
    plan.subjects.iter().map(|(m, _, _)| m.clone()).collect()
}

fn address_of(plan: &Plan, m: &MemberId) -> Option<SocketAddr> {
    plan.subjects
        .iter()
        .find(|(s, _, _)| s == m)
        .map(|(_, a, _)| *a)
}

//! Every node's judgement of every member (pure): who is dead, from the suspicions the members'
//! observers published, and what this node does about it (whom it heartbeats, whom it watches,
//! whether it must refute a suspicion of itself).
//!
//! The rings are drawn over the members this node judges alive. A member judged dead keeps its
//! would-be observers (the observers it would have if it were back on the rings): they keep
//! their suspicion published and re-probe it, so its verdict holds while it stays silent and
//! ends once one of them hears it again. A suspicion counts from when this node first heard it;
//! one that was already published when this node first learned of its subject counts as old
//! news (a node that restarts does not show long-dead members Ready for a while).

use std::collections::{BTreeMap, BTreeSet};

use super::detector::{Heard, Timings, refutation, verdict_due};
use super::ring::{MemberId, Rings};

/// A member with the newest incarnation it announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub incarnation: u64,
}

/// One observer's published suspicion of a subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Suspicion {
    pub observer: MemberId,
    pub subject: MemberId,
    pub incarnation: u64,
}

/// The outcome of one judgement.
#[derive(Clone, Debug, Default)]
pub struct Judgement {
    /// Members judged dead.
    pub dead: BTreeSet<MemberId>,
    /// When to judge again even if nothing else changes (a pending suspicion falls due).
    pub due: Option<u64>,
    /// The incarnation this node must announce to refute a suspicion of itself.
    pub refute: Option<u64>,
    /// The rings over the members judged alive.
    pub rings: std::sync::Arc<Rings>,
}

impl Judgement {
    /// `me`'s observers (whom it heartbeats).
    pub fn observers_of(&self, me: &MemberId) -> Vec<MemberId> {
        self.rings.observers_of(me)
    }

    /// The members `me` watches: live ones it observes on the rings, and dead ones it would
    /// observe if they came back.
    pub fn subjects_of(&self, me: &MemberId) -> Vec<MemberId> {
        let mut subjects = self.rings.subjects_of(me);
        subjects.extend(
            self.dead
                .iter()
                .filter(|d| self.rings.observers_of_outsider(d).contains(me))
                .cloned(),
        );
        subjects
    }
}

/// Keeps when each suspicion was first heard, across judgements.
#[derive(Clone, Debug)]
pub struct Judge {
    timings: Timings,
    first_heard: BTreeMap<Suspicion, u64>,
    known: BTreeSet<MemberId>,
    dead: BTreeSet<MemberId>,
    /// The last rings made and the members they were made over: most judgements see the same
    /// live set, and placing a thousand members on three rings takes 3,000 hashes and sorts.
    rings: Option<(Vec<MemberId>, std::sync::Arc<Rings>)>,
}

/// The rings over `live`, made again only when the set differs from the cached one's.
fn rings_over(
    cache: &mut Option<(Vec<MemberId>, std::sync::Arc<Rings>)>,
    live: Vec<MemberId>,
) -> std::sync::Arc<Rings> {
    match cache {
        Some((over, rings)) if *over == live => rings.clone(),
        _ => {
            let rings = std::sync::Arc::new(Rings::new(&live));
            *cache = Some((live, rings.clone()));
            rings
        }
    }
}

impl Judge {
    pub fn new(timings: Timings) -> Judge {
        Judge {
            timings,
            first_heard: BTreeMap::new(),
            known: BTreeSet::new(),
            dead: BTreeSet::new(),
            rings: None,
        }
    }

    /// Judges every member at `now` (ms of a monotonic clock).
    pub fn judge(
        &mut self,
        me: &MemberId,
        members: &[Member],
        suspicions: &[Suspicion],
        now: u64,
    ) -> Judgement {
        let ids: BTreeSet<MemberId> = members.iter().map(|m| m.id.clone()).collect();
        // First-heard times: new suspicions now, or long ago if their subject is new to us.
        let old_news = now.saturating_sub(self.timings.suspicion_max);
        let present: BTreeSet<&Suspicion> = suspicions.iter().collect();
        self.first_heard.retain(|s, _| present.contains(s));
        for s in suspicions {
            let known = self.known.contains(&s.subject);
            self.first_heard
                .entry(s.clone())
                .or_insert(if known { now } else { old_news });
        }
        self.known = ids.clone();
        let incarnation: BTreeMap<&MemberId, u64> =
            members.iter().map(|m| (&m.id, m.incarnation)).collect();
        let mut heard: BTreeMap<&MemberId, Vec<Heard>> = BTreeMap::new();
        for (s, at) in &self.first_heard {
            heard.entry(&s.subject).or_default().push(Heard {
                observer: s.observer.clone(),
                incarnation: s.incarnation,
                at: *at,
            });
        }
        // The dead set moves the rings and the rings move who counts as an observer: iterate
        // from the last judgement to a fixed point (a few rounds at most).
        let mut dead: BTreeSet<MemberId> = self
            .dead
            .iter()
            .filter(|d| ids.contains(d) && *d != me)
            .cloned()
            .collect();
        let mut due = None;
        let mut rings = std::sync::Arc::new(Rings::default());
        for _ in 0..4 {
            let live: Vec<MemberId> = ids.iter().filter(|m| !dead.contains(m)).cloned().collect();
            rings = rings_over(&mut self.rings, live);
            let mut next_dead = BTreeSet::new();
            due = None;
            for id in ids.iter().filter(|m| *m != me) {
                let Some(h) = heard.get(id) else { continue };
                let observers = rings.observers_of_outsider(id);
                let inc = incarnation.get(id).copied().unwrap_or(0);
                match verdict_due(&observers, h, inc, &self.timings) {
                    Some(at) if at <= now => {
                        next_dead.insert(id.clone());
                    }
                    Some(at) => due = Some(due.map_or(at, |d: u64| d.min(at))),
                    None => {}
                }
            }
            if next_dead == dead {
                break;
            }
            dead = next_dead;
        }
        self.dead = dead.clone();
        let mine = incarnation.get(me).copied().unwrap_or(0);
        let refute = refutation(
            mine,
            suspicions
                .iter()
                .filter(|s| s.subject == *me)
                .map(|s| s.incarnation),
        );
        Judgement {
            dead,
            due,
            refute,
            rings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The detector's round-number timings (the presets are checked in `crate::profile`).
    use crate::prober::detector::tests::T;

    fn id(name: &str) -> MemberId {
        MemberId::new(name, 1)
    }

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                id: id(&format!("n{i}")),
                incarnation: 0,
            })
            .collect()
    }

    /// Suspicions of `subject` by its first `count` observers in the full rings.
    fn suspicions_of(all: &[Member], subject: &MemberId, count: usize) -> Vec<Suspicion> {
        let ids: Vec<MemberId> = all.iter().map(|m| m.id.clone()).collect();
        Rings::new(&ids)
            .observers_of(subject)
            .into_iter()
            .take(count)
            .map(|observer| Suspicion {
                observer,
                subject: subject.clone(),
                incarnation: 0,
            })
            .collect()
    }

    #[test]
    fn quorum_lone_refuted_and_cleared() {
        let all = members(10);
        let me = id("n0");
        let x = id("n5");
        let quorum = suspicions_of(&all, &x, 2);
        let lone = suspicions_of(&all, &x, 1);
        type Row = (&'static str, Vec<Suspicion>, u64, u64, bool);
        let rows: Vec<Row> = vec![
            ("no suspicion", vec![], 0, 10_000, false),
            ("a quorum, not yet", quorum.clone(), 0, 1_000 + 199, false),
            ("a quorum, due", quorum.clone(), 0, 1_000 + 200, true),
            ("a lone one waits", lone.clone(), 0, 1_000 + 3_999, false),
            ("a lone one, due", lone.clone(), 0, 1_000 + 4_000, true),
            (
                "refuted by a higher incarnation",
                quorum.clone(),
                1,
                60_000,
                false,
            ),
        ];
        for (name, suspicions, inc, at, dead) in rows {
            let mut judge = Judge::new(T);
            let mut all = all.clone();
            all[5].incarnation = inc;
            // Learn the members first, then the suspicions at 1 s.
            judge.judge(&me, &all, &[], 0);
            let first = judge.judge(&me, &all, &suspicions, 1_000);
            let j = judge.judge(&me, &all, &suspicions, at);
            assert_eq!(j.dead.contains(&x), dead, "{name}");
            if !dead && !suspicions.is_empty() && inc == 0 {
                assert!(
                    first.due.is_some_and(|d| d > 1_000),
                    "{name}: due {first:?}"
                );
            }
        }
        // Cleared before its time: never dead.
        let mut judge = Judge::new(T);
        judge.judge(&me, &all, &[], 0);
        judge.judge(&me, &all, &lone, 1_000);
        let j = judge.judge(&me, &all, &[], 6_000);
        assert!(j.dead.is_empty());
    }

    #[test]
    fn a_dead_member_stays_dead_on_its_would_be_observers_word_and_comes_back() {
        let all = members(12);
        let me = id("n0");
        let x = id("n7");
        let quorum = suspicions_of(&all, &x, 3);
        let mut judge = Judge::new(T);
        judge.judge(&me, &all, &[], 0);
        judge.judge(&me, &all, &quorum, 1_000);
        let j = judge.judge(&me, &all, &quorum, 2_000);
        assert!(j.dead.contains(&x));
        assert!(!j.rings.contains(&x), "off the rings");
        // Its would-be observers are the ones who suspected it: it stays dead.
        let j = judge.judge(&me, &all, &quorum, 30_000);
        assert!(j.dead.contains(&x));
        for observer in j.rings.observers_of_outsider(&x) {
            assert!(j.subjects_of(&observer).contains(&x), "{observer:?}");
        }
        // They hear it again and clear: alive, back on the rings.
        let j = judge.judge(&me, &all, &[], 31_000);
        assert!(j.dead.is_empty() && j.rings.contains(&x));
    }

    #[test]
    fn suspicions_older_than_this_node_count_at_once_and_self_refutes() {
        let all = members(6);
        let me = id("n0");
        let x = id("n3");
        let quorum = suspicions_of(&all, &x, 2);
        let mut judge = Judge::new(T);
        // A restarted node learns the members and the suspicions together.
        let j = judge.judge(&me, &all, &quorum, 50_000);
        assert!(j.dead.contains(&x), "old news: dead at once");
        // A suspicion of this node at its incarnation: refute with the next one.
        let of_me = suspicions_of(&all, &me, 1);
        let j = judge.judge(&me, &all, &of_me, 51_000);
        assert_eq!(j.refute, Some(1));
        assert!(!j.dead.contains(&me), "never judges itself dead");
    }

    #[test]
    fn a_non_observer_or_a_stranger_proves_nothing() {
        let all = members(8);
        let me = id("n0");
        let x = id("n4");
        let ids: Vec<MemberId> = all.iter().map(|m| m.id.clone()).collect();
        let observers = Rings::new(&ids).observers_of(&x);
        let outsiders: Vec<Suspicion> = ids
            .iter()
            .filter(|m| **m != x && !observers.contains(m))
            .map(|observer| Suspicion {
                observer: observer.clone(),
                subject: x.clone(),
                incarnation: 0,
            })
            .collect();
        let mut judge = Judge::new(T);
        judge.judge(&me, &all, &[], 0);
        judge.judge(&me, &all, &outsiders, 1_000);
        assert!(judge.judge(&me, &all, &outsiders, 60_000).dead.is_empty());
    }
}

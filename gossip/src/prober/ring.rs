//! Who watches whom (pure): every member is watched by its successors on the first
//! [`OBSERVERS`] of [`RINGS`] hash rings over the member list, so each node has a few fixed
//! observers and every node can compute any node's observers from the same list, with no
//! coordination. Changes are pushed along all the rings ([`Rings::neighbours_of`]: a few hops
//! reach every member).
//!
//! Ring `k` orders members by the first 8 bytes of `sha256(k, name, generation)`. A member's
//! observers are, ring by ring, its first successor that is neither itself nor an observer
//! already chosen: `min(OBSERVERS, members - 1)` distinct observers. Two observers, not three:
//! every heartbeat costs a packet and its ACK, and the third observer's pair was a third of a
//! node's bytes at rest; a verdict needs both (or one alone for the long timeout).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How many rings (pushes follow them all).
pub const RINGS: usize = 3;
/// How many observers watch each member (its successors on the first rings).
pub const OBSERVERS: usize = 2;

/// A member as the rings know it: a name and its incarnation of the agent (a restarted agent
/// is a new member, placed anew).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId {
    pub name: String,
    pub generation: u64,
}

impl MemberId {
    pub fn new(name: impl Into<String>, generation: u64) -> MemberId {
        MemberId {
            name: name.into(),
            generation,
        }
    }
}

fn position(ring: u8, m: &MemberId) -> u64 {
    let mut h = Sha256::new();
    h.update([ring]);
    h.update(m.name.as_bytes());
    h.update([0]);
    h.update(m.generation.to_le_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The rings over one member list.
#[derive(Clone, Debug, Default)]
pub struct Rings {
    /// Members in each ring's order.
    orders: Vec<Vec<MemberId>>,
    /// Each member's index in each ring.
    index: BTreeMap<MemberId, Vec<usize>>,
}

impl Rings {
    pub fn new(members: &[MemberId]) -> Rings {
        let mut unique: Vec<MemberId> = members.to_vec();
        unique.sort();
        unique.dedup();
        let mut orders = Vec::with_capacity(RINGS);
        for k in 0..RINGS {
            let mut order = unique.clone();
            order.sort_by_cached_key(|m| (position(k as u8, m), m.clone()));
            orders.push(order);
        }
        let mut index: BTreeMap<MemberId, Vec<usize>> = BTreeMap::new();
        for order in &orders {
            for (i, m) in order.iter().enumerate() {
                index.entry(m.clone()).or_default().push(i);
            }
        }
        Rings { orders, index }
    }

    /// The members, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &MemberId> {
        self.index.keys()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, m: &MemberId) -> bool {
        self.index.contains_key(m)
    }

    /// `subject`'s observers (empty for a member the rings do not hold).
    pub fn observers_of(&self, subject: &MemberId) -> Vec<MemberId> {
        let Some(at) = self.index.get(subject) else {
            return Vec::new();
        };
        let mut out: Vec<MemberId> = Vec::with_capacity(OBSERVERS);
        for (order, start) in self.orders.iter().zip(at).take(OBSERVERS) {
            let n = order.len();
            if let Some(next) = (1..n)
                .map(|step| &order[(start + step) % n])
                .find(|m| !out.contains(m))
            {
                out.push(next.clone());
            }
        }
        out
    }

    /// The observers a member outside these rings would have if it were inserted (a member
    /// declared dead keeps its would-be observers: they re-probe it and judge its return).
    pub fn observers_of_outsider(&self, outsider: &MemberId) -> Vec<MemberId> {
        if self.contains(outsider) {
            return self.observers_of(outsider);
        }
        let mut out: Vec<MemberId> = Vec::with_capacity(OBSERVERS);
        for (k, order) in self.orders.iter().enumerate().take(OBSERVERS) {
            let key = (position(k as u8, outsider), outsider.clone());
            let start = order.partition_point(|m| (position(k as u8, m), m.clone()) < key);
            let n = order.len();
            if let Some(next) = (0..n)
                .map(|step| &order[(start + step) % n])
                .find(|m| !out.contains(m))
            {
                out.push(next.clone());
            }
        }
        out
    }

    /// `m`'s successor and predecessor on every ring, once each: where its changes are pushed.
    pub fn neighbours_of(&self, m: &MemberId) -> Vec<MemberId> {
        let Some(at) = self.index.get(m) else {
            return Vec::new();
        };
        let mut out: Vec<MemberId> = Vec::new();
        for (order, start) in self.orders.iter().zip(at) {
            let n = order.len();
            for step in [1, n.saturating_sub(1)] {
                let next = &order[(start + step) % n];
                if next != m && !out.contains(next) {
                    out.push(next.clone());
                }
            }
        }
        out
    }

    /// The members `observer` watches.
    pub fn subjects_of(&self, observer: &MemberId) -> Vec<MemberId> {
        if !self.contains(observer) {
            return Vec::new();
        }
        self.members()
            .filter(|m| *m != observer && self.observers_of(m).contains(observer))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<MemberId> {
        (0..n)
            .map(|i| MemberId::new(format!("node-{i}"), 1))
            .collect()
    }

    #[test]
    fn observers_are_distinct_others_and_as_many_as_the_cluster_allows() {
        for (n, want) in [(1, 0), (2, 1), (3, 2), (4, 2), (20, 2), (200, 2)] {
            let all = members(n);
            let rings = Rings::new(&all);
            for m in &all {
                let obs = rings.observers_of(m);
                assert_eq!(obs.len(), want, "n={n} {m:?}");
                assert!(!obs.contains(m), "n={n}: a member never watches itself");
                let mut unique = obs.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), obs.len(), "n={n}: distinct observers");
            }
        }
    }

    #[test]
    fn every_member_is_watched_and_the_load_is_spread() {
        let all = members(100);
        let rings = Rings::new(&all);
        let mut watching: BTreeMap<&MemberId, usize> = BTreeMap::new();
        for m in &all {
            for o in rings.observers_of(m) {
                *watching
                    .entry(all.iter().find(|x| **x == o).unwrap())
                    .or_default() += 1;
            }
        }
        // 200 watch duties over 100 members: nobody carries many more than its share.
        assert!(watching.values().all(|c| *c <= 9), "{watching:?}");
        for m in &all {
            let subjects = rings.subjects_of(m);
            assert_eq!(subjects.len(), watching.get(m).copied().unwrap_or(0));
            for s in subjects {
                assert!(rings.observers_of(&s).contains(m));
            }
        }
    }

    #[test]
    fn pushes_follow_every_ring_and_reach_everyone_in_a_few_hops() {
        let all = members(100);
        let rings = Rings::new(&all);
        for m in &all {
            let n = rings.neighbours_of(m);
            assert!(
                n.len() >= 2 && n.len() <= 2 * RINGS && !n.contains(m),
                "{n:?}"
            );
        }
        // Breadth-first from one member: everyone within a few hops.
        let mut seen = vec![all[0].clone()];
        let mut frontier = vec![all[0].clone()];
        let mut hops = 0;
        while seen.len() < all.len() {
            hops += 1;
            let mut next = Vec::new();
            for m in &frontier {
                for n in rings.neighbours_of(m) {
                    if !seen.contains(&n) {
                        seen.push(n.clone());
                        next.push(n);
                    }
                }
            }
            frontier = next;
            assert!(hops <= 8, "100 members within 8 hops");
        }
    }

    #[test]
    fn an_outsider_gets_the_observers_it_would_have_inside() {
        let all = members(30);
        for i in 0..30 {
            let outsider = &all[i];
            let others: Vec<MemberId> = all.iter().filter(|m| *m != outsider).cloned().collect();
            let inside = Rings::new(&all).observers_of(outsider);
            let outside = Rings::new(&others).observers_of_outsider(outsider);
            assert_eq!(inside, outside, "{outsider:?}");
        }
        assert!(Rings::new(&[]).observers_of_outsider(&all[0]).is_empty());
    }

    #[test]
    fn the_same_list_gives_the_same_rings_in_any_order_and_a_restart_moves_a_member() {
        let all = members(12);
        let mut shuffled = all.clone();
        shuffled.reverse();
        let (a, b) = (Rings::new(&all), Rings::new(&shuffled));
        for m in &all {
            assert_eq!(a.observers_of(m), b.observers_of(m));
        }
        // A restarted agent (new generation) is placed anew; the others mostly keep theirs.
        let mut restarted = all.clone();
        restarted[3].generation = 2;
        let c = Rings::new(&restarted);
        let kept = all
            .iter()
            .filter(|m| m.name != "node-3")
            .filter(|m| a.observers_of(m) == c.observers_of(m))
            .count();
        assert!(
            kept >= 5,
            "a restart reshuffles only some observers ({kept} kept)"
        );
        assert!(
            c.observers_of(&all[3]).is_empty(),
            "the old incarnation is gone"
        );
    }
}

//! The leader rule (DESIGN decision 4), pure: the scheduling leader is the lowest node name among
//! live, ready, schedulable (not cordoned) nodes; its term only grows.
//!
//! Every node publishes the highest term it has seen under [`TERM_KEY`]. A node that becomes
//! leader takes a term above every term it can see, and takes a new one whenever it sees a
//! higher term than its own (after a partition heals, the side that elected a later leader has a
//! higher term: the surviving leader moves past it, so followers of both sides accept it).
//! Within a term, each table the leader publishes carries a [`Generation`] that grows with every
//! change.

use crate::view::{NodeCondition, NodeStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A leader's term: grows with every change of leader (and past every term a node can see).
/// Encoded as the bare number (JSON, postcard and the decimal [`TERM_KEY`] value).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Term(pub u64);

impl Term {
    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Term {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Term, Self::Err> {
        s.parse().map(Term)
    }
}

/// The version of the assignment tables a leader publishes within its [`Term`]: grows whenever
/// the tables change. Not a node's gossip generation (a new one per start of a node), which is a
/// plain `u64` in [`NodeStatus`]. Encoded as the bare number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation after this one.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Key under which every node publishes the highest leader term it has seen (decimal).
pub const TERM_KEY: &str = "sched/term";

/// The leader among `nodes` (any order), by the rule.
pub fn leader_of(nodes: &[NodeStatus]) -> Option<&NodeStatus> {
    nodes
        .iter()
        .filter(|n| n.condition == NodeCondition::Ready && !n.metadata.cordoned)
        .min_by(|a, b| a.name.cmp(&b.name))
}

/// Whether the nodes this side of a partition sees Ready (`ready`) hold a majority of the
/// cluster's `members` (every node last seen Ready that has not left, this one included). An
/// exact half holds it only when it includes the lowest-named member, so two halves never both
/// act. Only a side with the majority places pods of nodes it cannot see; the other side keeps
/// running what it has.
pub fn has_quorum(members: &BTreeSet<String>, ready: &BTreeSet<String>) -> bool {
    let seen = members.intersection(ready).count();
    let total = members.len();
    2 * seen > total
        || (2 * seen == total && members.first().is_some_and(|lowest| ready.contains(lowest)))
}

/// The term this node publishes next.
///
/// `is_leader`: the rule picks this node now; `led_before`: it was leader at its previous
/// evaluation; `my_term`: the term it publishes now; `seen_max`: the highest term published by any
/// other node it can see.
pub fn next_term(is_leader: bool, led_before: bool, my_term: Term, seen_max: Term) -> Term {
    let highest = my_term.max(seen_max);
    if is_leader && (!led_before || seen_max > my_term) {
        highest.next()
    } else {
        highest
    }
}

/// Whether a follower accepts an assignment stamped `(term, generation)` from the node it sees as
/// leader, having accepted `last` before: never an older term, never an older generation of the
/// same term.
pub fn accepts(last: Option<(Term, Generation)>, term: Term, generation: Generation) -> bool {
    last.is_none_or(|last| (term, generation) > last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::NodeMetadata;

    fn node(name: &str, condition: NodeCondition, cordoned: bool) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            condition,
            generation: 1,
            started_at_unix_ms: 1,
            address: "127.0.0.1:1".parse().expect("addr"),
            metadata: NodeMetadata {
                ready: condition == NodeCondition::Ready,
                cordoned,
                ..NodeMetadata::default()
            },
            is_self: false,
        }
    }

    #[test]
    fn leader_is_the_lowest_live_ready_schedulable_name() {
        use NodeCondition::*;
        type Row<'a> = (&'a [(&'a str, NodeCondition, bool)], Option<&'a str>);
        let cases: [Row; 5] = [
            (
                &[
                    ("c", Ready, false),
                    ("a", Ready, false),
                    ("b", Ready, false),
                ],
                Some("a"),
            ),
            (&[("a", NotReady, false), ("b", Ready, false)], Some("b")),
            (&[("a", Left, false), ("b", Ready, false)], Some("b")),
            (&[("a", Ready, true), ("b", Ready, false)], Some("b")),
            (&[("a", NotReady, false), ("b", Ready, true)], None),
        ];
        for (nodes, expected) in cases {
            let nodes: Vec<NodeStatus> = nodes.iter().map(|(n, c, x)| node(n, *c, *x)).collect();
            assert_eq!(
                leader_of(&nodes).map(|n| n.name.as_str()),
                expected,
                "{nodes:?}"
            );
        }
    }

    #[test]
    fn term_rule_table() {
        // (is_leader, led_before, my_term, seen_max) -> next
        let cases = [
            ((true, false, 0, 0), 1),  // first leader of a new cluster
            ((true, false, 3, 5), 6),  // takes over: above every term seen
            ((true, true, 6, 6), 6),   // stays leader, followers echo its term
            ((true, true, 6, 9), 10),  // heal: the other side had a later leader
            ((false, true, 6, 7), 7),  // steps down, follows the highest term seen
            ((false, false, 2, 1), 2), // never goes down
        ];
        for ((is_leader, led_before, mine, seen), expected) in cases {
            assert_eq!(
                next_term(is_leader, led_before, Term(mine), Term(seen)),
                Term(expected),
                "leader={is_leader} before={led_before} mine={mine} seen={seen}"
            );
        }
    }

    #[test]
    fn followers_refuse_stale_assignments() {
        let stamp = |term, generation| (Term(term), Generation(generation));
        let cases = [
            // (last accepted, offered) -> accepted
            ((None, stamp(1, 1)), true),
            ((Some(stamp(1, 4)), stamp(1, 5)), true),
            ((Some(stamp(1, 4)), stamp(2, 1)), true),
            ((Some(stamp(1, 4)), stamp(1, 4)), false),
            ((Some(stamp(2, 1)), stamp(1, 9)), false),
        ];
        for ((last, (term, generation)), expected) in cases {
            assert_eq!(
                accepts(last, term, generation),
                expected,
                "last {last:?} offered {term} {generation}"
            );
        }
    }

    #[test]
    fn terms_and_generations_encode_as_bare_numbers() {
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            let json = serde_json::to_string(&n).expect("json");
            assert_eq!(serde_json::to_string(&Term(n)).expect("json"), json);
            assert_eq!(serde_json::to_string(&Generation(n)).expect("json"), json);
            assert_eq!(serde_json::from_str::<Term>(&json).expect("json"), Term(n));
            assert_eq!(
                serde_json::from_str::<Generation>(&json).expect("json"),
                Generation(n)
            );
            let bytes = postcard::to_allocvec(&n).expect("postcard");
            assert_eq!(postcard::to_allocvec(&Term(n)).expect("postcard"), bytes);
            assert_eq!(
                postcard::to_allocvec(&Generation(n)).expect("postcard"),
                bytes
            );
            // The term key's value is the decimal number.
            assert_eq!(Term(n).to_string(), n.to_string());
            assert_eq!(n.to_string().parse::<Term>(), Ok(Term(n)));
        }
        assert!("x".parse::<Term>().is_err());
    }

    #[test]
    fn only_a_majority_of_the_members_last_seen_ready_places_others_pods() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let cases: &[(&[&str], &[&str], bool)] = &[
            // (members, ready here, quorum)
            (&["a"], &["a"], true),
            (&["a", "b", "c"], &["a", "b", "c"], true),
            (&["a", "b", "c"], &["b", "c"], true),
            (&["a", "b", "c"], &["c"], false),
            (&["a", "b", "c"], &["a"], false),
            (&["a", "b", "c", "d", "e"], &["a", "b"], false),
            (&["a", "b", "c", "d", "e"], &["c", "d", "e"], true),
            // An exact half: the side with the lowest name, never both.
            (&["a", "b"], &["a"], true),
            (&["a", "b"], &["b"], false),
            (&["a", "b", "c", "d"], &["a", "d"], true),
            (&["a", "b", "c", "d"], &["b", "c"], false),
            // Ready nodes that are not members (not counted yet) do not make a majority.
            (&["a", "b", "c"], &["c", "x", "y"], false),
        ];
        for (members, ready, want) in cases {
            assert_eq!(
                has_quorum(&set(members), &set(ready)),
                *want,
                "members {members:?} ready {ready:?}"
            );
        }
    }
}

//! The leader rule (DESIGN decision 4), pure: the scheduling leader is the lowest node name among
//! live, ready, schedulable (not cordoned) nodes; its term only grows.
//!
//! Every node publishes the highest term it has seen under [`TERM_KEY`]. A node that becomes
//! leader takes a term above every term it can see, and takes a new one whenever it sees a
//! higher term than its own (after a partition heals, the side that elected a later leader has a
//! higher term: the surviving leader moves past it, so followers of both sides accept it).

use crate::view::{NodeCondition, NodeStatus};
use std::collections::BTreeSet;

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
pub fn next_term(is_leader: bool, led_before: bool, my_term: u64, seen_max: u64) -> u64 {
    let highest = my_term.max(seen_max);
    if is_leader && (!led_before || seen_max > my_term) {
        highest + 1
    } else {
        highest
    }
}

/// Whether a follower accepts an assignment stamped `(term, generation)` from the node it sees as
/// leader, having accepted `last` before: never an older term, never an older generation of the
/// same term.
pub fn accepts(last: Option<(u64, u64)>, term: u64, generation: u64) -> bool {
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
                next_term(is_leader, led_before, mine, seen),
                expected,
                "leader={is_leader} before={led_before} mine={mine} seen={seen}"
            );
        }
    }

    #[test]
    fn followers_refuse_stale_assignments() {
        assert!(accepts(None, 1, 1));
        assert!(accepts(Some((1, 4)), 1, 5));
        assert!(accepts(Some((1, 4)), 2, 1));
        assert!(!accepts(Some((1, 4)), 1, 4));
        assert!(!accepts(Some((2, 1)), 1, 9));
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

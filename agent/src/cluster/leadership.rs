//! The leadership decision of one cluster step, pure: whether this node leads (the leader rule,
//! held back by the startup grace unless it is alone), whether it may place pods (quorum), which
//! term it publishes (the term rule) and which leader it shows and follows.
//!
//! The cluster task gathers the facts from gossip and its store, calls [`decide`] with `now`,
//! and carries the decision out (publishes the term, runs the scheduling pass).

use skiff_gossip::{NodeCondition, NodeStatus, Term, has_quorum, leader_of, next_term};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// This side's share of the cluster: the nodes last seen Ready (not left) and how many of them
/// are Ready here. Without the majority the leader places nothing (pods keep running where they
/// are, and restart there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quorum {
    pub ready: usize,
    pub members: usize,
    pub held: bool,
}

impl Quorum {
    /// `unconfirmed`: members Ready in the node list that this node could not reach since the
    /// last verdict (`skiff_gossip::Reach`); they do not count until they answer.
    pub fn of(
        last_seen_ready: &BTreeMap<String, SocketAddr>,
        nodes: &[NodeStatus],
        unconfirmed: &BTreeSet<String>,
        me: &str,
    ) -> Quorum {
        let mut members: BTreeSet<String> = last_seen_ready.keys().cloned().collect();
        members.insert(me.to_string());
        for n in nodes {
            if n.condition == NodeCondition::Left {
                members.remove(&n.name);
            }
        }
        let ready: BTreeSet<String> = nodes
            .iter()
            .filter(|n| {
                (n.condition == NodeCondition::Ready && !unconfirmed.contains(&n.name))
                    || n.name == me
            })
            .map(|n| n.name.clone())
            .chain(std::iter::once(me.to_string()))
            .collect();
        Quorum {
            ready: members.intersection(&ready).count(),
            members: members.len(),
            held: has_quorum(&members, &ready),
        }
    }
}

/// Everything the decision looks at, as plain data.
#[derive(Clone, Copy, Debug)]
pub struct LeadershipInput<'a> {
    /// Wall-clock milliseconds now.
    pub now_ms: u64,
    /// When this node's cluster task started (wall-clock milliseconds).
    pub started_ms: u64,
    /// How long a node that knows of peers waits after start before it leads.
    pub startup_grace: Duration,
    /// Wait out the grace even as a lone node (after `--recover-store`).
    pub always_wait_grace: bool,
    /// This node's name.
    pub me: &'a str,
    /// The node list as gossip shows it (this node included).
    pub nodes: &'a [NodeStatus],
    /// The stored names of peers ever seen Ready: a node that has some does not lead alone
    /// right after a start.
    pub knows_peers: bool,
    /// The stored peers last seen Ready (the members the majority is counted over).
    pub last_seen_ready: &'a BTreeMap<String, SocketAddr>,
    /// Members Ready in `nodes` that this node has not reached since the last verdict: they
    /// do not count toward the majority (a partition is judged one ring step at a time).
    pub unconfirmed: &'a BTreeSet<String>,
    /// This node led at its previous step.
    pub led_before: bool,
    /// The term this node holds now.
    pub term: Term,
    /// The term this node's gossip key shows (none until it was published).
    pub published_term: Option<Term>,
    /// The highest term any other node publishes.
    pub seen_max: Term,
    /// The highest term on an assignment table some other node publishes (an earlier leader's,
    /// or one that took over at the same time as this node).
    pub others_table_term: Option<Term>,
}

/// What this node does about leadership this step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadershipDecision {
    /// The leader this node shows and follows: the rule's, except this node itself while it
    /// waits out its startup grace (then none).
    pub leader: Option<String>,
    /// This node leads: the rule picks it and its startup grace is over (or it is alone).
    pub leading: bool,
    /// This node runs the scheduling pass and publishes tables: it leads and its side holds
    /// the majority.
    pub scheduling: bool,
    pub quorum: Quorum,
    /// The term this node holds from now on.
    pub term: Term,
    /// The term key must be written (the term moved, or gossip does not show it yet).
    pub publish_term: bool,
}

/// The leadership decision of one step.
pub fn decide(input: LeadershipInput<'_>) -> LeadershipDecision {
    let me = input.me;
    let by_rule = leader_of(input.nodes).map(|n| n.name.clone());
    let alone = input
        .nodes
        .iter()
        .all(|n| n.is_self || n.condition == NodeCondition::Left);
    let grace_over =
        input.now_ms.saturating_sub(input.started_ms) >= input.startup_grace.as_millis() as u64;
    let may_lead = (alone && !input.knows_peers && !input.always_wait_grace) || grace_over;
    let leading = by_rule.as_deref() == Some(me) && may_lead;
    // Only a side that sees most of the nodes last seen Ready places pods (see has_quorum): a
    // leader cut off with a minority keeps the tables in force instead of multiplying replicas.
    let quorum = Quorum::of(input.last_seen_ready, input.nodes, input.unconfirmed, me);
    let scheduling = leading && quorum.held;
    let mut term = next_term(leading, input.led_before, input.term, input.seen_max);
    // Two nodes can reach the same term (this one took over before it heard the other's):
    // another node's table at this term or above means the term is not this leader's own, and
    // followers would take its tables for stale ones.
    if leading
        && let Some(other) = input.others_table_term
        && other >= term
    {
        term = other.next();
    }
    LeadershipDecision {
        leader: by_rule.filter(|l| l != me || leading),
        leading,
        scheduling,
        quorum,
        publish_term: term != input.term || input.published_term != Some(term),
        term,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_gossip::NodeMetadata;

    const GRACE: Duration = Duration::from_secs(3);

    fn node(name: &str, condition: NodeCondition) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            condition,
            generation: 1,
            started_at_unix_ms: 1,
            address: "198.18.0.1:7000".parse().expect("addr"),
            metadata: NodeMetadata {
                ready: condition == NodeCondition::Ready,
                ..NodeMetadata::default()
            },
            is_self: name == "b",
        }
    }

    /// One row: this node is `b`, started at 0 with a 3 s grace.
    struct Row {
        what: &'static str,
        now_ms: u64,
        always_wait_grace: bool,
        nodes: &'static [(&'static str, NodeCondition)],
        knows_peers: bool,
        last_seen_ready: &'static [&'static str],
        unconfirmed: &'static [&'static str],
        led_before: bool,
        term: u64,
        published_term: Option<u64>,
        seen_max: u64,
        others_table_term: Option<u64>,
        // Expected.
        leader: Option<&'static str>,
        leading: bool,
        scheduling: bool,
        next_term: u64,
        publish_term: bool,
    }

    /// A lone node, grace over, leading at term 3 for a while: rows change what they test.
    const STEADY: Row = Row {
        what: "",
        now_ms: 10_000,
        always_wait_grace: false,
        nodes: &[("b", NodeCondition::Ready)],
        knows_peers: false,
        last_seen_ready: &[],
        unconfirmed: &[],
        led_before: true,
        term: 3,
        published_term: Some(3),
        seen_max: 0,
        others_table_term: None,
        leader: Some("b"),
        leading: true,
        scheduling: true,
        next_term: 3,
        publish_term: false,
    };

    #[test]
    fn leadership_table() {
        use NodeCondition::*;
        let rows = [
            Row {
                what: "a fresh lone node leads at once and takes the first term",
                now_ms: 5,
                led_before: false,
                term: 0,
                published_term: None,
                next_term: 1,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "alone, but after --recover-store it waits out the grace",
                now_ms: 5,
                always_wait_grace: true,
                led_before: false,
                term: 0,
                published_term: Some(0),
                leader: None,
                leading: false,
                scheduling: false,
                next_term: 0,
                ..STEADY
            },
            Row {
                what: "alone, but it knows of peers: startup grace pending",
                now_ms: 2_999,
                knows_peers: true,
                last_seen_ready: &["c"],
                led_before: false,
                leader: None,
                leading: false,
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "peers known, grace expired: leads (without the quorum alone of two)",
                now_ms: 3_000,
                knows_peers: true,
                last_seen_ready: &["a"],
                led_before: false,
                leader: Some("b"),
                leading: true,
                // Members {a, b}, only b here, and b is not the lowest name.
                scheduling: false,
                next_term: 4,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "a peer is up: the grace holds even with no stored peers",
                now_ms: 1_000,
                nodes: &[("b", Ready), ("c", Ready)],
                led_before: false,
                leader: None,
                leading: false,
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "a peer that left does not count: alone",
                now_ms: 1_000,
                nodes: &[("a", Left), ("b", Ready)],
                led_before: false,
                next_term: 4,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "becoming leader takes a term above every term seen",
                nodes: &[("b", Ready), ("c", Ready)],
                last_seen_ready: &["c"],
                led_before: false,
                seen_max: 7,
                next_term: 8,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "staying leader keeps the term and does not write it again",
                nodes: &[("b", Ready), ("c", Ready)],
                last_seen_ready: &["c"],
                seen_max: 3,
                ..STEADY
            },
            Row {
                what: "staying leader writes the term gossip does not show yet",
                published_term: None,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "staying leader moves past a higher term (a healed partition)",
                nodes: &[("b", Ready), ("c", Ready)],
                last_seen_ready: &["c"],
                seen_max: 9,
                next_term: 10,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "another node's table at the new term: the term goes above it",
                led_before: false,
                seen_max: 2,
                others_table_term: Some(4),
                next_term: 5,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "an older table of another node does not move the term",
                others_table_term: Some(2),
                ..STEADY
            },
            Row {
                what: "losing leadership to a lower name: follows it, keeps the highest term",
                nodes: &[("a", Ready), ("b", Ready)],
                last_seen_ready: &["a"],
                seen_max: 5,
                leader: Some("a"),
                leading: false,
                scheduling: false,
                next_term: 5,
                publish_term: true,
                ..STEADY
            },
            Row {
                what: "a follower never lowers its term",
                nodes: &[("a", Ready), ("b", Ready)],
                last_seen_ready: &["a"],
                led_before: false,
                seen_max: 1,
                leader: Some("a"),
                leading: false,
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "a follower in its grace shows the leader it sees",
                now_ms: 100,
                nodes: &[("a", Ready), ("b", Ready)],
                knows_peers: true,
                last_seen_ready: &["a"],
                led_before: false,
                leader: Some("a"),
                leading: false,
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "no node qualifies: no leader",
                nodes: &[("a", NotReady), ("b", NotReady)],
                last_seen_ready: &["a"],
                leader: None,
                leading: false,
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "quorum lost: still leader, places nothing",
                nodes: &[("a", NotReady), ("b", Ready), ("c", NotReady)],
                last_seen_ready: &["a", "c"],
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "majority of three held without the lowest name",
                nodes: &[("a", NotReady), ("b", Ready), ("c", Ready)],
                last_seen_ready: &["a", "c"],
                ..STEADY
            },
            Row {
                what: "exact half without the lowest name: no quorum",
                nodes: &[("a", NotReady), ("b", Ready)],
                last_seen_ready: &["a"],
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "exact half with the lowest name: quorum",
                nodes: &[("b", Ready), ("c", NotReady)],
                last_seen_ready: &["c"],
                ..STEADY
            },
            Row {
                what: "Ready but not reached since a verdict: no majority yet",
                nodes: &[("a", NotReady), ("b", Ready), ("c", Ready)],
                last_seen_ready: &["a", "c"],
                unconfirmed: &["c"],
                scheduling: false,
                ..STEADY
            },
            Row {
                what: "Ready and reached since the verdict: a majority",
                nodes: &[("a", NotReady), ("b", Ready), ("c", Ready)],
                last_seen_ready: &["a", "c"],
                unconfirmed: &["a"],
                ..STEADY
            },
            Row {
                what: "a peer that left is no member: the rest is a majority",
                nodes: &[("a", Left), ("b", Ready), ("c", Ready)],
                last_seen_ready: &["a", "c"],
                ..STEADY
            },
        ];
        for row in rows {
            let nodes: Vec<NodeStatus> = row.nodes.iter().map(|(n, c)| node(n, *c)).collect();
            let last_seen_ready: BTreeMap<String, SocketAddr> = row
                .last_seen_ready
                .iter()
                .map(|n| (n.to_string(), "198.18.0.2:7000".parse().expect("addr")))
                .collect();
            let unconfirmed: BTreeSet<String> =
                row.unconfirmed.iter().map(|n| n.to_string()).collect();
            let decision = decide(LeadershipInput {
                now_ms: row.now_ms,
                started_ms: 0,
                startup_grace: GRACE,
                always_wait_grace: row.always_wait_grace,
                me: "b",
                nodes: &nodes,
                knows_peers: row.knows_peers,
                last_seen_ready: &last_seen_ready,
                unconfirmed: &unconfirmed,
                led_before: row.led_before,
                term: Term(row.term),
                published_term: row.published_term.map(Term),
                seen_max: Term(row.seen_max),
                others_table_term: row.others_table_term.map(Term),
            });
            let what = row.what;
            assert_eq!(decision.leader.as_deref(), row.leader, "{what}");
            assert_eq!(decision.leading, row.leading, "{what}: leading");
            assert_eq!(decision.scheduling, row.scheduling, "{what}: scheduling");
            assert_eq!(decision.term, Term(row.next_term), "{what}: term");
            assert_eq!(decision.publish_term, row.publish_term, "{what}: publish");
        }
    }

    #[test]
    fn quorum_counts_the_stored_peers_and_this_node() {
        let addr: SocketAddr = "198.18.0.2:7000".parse().expect("addr");
        let peers: BTreeMap<String, SocketAddr> =
            [("a".to_string(), addr), ("c".to_string(), addr)].into();
        let nodes = [
            node("a", NodeCondition::Left),
            node("b", NodeCondition::Ready),
            node("c", NodeCondition::NotReady),
            // Ready but never stored as a peer: not a member yet.
            node("d", NodeCondition::Ready),
        ];
        assert_eq!(
            Quorum::of(&peers, &nodes, &BTreeSet::new(), "b"),
            Quorum {
                ready: 1,
                members: 2,
                held: true,
            }
        );
    }
}

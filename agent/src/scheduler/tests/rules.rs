//! Deployment placement rules: spread, least requested, stability, resources, node selectors,
//! cordon, drain, eviction delay, nodes leaving and coming back, extras, template changes.

use super::*;

#[test]
fn reason_text_table() {
    use Misfit::*;
    type Case<'a> = (u32, &'a [(Misfit, u32)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            0,
            &[(InsufficientMemory, 2), (Cordoned, 1)],
            "nodes",
            "0/3 nodes: 2 insufficient memory, 1 cordoned",
        ),
        (
            0,
            &[(Cordoned, 1), (InsufficientMemory, 1)],
            "nodes",
            "0/2 nodes: 1 cordoned, 1 insufficient memory",
        ),
        (
            0,
            &[(NotReady, 1), (Draining, 1), (NodeSelector, 3)],
            "nodes",
            "0/5 nodes: 3 node selector mismatch, 1 not ready, 1 draining",
        ),
        (
            0,
            &[(TooManyPods, 1), (InsufficientCpu, 4)],
            "nodes",
            "0/5 nodes: 4 insufficient cpu, 1 too many pods",
        ),
        (
            3,
            &[(InsufficientMemory, 2)],
            "matching nodes",
            "3/5 matching nodes: 2 insufficient memory",
        ),
        (0, &[], "nodes", "0/0 nodes"),
    ];
    for (available, misfits, noun, expected) in cases {
        let tally = Tally {
            available: *available,
            misfits: misfits.iter().copied().collect(),
        };
        assert_eq!(tally.describe(noun), *expected);
    }
}

#[test]
fn misfit_table() {
    let w = asking(
        selecting(deployment("web", 1), &[("role", "edge")]),
        500,
        GI,
    );
    let edge = |n: SchedNode| {
        with(n, |n| {
            n.labels.insert("role".into(), "edge".into());
        })
    };
    let used = |cpu_millis, memory_bytes, pods| reason::Usage {
        cpu_millis,
        memory_bytes,
        pods,
    };
    let cases: Vec<(SchedNode, reason::Usage, Option<Misfit>)> = vec![
        (edge(node("a")), used(0, 0, 0), None),
        (edge(sized("a", 500, GI, 1)), used(0, 0, 0), None),
        (
            edge(with(node("a"), |n| {
                n.condition = NodeCondition::NotReady { since_ms: 1 }
            })),
            used(0, 0, 0),
            Some(Misfit::NotReady),
        ),
        (
            edge(with(node("a"), |n| n.condition = NodeCondition::Left)),
            used(0, 0, 0),
            Some(Misfit::NotReady),
        ),
        (
            edge(with(node("a"), |n| {
                n.draining = true;
                n.cordoned = true
            })),
            used(0, 0, 0),
            Some(Misfit::Draining),
        ),
        (
            edge(with(node("a"), |n| n.cordoned = true)),
            used(0, 0, 0),
            Some(Misfit::Cordoned),
        ),
        (node("a"), used(0, 0, 0), Some(Misfit::NodeSelector)),
        (
            edge(sized("a", 4000, 8 * GI, 3)),
            used(0, 0, 3),
            Some(Misfit::TooManyPods),
        ),
        (
            edge(node("a")),
            used(3501, 0, 1),
            Some(Misfit::InsufficientCpu),
        ),
        (edge(node("a")), used(3500, 7 * GI, 1), None),
        (
            edge(node("a")),
            used(3500, 7 * GI + 1, 1),
            Some(Misfit::InsufficientMemory),
        ),
        (
            edge(sized("a", 0, 0, 10)),
            used(0, 0, 0),
            Some(Misfit::InsufficientCpu),
        ),
    ];
    for (n, u, expected) in &cases {
        assert_eq!(reason::misfit(n, u, &w), *expected, "{n:?} {u:?}");
    }
    // Nothing requested fits a node that offers nothing but pod slots.
    let free = asking(deployment("free", 1), 0, 0);
    assert_eq!(
        reason::misfit(&sized("z", 0, 0, 1), &used(0, 0, 0), &free),
        None
    );
}

#[test]
fn replicas_spread_across_nodes_then_fill_evenly() {
    let cases: &[(u32, &[(&str, usize)])] = &[
        (1, &[("a", 1)]),
        (3, &[("a", 1), ("b", 1), ("c", 1)]),
        (4, &[("a", 2), ("b", 1), ("c", 1)]),
        (7, &[("a", 3), ("b", 2), ("c", 2)]),
    ];
    for (replicas, expected) in cases {
        let mut sim = Sim::new(
            vec![node("a"), node("b"), node("c")],
            vec![deployment("web", *replicas)],
        );
        sim.step();
        assert_eq!(sim.counts("web"), counts(expected), "replicas {replicas}");
        assert!(sim.out.pending.is_empty());
    }
    let mut sim = Sim::new(vec![node("a")], vec![deployment("web", 2)]);
    sim.step();
    let names: Vec<&str> = sim
        .out
        .assignments
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["web-h1-s1", "web-h1-s2"]);
    assert_eq!(
        sim.out.assignments[0].owner,
        Owner {
            kind: Kind::Deployment,
            name: "web".into()
        }
    );
}

#[test]
fn spread_comes_before_free_room() {
    // The big node stays emptier in share after one pod, yet the second replica goes to the
    // node that has none of this Deployment.
    let nodes = vec![
        sized("big", 64_000, 256 * GI, 110),
        sized("small", 1000, GI, 110),
    ];
    let mut sim = Sim::new(nodes, vec![deployment("web", 3)]);
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("big", 2), ("small", 1)]));
}

#[test]
fn equal_spread_goes_to_the_least_requested_node() {
    let big = asking(deployment("big", 1), 2000, GI);
    let mut sim = Sim::new(vec![node("a"), node("b"), node("c")], vec![big.clone()]);
    sim.input.previous = vec![entry("big", "big-h1-x", "h1", "b")];
    sim.input.workloads.push(deployment("web", 2));
    sim.step();
    assert_eq!(sim.counts("big"), counts(&[("b", 1)]));
    assert_eq!(sim.counts("web"), counts(&[("a", 1), ("c", 1)]));
}

#[test]
fn placement_is_stable_and_a_new_node_moves_nothing() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![deployment("web", 4)]);
    sim.step();
    let first = sim.pairs();
    sim.all_running();
    sim.step();
    assert_eq!(sim.pairs(), first, "same input, same table");
    sim.input.nodes.push(node("c"));
    sim.step();
    assert_eq!(
        sim.pairs(),
        first,
        "a new node takes nothing that runs fine"
    );
    // Only a pod that needs a place gets one: the scale-up goes to the empty node.
    sim.input.workloads[0] = deployment("web", 5);
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 2), ("b", 2), ("c", 1)]));
    assert!(first.iter().all(|p| sim.pairs().contains(p)));
}

#[test]
fn a_new_leader_without_a_table_keeps_what_nodes_report_running() {
    let mut sim = Sim::new(
        vec![node("a"), node("b"), node("c")],
        vec![deployment("web", 3)],
    );
    sim.step();
    sim.all_running();
    let before = sim.pairs();
    sim.input.previous.clear();
    sim.step();
    assert_eq!(sim.pairs(), before);
    // A pod a node has but does not run, and no table lists, is not kept.
    sim.input.previous.clear();
    sim.input.reported[0].running = false;
    sim.step();
    assert_eq!(sim.out.assignments.len(), 3);
    assert!(!sim.pairs().contains(&before[0]));
}

#[test]
fn requests_are_checked_against_what_is_left_on_the_node() {
    let cases: Vec<(SchedNode, Workload, Vec<Placement>, usize, &str)> = vec![
        (
            sized("a", 1000, 8 * GI, 110),
            asking(deployment("web", 4), 300, MI),
            vec![],
            3,
            "0/1 nodes: 1 insufficient cpu",
        ),
        (
            sized("a", 4000, 256 * MI, 110),
            asking(deployment("web", 3), 100, 100 * MI),
            vec![],
            2,
            "0/1 nodes: 1 insufficient memory",
        ),
        (
            sized("a", 4000, 8 * GI, 2),
            deployment("web", 3),
            vec![],
            2,
            "0/1 nodes: 1 too many pods",
        ),
        // Pods already placed by another workload count against the node.
        (
            sized("a", 1000, 8 * GI, 110),
            asking(deployment("web", 1), 300, MI),
            vec![entry("big", "big-h1-x", "h1", "a")],
            0,
            "0/1 nodes: 1 insufficient cpu",
        ),
    ];
    for (n, w, previous, placed, reason) in cases {
        let big = asking(deployment("big", 1), 800, MI);
        let mut sim = Sim::new(vec![n], vec![w.clone(), big]);
        if previous.is_empty() {
            sim.input.workloads.pop();
        }
        sim.input.previous = previous;
        sim.step();
        assert_eq!(sim.counts("web").values().sum::<usize>(), placed, "{w:?}");
        let missing = u32::try_from(w_replicas(&w) - placed).unwrap_or(0);
        assert_eq!(
            sim.reasons(),
            [(
                "Deployment/default/web".to_string(),
                missing,
                reason.to_string()
            )]
        );
    }
    let nodes = vec![
        sized("a", 4000, 256 * MI, 110),
        sized("b", 4000, 256 * MI, 110),
        with(node("c"), |n| n.cordoned = true),
    ];
    let mut sim = Sim::new(nodes, vec![asking(deployment("web", 1), 100, 512 * MI)]);
    sim.step();
    assert_eq!(
        sim.reasons(),
        [(
            "Deployment/default/web".to_string(),
            1,
            "0/3 nodes: 2 insufficient memory, 1 cordoned".to_string()
        )]
    );
}

fn w_replicas(w: &Workload) -> usize {
    match w.kind {
        WorkloadKind::Deployment { replicas, .. } => replicas as usize,
        _ => 1,
    }
}

#[test]
fn a_node_name_places_the_pod_on_that_node_only() {
    let mut pinned = bare_pod("solo");
    pinned.node_name = Some("c".into());
    let mut sim = Sim::new(vec![node("a"), node("b"), node("c")], vec![pinned]);
    sim.step();
    assert_eq!(sim.counts("Pod/solo"), counts(&[("c", 1)]));
    let mut missing = bare_pod("lost");
    missing.node_name = Some("z".into());
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![missing]);
    sim.step();
    assert_eq!(
        sim.reasons(),
        [(
            "Pod/default/lost".to_string(),
            1,
            "0/2 nodes: 2 didn't match the requested node name".to_string()
        )]
    );
}

#[test]
fn node_selectors_pick_nodes_by_label() {
    let edge = || selecting(deployment("web", 3), &[("role", "edge")]);
    let mut sim = Sim::new(
        vec![
            labelled("a", &[("role", "edge")]),
            node("b"),
            labelled("c", &[("role", "edge"), ("zone", "x")]),
        ],
        vec![edge()],
    );
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 2), ("c", 1)]));

    let gpu = selecting(deployment("ml", 1), &[("gpu", "yes")]);
    let mut sim = Sim::new(vec![node("a"), labelled("b", &[("gpu", "no")])], vec![gpu]);
    sim.step();
    assert_eq!(
        sim.reasons(),
        [(
            "Deployment/default/ml".to_string(),
            1,
            "0/2 nodes: 2 node selector mismatch".to_string()
        )]
    );

    // A node that loses the label: its pod is replaced on a matching node, then leaves.
    let mut sim = Sim::new(
        vec![
            labelled("a", &[("role", "edge")]),
            labelled("b", &[("role", "edge")]),
        ],
        vec![selecting(deployment("web", 1), &[("role", "edge")])],
    );
    sim.step();
    sim.all_running();
    assert_eq!(sim.counts("web"), counts(&[("a", 1)]));
    sim.node("a").labels.clear();
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 1), ("b", 1)]));
    sim.all_running();
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("b", 1)]));
}

#[test]
fn cordoned_nodes_keep_their_pods_and_get_no_new_ones() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![deployment("web", 2)]);
    sim.step();
    sim.all_running();
    let before = sim.pairs();
    sim.node("a").cordoned = true;
    sim.step();
    assert_eq!(sim.pairs(), before);
    sim.input.workloads[0] = deployment("web", 4);
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 1), ("b", 3)]));
    sim.node("b").cordoned = true;
    sim.input.workloads.push(deployment("api", 1));
    sim.step();
    assert_eq!(
        sim.reasons(),
        [(
            "Deployment/default/api".to_string(),
            1,
            "0/2 nodes: 2 cordoned".to_string()
        )]
    );
    assert_eq!(sim.counts("web").values().sum::<usize>(), 4);
}

#[test]
fn drain_moves_pods_off_once_their_replacements_run() {
    let mut sim = Sim::new(
        vec![node("a"), node("b"), node("c")],
        vec![deployment("web", 3)],
    );
    sim.step();
    sim.all_running();
    sim.step();
    let on_a: Vec<(String, String)> = sim.pairs().into_iter().filter(|(_, n)| n == "a").collect();
    sim.node("a").draining = true;
    sim.step();
    assert_eq!(
        sim.counts("web"),
        counts(&[("a", 1), ("b", 2), ("c", 1)]),
        "replacement placed, old pod stays"
    );
    assert!(sim.out.drained.is_empty());
    sim.step();
    assert_eq!(
        sim.counts("web"),
        counts(&[("a", 1), ("b", 2), ("c", 1)]),
        "replacement not running yet"
    );
    sim.all_running();
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("b", 2), ("c", 1)]));
    assert!(!sim.pairs().contains(&on_a[0]));
    assert_eq!(sim.out.drained, ["a"]);
    assert!(sim.out.pending.is_empty());
}

#[test]
fn a_not_ready_node_keeps_its_pods_for_the_eviction_delay() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![deployment("web", 2)]);
    sim.step();
    sim.all_running();
    let before = sim.pairs();
    let since = sim.now_ms;
    sim.node("a").condition = NodeCondition::NotReady { since_ms: since };
    sim.now_ms = since + DELAY.as_millis() as u64;
    sim.step();
    assert_eq!(sim.pairs(), before, "at the delay the pods still stay");
    // No new pods go to a NotReady node, even while it keeps its own.
    sim.input.workloads.push(deployment("api", 2));
    sim.step();
    assert_eq!(sim.counts("api"), counts(&[("b", 2)]));
    sim.now_ms += 1;
    sim.step();
    assert_eq!(
        sim.counts("web"),
        counts(&[("b", 2)]),
        "past the delay they are replaced"
    );
    assert!(!sim.pairs().contains(&before[0]));
}

#[test]
fn a_node_whose_agent_stopped_keeps_its_pods_for_the_restart_grace() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![deployment("web", 2)]);
    sim.step();
    sim.all_running();
    let before = sim.pairs();
    let since = sim.now_ms;
    // Longer than the eviction delay, within the restart grace: an agent restart or upgrade.
    sim.node("a").condition = NodeCondition::Stopped { since_ms: since };
    sim.now_ms = since + RESTART_GRACE.as_millis() as u64;
    sim.step();
    assert_eq!(sim.pairs(), before, "within the grace the pods stay");
    // No new pods go to a stopped node.
    sim.input.workloads.push(deployment("api", 2));
    sim.step();
    assert_eq!(sim.counts("api"), counts(&[("b", 2)]));
    sim.now_ms += 1;
    sim.step();
    assert_eq!(
        sim.counts("web"),
        counts(&[("b", 2)]),
        "past the grace they are replaced"
    );
}

#[test]
fn a_node_that_left_loses_its_pods_at_once() {
    let mut sim = Sim::new(
        vec![node("a"), node("b"), node("c")],
        vec![deployment("web", 3), daemon_set("agent")],
    );
    sim.step();
    sim.all_running();
    sim.node("c").condition = NodeCondition::Left;
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 2), ("b", 1)]));
    assert_eq!(sim.counts("DaemonSet/agent"), counts(&[("a", 1), ("b", 1)]));
    // A node the input does not list at all is treated the same.
    sim.input.nodes.retain(|n| n.name != "c");
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 2), ("b", 1)]));
}

#[test]
fn a_node_coming_back_with_old_copies_converges_to_the_replica_count() {
    let mut sim = Sim::new(
        vec![node("a"), node("b"), node("c")],
        vec![deployment("web", 3)],
    );
    sim.step();
    sim.all_running();
    let old_on_c: Vec<ReportedPod> = sim
        .input
        .reported
        .iter()
        .filter(|r| r.node == "c")
        .cloned()
        .collect();
    sim.node("c").condition = NodeCondition::NotReady {
        since_ms: sim.now_ms,
    };
    sim.now_ms += 60_000;
    sim.step();
    sim.all_running();
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("a", 2), ("b", 1)]));
    // c is back; it kept running its copy (edge autonomy) and reports it.
    sim.node("c").condition = NodeCondition::Ready;
    sim.input.reported.extend(old_on_c);
    let replaced = sim.pairs();
    for _ in 0..3 {
        sim.step();
        assert_eq!(sim.pairs(), replaced, "exactly the replicas, nothing flaps");
    }
}

#[test]
fn extras_beyond_replicas_are_dropped_keeping_listed_then_running_then_oldest() {
    // (pod, node, in previous table, reported running started at) -> kept pods for 2 replicas
    type Pod = (&'static str, &'static str, bool, Option<u64>);
    let cases: &[(&[Pod], &[&str])] = &[
        (
            &[
                ("p1", "a", true, Some(100)),
                ("p2", "b", true, Some(300)),
                ("p3", "c", true, Some(200)),
            ],
            &["p1", "p3"],
        ),
        (
            &[
                ("p1", "a", true, None),
                ("p2", "b", true, Some(300)),
                ("p3", "c", true, Some(200)),
            ],
            &["p2", "p3"],
        ),
        (
            &[
                ("p1", "a", false, Some(1)),
                ("p2", "b", true, None),
                ("p3", "c", true, None),
            ],
            &["p2", "p3"],
        ),
        (
            &[
                ("p1", "a", false, Some(1)),
                ("p2", "b", false, Some(5)),
                ("p3", "c", true, None),
            ],
            &["p1", "p3"],
        ),
        (
            &[
                ("p1", "a", true, None),
                ("p2", "b", true, None),
                ("p3", "c", true, None),
            ],
            &["p1", "p2"],
        ),
    ];
    for (pods, kept) in cases {
        let mut sim = Sim::new(
            vec![node("a"), node("b"), node("c")],
            vec![deployment("web", 2)],
        );
        for (name, n, listed, started) in pods.iter() {
            let a = entry("web", name, "h1", n);
            if *listed {
                sim.input.previous.push(a.clone());
            }
            if let Some(started) = started {
                sim.input.reported.push(running(&a, *started));
            }
        }
        sim.step();
        let names: Vec<&str> = sim
            .out
            .assignments
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, *kept, "{pods:?}");
    }
}

#[test]
fn extras_after_a_healed_partition_are_dropped_where_copies_pile_up() {
    // Both sides' tables list copies: the majority (a, b, c) placed 2, 2, 1, the minority
    // (d, e) kept one each; one unlisted copy runs on c. Five replicas: one per node, from the
    // listed copies, the older one where a node holds two.
    let mut sim = Sim::new(
        ["a", "b", "c", "d", "e"].map(node).to_vec(),
        vec![deployment("web", 5)],
    );
    let listed = [
        ("p1", "a"),
        ("p2", "a"),
        ("p3", "b"),
        ("p4", "b"),
        ("p5", "c"),
        ("p6", "d"),
        ("p7", "e"),
    ];
    for (i, (name, n)) in listed.iter().enumerate() {
        let a = entry("web", name, "h1", n);
        sim.input.previous.push(a.clone());
        sim.input.reported.push(running(&a, 100 + i as u64));
    }
    let stray = entry("web", "p8", "h1", "c");
    sim.input.reported.push(running(&stray, 1));
    sim.step();
    assert_eq!(
        sim.counts("web"),
        counts(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)])
    );
    let mut names: Vec<String> = sim.out.assignments.iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["p1", "p3", "p5", "p6", "p7"]);
    sim.all_running();
    let settled = sim.pairs();
    sim.step();
    assert_eq!(sim.pairs(), settled, "nothing flaps once settled");
}

#[test]
fn a_template_change_replaces_old_pods_once_new_ones_run() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![deployment("web", 2)]);
    sim.step();
    sim.all_running();
    sim.input.workloads[0].template_hash = "h2".into();
    sim.step();
    let hashes = |sim: &Sim| {
        let mut out: Vec<String> = sim
            .out
            .assignments
            .iter()
            .map(|a| a.template_hash.clone())
            .collect();
        out.sort();
        out
    };
    assert_eq!(hashes(&sim), ["h1", "h1", "h2", "h2"]);
    assert!(
        sim.out
            .assignments
            .iter()
            .filter(|a| a.template_hash == "h2")
            .all(|a| a.name.starts_with("web-h2-"))
    );
    sim.step();
    assert_eq!(
        hashes(&sim),
        ["h1", "h1", "h2", "h2"],
        "old pods serve until the new ones run"
    );
    sim.all_running();
    sim.step();
    assert_eq!(hashes(&sim), ["h2", "h2"]);
    assert_eq!(sim.counts("web"), counts(&[("a", 1), ("b", 1)]));
}

#[test]
fn a_full_cluster_replaces_old_pods_within_max_unavailable() {
    let rollout = |max_unavailable| {
        let kind = WorkloadKind::Deployment {
            replicas: 2,
            max_unavailable,
            max_surge: 1,
            min_ready_ms: 0,
            recreate: false,
            paused: false,
        };
        let mut sim = Sim::new(
            vec![sized("a", 4000, 8 * GI, 1), sized("b", 4000, 8 * GI, 1)],
            vec![workload(kind, "web")],
        );
        sim.step();
        sim.all_running();
        sim.input.workloads[0].template_hash = "h2".into();
        sim
    };
    let mut sim = rollout(1);
    let mut seen = Vec::new();
    for _ in 0..3 {
        sim.step();
        let mut hashes: Vec<String> = sim
            .out
            .assignments
            .iter()
            .map(|a| a.template_hash.clone())
            .collect();
        hashes.sort();
        seen.push(hashes);
        sim.all_running();
    }
    assert_eq!(seen, [vec!["h1", "h2"], vec!["h2", "h2"], vec!["h2", "h2"]]);
    // No pod may be unavailable: the one surge pod has no room and waits.
    let mut stuck = rollout(0);
    stuck.step();
    assert_eq!(stuck.out.assignments.len(), 2);
    assert!(
        stuck
            .out
            .assignments
            .iter()
            .all(|a| a.template_hash == "h1")
    );
    assert_eq!(
        stuck.reasons(),
        [(
            "Deployment/default/web".to_string(),
            1,
            "0/2 nodes: 2 too many pods".to_string()
        )]
    );
}

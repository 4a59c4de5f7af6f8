//! Scale: 500 nodes and 100 Deployments are scheduled well within a second of cpu in a debug build,
//! respect every node's capacity, and a second pass over the running result changes nothing; a
//! Deployment asking for a billion replicas costs what the cluster can hold, not a billion steps.

use super::*;

#[test]
fn five_hundred_nodes_and_a_hundred_deployments_schedule_quickly() {
    let nodes: Vec<SchedNode> = (0..500)
        .map(|i| {
            let zone = if i % 2 == 0 { "north" } else { "south" };
            with(sized(&format!("node-{i:03}"), 2000, 4 * GI, 30), |n| {
                n.labels.insert("zone".into(), zone.into());
            })
        })
        .collect();
    let workloads: Vec<Workload> = (0..100)
        .map(|i| {
            let w = asking(
                deployment(&format!("app-{i:02}"), 10),
                50 + 10 * (i % 7),
                32 * MI,
            );
            if i % 10 == 0 {
                selecting(w, &[("zone", "north")])
            } else {
                w
            }
        })
        .collect();
    let mut sim = Sim::new(nodes, workloads);
    sim.input.workloads.push(daemon_set("agent"));

    let started = thread_cpu_time();
    sim.step();
    let first = thread_cpu_time() - started;
    assert!(sim.out.pending.is_empty(), "{:?}", sim.out.pending);
    assert_eq!(sim.out.assignments.len(), 100 * 10 + 500);
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &sim.out.assignments {
        *per_node.entry(a.node.as_str()).or_default() += 1;
    }
    assert!(per_node.values().all(|&pods| pods <= 30));
    // Spread: no Deployment has two pods on one node while it has fewer pods than nodes.
    for i in 0..100 {
        let per = sim.counts(&format!("app-{i:02}"));
        assert!(per.values().all(|&c| c == 1), "app-{i:02}: {per:?}");
    }

    sim.all_running();
    let before = sim.pairs();
    let started = thread_cpu_time();
    sim.step();
    let second = thread_cpu_time() - started;
    assert_eq!(sim.pairs(), before);
    assert!(
        first < Duration::from_secs(1) && second < Duration::from_secs(1),
        "first pass {first:?}, second pass {second:?} of cpu time"
    );
}

#[test]
fn a_billion_replicas_fill_the_cluster_in_bounded_time_and_leave_the_rest_pending() {
    let nodes = vec![node("a"), node("b"), node("c")];
    let mut sim = Sim::new(nodes, vec![deployment("web", 3)]);
    sim.step();
    sim.all_running();
    // Named to sort first among Deployments, so it is placed before any other new one.
    sim.input
        .workloads
        .push(asking(deployment("aaa-huge", 1_000_000_000), 0, 0));
    sim.input.workloads.push(bare_pod("other"));

    for pass in 0..2 {
        let started = thread_cpu_time();
        sim.step();
        let elapsed = thread_cpu_time() - started;
        assert!(
            elapsed < Duration::from_millis(200),
            "pass {pass} took {elapsed:?}"
        );
        // The running Deployment keeps its pods; the bare Pod (placed before Deployments) runs.
        assert_eq!(sim.counts("web"), counts(&[("a", 1), ("b", 1), ("c", 1)]));
        assert_eq!(sim.counts("Pod/other").values().sum::<usize>(), 1);
        // The huge one takes every slot left: 3 nodes x 110 pods, less web's 3 and the Pod.
        let huge: usize = sim.counts("aaa-huge").values().sum();
        assert_eq!(huge, 3 * 110 - 4, "pass {pass}");
        assert_eq!(
            sim.reasons(),
            vec![(
                "Deployment/default/aaa-huge".to_string(),
                1_000_000_000 - 326,
                "0/3 nodes: 3 too many pods".to_string()
            )],
            "pass {pass}"
        );
        sim.all_running();
    }
}

#[test]
fn a_node_advertising_absurd_pod_capacity_gets_at_most_the_per_node_maximum() {
    let nodes = vec![sized("a", u64::MAX, u64::MAX, u32::MAX)];
    let mut sim = Sim::new(nodes, vec![deployment("huge", 1_000_000_000)]);
    let started = thread_cpu_time();
    sim.step();
    let elapsed = thread_cpu_time() - started;
    assert!(elapsed < Duration::from_millis(200), "took {elapsed:?}");
    let placed = MAX_PODS_PER_NODE as usize;
    assert_eq!(sim.counts("huge"), counts(&[("a", placed)]));
    assert_eq!(
        sim.reasons(),
        vec![(
            "Deployment/default/huge".to_string(),
            1_000_000_000 - MAX_PODS_PER_NODE,
            "0/1 nodes: 1 too many pods".to_string()
        )]
    );
}

/// Cpu time this thread has used (user + system), from `/proc/thread-self/stat`: unlike the
/// wall clock it does not grow while other processes hold the cores. Ticks are 1/100 s.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start with the state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    assert!(!stat.is_empty(), "cannot read /proc/thread-self/stat");
    Duration::from_millis(ticks * 10)
}

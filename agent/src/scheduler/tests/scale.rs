//! Scale: 500 nodes and 100 Deployments are scheduled well within a second of cpu in a debug build,
//! respect every node's capacity, and a second pass over the running result changes nothing.

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

//! Rolling updates, one pass at a time: the surge and unavailability bounds hold at every step
//! for a table of settings, readiness gates progress, `minReadySeconds` delays it, Recreate
//! stops every old pod before the first new one starts, and a paused rollout stands still.

use super::*;

fn rolling(replicas: u32, max_surge: u32, max_unavailable: u32) -> Workload {
    workload(
        WorkloadKind::Deployment {
            replicas,
            max_unavailable,
            max_surge,
            min_ready_ms: 0,
            recreate: false,
            paused: false,
        },
        "web",
    )
}

/// Reports every listed pod running; `ready` decides which are ready. A pod keeps the time it
/// turned ready (`ready_since_ms`) from the previous report.
fn report(sim: &mut Sim, ready: impl Fn(&Placement) -> bool) {
    let since: BTreeMap<String, Option<u64>> = sim
        .input
        .reported
        .iter()
        .filter(|r| r.ready)
        .map(|r| (r.name.clone(), r.ready_since_ms))
        .collect();
    let now = sim.now_ms;
    sim.input.reported = sim
        .out
        .assignments
        .iter()
        .map(|a| {
            let mut r = running(a, now);
            r.ready = ready(a);
            r.ready_since_ms = match since.get(&a.name) {
                Some(kept) => *kept,
                None if r.ready => Some(now),
                None => None,
            };
            r
        })
        .collect();
}

fn of_hash(sim: &Sim, hash: &str) -> usize {
    let table = sim.out.assignments.iter();
    table.filter(|a| a.template_hash == hash).count()
}

/// Pods listed now that were reported ready before this pass.
fn available(sim: &Sim) -> usize {
    let ready: BTreeSet<&str> = sim
        .input
        .reported
        .iter()
        .filter(|r| r.ready)
        .map(|r| r.name.as_str())
        .collect();
    let table = sim.out.assignments.iter();
    table.filter(|a| ready.contains(a.name.as_str())).count()
}

#[test]
fn rolling_updates_stay_within_surge_and_unavailability_at_every_step() {
    // (replicas, max surge, max unavailable, passes the rollout may take at most)
    let cases = [
        (4, 1, 0, 8),
        (4, 0, 1, 8),
        (10, 3, 2, 8),
        (10, 1, 1, 12),
        (3, 3, 0, 3),
        (1, 1, 0, 3),
        (1, 0, 1, 3),
        (5, 0, 5, 3),
    ];
    for (replicas, surge, unavailable, most) in cases {
        let case = format!("{replicas} replicas, surge {surge}, unavailable {unavailable}");
        let nodes = vec![node("a"), node("b"), node("c")];
        let mut sim = Sim::new(nodes, vec![rolling(replicas, surge, unavailable)]);
        sim.step();
        report(&mut sim, |_| true);
        sim.step();
        assert_eq!(
            of_hash(&sim, "h1"),
            replicas as usize,
            "{case}: first rollout"
        );
        sim.input.workloads[0].template_hash = "h2".into();
        let mut passes = 0;
        loop {
            sim.step();
            passes += 1;
            let total = sim.out.assignments.len();
            assert!(
                total <= (replicas + surge) as usize,
                "{case}: {total} pods at pass {passes}"
            );
            let up = available(&sim);
            assert!(
                up >= replicas.saturating_sub(unavailable) as usize,
                "{case}: only {up} available at pass {passes}"
            );
            // New pods turn ready one pass after they are listed.
            report(&mut sim, |_| true);
            if of_hash(&sim, "h2") == replicas as usize && total == replicas as usize {
                break;
            }
            assert!(passes < most, "{case}: not done after {passes} passes");
        }
        assert!(sim.out.pending.is_empty(), "{case}: {:?}", sim.reasons());
    }
}

#[test]
fn new_pods_that_never_turn_ready_hold_the_rollout() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![rolling(4, 1, 1)]);
    sim.step();
    report(&mut sim, |_| true);
    sim.step();
    sim.input.workloads[0].template_hash = "h2".into();
    for _ in 0..10 {
        sim.step();
        report(&mut sim, |a| a.template_hash == "h1");
    }
    // One old pod may go (max unavailable 1), one new may be added on top (surge 1), and
    // there it stops: at least 3 old pods keep serving.
    assert_eq!(of_hash(&sim, "h1"), 3);
    assert_eq!(of_hash(&sim, "h2"), 2);
    assert!(sim.out.pending.is_empty(), "{:?}", sim.reasons());
    // Once they turn ready the rollout goes on to the end.
    for _ in 0..10 {
        report(&mut sim, |_| true);
        sim.step();
    }
    assert_eq!((of_hash(&sim, "h1"), of_hash(&sim, "h2")), (0, 4));
}

#[test]
fn min_ready_seconds_count_from_when_the_pod_turned_ready() {
    let mut w = rolling(2, 1, 0);
    if let WorkloadKind::Deployment { min_ready_ms, .. } = &mut w.kind {
        *min_ready_ms = 30_000;
    }
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![w]);
    sim.step();
    report(&mut sim, |_| true);
    // The first pods were ready before the leader knew (`None`): available at once.
    for r in &mut sim.input.reported {
        r.ready_since_ms = None;
    }
    sim.input.workloads[0].template_hash = "h2".into();
    sim.step();
    assert_eq!((of_hash(&sim, "h1"), of_hash(&sim, "h2")), (2, 1));
    report(&mut sim, |_| true);
    sim.now_ms += 29_000;
    sim.step();
    assert_eq!(
        (of_hash(&sim, "h1"), of_hash(&sim, "h2")),
        (2, 1),
        "ready for 29 s of 30: not available yet"
    );
    sim.now_ms += 1_000;
    sim.step();
    assert_eq!((of_hash(&sim, "h1"), of_hash(&sim, "h2")), (1, 2));
}

#[test]
fn recreate_stops_every_old_pod_before_a_new_one_starts() {
    let recreate = workload(
        WorkloadKind::Deployment {
            replicas: 3,
            max_unavailable: 3,
            max_surge: 0,
            min_ready_ms: 0,
            recreate: true,
            paused: false,
        },
        "web",
    );
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![recreate]);
    sim.step();
    report(&mut sim, |_| true);
    sim.step();
    assert_eq!(of_hash(&sim, "h1"), 3);
    sim.input.workloads[0].template_hash = "h2".into();
    sim.step();
    assert!(sim.out.assignments.is_empty(), "{:?}", sim.pairs());
    // The nodes are still stopping the old pods: nothing new yet.
    for r in &mut sim.input.reported {
        r.deleting = true;
    }
    sim.step();
    assert!(sim.out.assignments.is_empty(), "{:?}", sim.pairs());
    sim.input.reported.clear();
    sim.step();
    assert_eq!(of_hash(&sim, "h2"), 3);
}

#[test]
fn scaling_without_a_template_change_ignores_the_surge() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![rolling(2, 0, 1)]);
    sim.step();
    report(&mut sim, |_| true);
    if let WorkloadKind::Deployment { replicas, .. } = &mut sim.input.workloads[0].kind {
        *replicas = 6;
    }
    sim.step();
    assert_eq!(of_hash(&sim, "h1"), 6);
    report(&mut sim, |_| true);
    if let WorkloadKind::Deployment { replicas, .. } = &mut sim.input.workloads[0].kind {
        *replicas = 1;
    }
    sim.step();
    assert_eq!(of_hash(&sim, "h1"), 1);
}

#[test]
fn a_recreate_is_not_held_by_the_last_report_of_a_node_that_is_gone() {
    let recreate = workload(
        WorkloadKind::Deployment {
            replicas: 2,
            max_unavailable: 2,
            max_surge: 0,
            min_ready_ms: 0,
            recreate: true,
            paused: false,
        },
        "web",
    );
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![recreate]);
    sim.step();
    report(&mut sim, |_| true);
    sim.input.workloads[0].template_hash = "h2".into();
    sim.step();
    // b's pod is being stopped when b leaves for good; a's is gone.
    sim.input.reported.retain(|r| r.node == "b");
    for r in &mut sim.input.reported {
        r.deleting = true;
    }
    sim.step();
    assert!(sim.out.assignments.is_empty(), "b is still stopping it");
    sim.node("b").condition = NodeCondition::Left;
    sim.step();
    assert_eq!(of_hash(&sim, "h2"), 2, "{:?}", sim.pairs());
}

#[test]
fn a_paused_rollout_keeps_the_pods_it_has_and_resumes_where_it_stood() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![rolling(4, 1, 1)]);
    sim.step();
    report(&mut sim, |_| true);
    sim.step();
    sim.input.workloads[0].template_hash = "h2".into();
    // One pass of the rollout, then a pause: it stands still however long it waits.
    sim.step();
    report(&mut sim, |_| true);
    let stood = (of_hash(&sim, "h1"), of_hash(&sim, "h2"));
    assert!(stood.0 > 0 && stood.1 > 0, "mid-rollout: {:?}", sim.pairs());
    let pause = |sim: &mut Sim, on: bool| {
        if let WorkloadKind::Deployment { paused, .. } = &mut sim.input.workloads[0].kind {
            *paused = on;
        }
    };
    pause(&mut sim, true);
    // The surge above the replica count is let go (old pods first), then nothing moves.
    sim.step();
    report(&mut sim, |_| true);
    let stood = (of_hash(&sim, "h1"), of_hash(&sim, "h2"));
    assert_eq!(stood.0 + stood.1, 4, "{:?}", sim.pairs());
    assert!(stood.0 > 0, "{:?}", sim.pairs());
    for _ in 0..5 {
        sim.step();
        report(&mut sim, |_| true);
        assert_eq!((of_hash(&sim, "h1"), of_hash(&sim, "h2")), stood);
    }
    // Paused, it still scales: down keeps the best pods, up makes the missing ones.
    let scale = |sim: &mut Sim, n: u32| {
        if let WorkloadKind::Deployment { replicas, .. } = &mut sim.input.workloads[0].kind {
            *replicas = n;
        }
    };
    let total = stood.0 + stood.1;
    scale(&mut sim, total as u32 - 1);
    sim.step();
    report(&mut sim, |_| true);
    assert_eq!(
        (of_hash(&sim, "h1"), of_hash(&sim, "h2")),
        (stood.0 - 1, stood.1),
        "scaling down drops old pods first"
    );
    scale(&mut sim, total as u32 + 1);
    sim.step();
    report(&mut sim, |_| true);
    assert_eq!(
        (of_hash(&sim, "h1"), of_hash(&sim, "h2")),
        (stood.0 - 1, stood.1 + 2),
        "scaling up makes current-template pods"
    );
    scale(&mut sim, 4);
    // Resumed: the rollout goes on to the end within its bounds.
    pause(&mut sim, false);
    for _ in 0..10 {
        sim.step();
        assert!(sim.out.assignments.len() <= 5);
        report(&mut sim, |_| true);
    }
    assert_eq!((of_hash(&sim, "h1"), of_hash(&sim, "h2")), (0, 4));
}

//! In-process clusters of the cluster layer (issue 5), part two: a 2|3 partition and its heal,
//! cordon and drain, a node back with its old pods, a node joining. Same harness as
//! `cluster_sim.rs` (paused time, ChannelTransport, fake runtime).

mod sim;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use sim::{Sim, SimOptions, deployment, name, wait_until};
use skiff_gossip::NodeCondition;
use std::collections::BTreeSet;
use std::time::Duration;

fn names(running: &[(usize, String, String)]) -> BTreeSet<String> {
    running.iter().map(|(_, pod, _)| pod.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn partition_two_three_keeps_pods_and_heals_to_one_leader_and_exact_replicas() {
    let mut rng = StdRng::seed_from_u64(sim::seed("partition"));
    let mut sim = Sim::start(5, SimOptions::default()).await;
    sim.settle().await;
    let everyone = sim.alive();
    let origin = *everyone.choose(&mut rng).expect("a node");
    sim.declare(origin, &[deployment("web", 5, "busybox:1")]);
    wait_until("5 replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "web").len() == 5)
    })
    .await;
    let before = sim.running("Deployment", "web");

    let mut order = everyone.clone();
    order.shuffle(&mut rng);
    let (mut left, mut right) = (order[..2].to_vec(), order[2..].to_vec());
    left.sort();
    right.sort();
    eprintln!("partition {left:?} | {right:?}");
    sim.cut(&left, &right).await;
    let took = wait_until(
        "each side has its own leader",
        Duration::from_secs(30),
        || std::future::ready(sim.leader_is(&left, left[0]) && sim.leader_is(&right, right[0])),
    )
    .await;
    eprintln!(
        "two leaders after {took:?}: {} and {}",
        name(left[0]),
        name(right[0])
    );
    // The minority (2 of 5 nodes last seen Ready) keeps exactly what it ran and says why; the
    // majority replaces the minority's pods, so it runs the full 5 itself.
    let on = |side: &[usize], pods: &[(usize, String, String)]| -> BTreeSet<String> {
        pods.iter()
            .filter(|(i, _, _)| side.contains(i))
            .map(|(_, pod, _)| pod.clone())
            .collect()
    };
    let minority_before = on(&left, &before);
    wait_until("the majority runs 5 again", Duration::from_secs(30), || {
        std::future::ready(on(&right, &sim.running("Deployment", "web")).len() == 5)
    })
    .await;
    for i in &left {
        let quorum = sim.state(*i).quorum.clone();
        assert!(
            !quorum.held && quorum.ready == 2 && quorum.members == 5,
            "{quorum:?}"
        );
    }
    assert!(sim.state(right[0]).quorum.held);
    // A minute apart: both sides keep serving what they ran, and the minority adds nothing.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let now = sim.running("Deployment", "web");
        assert!(
            names(&before).is_subset(&names(&now)),
            "a side stopped its pods: {now:?}"
        );
        assert_eq!(
            on(&left, &now),
            minority_before,
            "the minority placed or dropped pods"
        );
        assert_eq!(on(&right, &now).len(), 5, "the majority side runs {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "during the partition: {} replicas run ({} kept by the minority, 5 on the majority)",
        sim.running("Deployment", "web").len(),
        minority_before.len()
    );

    sim.heal(&left, &right).await;
    let took = wait_until("one leader, 5 replicas", Duration::from_secs(10), || {
        let term = sim.state(everyone[0]).term;
        std::future::ready(
            sim.leader_is(&everyone, everyone[0])
                && everyone.iter().all(|i| sim.state(*i).term == term)
                && sim.held("Deployment", "web").len() == 5
                && sim.running("Deployment", "web").len() == 5,
        )
    })
    .await;
    eprintln!("healed: one leader and exactly 5 replicas after {took:?}");
    let settled = sim.held("Deployment", "web");
    let term = sim.state(everyone[0]).term;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        assert_eq!(
            sim.held("Deployment", "web"),
            settled,
            "pods changed after the heal"
        );
        assert!(sim.leader_is(&everyone, everyone[0]));
        assert!(everyone.iter().all(|i| sim.state(*i).term == term));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cordon_keeps_pods_and_drain_moves_them_within_max_unavailable() {
    let mut sim = Sim::start(4, SimOptions::default()).await;
    sim.settle().await;
    let target = 3;
    sim.declare(1, &[deployment("web", 4, "busybox:1")]);
    wait_until("4 replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "web").len() == 4)
    })
    .await;
    let before = sim.running("Deployment", "web");
    assert!(before.iter().any(|(n, _, _)| *n == target), "{before:?}");

    sim.set_metadata(target, |m| m.cordoned = true).await;
    let everyone = sim.alive();
    wait_until("everyone sees the cordon", Duration::from_secs(5), || {
        std::future::ready(everyone.iter().all(|o| {
            sim.node(*o)
                .gossip
                .nodes()
                .borrow()
                .iter()
                .any(|n| n.name == name(target) && n.metadata.cordoned)
        }))
    })
    .await;
    sim.declare(
        1,
        &[
            deployment("web", 4, "busybox:1"),
            deployment("api", 3, "busybox:1"),
        ],
    );
    wait_until("3 api replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "api").len() == 3)
    })
    .await;
    let api = sim.running("Deployment", "api");
    assert!(
        api.iter().all(|(n, _, _)| *n != target),
        "new pods on a cordoned node: {api:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.running("Deployment", "web"),
        before,
        "cordon moved pods"
    );

    sim.set_metadata(target, |m| m.draining = true).await;
    let mut fewest = usize::MAX;
    let took = wait_until("the drained node is empty", Duration::from_secs(15), || {
        let web = sim.running("Deployment", "web");
        fewest = fewest.min(web.len());
        std::future::ready(
            web.len() == 4
                && sim.held_on(target).is_empty()
                && sim.running("Deployment", "api").len() == 3,
        )
    })
    .await;
    eprintln!("drained after {took:?}; fewest web replicas running meanwhile: {fewest}");
    // The Deployment's default maxUnavailable (25% of 4: one pod) is all a drain may take
    // down before the replacements run, as in a rolling update; how many it takes depends on
    // how fast the tables travel (pushed at once, they can beat the 100 ms start delay).
    assert!(
        fewest >= 3,
        "drain stopped more pods than maxUnavailable allows before their replacements ran"
    );
    let web = sim.running("Deployment", "web");
    let kept: BTreeSet<String> = before
        .iter()
        .filter(|(n, _, _)| *n != target)
        .map(|(_, pod, _)| pod.clone())
        .collect();
    assert!(
        kept.is_subset(&names(&web)),
        "pods off the drained node moved: {web:?}"
    );
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_back_with_its_old_pods_converges_to_exactly_the_replicas_without_flapping() {
    let mut sim = Sim::start(4, SimOptions::default()).await;
    sim.settle().await;
    sim.declare(1, &[deployment("web", 4, "busybox:1")]);
    wait_until("4 replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "web").len() == 4)
    })
    .await;
    let target = 3;
    let old = sim.held_on(target);
    assert!(!old.is_empty(), "node-003 runs a replica");
    // kill -9 of the agent: its containers keep running.
    sim.kill_agent(target).await;
    let took = wait_until(
        "replacements on the others",
        Duration::from_secs(30),
        || std::future::ready(sim.running("Deployment", "web").len() == 4),
    )
    .await;
    eprintln!("replaced after {took:?}");
    sim.restart(target).await;
    // Back with its old pods: for a moment more than 4 run, then exactly 4.
    let took = wait_until("exactly 4 replicas again", Duration::from_secs(15), || {
        std::future::ready(
            sim.held("Deployment", "web").len() == 4
                && sim.running("Deployment", "web").len() == 4
                && sim.held_on(target).iter().all(|p| !old.contains(p)),
        )
    })
    .await;
    eprintln!("converged {took:?} after the restart");
    let settled = sim.held("Deployment", "web");
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        assert_eq!(
            sim.held("Deployment", "web"),
            settled,
            "pods changed after converging"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_joining_node_gets_its_daemon_set_pod_and_takes_nothing_that_runs() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let edge = |m: &mut skiff_gossip::NodeMetadata| {
        m.labels.insert("role".into(), "edge".into());
    };
    sim.set_metadata(1, edge).await;
    sim.declare(
        2,
        &[
            deployment("web", 3, "busybox:1"),
            sim::daemon_set("probe", "edge"),
        ],
    );
    wait_until(
        "web 3 and probe on node-001 only",
        Duration::from_secs(10),
        || {
            let probe = sim.running("DaemonSet", "probe");
            std::future::ready(
                sim.running("Deployment", "web").len() == 3 && probe.len() == 1 && probe[0].0 == 1,
            )
        },
    )
    .await;
    let web = sim.running("Deployment", "web");
    let joined = sim.add_node(edge).await;
    let everyone = sim.alive();
    let took = wait_until(
        "the new node runs its probe pod",
        Duration::from_secs(20),
        || {
            let probe = sim.running("DaemonSet", "probe");
            std::future::ready(
                sim.all_see(&everyone, NodeCondition::Ready)
                    && probe.len() == 2
                    && probe.iter().any(|(n, _, _)| *n == joined),
            )
        },
    )
    .await;
    eprintln!(
        "{} joined and runs its DaemonSet pod after {took:?}",
        name(joined)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sim.running("Deployment", "web"),
        web,
        "a join moved running pods"
    );
    assert_eq!(sim.running("DaemonSet", "probe").len(), 2);
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_agent_restarted_gracefully_keeps_its_pods_and_nothing_is_duplicated() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    sim.declare(0, &[deployment("web", 6, "busybox:1")]);
    wait_until("6 replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "web").len() == 6)
    })
    .await;
    let before = names(&sim.running("Deployment", "web"));
    let target = 2;
    let others = [0, 1];
    let theirs: BTreeSet<String> = others.iter().flat_map(|i| sim.held_on(*i)).collect();
    assert!(!sim.held_on(target).is_empty(), "node-002 runs a replica");
    // SIGTERM: the agent says it leaves; its containers keep running.
    sim.stop_agent(target).await;
    // Well past the eviction delay, within the restart grace: nothing is placed elsewhere.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let now: BTreeSet<String> = others.iter().flat_map(|i| sim.held_on(*i)).collect();
        assert_eq!(now, theirs, "the stopped node's pods were duplicated");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sim.restart(target).await;
    wait_until("all 6 back, the same pods", Duration::from_secs(10), || {
        std::future::ready(names(&sim.running("Deployment", "web")) == before)
    })
    .await;
    wait_until(
        "the others see it Ready again",
        Duration::from_secs(10),
        || std::future::ready(sim.all_see(&[target], NodeCondition::Ready)),
    )
    .await;
    // Back under a new generation: nothing was started elsewhere meanwhile, nothing moves.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        assert_eq!(
            names(&sim.held("Deployment", "web")),
            before,
            "pods changed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A node stopped for good gives its pods up once the restart grace (30 s) is over.
    sim.stop_agent(target).await;
    let took = wait_until(
        "replacements after the restart grace",
        Duration::from_secs(60),
        || std::future::ready(sim.running("Deployment", "web").len() == 6),
    )
    .await;
    assert!(
        took >= Duration::from_secs(25),
        "replaced after {took:?}, before the grace"
    );
    eprintln!("a node stopped for good: its pods replaced after {took:?}");
    sim.stop().await;
}

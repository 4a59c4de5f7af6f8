//! In-process clusters of the cluster layer (issue 5): gossip on chitchat's `ChannelTransport`,
//! the real cluster service on in-memory redb, a fake runtime, tokio's paused time. Each
//! randomized test prints its seed; replay with `SKIFF_SIM_SEED=<seed> cargo test -p
//! skiff-agent --test cluster_sim <test>`. chitchat picks gossip peers with its own RNG, so
//! message orders may differ between replays while the scenario stays the same.
//!
//! The benchmark (`bench_cluster_sim`, ignored) is what `cargo xtask bench --only cluster-sim` runs.

mod sim;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use sim::{Sim, SimOptions, deployment, image_of, name, wait_until};
use skiff_gossip::NodeCondition;
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn web_key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Deployment, "default", name)
}

/// Pods per node index.
fn per_node(running: &[(usize, String, String)]) -> BTreeMap<usize, usize> {
    let mut out = BTreeMap::new();
    for (node, _, _) in running {
        *out.entry(*node).or_default() += 1;
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_new_object_reaches_every_node_and_its_replicas_spread() {
    let mut rng = StdRng::seed_from_u64(sim::seed("new object"));
    let mut sim = Sim::start(5, SimOptions::default()).await;
    sim.settle().await;
    let origin = *sim.alive().choose(&mut rng).expect("a node");
    eprintln!("declared on {}", name(origin));
    sim.declare(origin, &[deployment("web", 7, "busybox:1")]);
    let key = web_key("web");
    let everyone = sim.alive();
    let took = wait_until("web on every node", Duration::from_secs(10), || {
        std::future::ready(everyone.iter().all(|i| sim.holds(*i, &key, |_| true)))
    })
    .await;
    eprintln!("object on every node after {took:?}");
    assert!(took <= Duration::from_secs(3), "replication took {took:?}");
    let took = wait_until("7 replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "web").len() == 7)
    })
    .await;
    eprintln!("7 replicas running after {took:?} more");
    // Spread: 7 over 5 nodes is 1 or 2 each.
    let counts = per_node(&sim.running("Deployment", "web"));
    assert_eq!(counts.len(), 5, "every node runs a replica: {counts:?}");
    assert!(counts.values().all(|c| (1..=2).contains(c)), "{counts:?}");
    // Every node shows every pod (status from any node).
    wait_until("every node sees 7 reports", Duration::from_secs(5), || {
        std::future::ready(everyone.iter().all(|i| {
            let seen = sim.reported(*i, "web");
            seen.len() == 7 && seen.values().all(|(_, r)| r.running && r.ready)
        }))
    })
    .await;
    sim.stop().await;
}

fn template_hash(object: &Valid<Object>) -> String {
    match object.get() {
        Object::Deployment(d) => d.pod_template_hash(),
        _ => panic!("not a Deployment"),
    }
}

/// Names of the pods `running` lists.
fn names(running: &[(usize, String, String)]) -> BTreeSet<String> {
    running.iter().map(|(_, pod, _)| pod.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn the_lowest_name_leads_and_a_dead_leaders_objects_stay_and_pods_move_after_the_eviction_delay()
 {
    let delay = Duration::from_secs(5);
    let options = SimOptions {
        eviction_delay: delay,
        ..SimOptions::default()
    };
    let mut sim = Sim::start(5, options).await;
    sim.settle().await;
    let term = sim.state(3).term;
    assert!(sim.leader_is(&sim.alive(), 0));
    // Declared on the leader itself: the object must outlive the node it was dropped on.
    sim.declare(0, &[deployment("web", 5, "busybox:1")]);
    wait_until("5 replicas running", Duration::from_secs(10), || {
        std::future::ready(sim.running("Deployment", "web").len() == 5)
    })
    .await;
    let before = sim.running("Deployment", "web");
    assert_eq!(
        per_node(&before).len(),
        5,
        "one replica per node: {before:?}"
    );
    let on_leader: BTreeSet<String> = before
        .iter()
        .filter(|(node, _, _)| *node == 0)
        .map(|(_, pod, _)| pod.clone())
        .collect();

    sim.kill(0).await;
    let survivors = sim.alive();
    let detected = wait_until(
        "a survivor sees node-000 NotReady",
        Duration::from_secs(30),
        || {
            std::future::ready(survivors.iter().any(|o| {
                sim.node(*o)
                    .gossip
                    .nodes()
                    .borrow()
                    .iter()
                    .any(|n| n.name == name(0) && n.condition == NodeCondition::NotReady)
            }))
        },
    )
    .await;
    eprintln!("node-000 NotReady after {detected:?}");
    let took = wait_until(
        "node-001 leads with a higher term",
        Duration::from_secs(10),
        || {
            std::future::ready(
                sim.leader_is(&survivors, 1) && survivors.iter().all(|i| sim.state(*i).term > term),
            )
        },
    )
    .await;
    eprintln!(
        "node-001 leads (term {} -> {}) {took:?} later",
        term,
        sim.state(1).term
    );
    let replaced = wait_until(
        "5 replicas on the survivors",
        Duration::from_secs(30),
        || std::future::ready(sim.running("Deployment", "web").len() == 5),
    )
    .await
        + took;
    eprintln!("replacements running {replaced:?} after the detection (delay {delay:?})");
    let step = sim.options.step + sim.options.start_delay;
    assert!(
        replaced + step >= delay,
        "replaced after {replaced:?}, before the eviction delay"
    );
    assert!(
        replaced <= delay + Duration::from_secs(3),
        "replaced only after {replaced:?}"
    );
    let after = sim.running("Deployment", "web");
    assert!(names(&after).is_disjoint(&on_leader), "{after:?}");
    let key = web_key("web");
    assert!(
        survivors.iter().all(|i| sim.holds(*i, &key, |_| true)),
        "web outlives its origin"
    );
    let kept: BTreeSet<String> = names(&before).difference(&on_leader).cloned().collect();
    assert!(
        kept.is_subset(&names(&after)),
        "survivors' pods stayed: {after:?}"
    );
    // And it stays exact.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sim.running("Deployment", "web"), after);
    }
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn conflicting_edits_on_two_nodes_converge_to_the_newest_version() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let key = web_key("web");
    let everyone = sim.alive();
    // The same instant on both nodes: equal wall clock and counter, the node name decides.
    sim.declare(1, &[deployment("web", 2, "app:v1")]);
    sim.declare(2, &[deployment("web", 2, "app:v2")]);
    let image = |want: &'static str| move |o: &Valid<Object>| image_of(o).as_deref() == Some(want);
    wait_until(
        "v2 (node-002 breaks the tie) everywhere",
        Duration::from_secs(10),
        || {
            std::future::ready(
                everyone
                    .iter()
                    .all(|i| sim.holds(*i, &key, image("app:v2"))),
            )
        },
    )
    .await;
    // Later, node-001's file changes: a newer version, which wins on node-002 too although
    // node-002's own (unchanged) file still says v2.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v3 = deployment("web", 2, "app:v3");
    sim.declare(1, std::slice::from_ref(&v3));
    let took = wait_until("v3 everywhere", Duration::from_secs(10), || {
        std::future::ready(
            everyone
                .iter()
                .all(|i| sim.holds(*i, &key, image("app:v3"))),
        )
    })
    .await;
    eprintln!("the newer edit reached every node after {took:?}");
    let hash = template_hash(&v3);
    wait_until(
        "2 replicas of v3, nothing older",
        Duration::from_secs(15),
        || {
            let running = sim.running("Deployment", "web");
            std::future::ready(running.len() == 2 && running.iter().all(|(_, _, h)| *h == hash))
        },
    )
    .await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            everyone
                .iter()
                .all(|i| sim.holds(*i, &key, image("app:v3")))
        );
    }
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_object_stays_deleted_when_a_node_restarts_with_its_old_file() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let key = web_key("web");
    let everyone = sim.alive();
    let web = deployment("web", 3, "app:v1");
    sim.declare(1, std::slice::from_ref(&web));
    wait_until(
        "web everywhere and running",
        Duration::from_secs(10),
        || {
            std::future::ready(
                everyone.iter().all(|i| sim.holds(*i, &key, |_| true))
                    && sim.running("Deployment", "web").len() == 3,
            )
        },
    )
    .await;
    // node-002 holds a copy of the same file (no new version: same content).
    sim.declare(2, std::slice::from_ref(&web));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Deleted on node-001: gone everywhere, and its pods stop.
    sim.declare(1, &[]);
    let took = wait_until(
        "web deleted everywhere, no pods",
        Duration::from_secs(10),
        || {
            std::future::ready(
                everyone.iter().all(|i| !sim.holds(*i, &key, |_| true))
                    && sim.running("Deployment", "web").is_empty(),
            )
        },
    )
    .await;
    eprintln!("deletion everywhere after {took:?}");

    // node-002 restarts (same store, new service) with its old, unchanged copy.
    sim.kill(2).await;
    sim.restart(2).await;
    wait_until("node-002 back", Duration::from_secs(30), || {
        std::future::ready(sim.all_see(&everyone, NodeCondition::Ready))
    })
    .await;
    let quiet = sim.options.startup_grace + Duration::from_secs(3);
    let start = tokio::time::Instant::now();
    while start.elapsed() < quiet {
        assert!(
            everyone.iter().all(|i| !sim.holds(*i, &key, |_| true)),
            "web was resurrected by an unchanged file"
        );
        assert!(sim.running("Deployment", "web").is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A changed file is a new version.
    sim.declare(2, &[deployment("web", 2, "app:v2")]);
    wait_until(
        "the changed file's web everywhere, 2 running",
        Duration::from_secs(10),
        || {
            std::future::ready(
                everyone
                    .iter()
                    .all(|i| sim.holds(*i, &key, |o| image_of(o).as_deref() == Some("app:v2")))
                    && sim.running("Deployment", "web").len() == 2,
            )
        },
    )
    .await;
    sim.stop().await;
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
    // A minute apart: both sides keep serving what they ran.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let now = names(&sim.running("Deployment", "web"));
        assert!(
            names(&before).is_subset(&now),
            "a side stopped its pods: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "during the partition: {} replicas run (each side replaced the other's)",
        sim.running("Deployment", "web").len()
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
async fn cordon_keeps_pods_and_drain_moves_them_without_dropping_below_the_replicas() {
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
    assert!(
        fewest >= 4,
        "drain stopped a pod before its replacement ran"
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

/// Figures of one benchmark run (simulated milliseconds unless named real).
#[derive(serde::Serialize)]
struct BenchFigures {
    nodes: usize,
    replicas: u32,
    repeats: usize,
    settle_ms: u128,
    /// Declared on one node -> every node holds the object (median over repeats).
    everywhere_ms: u128,
    /// Declared on one node -> the leader's table places every replica.
    scheduled_ms: u128,
    /// Declared on one node -> every replica's node took its assignment (its pod exists).
    assigned_ms: u128,
    /// Declared on one node -> every replica running and reported so to the leader.
    running_ms: u128,
    /// Real time of the whole run, start to stop.
    real_ms: u128,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Every node sees all `n` nodes Ready and node-000 as leader (cheap enough for 500 nodes).
fn settled(sim: &Sim) -> bool {
    let n = sim.len();
    sim.alive().iter().all(|i| {
        let node = sim.node(*i);
        let ready = node
            .gossip
            .nodes()
            .borrow()
            .iter()
            .filter(|s| s.condition == NodeCondition::Ready)
            .count();
        ready == n && node.state.borrow().leader.as_deref() == Some(name(0).as_str())
    })
}

async fn bench_one(n: usize, repeats: usize, replicas: u32) -> BenchFigures {
    let real = std::time::Instant::now();
    let mut sim = Sim::start(n, SimOptions::default()).await;
    eprintln!(
        "bench cluster: {n} nodes spawned after {:?} real",
        real.elapsed()
    );
    let start = tokio::time::Instant::now();
    while !settled(&sim) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{n} nodes did not settle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settle = start.elapsed();
    eprintln!(
        "bench cluster: {n} nodes Ready with one leader after {settle:?} simulated, {:?} real",
        real.elapsed()
    );
    // On every node, in the leader's table, on their nodes, running and reported.
    let mut laps: [Vec<Duration>; 4] = Default::default();
    for rep in 0..repeats {
        let object = format!("web-{rep}");
        let key = web_key(&object);
        let origin = n - 1 - rep % n;
        let lap = std::time::Instant::now();
        sim.declare(origin, &[deployment(&object, replicas, "busybox:1")]);
        let start = tokio::time::Instant::now();
        let mut at: [Option<Duration>; 4] = [None; 4];
        while at.iter().any(Option::is_none) {
            let want = replicas as usize;
            let reached = [
                sim.alive().iter().all(|i| sim.holds(*i, &key, |_| true)),
                sim.state(0)
                    .table
                    .iter()
                    .filter(|p| p.owner.name == object)
                    .count()
                    == want,
                sim.held("Deployment", &object).len() == want,
                {
                    let reported = sim.reported(0, &object);
                    reported.len() == want && reported.values().all(|(_, r)| r.running && r.ready)
                },
            ];
            for (slot, now) in at.iter_mut().zip(reached) {
                if slot.is_none() && now {
                    *slot = Some(start.elapsed());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{object} not done in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let at = at.map(Option::unwrap_or_default);
        eprintln!(
            "bench cluster: {n} nodes, {object}: on every node after {:?}, scheduled after {:?}, \
             on their nodes after {:?}, {replicas} running and reported after {:?} (simulated; \
             {:?} real)",
            at[0],
            at[1],
            at[2],
            at[3],
            lap.elapsed()
        );
        for (lap, value) in laps.iter_mut().zip(at) {
            lap.push(value);
        }
    }
    let [everywhere, scheduled, assigned, running] = laps;
    sim.stop().await;
    BenchFigures {
        nodes: n,
        replicas,
        repeats,
        settle_ms: settle.as_millis(),
        everywhere_ms: median(everywhere).as_millis(),
        scheduled_ms: median(scheduled).as_millis(),
        assigned_ms: median(assigned).as_millis(),
        running_ms: median(running).as_millis(),
        real_ms: real.elapsed().as_millis(),
    }
}

/// The simulation benchmark of issue 5: 100 and 500 nodes, one Deployment declared on one
/// node. Prints one `BENCH_CLUSTER {json}` line per size. Sizes from
/// `SKIFF_CLUSTER_SIM_SIZES=100,500`, repeats from `SKIFF_CLUSTER_SIM_REPEATS=3`.
#[test]
#[ignore = "benchmark: cargo xtask bench --only cluster-sim"]
#[allow(clippy::print_stdout)] // the figures line xtask reads
fn bench_cluster_sim() {
    let env = |name: &str| std::env::var(name).ok();
    let sizes: Vec<usize> = env("SKIFF_CLUSTER_SIM_SIZES")
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 500]);
    let repeats = env("SKIFF_CLUSTER_SIM_REPEATS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for n in sizes {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("paused runtime");
        let figures = runtime.block_on(bench_one(n, repeats, 10));
        println!(
            "BENCH_CLUSTER {}",
            serde_json::to_string(&figures).expect("figures as json")
        );
    }
}

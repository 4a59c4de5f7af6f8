//! In-process clusters of the cluster layer (issue 5), part one: objects and the leader. Gossip
//! on chitchat's `ChannelTransport`, the real cluster service on in-memory redb, a fake runtime,
//! tokio's paused time. Each randomized test prints its seed; replay with
//! `SKIFF_SIM_SEED=<seed> cargo test -p skiff-agent --test cluster_sim <test>`. chitchat picks
//! gossip peers with its own RNG, so message orders may differ between replays while the
//! scenario stays the same. Part two (nodes failing, partitions, drain, joins) is
//! `cluster_sim_nodes.rs`; the benchmark is `cluster_sim_bench.rs`.

mod sim;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
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

/// A node's table larger than one gossip value (about 130 pods) goes out in parts: the
/// follower still runs every pod the leader placed on it.
#[tokio::test(start_paused = true)]
async fn a_table_too_large_for_one_gossip_value_reaches_its_node_in_parts() {
    let mut sim = Sim::start(2, SimOptions::default()).await;
    for i in 0..2 {
        sim.set_metadata(i, |m| m.capacity.pods = 300).await;
    }
    sim.settle().await;
    sim.declare(0, &[deployment("many", 400, "busybox:1")]);
    let took = wait_until("400 replicas running", Duration::from_secs(60), || {
        std::future::ready(sim.running("Deployment", "many").len() == 400)
    })
    .await;
    let counts = per_node(&sim.running("Deployment", "many"));
    eprintln!("400 replicas running after {took:?}: {counts:?}");
    assert_eq!(counts.len(), 2, "both nodes run replicas: {counts:?}");
    assert!(
        counts.values().all(|c| *c >= 150),
        "each node holds more than one gossip value's worth: {counts:?}"
    );
    sim.stop().await;
}

//! The cluster simulation benchmark (ignored; `cargo xtask bench --only cluster-sim` runs it):
//! N in-process nodes (`SKIFF_CLUSTER_SIM_SIZES`, default 100,500) settle, then a 10-replica
//! Deployment is declared on one node, repeatedly; the medians of when it is everywhere,
//! scheduled, on its nodes and running are printed as one `BENCH_CLUSTER` JSON line each.

mod sim;

use sim::{Sim, SimOptions, deployment, name};
use skiff_gossip::NodeCondition;
use skiff_manifests::{Kind, ObjectKey};
use std::time::Duration;

fn web_key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Deployment, "default", name)
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

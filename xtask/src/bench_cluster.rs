//! `cargo xtask bench --only cluster-sim` (issue 5, simulation half): in-process clusters of 100 and
//! 500 nodes (gossip on chitchat's `ChannelTransport`, the agent's real cluster layer on
//! in-memory stores, a fake runtime, tokio's paused time). One Deployment of 10 replicas is
//! declared on one node; the figures are simulated time from the declaration until every node
//! holds the object, the leader's table places every replica, every replica's node holds its
//! pod, and every replica runs and is reported so to the leader; medians over repeats.
//!
//! The simulation is the ignored test `bench_cluster_sim` of `agent/tests/cluster_sim_bench.rs`, run
//! in an optimised build (unoptimised, 500 nodes take far too long); it prints one
//! `BENCH_CLUSTER {json}` line per size, read back here. `--cluster-sim-sizes 100,500` and
//! `--cluster-sim-repeats 3` choose sizes and repeats.

use anyhow::{Context, Result};
use serde_json::Value;
use std::process::Stdio;

const LINE: &str = "BENCH_CLUSTER ";

/// An optimised build without the release profile's fat LTO (made for the agent's size, it
/// makes every relink of the test binary take minutes): `target/sim-bench/`.
const PROFILE: [&str; 10] = [
    "--profile",
    "sim-bench",
    "--config",
    "profile.sim-bench.inherits=\"release\"",
    "--config",
    "profile.sim-bench.opt-level=3",
    "--config",
    "profile.sim-bench.lto=false",
    "--config",
    "profile.sim-bench.codegen-units=16",
];

fn arg<'a>(args: &'a [String], name: &str, default: &'a str) -> &'a str {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str)
}

pub fn run(args: &[String]) -> Result<()> {
    let sizes = arg(args, "--cluster-sim-sizes", "100,500");
    let repeats = arg(args, "--cluster-sim-repeats", "3");
    eprintln!("bench cluster: simulation, sizes {sizes}, {repeats} repeats (optimised build)");
    let mut cmd = crate::util::cargo();
    cmd.arg("test")
        .args(PROFILE)
        .args(["-p", "skiff-agent", "--test", "cluster_sim_bench"])
        .args([
            "--",
            "--ignored",
            "--exact",
            "bench_cluster_sim",
            "--nocapture",
        ])
        .env("SKIFF_CLUSTER_SIM_SIZES", sizes)
        .env("SKIFF_CLUSTER_SIM_REPEATS", repeats)
        .current_dir(crate::root())
        .stderr(Stdio::inherit());
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output().context("run the cluster simulation")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix(LINE))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect();
    if rows.is_empty() {
        anyhow::bail!(
            "the cluster simulation printed no figures ({}): {text}",
            out.status
        );
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Value]) {
    let repeats = rows[0]["repeats"].as_u64().unwrap_or(0);
    println!(
        "\n== cluster: in-process simulation (ChannelTransport, paused time), medians of {repeats} =="
    );
    println!("{:<52} {:>5} {:>10}", "figure", "N", "skiff");
    let secs = |v: &Value| {
        v.as_u64()
            .map_or("-".to_string(), |ms| format!("{:.3} s", ms as f64 / 1000.0))
    };
    for row in rows {
        let n = row["nodes"].as_u64().unwrap_or(0);
        let replicas = row["replicas"].as_u64().unwrap_or(0);
        let figures = [
            (
                "cluster Ready with one leader (from start)",
                &row["settle_ms"],
            ),
            (
                "manifest on one node -> object on every node",
                &row["everywhere_ms"],
            ),
            (
                "manifest on one node -> all replicas in the leader's table",
                &row["scheduled_ms"],
            ),
            (
                "manifest on one node -> every pod on its node",
                &row["assigned_ms"],
            ),
            (
                &*format!("manifest on one node -> {replicas} running, reported to leader"),
                &row["running_ms"],
            ),
            (
                "real time of the whole run (not simulated)",
                &row["real_ms"],
            ),
        ];
        for (what, value) in figures {
            println!("{what:<52} {n:>5} {:>10}", secs(value));
        }
    }
}

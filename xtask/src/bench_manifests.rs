//! `cargo xtask bench --only manifests` (issue 9, item 6): the agent with a big manifests dir.
//! One release agent; first its figures with an empty manifests dir (RSS, and the start latency
//! of 10 pods written one after another), then the same after a 0.9 MB ConfigMap and 200 small
//! manifests have been applied. Targets: RSS under 40 MB and a new pod under 200 ms with the
//! big dir present. The peer is the same agent on an empty dir, in the same run.

use crate::bench::{Rss, fresh_mark_dir, percentile, pids_matching, pod_manifest, wait_for_file};
use crate::demo::DemoAgent;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SMALL: usize = 200;
const BIG_BYTES: usize = 900 * 1024;
const PODS: usize = 10;

pub fn run(_args: &[String]) -> Result<()> {
    crate::packages::ensure(crate::packages::AGENT)?;
    let skiff = crate::util::build_skiff_profile(true)?;
    let image = crate::build_test_image_with(&skiff)?;
    let dir = PathBuf::from("/tmp/skbm");
    let mut opts = crate::demo::NodeOptions::single("skbm", &dir);
    opts.keep_logs = Some(PathBuf::from("/tmp/skiff-bench-logs"));
    opts.log_filter = std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into());
    let mut agent = DemoAgent::start_with(&skiff, &image, opts)?;
    let result = measure(&mut agent);
    agent.teardown();
    let (empty, loaded) = result?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |v: &[Duration], q| ms(percentile(v, q));
    println!(
        "\n== a big manifests dir ({SMALL} small manifests and a {} KB ConfigMap), release agent ==",
        BIG_BYTES / 1024
    );
    println!(
        "{:<24} {:>8} {:>12} {:>12} {:>12} {:>10}",
        "", "RSS MB", "idle CPU ms/s", "pod p50 ms", "pod p95 ms", "max ms"
    );
    for (name, s) in [
        ("empty manifests dir", &empty),
        ("big manifests dir", &loaded),
    ] {
        println!(
            "{:<24} {:>8.1} {:>12.1} {:>12.1} {:>12.1} {:>10.1}   {}",
            name,
            s.rss.total as f64 / 1024.0,
            s.cpu_ms,
            p(&s.latencies, 50.0),
            p(&s.latencies, 95.0),
            p(&s.latencies, 100.0),
            s.rss.parts()
        );
    }
    println!(
        "big/empty: RSS {:.2}x, pod p50 {:.2}x; targets with the big dir: RSS < 40 MB ({}), new pod < 200 ms ({})",
        loaded.rss.total as f64 / empty.rss.total.max(1) as f64,
        p(&loaded.latencies, 50.0) / p(&empty.latencies, 50.0).max(0.001),
        if loaded.rss.total < 40 * 1024 {
            "met"
        } else {
            "missed"
        },
        if p(&loaded.latencies, 95.0) < 200.0 {
            "met at p95"
        } else {
            "missed at p95"
        },
    );
    Ok(())
}

struct Side {
    rss: Rss,
    /// CPU ms per second while idle.
    cpu_ms: f64,
    latencies: Vec<Duration>,
}

fn measure(agent: &mut DemoAgent) -> Result<(Side, Side)> {
    let pid = pids_matching(&["skiff", "agent", "--node-name skbm"])
        .first()
        .copied()
        .context("cannot find the agent process")?;
    let empty = side(agent, pid, "empty")?;
    eprintln!("bench: writing {SMALL} small manifests and a big ConfigMap");
    for i in 0..SMALL {
        std::fs::write(
            agent.manifests.join(format!("small-{i:03}.yaml")),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: small-{i:03}\ndata:\n  key: value-{i}\n"
            ),
        )?;
    }
    let blob = "b".repeat(BIG_BYTES);
    write_atomically(
        &agent.manifests.join("big.yaml"),
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {blob}\n"
        ),
    )?;
    agent.wait_for(Duration::from_secs(120), "every ConfigMap to be applied", |a| {
        let v = a
            .api(&serde_json::json!({
                "op": "get", "kind": "config_maps", "name": null, "namespace": null, "all_namespaces": true,
            }))
            .inspect_err(|e| eprintln!("bench: {e:#}"))?;
        Ok(v["items"].as_array().map_or(0, Vec::len) > SMALL)
    })?;
    let loaded = side(agent, pid, "big")?;
    Ok((empty, loaded))
}

/// RSS once the agent is quiet, then the start latency of PODS pods written one after another
/// (each removed again, so both sides start from the same pod count).
fn side(agent: &mut DemoAgent, pid: u32, tag: &str) -> Result<Side> {
    let cpu_ms = idle_cpu(pid)?;
    let rss = Rss::of(pid);
    let marks = fresh_mark_dir()?;
    let mut latencies = Vec::new();
    let mut files = Vec::new();
    for i in 0..PODS {
        let name = format!("{tag}-{i}");
        let file = agent.manifests.join(format!("pod-{name}.yaml"));
        let start = Instant::now();
        write_atomically(&file, &pod_manifest(&name))?;
        wait_for_file(&marks.join(&name), Duration::from_secs(60))?;
        latencies.push(start.elapsed());
        files.push(file);
    }
    for f in &files {
        std::fs::remove_file(f)?;
    }
    agent.wait_for(
        Duration::from_secs(60),
        "the bench pods to be deleted",
        |a| Ok(a.pods()?.is_empty()),
    )?;
    Ok(Side {
        rss,
        cpu_ms,
        latencies,
    })
}

/// The agent's CPU use in ms per second once start-up work is over: the median of ten
/// one-second samples taken after a 3 s pause.
fn idle_cpu(pid: u32) -> Result<f64> {
    let ticks = || -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        Ok(f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0))
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    std::thread::sleep(Duration::from_secs(3));
    let mut samples = Vec::new();
    for _ in 0..10 {
        let before = ticks()?;
        std::thread::sleep(Duration::from_secs(1));
        samples.push((ticks()? - before) as f64 * 1000.0 / hz);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Writes under a hidden name and renames into place (the way README recommends).
fn write_atomically(path: &Path, content: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("manifest")
    ));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

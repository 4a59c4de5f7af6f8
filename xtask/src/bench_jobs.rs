//! `cargo xtask bench --only jobs` (issue 15): batch work on real nodes.
//!
//! (1) Completions: 3 real nodes; a Job of 20 completions, parallelism 5, each pod running
//!     `true` (restartPolicy Never), written into n0's manifests dir; timed from the write to
//!     the Job's `Complete` condition as n0 shows it (API polled every 20 ms). Repeated
//!     (`--jobs-repeats N`, default 3) with a new Job each time. Beside it, in the same run,
//!     20 sequential `runc run` of `true` in the same rootfs. Reported: total p50/p95, the
//!     per-pod figure (total / 20) and the ratio skiff / runc.
//! (2) CronJob firing accuracy: a CronJob every minute (`--cron-runs N` runs, default 3) whose
//!     pod touches a file named after its Job in a hostPath directory; the file's mtime (the
//!     container's process running) minus the run's scheduled minute (from the Job's name) is
//!     the figure. Target: under 1 s after the minute. Takes N minutes or a little more.

use crate::bench_services::{pct, wait_until, write_manifest};
use crate::demo::DemoAgent;
use crate::demo::cluster::DemoCluster;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

const NODES: usize = 3;
const COMPLETIONS: usize = 20;
const PARALLELISM: usize = 5;
const MARKS: &str = "/tmp/skb-cron-marks";

pub fn run(args: &[String]) -> Result<()> {
    crate::packages::ensure(crate::packages::AGENT)?;
    crate::packages::ensure(&["runc"])?;
    let skiff = match std::env::var_os("SKIFF_BIN").filter(|b| !b.is_empty()) {
        Some(bin) => bin.into(),
        None => crate::util::build_skiff_profile(true)?,
    };
    let image = crate::build_test_image_with(&skiff)?;
    let _stop = crate::demo::on_ctrl_c();
    let load = crate::bench::load_average();
    let repeats = arg(args, "--jobs-repeats", 3);
    let cron_runs = arg(args, "--cron-runs", 3);
    let started = Instant::now();
    let runc = runc_sequential(&image, repeats)?;
    eprintln!("bench jobs: {NODES} real nodes");
    let cluster = DemoCluster::start_with(&skiff, &image, NODES, "info", &[])?;
    let result = completions(&cluster, repeats)
        .and_then(|jobs| Ok((jobs, cron_accuracy(&cluster, cron_runs)?)));
    drop(cluster);
    let _ = std::fs::remove_dir_all(MARKS);
    let (jobs, cron) = result?;
    println!(
        "\n== Jobs and CronJobs (issue 15), load {load} (1-min, at the start), {:.0} s ==",
        started.elapsed().as_secs_f64()
    );
    println!(
        "(1) {COMPLETIONS} completions of `true`, parallelism {PARALLELISM}, {NODES} nodes, vs {COMPLETIONS} sequential `runc run`"
    );
    row("skiff Job: manifest -> Complete", &jobs);
    row(
        &format!("runc run x{COMPLETIONS}, one after another"),
        &runc,
    );
    let per = |v: &[f64]| {
        v.iter()
            .map(|t| t / COMPLETIONS as f64)
            .collect::<Vec<f64>>()
    };
    row("skiff per pod (total / 20)", &per(&jobs));
    row("runc per run (total / 20)", &per(&runc));
    let p50 = |v: &[f64]| pct(v, 50.0).unwrap_or(f64::NAN);
    println!(
        "ratio skiff / runc at p50: {:.2}x (total, parallelism {PARALLELISM} on {NODES} nodes against one runc at a time)",
        p50(&jobs) / p50(&runc)
    );
    println!("(2) CronJob every minute: scheduled minute -> the pod's process runs");
    let max = cron.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "{:<52} p50 {:>7.1} ms  max {:>7.1} ms  (n={}; target < 1000 ms)",
        "firing delay",
        p50(&cron),
        max,
        cron.len()
    );
    Ok(())
}

fn row(what: &str, v: &[f64]) {
    println!(
        "{what:<52} p50 {:>8.1} ms  p95 {:>8.1} ms  (n={})",
        pct(v, 50.0).unwrap_or(f64::NAN),
        pct(v, 95.0).unwrap_or(f64::NAN),
        v.len()
    );
}

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Job `name`'s first condition as `agent` shows it (`None` while it has none or is not
/// known there yet).
fn condition(agent: &DemoAgent, name: &str) -> Result<Option<String>> {
    let v = match agent.api(&serde_json::json!({
        "op": "get", "kind": "jobs", "name": name, "namespace": null, "all_namespaces": false,
    })) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("not found") => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(v.pointer("/status/conditions/0/type")
        .and_then(|t| t.as_str())
        .filter(|t| *t == "Complete" || *t == "Failed")
        .map(str::to_string))
}

/// (1): each repeat a new Job, from the manifest's write to Complete on n0.
fn completions(cluster: &DemoCluster, repeats: usize) -> Result<Vec<f64>> {
    let n0 = &cluster.agents[0];
    let mut out = Vec::new();
    for r in 0..repeats {
        let name = format!("batch-{r}");
        let manifest = format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  completions: {COMPLETIONS}\n  parallelism: {PARALLELISM}\n  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: skiff.local/busybox:latest\n        imagePullPolicy: IfNotPresent\n        command: [\"true\"]\n"
        );
        eprintln!("bench jobs: (1) {name}: {COMPLETIONS} completions");
        let start = Instant::now();
        write_manifest(n0, &format!("{name}.yaml"), &manifest)?;
        let mut outcome = None;
        while start.elapsed() < Duration::from_secs(300) && !crate::demo::interrupted() {
            if let Some(c) = condition(n0, &name)? {
                outcome = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = start.elapsed().as_secs_f64() * 1000.0;
        match outcome.as_deref() {
            Some("Complete") => out.push(took),
            Some(other) => bail!("Job {name} ended {other}"),
            None => bail!("Job {name} did not finish within 300 s"),
        }
        // Gone before the next one (its pods with it).
        std::fs::remove_file(n0.manifests.join(format!("{name}.yaml")))?;
        wait_until(Duration::from_secs(60), "the Job's pods gone", || {
            Ok(!n0.pods()?.iter().any(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{name}-")))
            }))
        })?;
    }
    Ok(out)
}

/// (2): a CronJob every minute; each run's pod touches `MARKS/<job>` (hostPath).
fn cron_accuracy(cluster: &DemoCluster, runs: usize) -> Result<Vec<f64>> {
    let n0 = &cluster.agents[0];
    let _ = std::fs::remove_dir_all(MARKS);
    std::fs::create_dir_all(MARKS)?;
    let manifest = format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"* * * * *\"\n  timeZone: UTC\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          terminationGracePeriodSeconds: 1\n          containers:\n          - name: main\n            image: skiff.local/busybox:latest\n            imagePullPolicy: IfNotPresent\n            command: [sh, -c, \"touch /marks/$JOB\"]\n            env:\n            - name: JOB\n              valueFrom:\n                fieldRef: {{fieldPath: \"metadata.labels['job-name']\"}}\n            volumeMounts:\n            - {{name: marks, mountPath: /marks}}\n          volumes:\n          - name: marks\n            hostPath: {{path: {MARKS}, type: Directory}}\n"
    );
    eprintln!("bench jobs: (2) a CronJob every minute, {runs} runs (about {runs} minutes)");
    write_manifest(n0, "tick.yaml", &manifest)?;
    let limit = Duration::from_secs(70 * runs as u64 + 60);
    wait_until(limit, "the CronJob's runs", || Ok(marks()?.len() >= runs))?;
    std::fs::remove_file(n0.manifests.join("tick.yaml"))?;
    let mut out = Vec::new();
    for (job, mtime_ms) in marks()?.into_iter().take(runs) {
        let minutes: u64 = job
            .strip_prefix("tick-")
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("a mark not named like a run: {job}"))?;
        out.push(mtime_ms - (minutes * 60_000) as f64);
    }
    Ok(out)
}

/// (Job name, mtime in wall ms) of every mark, oldest run first.
fn marks() -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(MARKS)? {
        let entry = entry?;
        let mtime = entry.metadata()?.modified()?;
        let ms = mtime.duration_since(UNIX_EPOCH)?.as_secs_f64() * 1000.0;
        out.push((entry.file_name().to_string_lossy().into_owned(), ms));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `repeats` times: 20 `runc run` of `true`, one after another, in the test image's rootfs.
fn runc_sequential(image: &Path, repeats: usize) -> Result<Vec<f64>> {
    eprintln!("bench jobs: (1) runc, {repeats} x {COMPLETIONS} sequential runs");
    let base = PathBuf::from("/tmp/skb-runc-jobs");
    let _ = std::fs::remove_dir_all(&base);
    crate::bench::extract_rootfs(image, &base)?;
    crate::util::run(Command::new("runc").arg("spec").arg("--bundle").arg(&base))?;
    let config_path = base.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["true"]);
    config["root"]["readonly"] = serde_json::json!(true);
    config["linux"]["cgroupsPath"] = serde_json::json!("/skb-runc-jobs/c");
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
    let mut out = Vec::new();
    let result = (|| -> Result<()> {
        for _ in 0..repeats {
            let start = Instant::now();
            for i in 0..COMPLETIONS {
                let status = Command::new("runc")
                    .args(["run", "--bundle"])
                    .arg(&base)
                    .arg(format!("skb-runc-jobs-{i}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()?;
                if !status.status.success() {
                    bail!(
                        "runc run failed ({}): {}",
                        status.status,
                        String::from_utf8_lossy(&status.stderr).trim()
                    );
                }
            }
            out.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    })();
    skiff_tests::cleanup::remove_node(&base, "/skb-runc-jobs", "skb-runc-jobs-never");
    result.map(|()| out)
}

//! `cargo xtask bench`: figures side by side with the peers each issue names, in one run,
//! reported as medians, p95 and ratios. Benchmarks report; they do not pass or fail.
//!
//! Pod start (issues 2 and 10): from "manifest written" to "the container's main process runs"
//! (the process creates a marker file in a bind-mounted host directory, which the harness
//! polls), 50 pods one after another with the image present (`--pods N`), for skiff, `runc run`
//! of the same rootfs and command, and `podman kube play` of the same manifest.
//! `--background N` first starts N pods (skiff) and N containers (runc) that keep running while
//! the timed ones start; `--busy` runs a busy loop per core throughout. Memory: agent RSS idle
//! and with the pods running, shim RSS beside conmon's.
//!
//! skiff's main row gives each pod a loopback-only network namespace (`--no-pod-network`), as
//! `runc spec`'s default config does; two more rows report pod networking on (namespace, veth,
//! address, nftables) and the cluster path (3 nodes: the manifest written on a follower, the
//! pod placed by the leader on the third node). Where skiff's time went comes from the agent's
//! own `skiff::path` trace timestamps (median per stage).
//!
//! Services and cluster DNS (issue 11, `--only services`, [`crate::bench_services`]): endpoint
//! change -> rules and DNS on 5 real nodes, HTTP through a ClusterIP vs the pod IP (wrk),
//! the agent's DNS vs dnsmasq (dnsperf), 1,000 Services x 10 endpoints on one node.
//!
//! Jobs (issue 15, `--only jobs`, [`crate::bench_jobs`]): 20 completions with parallelism 5 on
//! 3 real nodes against 20 sequential `runc run`, and CronJob firing accuracy.

use crate::demo::DemoAgent;
use crate::util;
use anyhow::{Context, Result, bail};
use skiff_tests::cleanup::remove_node;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODS: usize = 50;

/// Sections: `--only net|pods|manifests|cluster-sim|cluster|gossip|services|rollout|jobs` (repeatable; default all). `--net-only` = `--only net`.
pub fn run(args: &[String]) -> Result<()> {
    let mut only: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1].as_str())
        .collect();
    if args.iter().any(|a| a == "--net-only") {
        only.push("net");
    }
    let want = |section: &str| only.is_empty() || only.contains(&section);
    if want("net") {
        crate::bench_net::run(args)?;
    }
    if want("pods") {
        pod_start(args)?;
    }
    if want("manifests") {
        crate::bench_manifests::run(args)?;
    }
    if want("cluster-sim") {
        crate::bench_cluster::run(args)?;
    }
    if want("cluster") {
        // Real nodes (issue 5); builds and uses the release skiff unless SKIFF_BIN names one.
        crate::bench_cluster_real::run(args)?;
    }
    if want("services") {
        // Release build unless SKIFF_BIN names one (`--services-repeats N`, default 10).
        crate::bench_services::run(args)?;
    }
    if want("rollout") {
        // Release build unless SKIFF_BIN names one (`--rollout-updates N`, default 3).
        crate::bench_rollout::run(args)?;
    }
    if want("jobs") {
        // Release build unless SKIFF_BIN names one (`--jobs-repeats N`, `--cron-runs N`).
        crate::bench_jobs::run(args)?;
    }
    if want("gossip") {
        if std::env::var_os("SKIFF_BIN").is_some() {
            crate::bench_gossip::run(args)?;
        } else {
            // Measure the release build: run this section in a child that names it.
            let skiff = util::build_skiff_profile(true)?;
            let mut child_args: Vec<String> =
                vec!["bench".into(), "--only".into(), "gossip".into()];
            let mut rest = args.iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--only" => {
                        rest.next();
                    }
                    "--net-only" => {}
                    _ => child_args.push(a.clone()),
                }
            }
            util::run(
                Command::new(std::env::current_exe()?)
                    .args(&child_args)
                    .env("SKIFF_BIN", &skiff),
            )?;
        }
    }
    Ok(())
}

/// Pod start latency (skiff, runc, podman) and memory (issue 2).
fn pod_start(args: &[String]) -> Result<()> {
    let pods = args
        .iter()
        .position(|a| a == "--pods")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(PODS);
    let background = args
        .iter()
        .position(|a| a == "--background")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    crate::packages::ensure(crate::packages::ALL)?;
    let skiff = util::build_skiff_profile(true)?;
    let image = crate::build_test_image_with(&skiff)?;
    let _busy = args
        .iter()
        .any(|a| a == "--busy")
        .then(Busy::start)
        .transpose()?;
    let mut report = Report::default();
    let skiff_side = skiff_pod_start(&skiff, &image, pods, background, false)?;
    let networked = skiff_pod_start(&skiff, &image, pods, background, true)?;
    let cluster = cluster_pod_start(&skiff, &image, pods)?;
    let runc_side = runc_pod_start(&image, pods, background)?;
    // A peer that does not run fails the bench: a missing column is not a figure.
    let podman_side = podman_pod_start(&image, pods).context("bench: podman (peer) failed")?;
    report.latency(
        "skiff (manifest file -> process running)",
        &skiff_side.latencies,
    );
    report.latency(
        "skiff, pod networking on (netns + veth)",
        &networked.latencies,
    );
    report.latency("skiff, cluster path (3 nodes, see above)", &cluster);
    report.latency("runc run (same rootfs, same command)", &runc_side);
    report.latency("podman kube play (same manifest)", &podman_side.latencies);
    let p50 = |v: &[Duration]| percentile(v, 50.0).as_secs_f64();
    let p95 = |v: &[Duration]| percentile(v, 95.0).as_secs_f64();
    println!(
        "\n== pod start latency, {pods} pods one after another, image present, {background} already running (skiff, runc), load {} ==",
        load_average()
    );
    report.print_latencies();
    println!("where skiff's time went (median per stage, from the agent's trace):");
    skiff_side.stages.print("loopback netns");
    networked.stages.print("pod networking");
    println!(
        "ratios: skiff/runc p50 = {:.2}x (target <= 1.2x), p95 = {:.2}x (target <= 1.5x); skiff/podman p50 = {:.2}x (target <= 0.20x)",
        p50(&skiff_side.latencies) / p50(&runc_side),
        p95(&skiff_side.latencies) / p95(&runc_side),
        p50(&skiff_side.latencies) / p50(&podman_side.latencies)
    );
    println!("\n== memory (RSS) ==");
    println!(
        "skiff agent idle:                  {:>8.1} MB {}",
        mb(skiff_side.agent_idle.total),
        skiff_side.agent_idle.parts()
    );
    println!(
        "skiff agent with {pods} pods:          {:>8.1} MB (target < 20 MB) {}",
        mb(skiff_side.agent_loaded.total),
        skiff_side.agent_loaded.parts()
    );
    println!(
        "skiff shim per container (median): {:>8.1} MB (target < 3 MB)",
        mb(median_kb(&skiff_side.shim_kb))
    );
    println!(
        "podman conmon per container (median): {:>5.1} MB",
        mb(median_kb(&podman_side.conmon_kb))
    );
    if podman_side.conmon_kb.is_empty() || skiff_side.shim_kb.is_empty() {
        bail!("bench: no shim or conmon process was found to measure");
    }
    println!(
        "ratio shim/conmon = {:.2}x",
        median_kb(&skiff_side.shim_kb) as f64 / median_kb(&podman_side.conmon_kb) as f64
    );
    Ok(())
}

/// The 1-minute load average, as /proc/loadavg says it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// One busy loop per core for as long as it lives (`--busy`).
pub(crate) struct Busy(Vec<std::process::Child>);

impl Busy {
    pub(crate) fn start() -> Result<Busy> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        eprintln!("bench: {cores} busy loops");
        let mut children = Vec::new();
        for _ in 0..cores {
            children.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .context("start a busy loop")?,
            );
        }
        Ok(Busy(children))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn median_kb(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Nearest-rank percentile.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, Vec<Duration>)>,
}

impl Report {
    fn latency(&mut self, name: &str, samples: &[Duration]) {
        self.rows.push((name.to_string(), samples.to_vec()));
    }
    fn print_latencies(&self) {
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9}",
            "", "p50 ms", "p95 ms", "min ms", "max ms"
        );
        for (name, s) in &self.rows {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                name,
                ms(percentile(s, 50.0)),
                ms(percentile(s, 95.0)),
                ms(percentile(s, 0.0)),
                ms(percentile(s, 100.0))
            );
        }
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// One `... kB` field of /proc/PID/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// VmRSS split into its anonymous part (heap, stacks) and its file part (the binary's and
/// libraries' pages), both in KiB: the two shrink by different means.
#[derive(Clone, Copy, Default)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

impl Rss {
    pub fn of(pid: u32) -> Rss {
        Rss {
            total: rss_kb(pid).unwrap_or(0),
            anon: status_kb(pid, "RssAnon:").unwrap_or(0),
            file: status_kb(pid, "RssFile:").unwrap_or(0),
        }
    }
    pub fn parts(&self) -> String {
        format!(
            "(anon {:.1} MB, file {:.1} MB)",
            mb(self.anon),
            mb(self.file)
        )
    }
}

/// Pids whose command line contains every needle.
pub fn pids_matching(needles: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if needles.iter().all(|n| cmd.contains(n)) {
            out.push(pid);
        }
    }
    out
}

/// Waits for `path` to exist, polling every 200 µs.
pub fn wait_for_file(path: &Path, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > limit {
            bail!("{} did not appear within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

const MARK_DIR: &str = "/tmp/skiff-bench-mark";

pub fn pod_manifest(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: skiff.local/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"touch /mark/{name}; exec sleep 100000\"]
    volumeMounts:
    - {{name: mark, mountPath: /mark}}
  volumes:
  - name: mark
    hostPath: {{path: {MARK_DIR}, type: DirectoryOrCreate}}
"
    )
}

pub fn fresh_mark_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(MARK_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct SkiffSide {
    latencies: Vec<Duration>,
    stages: crate::bench_trace::Stages,
    agent_idle: Rss,
    agent_loaded: Rss,
    shim_kb: Vec<u64>,
}

fn skiff_pod_start(
    skiff: &Path,
    image: &Path,
    pods: usize,
    background: usize,
    pod_network: bool,
) -> Result<SkiffSide> {
    eprintln!(
        "bench: skiff, {pods} pods ({background} in the background), pod networking {}",
        if pod_network { "on" } else { "off" }
    );
    let marks = fresh_mark_dir()?;
    let dir = PathBuf::from("/tmp/skb");
    let mut opts = crate::demo::NodeOptions::single("skb", &dir);
    opts.keep_logs = Some(PathBuf::from("/tmp/skiff-bench-logs"));
    opts.log_filter = "info,skiff::path=debug,skiff::loop=debug".into();
    // Room for every pod (kubelet's default of 110 would leave some Pending).
    opts.extra_args = vec!["--max-pods".into(), (pods + background + 10).to_string()];
    if !pod_network {
        opts.extra_args.push("--no-pod-network".into());
    }
    let agent = DemoAgent::start_with(skiff, image, opts)?;
    let agent_pid = pids_matching(&["skiff", "agent", "--node-name skb"])
        .first()
        .copied()
        .context("cannot find the agent process")?;
    // Let start-up work settle before reading the idle figure (the test image is imported by
    // now, so "idle" includes what the import left behind).
    std::thread::sleep(Duration::from_secs(2));
    let agent_idle = Rss::of(agent_pid);
    for i in 0..background {
        let name = format!("bg-{i}");
        std::fs::write(
            agent.manifests.join(format!("{name}.yaml")),
            pod_manifest(&name),
        )?;
    }
    for i in 0..background {
        wait_for_file(&marks.join(format!("bg-{i}")), Duration::from_secs(120))?;
    }
    let mut latencies = Vec::new();
    let mut timed = Vec::new();
    for i in 0..pods {
        let name = format!("bench-{i}");
        let manifest = pod_manifest(&name);
        let start = Instant::now();
        std::fs::write(agent.manifests.join(format!("{name}.yaml")), manifest)?;
        wait_for_file(&marks.join(&name), Duration::from_secs(60))?;
        latencies.push(start.elapsed());
        timed.push((
            name,
            crate::bench_cluster_real::timeline::now_of_day(),
            start.elapsed(),
        ));
    }
    let stages = crate::bench_trace::Stages::from_log(&agent.log_path(), &timed)?;
    std::thread::sleep(Duration::from_secs(2));
    let agent_loaded = Rss::of(agent_pid);
    let shim_kb: Vec<u64> = pids_matching(&["skiff", "shim", "/tmp/skb/run"])
        .into_iter()
        .filter_map(rss_kb)
        .collect();
    drop(agent);
    Ok(SkiffSide {
        latencies,
        stages,
        agent_idle,
        agent_loaded,
        shim_kb,
    })
}

/// The cluster path: 3 nodes (n0 leads), pods written into n1's manifests dir and placed on
/// n2 (nodeSelector on a label only n2 has); from "manifest written on n1" to "process
/// running on n2".
fn cluster_pod_start(skiff: &Path, image: &Path, pods: usize) -> Result<Vec<Duration>> {
    eprintln!("bench: skiff cluster path, {pods} pods, 3 nodes");
    let marks = fresh_mark_dir()?;
    let cluster = crate::demo::cluster::DemoCluster::start(skiff, image, 3, "info")?;
    let labeled = cluster.agents[2].cli(&["label", "node", "n2", "skiff-bench=target"])?;
    if !labeled.status.success() {
        bail!(
            "skiff label node n2: {}",
            String::from_utf8_lossy(&labeled.stderr)
        );
    }
    cluster.agents[1].wait_for(Duration::from_secs(30), "n2's label seen on n1", |a| {
        let out = a.cli(&["get", "nodes", "-o", "json"])?;
        Ok(String::from_utf8_lossy(&out.stdout).contains("skiff-bench"))
    })?;
    let mut latencies = Vec::new();
    for i in 0..pods {
        let name = format!("cl-{i}");
        let manifest = pod_manifest(&name)
            .replace("spec:\n", "spec:\n  nodeSelector: {skiff-bench: target}\n");
        let start = Instant::now();
        std::fs::write(
            cluster.agents[1].manifests.join(format!("{name}.yaml")),
            manifest,
        )?;
        wait_for_file(&marks.join(&name), Duration::from_secs(60))?;
        latencies.push(start.elapsed());
    }
    drop(cluster);
    Ok(latencies)
}

/// Extracts the (single-layer) test image's rootfs from its OCI archive.
pub(crate) fn extract_rootfs(image: &Path, into: &Path) -> Result<()> {
    let layout = into.join("layout");
    let rootfs = into.join("rootfs");
    std::fs::create_dir_all(&layout)?;
    std::fs::create_dir_all(&rootfs)?;
    util::run(
        Command::new("tar")
            .arg("-xf")
            .arg(image)
            .arg("-C")
            .arg(&layout),
    )?;
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json without manifests")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest))?)?;
    for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
        let digest = layer["digest"].as_str().context("layer without digest")?;
        util::run(
            Command::new("tar")
                .arg("-xf")
                .arg(blob(digest))
                .arg("-C")
                .arg(&rootfs),
        )?;
    }
    Ok(())
}

fn runc_pod_start(image: &Path, pods: usize, background: usize) -> Result<Vec<Duration>> {
    eprintln!("bench: runc, {pods} containers ({background} in the background)");
    let marks = fresh_mark_dir()?;
    let base = PathBuf::from("/tmp/skb-runc");
    let _ = std::fs::remove_dir_all(&base);
    extract_rootfs(image, &base)?;
    util::run(Command::new("runc").arg("spec").arg("--bundle").arg(&base))?;
    let config_path = base.join("config.json");
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..background + pods {
            let timed = i >= background;
            let name = if timed {
                format!("bench-{}", i - background)
            } else {
                format!("bg-{i}")
            };
            let id = format!("skb-runc-{i}");
            let mut config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&config_path)?)?;
            config["process"]["terminal"] = serde_json::json!(false);
            config["process"]["args"] =
                serde_json::json!(["sh", "-c", format!("touch /mark/{name}; exec sleep 100000")]);
            config["root"]["readonly"] = serde_json::json!(true);
            config["linux"]["cgroupsPath"] = serde_json::json!(format!("/skb-runc/{id}"));
            config["mounts"]
                .as_array_mut()
                .context("runc spec without mounts")?
                .push(serde_json::json!({
                    "destination": "/mark", "type": "bind", "source": MARK_DIR,
                    "options": ["rbind", "rw"]
                }));
            let bundle = base.join(&id);
            std::fs::create_dir_all(&bundle)?;
            std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
            config["root"]["path"] = serde_json::json!(base.join("rootfs"));
            std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
            // Timed like the others: from "asked to run" to "main process running".
            let start = Instant::now();
            let status = Command::new("runc")
                .args(["run", "-d", "--bundle"])
                .arg(&bundle)
                .arg(&id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("runc run {id} failed: {status}");
            }
            ids.push(id);
            wait_for_file(&marks.join(&name), Duration::from_secs(30))?;
            if timed {
                latencies.push(start.elapsed());
            }
        }
        Ok(())
    })();
    for id in &ids {
        let _ = Command::new("runc")
            .args(["delete", "-f", id])
            .stderr(Stdio::null())
            .status();
    }
    remove_node(&base, "/skb-runc", "skb-runc-never");
    result.map(|()| latencies)
}

struct PodmanSide {
    latencies: Vec<Duration>,
    conmon_kb: Vec<u64>,
}

fn podman_pod_start(image: &Path, pods: usize) -> Result<PodmanSide> {
    eprintln!("bench: podman, {pods} pods");
    let marks = fresh_mark_dir()?;
    let base = PathBuf::from("/tmp/skb-podman");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    // This machine needs runc (crun fails on hybrid cgroups) and ulimits within the hard limit.
    let conf = base.join("containers.conf");
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let hard = |name: &str| -> String {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().nth(1))
            .unwrap_or("1024")
            .to_string()
    };
    // Setting nproc to the hard limit itself is refused here (EPERM in runc's init); a lower
    // value always works.
    let nofile = hard("Max open files");
    let nproc = hard("Max processes")
        .parse::<u64>()
        .map_or(4096, |h| h.min(4096));
    std::fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
        ),
    )?;
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &conf).args(args);
        c
    };
    let out = podman(&["load", "-i", &image.display().to_string()]).output()?;
    if !out.status.success() {
        bail!("podman load: {}", String::from_utf8_lossy(&out.stderr));
    }
    let loaded = String::from_utf8_lossy(&out.stdout).to_string();
    if let Some(id) = loaded.split_whitespace().last() {
        let _ = podman(&["tag", id.trim(), "skiff.local/busybox:latest"]).status();
    }
    let mut latencies = Vec::new();
    let mut files = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..pods {
            let name = format!("bench-{i}");
            let file = base.join(format!("{name}.yaml"));
            std::fs::write(&file, pod_manifest(&name))?;
            let start = Instant::now();
            let out = podman(&[
                "kube",
                "play",
                "--network",
                "none",
                &file.display().to_string(),
            ])
            .output()?;
            files.push(file);
            if !out.status.success() {
                bail!("podman kube play: {}", String::from_utf8_lossy(&out.stderr));
            }
            wait_for_file(&marks.join(&name), Duration::from_secs(60))?;
            latencies.push(start.elapsed());
        }
        Ok(())
    })();
    let conmon_kb = pids_matching(&["conmon"])
        .into_iter()
        .filter_map(rss_kb)
        .collect();
    for f in &files {
        let _ = podman(&["kube", "down", &f.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(&base);
    result.map(|()| PodmanSide {
        latencies,
        conmon_kb,
    })
}

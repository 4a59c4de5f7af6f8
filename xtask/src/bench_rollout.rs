//! `cargo xtask bench --only rollout` (issue 12): rolling updates and liveness, on real nodes.
//!
//! (1) Rolling update: 5 real nodes, a 10-replica busybox httpd Deployment (readiness probe
//!     httpGet every 1 s, `maxSurge: 25%`, `maxUnavailable: 0`, grace period 3 s) behind a
//!     ClusterIP Service. A client in n0's namespace asks the ClusterIP over and over (a new
//!     connection each time, 2 s timeout) from before the first update to after the last. Each
//!     update rewrites the manifest on n0 with a new template annotation; its time runs from the
//!     write to `skiff rollout status` on n2 returning (started once n2 has the new template).
//!     Every failed request is counted, and when. Then `rollout undo` on n2 brings the previous
//!     template back (the file on n0 now differs), timed to `rollout status` done with the same
//!     client running.
//! (2) Liveness: one node, a pod whose liveness probe (httpGet /alive, period 1 s, failure
//!     threshold 2) reads a file of a hostPath volume. The bench removes the file and times
//!     until the node has restarted the container (restart count up); the container writes the
//!     file again when it starts. Target: within failureThreshold x period + one period.
//! (3) `skiff exec POD -- true`, timed around the CLI: on the liveness node (local), and in the
//!     5-node cluster from the node running the pod and from another node (forwarded over rpc);
//!     beside `runc exec ID true` into a runc container of the same image, in the same run.
//!     Target: local <= 2x runc exec at p50.
//! (4) Probe cost: one node, 20 busybox httpd pods. The agent's CPU time (utime + stime of its
//!     process, and with its reaped children: the exec shims) over 30 s with no probes, then
//!     with a readiness httpGet and a liveness tcpSocket probe every 1 s on each pod, then with
//!     an exec readiness probe every 1 s. Target: the httpGet/tcpSocket probes under 1% of a
//!     core above the no-probe figure.

use crate::bench_services::lookup::in_netns;
use crate::bench_services::{pct, service, wait_until, write_manifest};
use crate::demo::cluster::DemoCluster;
use crate::demo::{DemoAgent, NodeOptions};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NODES: usize = 5;
const REPLICAS: usize = 10;
const LIVENESS_RUNS: usize = 7;
const EXEC_RUNS: usize = 30;

pub fn run(args: &[String]) -> Result<()> {
    crate::packages::ensure(crate::packages::AGENT)?;
    let skiff = match std::env::var_os("SKIFF_BIN").filter(|b| !b.is_empty()) {
        Some(bin) => bin.into(),
        None => crate::util::build_skiff_profile(true)?,
    };
    let image = crate::build_test_image_with(&skiff)?;
    let _stop = crate::demo::on_ctrl_c();
    let load = crate::bench::load_average();
    let updates = arg(args, "--rollout-updates", 3);
    let started = Instant::now();
    let runc = runc_exec(&image)?;
    let (liveness, local) = liveness(&skiff, &image)?;
    let (rollout, cluster) = rolling_updates(&skiff, &image, updates)?;
    let cost = probe_cost(&skiff, &image)?;
    println!(
        "\n== rolling updates, liveness and exec (issue 12), load {load} (1-min, at the start), {:.0} s ==",
        started.elapsed().as_secs_f64()
    );
    rollout.print();
    liveness.print();
    print_exec(&local, &cluster, &runc);
    cost.print();
    Ok(())
}

const COST_PODS: usize = 20;
const COST_WINDOW: Duration = Duration::from_secs(30);

/// The agent's CPU over [`COST_WINDOW`], as a share of one core: (itself, with its children).
struct Cpu {
    own: f64,
    with_children: f64,
}

struct ProbeCost {
    none: Cpu,
    network: Cpu,
    exec: Cpu,
}

impl ProbeCost {
    fn print(&self) {
        println!(
            "\n(4) probe cost: {COST_PODS} pods on one node, agent CPU over {} s as % of one core",
            COST_WINDOW.as_secs()
        );
        let line = |what: &str, c: &Cpu| {
            println!(
                "{what:<58} agent {:>5.2}%   with its children (exec shims) {:>5.2}%",
                c.own * 100.0,
                c.with_children * 100.0
            )
        };
        line("no probes", &self.none);
        line(
            "readiness httpGet + liveness tcpSocket, every 1 s, each pod",
            &self.network,
        );
        line("readiness exec `true`, every 1 s, each pod", &self.exec);
        println!(
            "probes above no probes: httpGet + tcpSocket {:.2}% of a core (target < 1%); exec {:.2}% with the shims",
            (self.network.own - self.none.own) * 100.0,
            (self.exec.with_children - self.none.with_children) * 100.0
        );
    }
}

/// utime + stime, and the same with reaped children, of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .context("unreadable /proc stat")?;
    // After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .context("short /proc stat")
    };
    let own = field(14)? + field(15)?;
    Ok((own, own + field(16)? + field(17)?))
}

fn measure_cpu(pid: u32) -> Result<Cpu> {
    let ticks_per_second = 100.0;
    let (own0, all0) = cpu_ticks(pid)?;
    let start = Instant::now();
    std::thread::sleep(COST_WINDOW);
    let (own1, all1) = cpu_ticks(pid)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Cpu {
        own: (own1 - own0) as f64 / ticks_per_second / seconds,
        with_children: (all1 - all0) as f64 / ticks_per_second / seconds,
    })
}

fn cost_deployment(probes: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: probed
spec:
  replicas: {COST_PODS}
  strategy:
    rollingUpdate: {{maxSurge: 100%, maxUnavailable: 100%}}
  selector:
    matchLabels: {{app: probed}}
  template:
    metadata:
      labels: {{app: probed}}
      annotations: {{probes: "{}"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: skiff.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
{probes}"#,
        probes.len()
    )
}

fn probe_cost(skiff: &Path, image: &Path) -> Result<ProbeCost> {
    eprintln!("bench rollout: (4) probe cost, {COST_PODS} pods");
    let dir = std::path::PathBuf::from("/tmp/skiff-bench-probecost");
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = NodeOptions::single("skc", &dir);
    opts.keep_logs = Some(crate::root().join("target").join("rollout-bench-logs"));
    let agent = DemoAgent::start_with(skiff, image, opts)?;
    let result = measure_probe_cost(&agent);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_probe_cost(agent: &DemoAgent) -> Result<ProbeCost> {
    let pid = agent.pid().context("the agent is not running")?;
    let network = "        readinessProbe:\n          httpGet: {path: /index.html, port: 8080}\n          periodSeconds: 1\n        livenessProbe:\n          tcpSocket: {port: 8080}\n          periodSeconds: 1\n";
    let exec = "        readinessProbe:\n          exec: {command: [\"true\"]}\n          periodSeconds: 1\n";
    let mut out = Vec::new();
    for (what, probes) in [("none", ""), ("network", network), ("exec", exec)] {
        write_manifest(agent, "probed.yaml", &cost_deployment(probes))?;
        let want = probes.len().to_string();
        wait_until(
            Duration::from_secs(180),
            "20 ready pods of the template",
            || {
                let got = agent.cli(&["get", "pods", "-o", "json"])?;
                let v: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap_or_default();
                let items = v["items"].as_array().cloned().unwrap_or_default();
                let ready = items
                    .iter()
                    .filter(|p| {
                        p["metadata"]["annotations"]["probes"] == want.as_str()
                            && p["status"]["containerStatuses"][0]["ready"] == true
                    })
                    .count();
                Ok(ready == COST_PODS && items.len() == COST_PODS)
            },
        )?;
        eprintln!("bench rollout: (4) measuring the agent's CPU with probes: {what}");
        out.push(measure_cpu(pid)?);
    }
    let mut it = out.into_iter();
    let (none, network, exec) = (
        it.next().context("no figure")?,
        it.next().context("no figure")?,
        it.next().context("no figure")?,
    );
    Ok(ProbeCost {
        none,
        network,
        exec,
    })
}

/// Exec round trips in milliseconds.
struct ClusterExec {
    same_node: Vec<f64>,
    other_node: Vec<f64>,
}

fn row(what: &str, v: &[f64]) {
    println!(
        "{what:<52} p50 {:>7.1} ms  p95 {:>7.1} ms  (n={})",
        pct(v, 50.0).unwrap_or(f64::NAN),
        pct(v, 95.0).unwrap_or(f64::NAN),
        v.len()
    );
}

fn print_exec(local: &[f64], cluster: &ClusterExec, runc: &[f64]) {
    println!("\n(3) exec round trip (`-- true`), timed around the command");
    row("runc exec ID true (runc container, same image)", runc);
    row("skiff exec POD -- true, single node", local);
    row(
        "skiff exec, 5-node cluster, from the pod's node",
        &cluster.same_node,
    );
    row(
        "skiff exec, 5-node cluster, from another node",
        &cluster.other_node,
    );
    let ratio = |v: &[f64]| pct(v, 50.0).unwrap_or(f64::NAN) / pct(runc, 50.0).unwrap_or(f64::NAN);
    println!(
        "ratios at p50: single node / runc = {:.2}x (target <= 2x); from another node / runc = {:.2}x",
        ratio(local),
        ratio(&cluster.other_node)
    );
}

/// Times `run` EXEC_RUNS times after two warm-up runs; it must succeed each time.
fn time_runs(
    what: &str,
    mut run: impl FnMut() -> Result<std::process::Output>,
) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for i in 0..EXEC_RUNS + 2 {
        let start = Instant::now();
        let done = run()?;
        let took = start.elapsed().as_secs_f64() * 1000.0;
        if !done.status.success() {
            bail!(
                "{what} failed ({}): {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).trim()
            );
        }
        if i >= 2 {
            out.push(took);
        }
    }
    Ok(out)
}

/// `runc exec ID true` into a runc container of the test image's rootfs.
fn runc_exec(image: &Path) -> Result<Vec<f64>> {
    use std::process::{Command, Stdio};
    eprintln!("bench rollout: (3) runc exec, {EXEC_RUNS} runs");
    crate::packages::ensure(&["runc"])?;
    let base = std::path::PathBuf::from("/tmp/skb-runc-exec");
    let _ = std::fs::remove_dir_all(&base);
    crate::bench::extract_rootfs(image, &base)?;
    crate::util::run(Command::new("runc").arg("spec").arg("--bundle").arg(&base))?;
    let config_path = base.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["sleep", "100000"]);
    config["root"]["readonly"] = serde_json::json!(true);
    config["linux"]["cgroupsPath"] = serde_json::json!("/skb-runc-exec/c");
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
    let id = "skb-runc-exec";
    let started = Command::new("runc")
        .args(["run", "-d", "--bundle"])
        .arg(&base)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let result = if started.success() {
        time_runs("runc exec", || {
            Ok(Command::new("runc")
                .args(["exec", id, "true"])
                .stdin(Stdio::null())
                .output()?)
        })
    } else {
        Err(anyhow::anyhow!("runc run failed: {started}"))
    };
    let _ = Command::new("runc")
        .args(["delete", "-f", id])
        .stderr(Stdio::null())
        .status();
    skiff_tests::cleanup::remove_node(&base, "/skb-runc-exec", "skb-runc-exec-never");
    result
}

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn web(revision: usize) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {REPLICAS}
  strategy:
    rollingUpdate: {{maxSurge: 25%, maxUnavailable: 0}}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{revision: "{revision}"}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: httpd
        image: skiff.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo r{revision} > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
---
{}"#,
        service("web", Some("{app: web}"), false)
    )
}

struct Update {
    seconds: f64,
}

struct RolloutReport {
    updates: Vec<Update>,
    /// `rollout undo` on n2 after the last update: seconds to `rollout status` done, and when
    /// it started (seconds since the client began).
    undo: Option<(f64, f64)>,
    requests: usize,
    failures: Vec<(f64, String)>,
}

impl RolloutReport {
    fn print(&self) {
        println!(
            "\n(1) rolling update: {REPLICAS} replicas on {NODES} real nodes, maxSurge 25%, maxUnavailable 0, \
             readiness httpGet every 1 s, grace 3 s; a client in n0's namespace asks the ClusterIP \
             (new connection each time) all along"
        );
        let times: Vec<f64> = self.updates.iter().map(|u| u.seconds).collect();
        for (i, u) in self.updates.iter().enumerate() {
            println!(
                "update {}: {:.2} s from the manifest write to `rollout status` done",
                i + 1,
                u.seconds
            );
        }
        println!(
            "total time per update: p50 {:.2} s, max {:.2} s; requests {}, failed {} (target: 0 failed)",
            pct(&times, 50.0).unwrap_or(f64::NAN),
            times.iter().copied().fold(f64::NAN, f64::max),
            self.requests,
            self.failures.len()
        );
        if let Some((seconds, from)) = self.undo {
            let failed = self.failures.iter().filter(|(at, _)| *at >= from).count();
            println!(
                "rollout undo (asked on n2, declared on n0): {seconds:.2} s to `rollout status` done; \
                 failed requests from the undo on: {failed} (target: 0 failed)"
            );
        }
        for (at, why) in self.failures.iter().take(10) {
            println!("  failed at {at:.2} s: {why}");
        }
    }
}

/// One GET to `addr` on a new connection: the body, or why it failed.
fn get(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.0 200") && !out.starts_with("HTTP/1.1 200") {
        bail!("answer {:?}", out.lines().next().unwrap_or_default());
    }
    Ok(out)
}

fn cluster_ip(agent: &DemoAgent) -> Result<Option<SocketAddr>> {
    let out = agent.cli(&["get", "svc", "web", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(v["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .map(|ip: std::net::Ipv4Addr| SocketAddr::from((ip, 80))))
}

fn ready_endpoints(agent: &DemoAgent) -> Result<usize> {
    let out = agent.cli(&["get", "endpoints", "web", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(v["subsets"][0]["addresses"].as_array().map_or(0, Vec::len))
}

fn rolling_updates(
    skiff: &Path,
    image: &Path,
    updates: usize,
) -> Result<(RolloutReport, ClusterExec)> {
    eprintln!(
        "bench rollout: (1) {NODES} real nodes, {updates} rolling updates of {REPLICAS} replicas"
    );
    let cluster = DemoCluster::start_with(skiff, image, NODES, "info", &[])?;
    let result =
        measure_updates(&cluster, updates).and_then(|report| Ok((report, cluster_exec(&cluster)?)));
    drop(cluster);
    result
}

/// `skiff exec` into a web pod from the node running it and from another node.
fn cluster_exec(cluster: &DemoCluster) -> Result<ClusterExec> {
    eprintln!("bench rollout: (3) exec in the cluster, {EXEC_RUNS} runs each way");
    let out = cluster.agents[0].cli(&["get", "pods", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let (pod, node) = items
        .iter()
        .find_map(|p| {
            let name = p["metadata"]["name"].as_str()?;
            let node = p["spec"]["nodeName"].as_str()?;
            let serving = p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["containerStatuses"][0]["ready"] == true;
            (name.starts_with("web-") && serving).then(|| (name.to_string(), node.to_string()))
        })
        .context("no web pod listed")?;
    let here = cluster
        .agents
        .iter()
        .find(|a| a.name == node)
        .with_context(|| format!("no agent named {node}"))?;
    let there = cluster
        .agents
        .iter()
        .find(|a| a.name != node)
        .context("a single node")?;
    let same_node = time_runs("skiff exec", || here.cli(&["exec", &pod, "--", "true"]))?;
    let other_node = time_runs("skiff exec", || there.cli(&["exec", &pod, "--", "true"]))?;
    Ok(ClusterExec {
        same_node,
        other_node,
    })
}

fn measure_updates(cluster: &DemoCluster, updates: usize) -> Result<RolloutReport> {
    let (origin, viewer) = (&cluster.agents[0], &cluster.agents[2]);
    write_manifest(origin, "web.yaml", &web(0))?;
    let mut addr = None;
    wait_until(Duration::from_secs(120), "10 ready endpoints", || {
        addr = cluster_ip(origin)?;
        Ok(addr.is_some() && ready_endpoints(origin)? == REPLICAS)
    })?;
    let addr = addr.context("no ClusterIP")?;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let client = {
        let stop = stop.clone();
        let netns = cluster.bed.nodes[0].netns.clone();
        std::thread::spawn(move || {
            in_netns(&netns, move || {
                let (mut requests, mut failures) = (0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    requests += 1;
                    if let Err(e) = get(addr) {
                        failures.push((t0.elapsed().as_secs_f64(), format!("{e:#}")));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok((requests, failures))
            })
        })
    };
    let mut report = Vec::new();
    let mut undo = None;
    let outcome = (|| -> Result<()> {
        for revision in 1..=updates {
            let written = Instant::now();
            write_manifest(origin, "web.yaml", &web(revision))?;
            let want = revision.to_string();
            wait_until(Duration::from_secs(30), "the new template on n2", || {
                let out = viewer.cli(&["get", "deployments", "web", "-o", "json"])?;
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let d = v["items"].get(0).unwrap_or(&v);
                Ok(d["spec"]["template"]["metadata"]["annotations"]["revision"] == want.as_str())
            })?;
            let out = viewer.cli(&["rollout", "status", "deployment/web", "--timeout", "300s"])?;
            if !out.status.success() {
                bail!(
                    "rollout status: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let seconds = written.elapsed().as_secs_f64();
            eprintln!("bench rollout: update {revision}: {seconds:.2} s");
            report.push(Update { seconds });
            // Settled before the next one: every endpoint is of this revision.
            wait_until(Duration::from_secs(60), "10 ready endpoints", || {
                Ok(ready_endpoints(origin)? == REPLICAS)
            })?;
        }
        // `rollout undo` on another node than the one whose file declares the Deployment.
        if updates == 0 {
            return Ok(());
        }
        let from = t0.elapsed().as_secs_f64();
        let asked = Instant::now();
        let out = viewer.cli(&["rollout", "undo", "deployment/web"])?;
        if !out.status.success() {
            bail!(
                "rollout undo: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let want = (updates - 1).to_string();
        wait_until(
            Duration::from_secs(30),
            "the previous template on n2",
            || {
                let out = viewer.cli(&["get", "deployments", "web", "-o", "json"])?;
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let d = v["items"].get(0).unwrap_or(&v);
                Ok(d["spec"]["template"]["metadata"]["annotations"]["revision"] == want.as_str())
            },
        )?;
        let out = viewer.cli(&["rollout", "status", "deployment/web", "--timeout", "300s"])?;
        if !out.status.success() {
            bail!(
                "rollout status after undo: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        undo = Some((asked.elapsed().as_secs_f64(), from));
        eprintln!(
            "bench rollout: undo: {:.2} s",
            asked.elapsed().as_secs_f64()
        );
        wait_until(Duration::from_secs(60), "10 ready endpoints", || {
            Ok(ready_endpoints(origin)? == REPLICAS)
        })?;
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = client
        .join()
        .map_err(|_| anyhow::anyhow!("the client panicked"))??;
    outcome?;
    Ok(RolloutReport {
        updates: report,
        undo,
        requests,
        failures,
    })
}

struct LivenessReport {
    /// From the file's removal to the node's verdict (its `Unhealthy` event).
    verdict: Vec<f64>,
    /// From the removal to the new container writing the file again (crash backoff included).
    restarted: Vec<f64>,
}

impl LivenessReport {
    fn print(&self) {
        let row = |what: &str, v: &[f64]| {
            println!(
                "{what:<44} p50 {:.2} s  p95 {:.2} s  max {:.2} s",
                pct(v, 50.0).unwrap_or(f64::NAN),
                pct(v, 95.0).unwrap_or(f64::NAN),
                v.iter().copied().fold(f64::NAN, f64::max)
            )
        };
        println!(
            "\n(2) liveness on one real node: httpGet every 1 s, failureThreshold 2, {} runs in a row \
             (crash backoff base 100 ms, doubling: later runs wait longer to start again)",
            self.verdict.len()
        );
        row(
            "file removed -> liveness verdict (Unhealthy)",
            &self.verdict,
        );
        row("file removed -> container running again", &self.restarted);
        println!(
            "target: the verdict within failureThreshold x period + one period = 3 s (the probe's \
             own arithmetic: 2 failed checks 1 s apart, the first up to 1 s after the removal)"
        );
    }
}

fn liveness(skiff: &Path, image: &Path) -> Result<(LivenessReport, Vec<f64>)> {
    eprintln!("bench rollout: (2) liveness on one node, {LIVENESS_RUNS} runs");
    let dir = std::path::PathBuf::from("/tmp/skiff-bench-live");
    // Outside the agent's dirs (those are private to the agent).
    let share = std::path::PathBuf::from("/tmp/skiff-bench-live-share");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share)?;
    let mut opts = NodeOptions::single("skl", &dir);
    opts.extra_args = ["--crash-backoff-base-ms", "100"]
        .map(String::from)
        .to_vec();
    opts.keep_logs = Some(crate::root().join("target").join("rollout-bench-logs"));
    let agent = DemoAgent::start_with(skiff, image, opts)?;
    let result = measure_liveness(&agent, &share).and_then(|report| {
        eprintln!("bench rollout: (3) exec on one node, {EXEC_RUNS} runs");
        let local = time_runs("skiff exec", || agent.cli(&["exec", "live", "--", "true"]))?;
        Ok((report, local))
    });
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&share);
    result
}

fn restarts(agent: &DemoAgent) -> Result<Option<u64>> {
    let out = agent.cli(&["get", "pod", "live", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let pod = v["items"].get(0).unwrap_or(&v);
    let status = &pod["status"]["containerStatuses"][0];
    Ok((status["ready"] == true)
        .then(|| status["restartCount"].as_u64())
        .flatten())
}

fn measure_liveness(agent: &DemoAgent, share: &Path) -> Result<LivenessReport> {
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: skiff.local/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo ok > /share/alive; trap 'kill $!; exit 0' TERM; httpd -f -p 8080 -h /share & wait"]
    volumeMounts:
    - {{name: share, mountPath: /share}}
    readinessProbe:
      httpGet: {{path: /alive, port: 8080}}
      periodSeconds: 1
    livenessProbe:
      httpGet: {{path: /alive, port: 8080}}
      periodSeconds: 1
      failureThreshold: 2
  volumes:
  - name: share
    hostPath: {{path: {}}}
"#,
        share.display()
    );
    write_manifest(agent, "live.yaml", &pod)?;
    let unhealthy = || -> Result<usize> {
        let out = agent.cli(&["get", "events", "-o", "json"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        // Repeats of one event are folded into it (its count goes up).
        Ok(items
            .iter()
            .filter(|e| {
                e["reason"] == "Unhealthy"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Liveness probe failed"))
            })
            .map(|e| e["count"].as_u64().unwrap_or(1) as usize)
            .sum())
    };
    let (mut verdict, mut restarted) = (Vec::new(), Vec::new());
    for _ in 0..LIVENESS_RUNS {
        wait_until(Duration::from_secs(60), "the pod ready", || {
            Ok(restarts(agent)?.is_some())
        })?;
        let before = unhealthy()?;
        let removed = Instant::now();
        std::fs::remove_file(share.join("alive")).context("remove the liveness file")?;
        let mut judged = None;
        wait_until(
            Duration::from_secs(60),
            "the container running again",
            || {
                if judged.is_none() && unhealthy()? > before {
                    judged = Some(removed.elapsed().as_secs_f64());
                }
                Ok(share.join("alive").exists())
            },
        )?;
        let back = removed.elapsed().as_secs_f64();
        let judged = judged.unwrap_or(back);
        eprintln!(
            "bench rollout: liveness verdict after {judged:.2} s, running again after {back:.2} s"
        );
        verdict.push(judged);
        restarted.push(back);
    }
    Ok(LivenessReport { verdict, restarted })
}

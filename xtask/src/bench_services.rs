//! `cargo xtask bench --only services` (issue 11): Services and cluster DNS, side by side with
//! their peers in one run, release build of the agent (`SKIFF_BIN` or built here).
//!
//! 1. Endpoint change -> rules and DNS on all 5 nodes ([`change`]): 5 real nodes in network
//!    namespaces, a 6-replica busybox httpd Deployment behind a ClusterIP and a headless
//!    Service; a backend's container killed (or the Deployment scaled down by one) at t0; per
//!    node, the first `services programmed` trace event after t0 whose endpoint count lost
//!    one (the agents' own timestamps), and the first answer of the node's DNS (headless A
//!    records, asked every 10 ms on the node's gateway) with one address fewer.
//! 2. Data path ([`datapath`]): `wrk` from the node's namespace through a ClusterIP with one
//!    backend vs that backend's pod IP, keep-alive and `Connection: close`.
//! 3. DNS ([`dnsperf`]): `dnsperf` against the agent's DNS and `dnsmasq` serving the same 1,000
//!    names from a hosts file, on the same node namespace, with a second dnsmasq as the control
//!    (what the machine's noise alone makes of a ratio): the highest rate, and latency
//!    percentiles at a fixed rate.
//! 4. Rule sync at scale ([`scale`]): 1,000 Services x 10 endpoints on one node: programmed
//!    from the manifest and from scratch (agent restart), one endpoint change, one change that
//!    touches every Service, the agent's RSS with and without them.
//!
//! 2 to 4 run on one agent (its own node namespace, pods on 198.18.42.0/24, ClusterIPs from
//! 198.19.0.0/20). Everything the section makes (namespaces, agents, pods, dnsmasq, files) is
//! removed when it ends, also on error; the agents' logs are kept under target/.

mod change;
mod datapath;
mod dnsperf;
pub(crate) mod lookup;
mod scale;
mod steal;
mod trace;

use crate::demo::{DemoAgent, interrupted};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// Busybox httpd serving `ok` on 8080 from an emptyDir (it becomes the container's process).
const HTTPD: &str = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";
/// A process that only waits (an endpoint that serves nothing).
const SLEEPER: &str = "trap 'exit 0' TERM; while true; do sleep 1 & wait; done";

pub fn run(args: &[String]) -> Result<()> {
    crate::packages::ensure(&[
        "libseccomp-dev",
        "pkg-config",
        "busybox-static",
        "iproute2",
        "nftables",
        "wrk",
        "dnsperf",
        "dnsmasq-base",
    ])?;
    let skiff = match std::env::var_os("SKIFF_BIN").filter(|b| !b.is_empty()) {
        Some(bin) => bin.into(),
        None => crate::util::build_skiff_profile(true)?,
    };
    let image = crate::build_test_image_with(&skiff)?;
    // Another section may have installed the handler already: that one serves.
    let _stop = crate::demo::on_ctrl_c();
    let load = crate::bench::load_average();
    let started = Instant::now();
    let repeats = arg(args, "--services-repeats", 10);
    eprintln!("bench services: {}", skiff.display());
    let node = scale::run(&skiff, &image)?;
    let changes = change::run(&skiff, &image, repeats)?;
    println!(
        "\n== services and cluster DNS (issue 11), release build, load {load} (1-min, at the start), {:.0} s ==",
        started.elapsed().as_secs_f64()
    );
    changes.print();
    node.datapath.print();
    node.dns.print();
    node.print();
    Ok(())
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `check` every 20 ms until it holds; fails after `limit` (or Ctrl-C).
pub(crate) fn wait_until(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() > limit || interrupted() {
            let why = last_error.map_or(String::new(), |e| format!(" (last error: {e:#})"));
            bail!("gave up after {limit:?} waiting for {what}{why}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nearest-rank percentile of `v` (None when empty).
pub(crate) fn pct(v: &[f64], p: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// `1.234 s`, `12.3 ms`-style cells; `-` for a figure that is missing.
fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.3} s"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.2} ms", s * 1000.0))
}

/// A Deployment of `replicas` busybox containers running `command`, labelled `labels`
/// (`{app: web}`), with small requests and no limit (no CPU throttling in the data path).
fn deployment(name: &str, replicas: usize, labels: &str, command: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {labels}
  template:
    metadata:
      labels: {labels}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: skiff.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [\"sh\", \"-c\", \"{command}\"]
        resources:
          requests: {{cpu: 10m, memory: 8Mi}}
        volumeMounts:
        - {{name: www, mountPath: /www}}
      volumes:
      - {{name: www, emptyDir: {{}}}}
"
    )
}

/// A Service on port 80 -> 8080 of the pods `selector` picks (`None`: no selector);
/// `headless`: `clusterIP: None`.
pub(crate) fn service(name: &str, selector: Option<&str>, headless: bool) -> String {
    let mut s = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n");
    if let Some(sel) = selector {
        s.push_str(&format!("  selector: {sel}\n"));
    }
    if headless {
        s.push_str("  clusterIP: None\n");
    }
    s.push_str("  ports:\n  - {name: http, port: 80, targetPort: 8080}\n");
    s
}

/// Writes `body` beside the agent's watched dir, then renames it in (one complete event).
pub(crate) fn write_manifest(agent: &DemoAgent, file: &str, body: &str) -> Result<()> {
    let tmp = agent.dir.join(format!("{file}.tmp"));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, agent.manifests.join(file))?;
    Ok(())
}

/// One endpoint of a Service as `get endpoints NAME` lists it (ready addresses only).
#[derive(Debug, Clone, PartialEq, Eq)]
struct EndpointRow {
    ip: String,
    node: String,
    pod: String,
}

/// The ready endpoints of Service `name` as `agent` computes them.
fn ready_endpoints(agent: &DemoAgent, name: &str) -> Result<Vec<EndpointRow>> {
    let v = agent.api(&serde_json::json!({
        "op": "get", "kind": "endpoints", "name": name, "namespace": null, "all_namespaces": false,
    }))?;
    Ok(v["subsets"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| EndpointRow {
            ip: a["ip"].as_str().unwrap_or("").to_string(),
            node: a["nodeName"].as_str().unwrap_or("").to_string(),
            pod: a["targetRef"]["name"].as_str().unwrap_or("").to_string(),
        })
        .collect())
}

/// `namespace/name -> ClusterIP` of every Service `agent` lists with an address.
fn cluster_ips(agent: &DemoAgent) -> Result<std::collections::BTreeMap<String, String>> {
    let v = agent.api(&serde_json::json!({
        "op": "get", "kind": "services", "name": null, "namespace": null, "all_namespaces": true,
    }))?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let ip = s["spec"]["clusterIP"].as_str()?;
            ip.parse::<std::net::Ipv4Addr>().ok()?;
            Some((
                format!(
                    "{}/{}",
                    s["metadata"]["namespace"].as_str().unwrap_or("default"),
                    s["metadata"]["name"].as_str()?
                ),
                ip.to_string(),
            ))
        })
        .collect())
}

/// The pod bridge's address in node namespace `netns`: the node's gateway, where its DNS
/// listens.
fn gateway(netns: &str) -> Result<std::net::Ipv4Addr> {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-4", "-o", "addr", "show", "dev", "skiff0"])
        .output()
        .context("run ip addr show")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .with_context(|| format!("no address on skiff0 in {netns}: {text:?}"))
}

/// The process a pod's container runs as (its environment names the pod as HOSTNAME; its
/// parent's does not), among the processes whose cgroups contain `cgroup_needle`.
fn container_pid(pod: &str, cgroup_needle: &str) -> Option<u32> {
    let hostname = format!("HOSTNAME={pod}");
    let of_pod = |pid: u32| -> bool {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == hostname.as_bytes()))
            && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(cgroup_needle))
    };
    let parent = |pid: u32| -> Option<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| of_pod(*pid) && parent(*pid).is_none_or(|pp| !of_pod(pp)))
}

/// `kill -9` of pod `pod`'s container process.
fn kill_container(pod: &str, cgroup_needle: &str) -> Result<()> {
    let pid = container_pid(pod, cgroup_needle)
        .with_context(|| format!("no container process of pod {pod}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .with_context(|| format!("kill -9 {pid} (pod {pod})"))
}

/// The agent's RSS once it holds still (readings 250 ms apart within 128 KiB for 4 s, longer
/// than the agent waits after a burst before it hands freed heap back; at most 20 s), for
/// figures not taken in the middle of a burst.
fn settled_rss(pid: u32) -> Result<crate::bench::Rss> {
    const STILL: usize = 16;
    let start = Instant::now();
    let mut readings: Vec<u64> = Vec::new();
    loop {
        readings.push(crate::bench::rss_kb(pid).context("the agent is gone")?);
        let last = &readings[readings.len().saturating_sub(STILL)..];
        let still = last.len() == STILL
            && last.iter().max().unwrap_or(&0) - last.iter().min().unwrap_or(&0) < 128;
        if still || start.elapsed() > Duration::from_secs(20) {
            return Ok(crate::bench::Rss::of(pid));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Where the agents' logs are kept after teardown.
fn logs_dir() -> std::path::PathBuf {
    crate::root().join("target").join("services-bench-logs")
}

/// Removes `path` (a dir or file the section made) when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RemoveOnDrop {
    fn fresh(path: &Path) -> Result<RemoveOnDrop> {
        let _ = std::fs::remove_dir_all(path);
        std::fs::create_dir_all(path)?;
        Ok(RemoveOnDrop(path.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), Some(5.0));
        assert_eq!(pct(&v, 95.0), Some(10.0));
        assert_eq!(pct(&[], 50.0), None);
    }
}

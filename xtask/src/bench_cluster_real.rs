//! `cargo xtask bench --only cluster` (issue 5), real nodes: 5 agents of the release build in
//! network namespaces (the demo's cluster: bridge in a hub namespace, pods on 198.19.0.0/16),
//! real containers of the busybox test image, eviction delay at its default.
//!
//! - (a) placement: a 10-replica Deployment written into n0's manifests dir -> every replica
//!   Running and Ready, across nodes; repeated (deleted and waited for between repeats).
//! - (b) self-healing: kill -9 of a node running pods (its agent, shims and containers; never
//!   the leader or the observer) -> 10 replicas Running and Ready on the other nodes; the node
//!   is restarted and the cluster settles back to exactly 10 between repeats.
//!
//! Both are observed on n1 through its API socket (`get pods -A`, one JSON line each way,
//! every 20 ms). Beside them: the targets and the documented defaults of Kubernetes, Nomad and
//! Swarm for replacing the pods of a dead node (not measured here).

pub(crate) mod timeline;

use crate::bench_gossip::median;
use crate::demo::cluster::{DemoCluster, all_ready, node_name, node_phases, pod_ready};
use crate::demo::{DemoAgent, interrupted};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use timeline::{Marks, describe, marks, now_of_day};

const NODES: usize = 5;
const REPLICAS: usize = 10;
const REPEATS: usize = 5;
const KILL_REPEATS: usize = 3;
const POLL: Duration = Duration::from_millis(20);
const LIMIT: Duration = Duration::from_secs(120);
/// The observer: neither the origin of manifests' leader (n0) nor a victim.
const OBSERVER: usize = 1;

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn run(args: &[String]) -> Result<()> {
    let nodes = arg(args, "--cluster-nodes", NODES).max(3);
    let repeats = arg(args, "--cluster-repeats", REPEATS);
    let kills = arg(args, "--cluster-kills", KILL_REPEATS).min(nodes - 2);
    crate::packages::ensure(&["libseccomp-dev", "pkg-config", "busybox-static", "iproute2"])?;
    let skiff = match std::env::var_os("SKIFF_BIN").filter(|b| !b.is_empty()) {
        Some(bin) => bin.into(),
        None => crate::util::build_skiff_profile(true)?,
    };
    let image = crate::build_test_image_with(&skiff)?;
    let _stop = crate::demo::on_ctrl_c()?;
    eprintln!("bench cluster: {nodes} real nodes ({})", skiff.display());
    let log_filter = std::env::var("SKIFF_BENCH_LOG").unwrap_or_else(|_| "info".into());
    let cluster = DemoCluster::start(&skiff, &image, nodes, &log_filter)?;
    let mut placements = Vec::new();
    for rep in 0..repeats {
        let placed = place(&cluster, &format!("place{rep}"))?;
        eprintln!("bench cluster: (a) repeat {rep}: {:.3} s", placed.0);
        placements.push(placed);
    }
    let mut cluster = cluster;
    let heals = heal(&mut cluster, kills)?;
    print_table(nodes, &placements, &heals);
    eprintln!(
        "bench cluster: the agents' logs are copied to {} at teardown",
        crate::demo::cluster::logs_dir().display()
    );
    Ok(())
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: skiff.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1 & wait; done\"]
        resources:
          requests: {{cpu: 10m, memory: 8Mi}}
"
    )
}

/// Writes the manifest beside the watched dir, then renames it in (one complete event).
fn write_manifest(agent: &DemoAgent, name: &str) -> Result<()> {
    let tmp = agent.dir.join(format!("{name}.yaml.tmp"));
    std::fs::write(&tmp, deployment(name))?;
    std::fs::rename(&tmp, agent.manifests.join(format!("{name}.yaml")))?;
    Ok(())
}

/// Nodes of the ready pods of Deployment `name` in `agent`'s cluster-wide list.
fn ready_nodes(agent: &DemoAgent, name: &str) -> Result<Vec<String>> {
    Ok(agent
        .pods()?
        .iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"][0]["name"] == name
                && p["metadata"]["deletionTimestamp"].is_null()
                && pod_ready(p)
        })
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect())
}

/// Polls `check` every [`POLL`] until it holds; the time since `since`.
fn until(since: Instant, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<f64> {
    loop {
        if check().unwrap_or(false) {
            return Ok(since.elapsed().as_secs_f64());
        }
        if since.elapsed() > LIMIT || interrupted() {
            bail!("gave up after {:?} waiting for {what}", since.elapsed());
        }
        std::thread::sleep(POLL);
    }
}

/// (a): manifest written on n0 -> all replicas ready; then deleted and waited for.
fn place(cluster: &DemoCluster, name: &str) -> Result<(f64, Marks)> {
    let origin = &cluster.agents[0];
    let observer = &cluster.agents[OBSERVER];
    let wall = now_of_day();
    write_manifest(origin, name)?;
    let since = Instant::now();
    let mut spread = 0;
    let took = until(
        since,
        &format!("{REPLICAS} replicas of {name} ready"),
        || {
            let on = ready_nodes(observer, name)?;
            spread = on.iter().collect::<std::collections::BTreeSet<_>>().len();
            Ok(on.len() == REPLICAS)
        },
    )?;
    let m = marks(&cluster.agents, name, wall);
    eprintln!(
        "bench cluster: {name}: {REPLICAS} ready on {spread} nodes; written +0, {}, observed on n{OBSERVER} +{took:.3}",
        describe(&[
            ("ManifestApplied on n0", m.applied),
            ("first Scheduled", m.first_scheduled),
            ("last Scheduled", m.last_scheduled),
            ("last Started", m.last_started),
        ])
    );
    std::fs::remove_file(origin.manifests.join(format!("{name}.yaml")))?;
    until(Instant::now(), "the cluster to run no pods", || {
        Ok(cluster
            .agents
            .iter()
            .all(|a| a.pods().is_ok_and(|p| p.is_empty())))
    })?;
    Ok((took, m))
}

/// `(ready pods on each node)` of Deployment `name` as `agent` lists them.
fn per_node(agent: &DemoAgent, name: &str) -> Result<BTreeMap<String, usize>> {
    let mut m = BTreeMap::new();
    for n in ready_nodes(agent, name)? {
        *m.entry(n).or_insert(0) += 1;
    }
    Ok(m)
}

/// The leader as `agent` sees it.
fn leader(agent: &DemoAgent) -> Result<String> {
    let v = agent.api(&serde_json::json!({ "op": "status" }))?;
    v["leader"]
        .as_str()
        .map(str::to_string)
        .context("status without a leader")
}

/// (b): kill -9 of the busiest node that is neither leader nor observer -> replicas back to
/// full on the other nodes; the node comes back and the cluster settles before the next one.
/// One (b) repeat.
struct Heal {
    took: f64,
    moved: usize,
    /// When the leader listed the victim NotReady (seconds after the kill).
    detected: Option<f64>,
    marks: Marks,
}

fn heal(cluster: &mut DemoCluster, kills: usize) -> Result<Vec<Heal>> {
    let name = "heal";
    write_manifest(&cluster.agents[0], name)?;
    let everyone: Vec<String> = (0..cluster.agents.len()).map(node_name).collect();
    let mut out = Vec::new();
    for rep in 0..kills {
        let observer = &cluster.agents[OBSERVER];
        until(Instant::now(), "the deployment to settle", || {
            Ok(ready_nodes(observer, name)?.len() == REPLICAS
                && observer.pods()?.len() == REPLICAS
                && all_ready(observer, &everyone))
        })?;
        let lead = leader(observer)?;
        let placed = per_node(observer, name)?;
        let victim = (0..cluster.agents.len())
            .filter(|i| *i != OBSERVER && node_name(*i) != lead)
            .max_by_key(|i| placed.get(&node_name(*i)).copied().unwrap_or(0))
            .context("no node to kill")?;
        let victim_name = node_name(victim);
        let moved = placed.get(&victim_name).copied().unwrap_or(0);
        let wall = now_of_day();
        cluster.agents[victim].kill_node()?;
        let since = Instant::now();
        let observer = &cluster.agents[OBSERVER];
        let leader_agent = cluster
            .agents
            .iter()
            .find(|a| a.name == lead)
            .context("the leader is not one of the agents")?;
        let mut detected = None;
        let took = until(since, "replacements ready elsewhere", || {
            if detected.is_none()
                && node_phases(leader_agent)?
                    .iter()
                    .any(|(n, p)| *n == victim_name && p == "NotReady")
            {
                detected = Some(since.elapsed().as_secs_f64());
            }
            let on = ready_nodes(observer, name)?;
            Ok(on.iter().filter(|n| **n != victim_name).count() == REPLICAS)
        })?;
        let m = marks(&cluster.agents, name, wall);
        eprintln!(
            "bench cluster: (b) repeat {rep}: killed {victim_name} ({moved} of {REPLICAS} pods, leader {lead}): killed +0, {}, observed on n{OBSERVER} +{took:.3}",
            describe(&[
                ("NotReady on the leader", detected),
                ("first Scheduled", m.first_scheduled),
                ("last Scheduled", m.last_scheduled),
                ("last Started", m.last_started),
            ])
        );
        out.push(Heal {
            took,
            moved,
            detected,
            marks: m,
        });
        cluster.agents[victim].restart()?;
    }
    Ok(out)
}

/// Median of the marks that are present.
fn med(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    median(v.flatten().collect())
}

fn print_table(nodes: usize, placements: &[(f64, Marks)], heals: &[Heal]) {
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.3} s"));
    let samples = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let place_times: Vec<f64> = placements.iter().map(|p| p.0).collect();
    let heal_times: Vec<f64> = heals.iter().map(|h| h.took).collect();
    println!(
        "\n== cluster: {nodes} real nodes in network namespaces, release build, {REPLICAS}-replica Deployment, eviction delay at its default (1 s) =="
    );
    println!(
        "{:<58} {:>10} {:>8}   samples (s)",
        "figure (median)", "skiff", "target"
    );
    println!(
        "{:<58} {:>10} {:>8}   {}",
        "(a) manifest on n0 -> all replicas Running, across nodes",
        secs(median(place_times.clone())),
        "< 2 s",
        samples(&place_times)
    );
    println!(
        "{:<58} {:>10} {:>8}   {}",
        "(b) kill -9 of a node -> its pods Running elsewhere",
        secs(median(heal_times.clone())),
        "< 5 s",
        samples(&heal_times)
    );
    println!(
        "(b) pods on the killed node per repeat: {}",
        heals
            .iter()
            .map(|h| h.moved.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "where (a) went (medians, from the agents' logs): written +0, {}, all Running on n{OBSERVER} {}",
        describe(&[
            (
                "ManifestApplied on n0",
                med(placements.iter().map(|p| p.1.applied))
            ),
            (
                "first Scheduled",
                med(placements.iter().map(|p| p.1.first_scheduled))
            ),
            (
                "last Scheduled",
                med(placements.iter().map(|p| p.1.last_scheduled))
            ),
            (
                "last Started",
                med(placements.iter().map(|p| p.1.last_started))
            ),
        ]),
        secs(median(place_times.clone())),
    );
    println!(
        "where (b) went (medians): killed +0, {}, all Running on n{OBSERVER} {}",
        describe(&[
            (
                "NotReady on the leader",
                med(heals.iter().map(|h| h.detected))
            ),
            (
                "first Scheduled",
                med(heals.iter().map(|h| h.marks.first_scheduled))
            ),
            (
                "last Scheduled",
                med(heals.iter().map(|h| h.marks.last_scheduled))
            ),
            (
                "last Started",
                med(heals.iter().map(|h| h.marks.last_started))
            ),
        ]),
        secs(median(heal_times.clone())),
    );
    println!(
        "documented defaults for (b), not measured here: Kubernetes ~5 min 50 s (node-monitor-grace-period\n\
         40 s + 5 min NoExecute toleration), Nomad 20-30 s (heartbeat TTL + grace), Docker Swarm ~15 s\n\
         (dispatcher heartbeat 5 s x 3)."
    );
}

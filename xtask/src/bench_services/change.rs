//! (1) Endpoint change -> rules and DNS updated on every node of a 5-node cluster.
//!
//! `web`: 6 busybox httpd pods, a ClusterIP Service and a headless Service (`web-hl`) over
//! them. A change is either `kill -9` of one backend's container process (taken in turn on
//! each node; the crash backoff is 2 s so it comes back soon) or the Deployment's manifest
//! rewritten with one replica fewer (then back). For each node: when its proxy logged the
//! first `services programmed` event after t0 with fewer endpoints than before (the agent's
//! own timestamp: the nft transaction is done), and when its DNS (the node's gateway:53,
//! asked every 10 ms from the node's namespace) first answered `web-hl` with fewer addresses.
//! Between changes the cluster settles back (every node lists 6 ready endpoints and answers
//! 6 addresses).

use super::lookup::{lookup, udp_socket_in};
use super::trace::LogTail;
use super::{
    EndpointRow, HTTPD, deployment, pct, ready_endpoints, secs, service, wait_until, write_manifest,
};
use crate::bench_cluster_real::timeline::now_of_day;
use crate::demo::cluster::{DemoCluster, node_name};
use anyhow::{Context, Result};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NODES: usize = 5;
const REPLICAS: usize = 6;
/// How long one change may take to reach every node before it counts as missed there.
const LIMIT: Duration = Duration::from_secs(20);
const DNS_POLL: Duration = Duration::from_millis(10);
const HEADLESS: &str = "web-hl.default.svc.cluster.local";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Killed,
    Scaled,
}

/// One measured change: per node, seconds from t0 (None: not seen within [`LIMIT`]).
struct Change {
    kind: Kind,
    /// The node the removed endpoint was on.
    pod_node: Option<String>,
    rules: Vec<Option<f64>>,
    dns: Vec<Option<f64>>,
}

pub struct Report {
    changes: Vec<Change>,
}

/// A node's DNS, asked from its own namespace.
struct Probe {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Probe {
    fn addresses(&self, id: u16) -> Result<usize> {
        Ok(lookup(&self.socket, self.server, HEADLESS, id)?
            .addresses
            .len())
    }
}

fn manifest(replicas: usize) -> String {
    let labels = "{app: web}";
    format!(
        "{}---\n{}---\n{}",
        deployment("web", replicas, labels, HTTPD),
        service("web", Some(labels), false),
        service("web-hl", Some(labels), true)
    )
}

pub fn run(skiff: &Path, image: &Path, repeats: usize) -> Result<Report> {
    let filter = format!(
        "{},skiff::path=debug",
        std::env::var("SKIFF_BENCH_LOG").unwrap_or_else(|_| "info".into())
    );
    eprintln!("bench services: (1) {NODES} real nodes, {repeats} kills and {repeats} scale-downs");
    let cluster = DemoCluster::start_with(
        skiff,
        image,
        NODES,
        &filter,
        &["--crash-backoff-base-ms", "2000"],
    )?;
    let result = measure(&cluster, repeats);
    // Teardown (also on error): the agents' logs go to target/cluster-logs, the rest goes.
    drop(cluster);
    result
}

fn measure(cluster: &DemoCluster, repeats: usize) -> Result<Report> {
    let origin = &cluster.agents[0];
    write_manifest(origin, "web.yaml", &manifest(REPLICAS))?;
    settle(cluster, &[])?;
    let probes: Vec<Probe> = cluster
        .bed
        .nodes
        .iter()
        .map(|n| {
            Ok(Probe {
                socket: udp_socket_in(&n.netns)?,
                server: SocketAddr::from((super::gateway(&n.netns)?, 53)),
            })
        })
        .collect::<Result<_>>()?;
    settle(cluster, &probes)?;
    let needle = cluster.bed.run_id.clone();
    let mut changes = Vec::new();
    for rep in 0..repeats {
        // A backend on node n(rep % 5) when there is one, else any.
        let eps = ready_endpoints(&cluster.agents[1], "web")?;
        let want = node_name(rep % NODES);
        let victim = eps
            .iter()
            .find(|e| e.node == want)
            .or_else(|| eps.get(rep % eps.len().max(1)))
            .context("web has no endpoint to kill")?
            .clone();
        let mut change = observe(cluster, &probes, Kind::Killed, || {
            super::kill_container(&victim.pod, &needle)
        })?;
        change.pod_node = Some(victim.node.clone());
        eprintln!(
            "bench services: (1) kill {} on {}: rules {} dns {}",
            victim.pod,
            victim.node,
            cells(&change.rules),
            cells(&change.dns)
        );
        changes.push(change);
        settle(cluster, &probes)?;
    }
    for _ in 0..repeats {
        let change = observe(cluster, &probes, Kind::Scaled, || {
            write_manifest(origin, "web.yaml", &manifest(REPLICAS - 1))
        })?;
        eprintln!(
            "bench services: (1) scale to {}: rules {} dns {}",
            REPLICAS - 1,
            cells(&change.rules),
            cells(&change.dns)
        );
        changes.push(change);
        write_manifest(origin, "web.yaml", &manifest(REPLICAS))?;
        settle(cluster, &probes)?;
    }
    Ok(Report { changes })
}

fn cells(v: &[Option<f64>]) -> String {
    v.iter()
        .map(|t| t.map_or("-".into(), |t| format!("{t:.3}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every node lists all replicas as ready endpoints (and answers as many addresses).
fn settle(cluster: &DemoCluster, probes: &[Probe]) -> Result<()> {
    for (i, a) in cluster.agents.iter().enumerate() {
        wait_until(
            Duration::from_secs(90),
            &format!("{REPLICAS} ready endpoints of web on {}", a.name),
            || Ok(ready_endpoints(a, "web")?.len() == REPLICAS),
        )?;
        if let Some(p) = probes.get(i) {
            wait_until(
                Duration::from_secs(30),
                &format!("{REPLICAS} addresses for {HEADLESS} from {}", p.server),
                || Ok(p.addresses(1)? == REPLICAS),
            )?;
        }
    }
    Ok(())
}

/// Runs `act` at t0 and times when each node's rules and DNS lost one endpoint.
fn observe(
    cluster: &DemoCluster,
    probes: &[Probe],
    kind: Kind,
    act: impl FnOnce() -> Result<()>,
) -> Result<Change> {
    let before: Vec<EndpointRow> = ready_endpoints(&cluster.agents[0], "web")?;
    let mut tails: Vec<LogTail> = cluster
        .agents
        .iter()
        .map(|a| LogTail::at_end(&a.log_path()))
        .collect::<Result<_>>()?;
    let done = AtomicBool::new(false);
    let wall = now_of_day();
    let t0 = Instant::now();
    act()?;
    let (rules, dns) = std::thread::scope(|s| -> Result<_> {
        let pollers: Vec<_> = probes
            .iter()
            .map(|p| {
                let done = &done;
                s.spawn(move || -> Option<f64> {
                    let mut id: u16 = 2;
                    while t0.elapsed() < LIMIT && !done.load(Ordering::Relaxed) {
                        id = id.wrapping_add(1).max(2);
                        if p.addresses(id).is_ok_and(|n| n < REPLICAS) {
                            return Some(t0.elapsed().as_secs_f64());
                        }
                        std::thread::sleep(DNS_POLL);
                    }
                    None
                })
            })
            .collect();
        let mut rules: Vec<Option<f64>> = vec![None; tails.len()];
        let result = (|| -> Result<()> {
            while t0.elapsed() < LIMIT && !crate::demo::interrupted() {
                for (i, tail) in tails.iter_mut().enumerate() {
                    if rules[i].is_some() {
                        continue;
                    }
                    if let Some(e) = tail.events()?.iter().find(|e| e.endpoints < REPLICAS) {
                        rules[i] = Some((e.at - wall).max(0.0));
                    }
                }
                if rules.iter().all(Option::is_some) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })();
        if result.is_err() {
            done.store(true, Ordering::Relaxed);
        }
        let dns: Vec<Option<f64>> = pollers
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect();
        result.map(|()| (rules, dns))
    })?;
    // Which node lost an endpoint (as n0 lists them now).
    let after = ready_endpoints(&cluster.agents[0], "web").unwrap_or_default();
    let pod_node = before
        .iter()
        .find(|b| !after.iter().any(|a| a.ip == b.ip))
        .map(|b| b.node.clone());
    Ok(Change {
        kind,
        pod_node,
        rules,
        dns,
    })
}

impl Report {
    pub fn print(&self) {
        println!(
            "\n(1) endpoint change -> rules and DNS updated on all {NODES} nodes ({NODES} real nodes in namespaces, {REPLICAS}-replica busybox httpd Deployment, ClusterIP + headless Service; seconds after t0)"
        );
        println!(
            "{:<32} {:>3} {:>9} {:>9} {:>9} {:>6}   {:<29}   pod's node | others",
            "change -> updated",
            "n",
            "all p50",
            "all p95",
            "all max",
            "missed",
            "median per node n0 .. n4 (s)",
        );
        for (kind, label) in [(Kind::Killed, "killed"), (Kind::Scaled, "scaled down")] {
            let of_kind: Vec<&Change> = self.changes.iter().filter(|c| c.kind == kind).collect();
            for (what, pick) in [
                (
                    "rules",
                    (|c: &Change| &c.rules) as fn(&Change) -> &Vec<Option<f64>>,
                ),
                ("DNS", |c: &Change| &c.dns),
            ] {
                row(&format!("{label} -> {what}"), &of_kind, pick);
            }
        }
        println!(
            "target: \"all\" (the slowest of the {NODES} nodes per change) p50 <= 1 s. t0: the kill -9 of a backend's\n\
             container (crash backoff 2 s) or the manifest rename with replicas {}; rules: the node's log\n\
             timestamp of its first `services programmed` event with one endpoint fewer (nft transaction\n\
             done); DNS: its gateway's first answer for the headless Service (asked every 10 ms) with one\n\
             address fewer. A kill is noticed on the pod's node when container states are read (every 500 ms).",
            REPLICAS - 1
        );
    }
}

fn row(label: &str, changes: &[&Change], pick: fn(&Change) -> &Vec<Option<f64>>) {
    // "All nodes": the slowest node of a change, for changes every node saw.
    let all: Vec<f64> = changes
        .iter()
        .filter_map(|c| {
            pick(c)
                .iter()
                .copied()
                .collect::<Option<Vec<f64>>>()
                .and_then(|v| v.into_iter().reduce(f64::max))
        })
        .collect();
    let missed = changes.len() - all.len();
    let per_node: Vec<String> = (0..NODES)
        .map(|i| {
            let v: Vec<f64> = changes.iter().filter_map(|c| pick(c)[i]).collect();
            pct(&v, 50.0).map_or("-".into(), |t| format!("{t:.3}"))
        })
        .collect();
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for c in changes {
        for (i, t) in pick(c).iter().enumerate() {
            let Some(t) = t else { continue };
            if c.pod_node.as_deref() == Some(node_name(i).as_str()) {
                local.push(*t);
            } else {
                remote.push(*t);
            }
        }
    }
    let med = |v: &[f64]| pct(v, 50.0).map_or("-".into(), |t| format!("{t:.3}"));
    println!(
        "{:<32} {:>3} {:>9} {:>9} {:>9} {:>6}   {:<29}   {} | {}",
        label,
        changes.len(),
        secs(pct(&all, 50.0)),
        secs(pct(&all, 95.0)),
        secs(pct(&all, 100.0)),
        missed,
        per_node.join(" "),
        med(&local),
        med(&remote)
    );
}

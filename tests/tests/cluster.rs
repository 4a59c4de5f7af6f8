//! One cluster of five real agents, each in its own network namespace (nodes 198.18.1.0/24 on
//! two bridged segments, pod subnets from 198.19.0.0/16, nothing leaves the machine), running
//! real containers (the busybox test image imported into every node's store), through the
//! user-visible points of the cluster issue, in one run to keep the cost down:
//!
//! 1. pod subnets distinct per node and routed between nodes; a pod reaches a pod on another node;
//! 2. a Deployment dropped on one node is on every node within seconds, spread and Running;
//!    every node names the same leader (the lowest name) and term, and shows a workload that
//!    fits nowhere as pending with the reason;
//! 3. `get pods -A -o wide`, `logs` and `describe pod` on a node that does not run the pod;
//! 4. kill -9 of the node it was dropped on: replacements run elsewhere after the eviction delay,
//!    the object stays desired; edits on two other nodes resolve to the newest everywhere;
//!    the node comes back with its old file and subnet: exactly the desired replicas, no flapping
//!    (and exactly one pod network namespace per listed pod on each node);
//! 5. a node cut off from all peers keeps (and restarts) its pods and places nothing else (1 of 5
//!    is a minority), and rebooted without network starts what it was last assigned; partition
//!    2|3 for a minute: the minority keeps exactly its pods and serves, the majority runs the
//!    desired replicas; after the heal, one leader and exactly the desired replicas within 10 s;
//! 6. kill -9 of the leader: the next name leads with a higher term, the pods run elsewhere; it
//!    comes back and leads again, exactly the desired replicas, no flapping;
//!    drain of the leader (through its own socket): its pods move, the next node leads with a
//!    higher term; uncordon: it leads again, no pod moves back;
//! 7. deleting the file deletes the object everywhere; a node that was down meanwhile and
//!    restarts with its old copy of the file does not bring it back, and stops its pods.
//!
//! Needs root, iproute2, nsenter (util-linux) and busybox-static. The `skiff` binary comes from
//! `SKIFF_BIN` or `target/debug/skiff` (build it first: `cargo build -p skiff-agent --bin skiff`).
//! Every wait is a deadline-bounded poll; the bed's guard removes agents, containers, mounts,
//! namespaces and cgroups even when the test fails.

use anyhow::{Context, Result, bail, ensure};
use skiff_tests::agent::{Agent, PodOptions};
use skiff_tests::bed::{TestBed, ip};
use skiff_tests::cleanup::netns_with_prefix;
use skiff_tests::cluster::{Cluster, node_name};
use skiff_tests::pods::{PodRow, TEST_IMAGE};
use skiff_tests::poll::{wait_for, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const N: usize = 5;
const START: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(100);
/// How long the 2|3 partition lasts.
const PARTITION: Duration = Duration::from_secs(60);
/// How long a converged state must hold to count as "no flapping".
const STEADY: Duration = Duration::from_secs(3);
const OWNER: &str = "Deployment/web";
const FILE: &str = "web.yaml";

fn web(replicas: usize, edit: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    edit: "{edit}"
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo serving $(hostname); mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#
    )
}

/// A Deployment no node has memory for.
fn big() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: big
spec:
  replicas: 1
  selector:
    matchLabels: {{app: big}}
  template:
    metadata:
      labels: {{app: big}}
    spec:
      containers:
      - name: main
        image: {TEST_IMAGE}
        command: ["sleep", "100000"]
        resources:
          requests:
            memory: 1000Gi
"#
    )
}

fn all() -> Vec<usize> {
    (0..N).collect()
}

fn names(idx: &[usize]) -> Vec<String> {
    idx.iter().copied().map(node_name).collect()
}

#[test]
fn five_nodes_with_real_pods() -> Result<()> {
    // Segment 0: n0 n1; segment 1: n2 n3 n4 (the trunk between them is the 2|3 cut).
    let bed = TestBed::new(&[0, 0, 1, 1, 1])?;
    let started = Instant::now();
    let mut cluster = Cluster::start_with(bed, N, Some(PodOptions::default()), START)?;
    eprintln!("{N} agents Ready everywhere after {:?}", started.elapsed());
    let outcome = scenario(&mut cluster);
    if let Err(e) = &outcome {
        eprintln!("FAILED: {e:#}");
        dump(&cluster);
    }
    eprintln!("whole run: {:?}", started.elapsed());
    outcome
}

fn scenario(c: &mut Cluster) -> Result<()> {
    for agent in &c.agents {
        agent.import_test_image()?;
    }
    let subnets = pod_subnets_are_distinct_and_routed(c)?;
    let desired = 6;
    deployment_reaches_every_node_and_spreads(c, desired)?;
    remote_listing_logs_and_describe(c)?;
    pods_reach_pods_on_other_nodes(c)?;
    let desired = kill_the_dropping_node_edit_elsewhere_restart(c, desired, &subnets)?;
    isolated_node_keeps_its_pods(c, desired)?;
    partition_two_three_then_heal(c, desired)?;
    kill_the_leader_then_restart(c, desired)?;
    drain_the_leader_then_uncordon(c, desired)?;
    delete_is_cluster_wide_and_not_resurrected(c)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pod subnets and routes

/// Each node's pod subnet: the address on its bridge (gateway of the subnet) in its namespace.
fn subnet_of(c: &Cluster, i: usize) -> Result<String> {
    let out = ip(&["-n", &c.bed.nodes[i].netns, "-4", "-o", "addr", "show"])?;
    out.lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .find(|a| a.starts_with("198.19."))
        .map(network_of)
        .with_context(|| format!("no pod subnet address on {}: {out}", node_name(i)))
}

/// `198.19.3.1/24` -> `198.19.3.0/24`.
fn network_of(cidr: &str) -> String {
    let (addr, _) = cidr.split_once('/').unwrap_or((cidr, ""));
    let octets: Vec<&str> = addr.split('.').collect();
    format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2])
}

fn pod_subnets_are_distinct_and_routed(c: &Cluster) -> Result<Vec<String>> {
    let (subnets, took) = wait_for("a pod subnet on every node", WAIT, POLL, || {
        let s: Result<Vec<String>> = all().into_iter().map(|i| subnet_of(c, i)).collect();
        Ok(s.ok())
    })?;
    let distinct: BTreeSet<&String> = subnets.iter().collect();
    ensure!(distinct.len() == N, "pod subnets not distinct: {subnets:?}");
    // Every node routes every other node's subnet via that node's address.
    let took_routes = wait_until(
        "routes to every other node's pod subnet",
        WAIT,
        POLL,
        || {
            for i in all() {
                let routes = ip(&["-n", &c.bed.nodes[i].netns, "-4", "route"])?;
                for j in all().into_iter().filter(|j| *j != i) {
                    let want = format!("{} via {}", subnets[j], c.bed.nodes[j].ip);
                    if !routes.lines().any(|l| l.starts_with(&want)) {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        },
    )?;
    eprintln!("pod subnets {subnets:?} after {took:?}, routed everywhere after {took_routes:?}");
    Ok(subnets)
}

// ---------------------------------------------------------------------------------------------
// Replication, leader, spread

fn web_pods(agent: &Agent) -> Result<Vec<PodRow>> {
    Ok(agent
        .pods()?
        .into_iter()
        .filter(|p| p.owner.as_deref() == Some(OWNER))
        .collect())
}

/// The `edit` annotation and replica count of `web` on `agent` (None: no such deployment).
fn web_version(agent: &Agent) -> Result<Option<(String, u64)>> {
    let list = agent.get_all("deployments")?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["metadata"]["name"] == "web")
        .map(|d| {
            (
                d["metadata"]["annotations"]["edit"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                d["spec"]["replicas"].as_u64().unwrap_or(0),
            )
        }))
}

/// Waits until every node in `on` holds `web` as (`edit`, `replicas`), or none when `None`.
fn wait_version(
    c: &Cluster,
    on: &[usize],
    want: Option<(&str, u64)>,
    timeout: Duration,
) -> Result<Duration> {
    let want = want.map(|(e, r)| (e.to_string(), r));
    wait_until(
        &format!("web = {want:?} on {:?}", names(on)),
        timeout,
        POLL,
        || {
            for &i in on {
                if web_version(&c.agents[i])? != want {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .map_err(|e| {
        let seen: Vec<String> = on
            .iter()
            .map(|&i| format!("{}: {:?}", node_name(i), web_version(&c.agents[i]).ok()))
            .collect();
        e.context(format!("seen: {}", seen.join(", ")))
    })
}

/// Exactly `desired` live `web` pods, all Running, on nodes in `hosts`, as `observer` lists
/// them (pods it lists on other nodes are stale reports of unreachable nodes and ignored).
fn exactly_running(
    observer: &Agent,
    hosts: &[usize],
    desired: usize,
) -> Result<Option<Vec<PodRow>>> {
    let hosts = names(hosts);
    let pods: Vec<PodRow> = web_pods(observer)?
        .into_iter()
        .filter(|p| hosts.contains(&p.node))
        .collect();
    let ok = pods.len() == desired && pods.iter().all(|p| p.phase == "Running" && !p.deleting);
    Ok(ok.then_some(pods))
}

fn pod_summary(pods: &[PodRow]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "{}@{}:{}{}",
                p.name,
                p.node,
                p.phase,
                if p.deleting { "(deleting)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until every observer lists exactly `desired` Running `web` pods on `hosts`, all
/// observers the same set.
fn wait_exact(
    c: &Cluster,
    observers: &[usize],
    hosts: &[usize],
    desired: usize,
    timeout: Duration,
) -> Result<(Vec<PodRow>, Duration)> {
    wait_for(
        &format!(
            "exactly {desired} Running web pods on {:?} as {:?} list them",
            names(hosts),
            names(observers)
        ),
        timeout,
        POLL,
        || {
            let mut first: Option<Vec<PodRow>> = None;
            for &o in observers {
                let Some(mut pods) = exactly_running(&c.agents[o], hosts, desired)? else {
                    return Ok(None);
                };
                pods.sort_by(|a, b| a.name.cmp(&b.name));
                match &first {
                    None => first = Some(pods),
                    Some(f) if uids(f) != uids(&pods) => return Ok(None),
                    Some(_) => {}
                }
            }
            Ok(first)
        },
    )
    .map_err(|e| e.context(listing(c, observers)))
}

fn uids(pods: &[PodRow]) -> BTreeSet<&str> {
    pods.iter().map(|p| p.uid.as_str()).collect()
}

/// Every observer's view of the web pods, for failure messages.
fn listing(c: &Cluster, observers: &[usize]) -> String {
    observers
        .iter()
        .map(|&o| match web_pods(&c.agents[o]) {
            Ok(p) => format!("{}: {}", node_name(o), pod_summary(&p)),
            Err(e) => format!("{}: {e:#}", node_name(o)),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until each node holds exactly one pod network namespace per pod of `pods` on it:
/// pods the API no longer lists are really gone (containers stopped, namespaces removed).
fn namespaces_match(c: &Cluster, pods: &[PodRow]) -> Result<()> {
    wait_until(
        "one pod network namespace per listed pod on every node",
        WAIT,
        POLL,
        || {
            for i in all() {
                let listed = pods.iter().filter(|p| p.node == node_name(i)).count();
                let made = netns_with_prefix(&format!("{}-{i}-", c.bed.run_id)).len();
                if listed != made {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .map(|_| ())
    .map_err(|e| {
        let counts: Vec<String> = all()
            .into_iter()
            .map(|i| {
                format!(
                    "{}: {} netns",
                    node_name(i),
                    netns_with_prefix(&format!("{}-{i}-", c.bed.run_id)).len()
                )
            })
            .collect();
        e.context(format!(
            "{} / pods {}",
            counts.join(", "),
            pod_summary(pods)
        ))
    })
}

/// Holds for [`STEADY`]: every observer keeps listing the same `desired` Running pods; then
/// the nodes hold exactly those pods' namespaces.
fn stays_exact(c: &Cluster, observers: &[usize], hosts: &[usize], pods: &[PodRow]) -> Result<()> {
    let want = uids(pods);
    let until = Instant::now() + STEADY;
    while Instant::now() < until {
        for &o in observers {
            let now = exactly_running(&c.agents[o], hosts, pods.len())?;
            let same = now.as_ref().is_some_and(|p| uids(p) == want);
            if !same {
                bail!(
                    "flapping: {} no longer lists exactly the converged pods\nconverged: {}\nnow:\n{}",
                    node_name(o),
                    pod_summary(pods),
                    listing(c, observers)
                );
            }
        }
        std::thread::sleep(POLL);
    }
    namespaces_match(c, pods)
}

/// (leader, term) as `skiff status` on `agent` reports them.
fn leader_term(agent: &Agent) -> Result<(Option<String>, u64)> {
    let s = agent.status()?;
    Ok((
        s["leader"].as_str().map(str::to_string),
        s["term"].as_u64().unwrap_or(0),
    ))
}

/// Waits until every node in `on` names `leader` with one common term; returns the term.
/// `skiff status` names a leader from the node list even while that node is still in its
/// startup grace and not leading yet (it then shows the term seen so far): `above` is a term
/// the wanted leadership must exceed.
fn wait_leader(
    c: &Cluster,
    on: &[usize],
    leader: &str,
    above: u64,
    timeout: Duration,
) -> Result<u64> {
    let (term, _) = wait_for(
        &format!(
            "{leader} leader with one term above {above} on {:?}",
            names(on)
        ),
        timeout,
        POLL,
        || {
            let mut terms = BTreeSet::new();
            for &i in on {
                let (l, t) = leader_term(&c.agents[i])?;
                if l.as_deref() != Some(leader) || t == 0 || t <= above {
                    return Ok(None);
                }
                terms.insert(t);
            }
            Ok((terms.len() == 1).then(|| terms.into_iter().next().unwrap_or(0)))
        },
    )
    .map_err(|e| {
        let seen: Vec<String> = on
            .iter()
            .map(|&i| format!("{}: {:?}", node_name(i), leader_term(&c.agents[i]).ok()))
            .collect();
        e.context(format!("seen: {}", seen.join(", ")))
    })?;
    Ok(term)
}

fn deployment_reaches_every_node_and_spreads(c: &Cluster, desired: usize) -> Result<()> {
    let term = wait_leader(c, &all(), "n0", 0, WAIT)?;
    c.agents[2].write_manifest(FILE, &web(desired, 1))?;
    let took = wait_version(c, &all(), Some(("1", desired as u64)), WAIT)?;
    eprintln!("web dropped on n2: in get deployments on all {N} nodes after {took:?}");
    ensure!(
        took < Duration::from_secs(10),
        "replication took {took:?} (expected a few seconds)"
    );
    let (pods, took) = wait_exact(c, &[0, 2, 4], &all(), desired, WAIT)?;
    eprintln!(
        "{desired} replicas Running after {took:?}: {}",
        pod_summary(&pods)
    );
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &pods {
        *per_node.entry(p.node.as_str()).or_default() += 1;
    }
    ensure!(
        per_node.len() == N && per_node.values().all(|n| *n <= 2),
        "replicas not spread over the {N} nodes: {per_node:?}"
    );
    // Every node: the same leader (lowest name) and term, the workload's counts.
    let again = wait_leader(c, &all(), "n0", 0, WAIT)?;
    ensure!(
        again == term,
        "the term moved from {term} to {again} with no change of leader"
    );
    wait_until(
        "status on every node to count the workload",
        WAIT,
        POLL,
        || {
            for agent in &c.agents {
                let s = agent.status()?;
                let w = s["workloads"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|w| w["name"] == "web" && w["kind"] == "Deployment");
                let Some(w) = w else { return Ok(false) };
                if w["desired"] != desired || w["running"] != desired {
                    return Ok(false);
                }
                // Per node pod counts add up (web is the only workload).
                let counted: u64 = s["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["pods"].as_u64())
                    .sum();
                if counted != desired as u64 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    // A workload that fits nowhere: pending with the reason, on every node's status.
    c.agents[4].write_manifest("big.yaml", &big())?;
    let (reason, _) = wait_for(
        "big pending with a reason on every node",
        WAIT,
        POLL,
        || {
            let mut reasons = BTreeSet::new();
            for agent in &c.agents {
                let s = agent.status()?;
                let w = s["workloads"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|w| w["name"] == "big")
                    .cloned();
                match w.as_ref().and_then(|w| w["pending"].as_str()) {
                    Some(r) => reasons.insert(r.to_string()),
                    None => return Ok(None),
                };
            }
            Ok((reasons.len() == 1).then(|| reasons.into_iter().next().unwrap_or_default()))
        },
    )?;
    ensure!(
        reason.contains(&format!("0/{N} nodes")) && reason.contains("insufficient memory"),
        "pending reason: {reason}"
    );
    eprintln!("big pending everywhere: {reason}");
    c.agents[4].remove_manifest("big.yaml")?;
    let yaml = c.agents[3].cli(&["status"])?;
    ensure!(
        yaml.contains("leader: n0") && yaml.contains(&format!("term: {term}")),
        "skiff status on n3: {yaml}"
    );
    eprintln!("leader n0, term {term} on every node");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Any node answers for any pod

fn remote_listing_logs_and_describe(c: &Cluster) -> Result<()> {
    let pods = web_pods(&c.agents[0])?;
    // `get pods -A -o wide` on any node: every pod with its node and IP.
    for i in [1, 3] {
        let wide = c.agents[i].cli(&["get", "pods", "-A", "-o", "wide"])?;
        for p in &pods {
            let ip = p.ip.as_deref().context("a Running pod without IP")?;
            let line = wide
                .lines()
                .find(|l| l.split_whitespace().any(|w| w == p.name))
                .with_context(|| {
                    format!("{} missing from get pods -o wide on n{i}:\n{wide}", p.name)
                })?;
            let words: Vec<&str> = line.split_whitespace().collect();
            ensure!(
                words.contains(&p.node.as_str()) && words.contains(&ip),
                "{} without node {} or IP {ip} on n{i}: {line}",
                p.name,
                p.node
            );
        }
    }
    // logs and describe from a node that does not run the pod.
    let p = pods
        .iter()
        .find(|p| p.node != "n1")
        .context("no pod off n1")?;
    let logs = wait_for("the pod's first line through n1", WAIT, POLL, || {
        let out = c.agents[1].cli(&["logs", &p.name])?;
        Ok(out.contains(&format!("serving {}", p.name)).then_some(out))
    })?
    .0;
    let local = c.agents[node_index(&p.node)?].cli(&["logs", &p.name])?;
    ensure!(
        logs == local,
        "logs through n1 differ:\n{logs}\n---\n{local}"
    );
    let described = c.agents[1].cli(&["describe", "pod", &p.name])?;
    ensure!(
        described.contains(&p.name) && described.contains(&p.node) && described.contains(&p.uid),
        "describe pod {} on n1: {described}",
        p.name
    );
    eprintln!("logs and describe of {} (on {}) through n1", p.name, p.node);
    Ok(())
}

fn node_index(name: &str) -> Result<usize> {
    name.strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("not a test node: {name}"))
}

/// The network namespace of the pod with address `ip` on node `i`.
fn pod_netns(c: &Cluster, i: usize, ip_addr: &str) -> Result<String> {
    let prefix = format!("{}-{i}-", c.bed.run_id);
    for ns in netns_with_prefix(&prefix) {
        let addrs = ip(&["-n", &ns, "-4", "-o", "addr", "show"]).unwrap_or_default();
        if addrs.contains(&format!("inet {ip_addr}/")) {
            return Ok(ns);
        }
    }
    bail!("no network namespace with {ip_addr} on {}", node_name(i))
}

/// busybox `wget` inside `netns` (coreutils' timeout: busybox's own -T crashes here).
fn wget_in(netns: &str, url: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "timeout", "3", "busybox", "wget", "-q", "-O", "-", url,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pods_reach_pods_on_other_nodes(c: &Cluster) -> Result<()> {
    let pods = web_pods(&c.agents[0])?;
    let from = pods
        .iter()
        .find(|p| p.node == "n0")
        .context("no pod on n0")?;
    let from_ns = pod_netns(c, 0, from.ip.as_deref().context("no IP")?)?;
    // One pod on each other segment's node and one on the same segment.
    for target_node in ["n1", "n4"] {
        let to = pods
            .iter()
            .find(|p| p.node == target_node)
            .with_context(|| format!("no pod on {target_node}"))?;
        let url = format!("http://{}:8080/", to.ip.as_deref().context("no IP")?);
        let (body, took) = wait_for(&format!("{} -> {url}", from.name), WAIT, POLL, || {
            Ok(wget_in(&from_ns, &url))
        })?;
        ensure!(
            body.trim() == format!("served-by-{}", to.name),
            "{url} answered {body:?}"
        );
        eprintln!(
            "{} on n0 reached {} on {target_node} after {took:?}",
            from.name, to.name
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Self-healing, conflicting edits, coming back

fn kill_the_dropping_node_edit_elsewhere_restart(
    c: &mut Cluster,
    desired: usize,
    subnets: &[String],
) -> Result<usize> {
    let victim = 2;
    let others: Vec<usize> = all().into_iter().filter(|i| *i != victim).collect();
    let before = web_pods(&c.agents[0])?;
    ensure!(
        before.iter().any(|p| p.node == node_name(victim)),
        "n2 runs no web pod: {}",
        pod_summary(&before)
    );
    c.agents[victim].kill9()?;
    let killed = Instant::now();
    let (pods, took) = wait_exact(c, &others, &others, desired, WAIT)?;
    eprintln!(
        "kill -9 of n2: {desired} Running on the other nodes after {took:?}: {}",
        pod_summary(&pods)
    );
    ensure!(
        took < Duration::from_secs(10),
        "replacements took {took:?} with the default 1 s eviction delay (target: under 5 s)"
    );
    wait_version(c, &others, Some(("1", desired as u64)), WAIT)?;

    // Conflicting edits on two other nodes: the later one wins everywhere.
    c.agents[1].write_manifest(FILE, &web(desired, 2))?;
    wait_version(c, &others, Some(("2", desired as u64)), WAIT)?;
    let desired = desired - 1;
    c.agents[3].write_manifest(FILE, &web(desired, 3))?;
    let took = wait_version(c, &others, Some(("3", desired as u64)), WAIT)?;
    eprintln!("edits on n1 then n3: the newer everywhere after {took:?}");
    let (_, took) = wait_exact(c, &others, &others, desired, WAIT)?;
    eprintln!("scaled to {desired} after {took:?}");

    // n2 comes back with its old (unchanged) file and its containers still running.
    let seed = c.agents[0].gossip_addr();
    let token = c.token.clone();
    c.agents[victim].start(Some((seed, Some(&token))))?;
    c.wait_phase(&all(), &names(&all()), "Ready", START)?;
    eprintln!("n2 back after {:?} down", killed.elapsed());
    wait_version(c, &all(), Some(("3", desired as u64)), WAIT)?;
    let (pods, took) = wait_exact(c, &all(), &all(), desired, WAIT)?;
    eprintln!(
        "after n2's return: exactly {desired} after {took:?}: {}",
        pod_summary(&pods)
    );
    stays_exact(c, &all(), &all(), &pods)?;
    wait_leader(c, &all(), "n0", 0, WAIT)?;
    let kept = subnet_of(c, victim)?;
    ensure!(
        kept == subnets[victim],
        "n2's pod subnet changed across the restart: {} -> {kept}",
        subnets[victim]
    );
    Ok(desired)
}

// ---------------------------------------------------------------------------------------------
// Edge autonomy: cut off, partition

/// Kills the first process in `netns` (the pod's container: httpd).
fn crash_container(netns: &str) -> Result<i32> {
    let pids = ip(&["netns", "pids", netns])?;
    let pid: i32 = pids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .next()
        .with_context(|| format!("no process in {netns}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    Ok(pid)
}

fn isolated_node_keeps_its_pods(c: &mut Cluster, desired: usize) -> Result<()> {
    let cut = 4;
    let others: Vec<usize> = all().into_iter().filter(|i| *i != cut).collect();
    let mine: Vec<PodRow> = web_pods(&c.agents[cut])?
        .into_iter()
        .filter(|p| p.node == node_name(cut))
        .collect();
    ensure!(!mine.is_empty(), "n4 runs no web pod");
    c.bed.set_node_link(cut, false)?;
    let cut_at = Instant::now();
    let outcome = (|| -> Result<()> {
        let (_, took) = wait_exact(c, &others, &others, desired, WAIT)?;
        eprintln!("n4 cut off: {desired} Running on the others after {took:?}");
        // Meanwhile n4 keeps its pods, and restarts one that crashes.
        let now = web_pods(&c.agents[cut])?;
        for p in &mine {
            ensure!(
                now.iter()
                    .any(|q| q.uid == p.uid && q.phase == "Running" && !q.deleting),
                "cut-off n4 no longer runs {}: {}",
                p.name,
                pod_summary(&now)
            );
        }
        let victim = &mine[0];
        let ns = pod_netns(c, cut, victim.ip.as_deref().context("no IP")?)?;
        let pid = crash_container(&ns)?;
        let (_, took) = wait_for(
            "the crashed container restarted on cut-off n4",
            WAIT,
            POLL,
            || {
                Ok(web_pods(&c.agents[cut])?.into_iter().find(|q| {
                    q.uid == victim.uid && q.restarts > victim.restarts && q.phase == "Running"
                }))
            },
        )?;
        eprintln!(
            "cut-off n4 restarted {} (pid {pid} killed) after {took:?}",
            victim.name
        );
        // Alone, n4 is a minority (1 of 5 last seen Ready): it keeps what it ran and places
        // nothing else, and says so; rebooted without network (agent, containers, pod
        // namespaces, bridge gone), it starts again what it was last assigned, from its store.
        wait_until(
            "cut-off n4's status to say it is a minority",
            WAIT,
            POLL,
            || {
                Ok(c.agents[cut]
                    .cli(&["status"])?
                    .contains("1 of 5 nodes last seen Ready"))
            },
        )?;
        let kept = mine.len();
        let (before, _) = wait_exact(c, &[cut], &[cut], kept, WAIT)?;
        ensure!(
            uids(&before) == uids(&mine),
            "cut-off n4 changed its pods: {}",
            pod_summary(&before)
        );
        eprintln!("cut-off n4 keeps its {kept} pods and places no others");
        let seed = c.agents[0].gossip_addr();
        let token = c.token.clone();
        c.agents[cut].simulate_reboot()?;
        let left = netns_with_prefix(&format!("{}-{cut}-", c.bed.run_id));
        ensure!(
            left.is_empty(),
            "pod namespaces survived the reboot: {left:?}"
        );
        c.agents[cut].start(Some((seed, Some(&token))))?;
        let rebooted = Instant::now();
        let want: BTreeSet<&str> = before.iter().map(|p| p.name.as_str()).collect();
        // Running as listed, and really serving (new containers, new namespaces).
        let node_ns = c.bed.nodes[cut].netns.clone();
        wait_until(
            "rebooted n4 to run what it was last assigned",
            WAIT,
            POLL,
            || {
                let Some(now) = exactly_running(&c.agents[cut], &[cut], kept)? else {
                    return Ok(false);
                };
                if now.iter().map(|p| p.name.as_str()).collect::<BTreeSet<_>>() != want {
                    return Ok(false);
                }
                Ok(now.iter().all(|p| {
                    let url = format!("http://{}:8080/", p.ip.as_deref().unwrap_or("-"));
                    wget_in(&node_ns, &url)
                        .is_some_and(|b| b.trim() == format!("served-by-{}", p.name))
                }))
            },
        )
        .map_err(|e| e.context(listing(c, &[cut])))?;
        eprintln!(
            "n4 rebooted without network: its {kept} pods Running again after {:?}",
            rebooted.elapsed()
        );
        Ok(())
    })();
    c.bed.set_node_link(cut, true)?;
    outcome?;
    let healed = Instant::now();
    let (pods, took) = wait_exact(c, &all(), &all(), desired, WAIT)?;
    wait_leader(c, &all(), "n0", 0, WAIT)?;
    eprintln!(
        "n4 back after {:?} cut: exactly {desired} after {took:?} ({:?} since link up): {}",
        cut_at.elapsed(),
        healed.elapsed(),
        pod_summary(&pods)
    );
    stays_exact(c, &all(), &all(), &pods)?;
    Ok(())
}

fn partition_two_three_then_heal(c: &Cluster, desired: usize) -> Result<()> {
    let (left, right) = (vec![0, 1], vec![2, 3, 4]);
    let before = web_pods(&c.agents[0])?;
    c.bed.set_trunk(1, false)?;
    let cut = Instant::now();
    let outcome = (|| -> Result<()> {
        let mut held = Vec::new();
        c.wait_phase(&left, &names(&right), "NotReady", WAIT)?;
        c.wait_phase(&right, &names(&left), "NotReady", WAIT)?;
        wait_leader(c, &right, "n2", 0, WAIT)?;
        // The majority (n2 n3 n4) places what the minority ran; the minority (n0 n1) keeps
        // exactly what it ran and places nothing.
        for side in [&left, &right] {
            let side_names = names(side);
            let count = if side == &left {
                before
                    .iter()
                    .filter(|p| side_names.contains(&p.node))
                    .count()
            } else {
                desired
            };
            let (pods, took) = wait_exact(c, side, side, count, WAIT)?;
            for p in before.iter().filter(|p| side_names.contains(&p.node)) {
                ensure!(
                    pods.iter().any(|q| q.uid == p.uid),
                    "{} stopped on its own side during the partition",
                    p.name
                );
            }
            // Serving: a pod answers another pod of its side on another node.
            let from = &pods[0];
            let to = pods
                .iter()
                .find(|q| q.node != from.node)
                .context("a side's pods all on one node")?;
            let from_ns = pod_netns(c, node_index(&from.node)?, from.ip.as_deref().unwrap_or(""))?;
            let url = format!("http://{}:8080/", to.ip.as_deref().unwrap_or(""));
            wait_for(
                &format!("{} -> {url} inside the side", from.name),
                WAIT,
                POLL,
                || {
                    Ok(wget_in(&from_ns, &url)
                        .filter(|b| b.trim() == format!("served-by-{}", to.name)))
                },
            )?;
            eprintln!(
                "partition: side {side_names:?} runs {count} after {took:?}, {} answers {}: {}",
                to.name,
                from.name,
                pod_summary(&pods)
            );
            held.push((side, pods));
        }
        // Hold the cut for a minute, as a real outage would: each side keeps running the
        // same pods the whole time (nothing stopped, nothing replaced again).
        while cut.elapsed() < PARTITION {
            for (side, kept) in &held {
                let (pods, _) = wait_exact(c, side, side, kept.len(), WAIT)?;
                ensure!(
                    uids(&pods) == uids(kept),
                    "side {:?} changed its pods {:?} into the partition: {}",
                    names(side),
                    cut.elapsed(),
                    pod_summary(&pods)
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        eprintln!("partition held {:?}", cut.elapsed());
        Ok(())
    })();
    c.bed.set_trunk(1, true)?;
    outcome?;
    let healed = Instant::now();
    // One poll for both (and when each first held, to tell slow membership from slow work).
    let mut firsts: BTreeMap<&str, Duration> = BTreeMap::new();
    let (pods, took) = wait_for(
        "one leader and exactly the desired replicas after the heal",
        WAIT,
        POLL,
        || {
            let ready = c
                .agents
                .iter()
                .map(|a| a.nodes())
                .collect::<Result<Vec<_>>>()?
                .iter()
                .all(|rows| rows.iter().all(|r| r.phase == "Ready"));
            let leaders: BTreeSet<(Option<String>, u64)> =
                c.agents.iter().map(leader_term).collect::<Result<_>>()?;
            let one_leader =
                leaders.len() == 1 && leaders.iter().all(|(l, _)| l.as_deref() == Some("n0"));
            let mut exact: Option<Vec<PodRow>> = None;
            for (i, agent) in c.agents.iter().enumerate() {
                let pods = exactly_running(agent, &all(), desired)?;
                match (&exact, pods) {
                    (_, None) => {
                        exact = None;
                        break;
                    }
                    (None, Some(p)) if i == 0 => exact = Some(p),
                    (Some(first), Some(p)) if uids(first) == uids(&p) => {}
                    _ => {
                        exact = None;
                        break;
                    }
                }
            }
            for (what, holds) in [
                ("all Ready", ready),
                ("one leader", one_leader),
                ("exact replicas", exact.is_some()),
            ] {
                if holds {
                    firsts.entry(what).or_insert_with(|| healed.elapsed());
                }
            }
            Ok(exact.filter(|_| one_leader))
        },
    )
    .map_err(|e| e.context(listing(c, &all())))?;
    eprintln!(
        "healed: one leader and exactly {desired} after {took:?} (first held: {firsts:?}): {}",
        pod_summary(&pods)
    );
    ensure!(
        took <= Duration::from_secs(10),
        "convergence after the heal took {took:?} (limit 10 s; first held: {firsts:?}: \
         \"all Ready\" late means membership recovered late, the rest is the cluster layer)"
    );
    stays_exact(c, &all(), &all(), &pods)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Leader failover

fn kill_the_leader_then_restart(c: &mut Cluster, desired: usize) -> Result<()> {
    let (_, term) = leader_term(&c.agents[0])?;
    let rest: Vec<usize> = (1..N).collect();
    c.agents[0].kill9()?;
    let killed = Instant::now();
    let next = wait_leader(c, &rest, "n1", term, WAIT)?;
    ensure!(next > term, "term {term} -> {next} with a new leader");
    let (_, took) = wait_exact(c, &rest, &rest, desired, WAIT)?;
    eprintln!(
        "kill -9 of the leader n0: n1 leads (term {next}), {desired} Running on the others after {took:?}"
    );
    c.agents[0].start(None)?;
    c.wait_phase(&all(), &names(&all()), "Ready", START)?;
    let back = wait_leader(c, &all(), "n0", next, WAIT)?;
    ensure!(back > next, "term {next} -> {back} with n0 back");
    let (pods, took) = wait_exact(c, &all(), &all(), desired, WAIT)?;
    stays_exact(c, &all(), &all(), &pods)?;
    eprintln!(
        "n0 back after {:?}: leads again (term {back}), exactly {desired} after {took:?}: {}",
        killed.elapsed(),
        pod_summary(&pods)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Drain and uncordon (through the node's own socket)

fn drain_the_leader_then_uncordon(c: &Cluster, desired: usize) -> Result<()> {
    let (_, term) = leader_term(&c.agents[0])?;
    let rest: Vec<usize> = (1..N).collect();
    let started = Instant::now();
    c.agents[0].cli(&["drain", "n0", "--timeout", "30s"])?;
    let drained = started.elapsed();
    // A cordoned node cannot lead: n1 takes over with a higher term, n0's pods run elsewhere.
    let (pods, _) = wait_exact(c, &all(), &rest, desired, WAIT)?;
    let drained_term = wait_leader(c, &all(), "n1", term, WAIT)?;
    ensure!(
        drained_term > term,
        "term {term} -> {drained_term} with a new leader"
    );
    eprintln!(
        "drain n0 returned after {drained:?}: leader n1, term {drained_term}: {}",
        pod_summary(&pods)
    );
    c.agents[0].cli(&["uncordon", "n0"])?;
    let back_term = wait_leader(c, &all(), "n0", drained_term, WAIT)?;
    ensure!(
        back_term > drained_term,
        "term {drained_term} -> {back_term} with n0 back"
    );
    // Placement is stable: nothing moves back to n0.
    stays_exact(c, &all(), &rest, &pods)?;
    eprintln!("uncordon n0: leader n0 again, term {back_term}, no pod moved");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deletion

fn delete_is_cluster_wide_and_not_resurrected(c: &mut Cluster) -> Result<()> {
    // n1 holds an older file it declared (edit 2) and goes down with it; n3 wrote the newest
    // version: removing n3's file deletes the object on every node.
    let down = 1;
    let up: Vec<usize> = all().into_iter().filter(|i| *i != down).collect();
    c.agents[down].kill9()?;
    c.agents[3].remove_manifest(FILE)?;
    let took = wait_version(c, &up, None, WAIT)?;
    let up_names = names(&up);
    let (_, gone) = wait_for("no web pod on the live nodes", WAIT, POLL, || {
        for &i in &up {
            if web_pods(&c.agents[i])?
                .iter()
                .any(|p| up_names.contains(&p.node))
            {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    eprintln!("file removed on n3: web gone on every node after {took:?}, its pods after {gone:?}");
    // n1 restarts with its old, unchanged copy of the file (and its containers still running):
    // the object stays deleted everywhere, n1 drops it and stops its pods.
    let seed = c.agents[0].gossip_addr();
    let token = c.token.clone();
    c.agents[down].start(Some((seed, Some(&token))))?;
    let restarted = Instant::now();
    // Until every node lists neither web nor a web pod: no live node may hold web again.
    loop {
        for &i in &up {
            ensure!(
                web_version(&c.agents[i])?.is_none(),
                "web came back on n{i} after n1 restarted with its old file"
            );
        }
        let mut clear = true;
        for agent in &c.agents {
            clear &= agent.nodes().is_ok()
                && web_version(agent)?.is_none()
                && web_pods(agent)?.is_empty();
        }
        if clear {
            break;
        }
        if restarted.elapsed() > WAIT {
            bail!(
                "n1 did not drop web within {WAIT:?} of its restart:\n{}",
                listing(c, &all())
            );
        }
        std::thread::sleep(POLL);
    }
    let took = restarted.elapsed();
    c.wait_phase(&all(), &names(&all()), "Ready", START)?;
    let until = Instant::now() + STEADY;
    while Instant::now() < until {
        for (i, agent) in c.agents.iter().enumerate() {
            ensure!(
                web_version(agent)?.is_none(),
                "web came back on n{i} after n1 restarted with its old file"
            );
            let pods = web_pods(agent)?;
            ensure!(
                pods.is_empty(),
                "web pods again on n{i} after n1 restarted: {}",
                pod_summary(&pods)
            );
        }
        std::thread::sleep(POLL);
    }
    eprintln!("n1 restarted with its old file: every node clear after {took:?}, web stays deleted");
    Ok(())
}

/// The end of every agent's log, for a failed run.
fn dump(c: &Cluster) {
    for agent in &c.agents {
        let log = agent.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        eprintln!(
            "--- {} log (last {} lines) ---\n{}",
            agent.name,
            tail.len(),
            tail.join("\n")
        );
    }
}

//! The `web` Deployment on a cluster of five real agents with real pods: the cluster (two
//! bridged segments, n0 n1 | n2 n3 n4, so the trunk between them is the 2|3 cut; pod subnets
//! from 198.19.0.0/16; nothing leaves the machine), the manifests, and the waits and checks the
//! `cluster_*` scenarios in tests/tests share. Each scenario starts its own cluster with
//! [`deployed`], so a failure in one never hides another.

use crate::agent::{Agent, PodOptions};
use crate::bed::{TestBed, ip};
use crate::cleanup::netns_with_prefix;
use crate::cluster::{Cluster, node_name};
use crate::pods::{PodRow, TEST_IMAGE};
use crate::poll::{wait_for, wait_until};
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Nodes in every scenario's cluster.
pub const N: usize = 5;
/// Deadline for agents to start and be Ready everywhere.
pub const START: Duration = Duration::from_secs(60);
/// Deadline of every other wait (generous: a loaded 2-core machine runs these).
pub const WAIT: Duration = Duration::from_secs(40);
/// Poll interval of the waits.
pub const POLL: Duration = Duration::from_millis(100);
/// How long the 2|3 partition lasts.
pub const PARTITION: Duration = Duration::from_secs(60);
/// How long a converged state must hold to count as "no flapping".
pub const STEADY: Duration = Duration::from_secs(3);
pub const OWNER: &str = "Deployment/web";
pub const FILE: &str = "web.yaml";

/// The `web` Deployment (an httpd answering `served-by-<pod>` on 8080) with an `edit` mark.
pub fn web(replicas: usize, edit: u32) -> String {
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
pub fn big() -> String {
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

/// Every node index.
pub fn all() -> Vec<usize> {
    (0..N).collect()
}

/// Node names of indexes.
pub fn names(idx: &[usize]) -> Vec<String> {
    idx.iter().copied().map(node_name).collect()
}

/// Starts the five-node cluster with pod networking and the test image on every node, then
/// runs `scenario` on it; on failure the end of every agent's log is printed.
pub fn with_cluster(scenario: impl FnOnce(&mut Cluster) -> Result<()>) -> Result<()> {
    let bed = TestBed::new(&[0, 0, 1, 1, 1])?;
    let started = Instant::now();
    let mut cluster = Cluster::start_with(bed, N, Some(PodOptions::default()), START)?;
    eprintln!("{N} agents Ready everywhere after {:?}", started.elapsed());
    let outcome = (|| {
        for agent in &cluster.agents {
            agent.import_test_image()?;
        }
        scenario(&mut cluster)
    })();
    if let Err(e) = &outcome {
        eprintln!("FAILED: {e:#}");
        dump(&cluster);
    }
    eprintln!("whole run: {:?}", started.elapsed());
    outcome
}

/// [`with_cluster`], with `web` (edit 1, `desired` replicas) dropped on n2 and Running on
/// every node: spread so that each node runs at least one pod when `desired` >= N.
pub fn deployed(
    desired: usize,
    scenario: impl FnOnce(&mut Cluster, usize) -> Result<()>,
) -> Result<()> {
    with_cluster(|c| {
        wait_leader(c, &all(), "n0", 0, WAIT)?;
        c.agents[2].write_manifest(FILE, &web(desired, 1))?;
        wait_version(c, &all(), Some(("1", desired as u64)), WAIT)?;
        let (pods, took) = wait_exact(c, &all(), &all(), desired, WAIT)?;
        eprintln!(
            "web: {desired} Running after {took:?}: {}",
            pod_summary(&pods)
        );
        scenario(c, desired)
    })
}

/// Each node's pod subnet: the address on its bridge (gateway of the subnet) in its namespace.
pub fn subnet_of(c: &Cluster, i: usize) -> Result<String> {
    let out = ip(&["-n", &c.bed.nodes[i].netns, "-4", "-o", "addr", "show"])?;
    out.lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .find(|a| a.starts_with("198.19."))
        .map(network_of)
        .with_context(|| format!("no pod subnet address on {}: {out}", node_name(i)))
}

/// `198.19.3.1/24` -> `198.19.3.0/24`.
pub fn network_of(cidr: &str) -> String {
    let (addr, _) = cidr.split_once('/').unwrap_or((cidr, ""));
    let octets: Vec<&str> = addr.split('.').collect();
    format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2])
}

pub fn web_pods(agent: &Agent) -> Result<Vec<PodRow>> {
    Ok(agent
        .pods()?
        .into_iter()
        .filter(|p| p.owner.as_deref() == Some(OWNER))
        .collect())
}

/// The `edit` annotation and replica count of `web` on `agent` (None: no such deployment).
pub fn web_version(agent: &Agent) -> Result<Option<(String, u64)>> {
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
pub fn wait_version(
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
pub fn exactly_running(
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

pub fn pod_summary(pods: &[PodRow]) -> String {
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
pub fn wait_exact(
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

pub fn uids(pods: &[PodRow]) -> BTreeSet<&str> {
    pods.iter().map(|p| p.uid.as_str()).collect()
}

/// Every observer's view of the web pods, for failure messages.
pub fn listing(c: &Cluster, observers: &[usize]) -> String {
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
pub fn namespaces_match(c: &Cluster, pods: &[PodRow]) -> Result<()> {
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
pub fn stays_exact(
    c: &Cluster,
    observers: &[usize],
    hosts: &[usize],
    pods: &[PodRow],
) -> Result<()> {
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
pub fn leader_term(agent: &Agent) -> Result<(Option<String>, u64)> {
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
pub fn wait_leader(
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

pub fn node_index(name: &str) -> Result<usize> {
    name.strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("not a test node: {name}"))
}

/// The network namespace of the pod with address `ip` on node `i`.
pub fn pod_netns(c: &Cluster, i: usize, ip_addr: &str) -> Result<String> {
    let prefix = format!("{}-{i}-", c.bed.run_id);
    for ns in netns_with_prefix(&prefix) {
        let addrs = ip(&["-n", &ns, "-4", "-o", "addr", "show"]).unwrap_or_default();
        if addrs.contains(&format!("inet {ip_addr}/")) {
            return Ok(ns);
        }
    }
    bail!("no network namespace with {ip_addr} on {}", node_name(i))
}

/// Waits until every node has a pod subnet of its own, routed on every other node via that
/// node's address; returns them by node.
pub fn pod_subnets_are_distinct_and_routed(c: &Cluster) -> Result<Vec<String>> {
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

pub use skiff_test_support::net::wget_in;

/// Kills the first process in `netns` (the pod's container: httpd).
pub fn crash_container(netns: &str) -> Result<i32> {
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

/// The end of every agent's log, for a failed run.
pub fn dump(c: &Cluster) {
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

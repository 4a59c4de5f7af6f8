//! A Deployment on a cluster of five real agents with real pods: dropped on one node it is on
//! every node within seconds, spread and Running, under one leader (the lowest name) and term,
//! and a workload that fits nowhere is pending with the reason; any node lists, shows the logs
//! of and describes a pod it does not run; pod subnets are distinct per node and routed between
//! nodes, and a pod reaches pods on other nodes (same segment and across the trunk).
//!
//! Needs root, iproute2, nsenter (util-linux) and busybox-static. The `skiff` binary comes from
//! `SKIFF_BIN` or `target/debug/skiff`. Each test starts its own five-node cluster (see
//! `skiff_tests::web`), so an early failure hides nothing; every wait is a deadline-bounded
//! poll, and the bed's guard removes agents, containers, mounts, namespaces and cgroups even
//! when a test fails.

use anyhow::{Context, Result, ensure};
use skiff_tests::cluster::Cluster;
use skiff_tests::poll::{wait_for, wait_until};
use skiff_tests::web::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[test]
fn deployment_reaches_every_node_spread_under_one_leader() -> Result<()> {
    with_cluster(|c| deployment_reaches_every_node_and_spreads(c, 6))
}

#[test]
fn any_node_lists_logs_and_describes_any_pod() -> Result<()> {
    deployed(6, |c, _| remote_listing_logs_and_describe(c))
}

#[test]
fn pod_subnets_are_routed_and_pods_reach_pods_on_other_nodes() -> Result<()> {
    deployed(6, |c, _| {
        pod_subnets_are_distinct_and_routed(c)?;
        pods_reach_pods_on_other_nodes(c)
    })
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

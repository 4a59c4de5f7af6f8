//! Cluster membership with real `skiff agent` processes, five nodes, each in its own network
//! namespace on a bridge the test makes (198.18.1.0/24, nothing leaves the machine). Needs root
//! and iproute2; the `skiff` binary comes from `SKIFF_BIN` or `target/debug/skiff` (built if
//! missing). Every wait is a deadline-bounded poll of `skiff get nodes -o json`.

use anyhow::{Context, Result, ensure};
use skiff_tests::agent::{Agent, phase_of};
use skiff_tests::bed::TestBed;
use skiff_tests::cluster::{Cluster, node_name, summary, wait_api};
use std::time::{Duration, Instant};

const N: usize = 5;
const START: Duration = Duration::from_secs(40);
const CONVERGE: Duration = Duration::from_secs(20);

fn all() -> Vec<usize> {
    (0..N).collect()
}

fn names(idx: &[usize]) -> Vec<String> {
    idx.iter().copied().map(node_name).collect()
}

#[test]
fn join_with_token_then_wrong_token_and_foreign_ca_are_refused() -> Result<()> {
    // Nodes 0-4: the cluster; 5: a joiner with a wrong token; 6: a node of another cluster.
    let cluster = Cluster::start(TestBed::flat(N + 2)?, N, START)?;
    eprintln!("5 nodes joined: {}", cluster.describe(&all()));
    for agent in &cluster.agents {
        let rows = agent.nodes()?;
        ensure!(rows.len() == N, "{} lists {}", agent.name, summary(&rows));
    }

    // A wrong token: the joiner exits with a clear error, the refusing node keeps working.
    let real = cluster.token.clone();
    let wrong = corrupt(&real);
    let mut intruder = Agent::new(&cluster.bed, N, "intruder")?;
    intruder.start(Some((cluster.agents[0].gossip_addr(), Some(&wrong))))?;
    let (status, _) = skiff_tests::poll::wait_for(
        "the wrong-token joiner to exit",
        CONVERGE,
        Duration::from_millis(100),
        || intruder.try_exit(),
    )?;
    let log = intruder.log();
    eprintln!("wrong token: exit {status}; output:\n{log}");
    ensure!(!status.success(), "a wrong token was accepted");
    let lower = log.to_lowercase();
    ensure!(
        lower.contains("token")
            && (lower.contains("refus") || lower.contains("invalid") || lower.contains("reject")),
        "the refusal does not say the token was refused: {log}"
    );
    cluster.wait_phase(&all(), &names(&all()), "Ready", CONVERGE)?;
    for agent in &cluster.agents {
        let rows = agent.nodes()?;
        ensure!(
            phase_of(&rows, "intruder").is_none(),
            "intruder listed on {}",
            agent.name
        );
    }
    // The refusing node still issues tokens.
    cluster.agents[0].token()?;

    // A node of another cluster (its own CA) pointed at the cluster: mutual TLS refuses it.
    let mut foreign = Agent::new(&cluster.bed, N + 1, "foreign")?;
    foreign.start(None)?;
    wait_api(&mut foreign, START)?;
    foreign.terminate(Duration::from_secs(10))?;
    // Restarted with its own identity and a cluster node as seed: it gossips with its foreign cert.
    foreign.start(Some((cluster.agents[1].gossip_addr(), None)))?;
    wait_api(&mut foreign, START)?;
    // Long enough for several gossip rounds (500 ms each) toward the seed, polled throughout.
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        for agent in &cluster.agents {
            let rows = agent.nodes()?;
            ensure!(
                phase_of(&rows, "foreign").is_none(),
                "foreign node listed on {}",
                agent.name
            );
        }
        let theirs = foreign.nodes()?;
        ensure!(
            theirs.iter().all(|r| r.name == "foreign"),
            "the foreign node learned about the cluster: {}",
            summary(&theirs)
        );
    }
    let seed = cluster.agents[1].gossip_addr().to_string();
    let log = foreign.log();
    let tried: Vec<&str> = log.lines().filter(|l| l.contains(&seed)).collect();
    eprintln!(
        "foreign node's log lines about its seed {seed}:\n{}",
        tried.join("\n")
    );
    ensure!(
        !tried.is_empty(),
        "the foreign node never tried its seed: {log}"
    );
    cluster.wait_phase(&all(), &names(&all()), "Ready", CONVERGE)?;
    Ok(())
}

/// The token with one character of its secret changed: same id and pinned CA, wrong secret.
/// The token is `skiff1.` + base64(id 8 bytes | secret 32 | CA fingerprint 32); base64
/// characters 12..52 of the body encode secret bytes only.
fn corrupt(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = "skiff1.".len() + 20;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn kill_restart_and_graceful_leave() -> Result<()> {
    let mut cluster = Cluster::start(TestBed::flat(N)?, N, START)?;
    let victim = N - 1;
    let others: Vec<usize> = (0..victim).collect();
    let old_generation = generation_on(&cluster, 0, victim)?;

    // A runtime label on the victim reaches every node; another node's labels are refused.
    cluster.agents[victim].cli(&["label", "node", &node_name(victim), "zone=edge-a"])?;
    let took = wait_label(&cluster, &all(), victim, "zone", Some("edge-a"))?;
    eprintln!(
        "label on {}: on all {N} nodes after {took:?}",
        node_name(victim)
    );
    let wide = cluster.agents[0].cli(&["get", "nodes", "-o", "wide"])?;
    ensure!(wide.contains("zone=edge-a"), "get nodes -o wide: {wide}");
    let refused = cluster.agents[victim]
        .cli(&["label", "node", &node_name(0), "zone=b"])
        .expect_err("labelling another node through this one must fail");
    ensure!(
        format!("{refused:#}").contains("not this node"),
        "unclear refusal: {refused:#}"
    );

    cluster.agents[victim].kill9()?;
    let took = cluster.wait_phase(
        &others,
        &names(&[victim]),
        "NotReady",
        Duration::from_secs(15),
    )?;
    eprintln!(
        "kill -9 of {}: NotReady on all {} others after {took:?}",
        node_name(victim),
        others.len()
    );
    ensure!(
        took < Duration::from_secs(5),
        "failure detection took {took:?} (limit 5 s)"
    );
    cluster.wait_phase(&others, &names(&others), "Ready", CONVERGE)?;

    // Restart: Ready again everywhere, a newer generation, listed once.
    cluster.agents[victim].start(None)?;
    cluster.wait_phase(&all(), &names(&all()), "Ready", START)?;
    for agent in &cluster.agents {
        let rows = agent.nodes()?;
        let listed: Vec<_> = rows
            .iter()
            .filter(|r| r.name == node_name(victim))
            .collect();
        ensure!(
            listed.len() == 1,
            "{} lists the restarted node {} times: {}",
            agent.name,
            listed.len(),
            summary(&rows)
        );
        ensure!(
            listed[0].generation > old_generation,
            "{} lists generation {} after restart (before: {old_generation})",
            agent.name,
            listed[0].generation
        );
        ensure!(rows.len() == N, "{} lists {}", agent.name, summary(&rows));
    }
    // The label was persisted in the victim's data dir: the new generation carries it.
    wait_label(&cluster, &all(), victim, "zone", Some("edge-a"))?;
    cluster.agents[victim].cli(&["label", "node", &node_name(victim), "zone-"])?;
    wait_label(&cluster, &all(), victim, "zone", None)?;

    // Graceful leave: Left on every other node.
    let leaver = N - 2;
    let remaining: Vec<usize> = (0..N).filter(|i| *i != leaver).collect();
    let status = cluster.agents[leaver].terminate(Duration::from_secs(15))?;
    ensure!(status.success(), "SIGTERM exit status {status}");
    let took = cluster.wait_phase(&remaining, &names(&[leaver]), "Left", CONVERGE)?;
    eprintln!(
        "SIGTERM of {}: Left on all others after {took:?}",
        node_name(leaver)
    );
    cluster.wait_phase(&remaining, &names(&remaining), "Ready", CONVERGE)?;
    Ok(())
}

/// Polls `get nodes -o json` on every observer until `target`'s label `key` is `value`.
fn wait_label(
    cluster: &Cluster,
    observers: &[usize],
    target: usize,
    key: &str,
    value: Option<&str>,
) -> Result<Duration> {
    let name = node_name(target);
    let ((), took) = skiff_tests::poll::wait_for(
        &format!("label {key}={value:?} of {name} on every node"),
        CONVERGE,
        Duration::from_millis(50),
        || {
            for &o in observers {
                let out = cluster.agents[o].cli(&["get", "nodes", "-o", "json"])?;
                let list: serde_json::Value = serde_json::from_str(&out)?;
                let seen = list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|n| n["metadata"]["name"] == name.as_str())
                    .and_then(|n| n["metadata"]["labels"][key].as_str().map(str::to_string));
                if seen.as_deref() != value {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;
    Ok(took)
}

fn generation_on(cluster: &Cluster, observer: usize, target: usize) -> Result<u64> {
    let rows = cluster.agents[observer].nodes()?;
    rows.iter()
        .find(|r| r.name == node_name(target))
        .map(|r| r.generation)
        .context("target not listed")
}

#[test]
fn partition_two_three_by_links_down_then_heal() -> Result<()> {
    // Segment 0 holds n0 n1, segment 1 holds n2 n3 n4; the trunk between them is the cut.
    let cluster = Cluster::start(TestBed::new(&[0, 0, 1, 1, 1])?, N, START)?;
    let (left, right) = (vec![0, 1], vec![2, 3, 4]);
    cluster.bed.set_trunk(1, false)?;
    let cut_at = Instant::now();
    cluster.wait_phase(&left, &names(&right), "NotReady", CONVERGE)?;
    cluster.wait_phase(&right, &names(&left), "NotReady", CONVERGE)?;
    cluster.wait_phase(&left, &names(&left), "Ready", CONVERGE)?;
    cluster.wait_phase(&right, &names(&right), "Ready", CONVERGE)?;
    eprintln!(
        "partition 2|3 seen on both sides after {:?}: {}",
        cut_at.elapsed(),
        cluster.describe(&all())
    );

    cluster.bed.set_trunk(1, true)?;
    let healed_at = Instant::now();
    cluster.wait_phase(&all(), &names(&all()), "Ready", Duration::from_secs(30))?;
    eprintln!(
        "healed: all 5 Ready everywhere after {:?}",
        healed_at.elapsed()
    );
    Ok(())
}

//! Node names and join tokens with real agents running real pods, each agent in its own network
//! namespace on a bridge the test makes (198.18.1.0/24, pods in 198.19.0.0/16, nothing leaves
//! the machine):
//!
//! 1. an impostor with a valid token and a member's name (`n1`) is refused on both sides, and
//!    nothing moves: n1 stays Ready with the same incarnation, its pods keep their uids;
//! 2. `node remove` of a Ready node is refused without `--force`;
//! 3. the real n1 dies; `node remove n1` asked on another node (forwarded to the issuer) makes
//!    every node forget it, and a replacement device joins as n1 with `--token-file`;
//! 4. `token list` shows ids and states (never a secret), `token revoke` revokes, a ttl over a
//!    year is refused.
//!
//! Needs root, iproute2, nsenter and the busybox test image (`SKIFF_TEST_IMAGE` or built by
//! xtask). Every wait is a deadline-bounded poll; the bed's guard removes agents, containers,
//! mounts, namespaces and cgroups even when the test fails.

use anyhow::{Context, Result, ensure};
use skiff_tests::agent::{Agent, PodOptions, phase_of};
use skiff_tests::bed::TestBed;
use skiff_tests::cluster::{Cluster, POLL, summary, wait_api};
use skiff_tests::pods::TEST_IMAGE;
use skiff_tests::poll::{wait_for, wait_until};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const N: usize = 3;
const START: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(40);
/// How long "nothing moves" is watched after the impostor was refused.
const STEADY: Duration = Duration::from_secs(3);

fn web() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
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
        command: ["sh", "-c", "exec sleep 100000"]
"#
    )
}

/// Running `web` pods by node: name -> uid.
fn running_by_node(agent: &Agent) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut by_node: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for pod in agent.pods()? {
        if pod.phase == "Running" && !pod.deleting && pod.name.starts_with("web-") {
            by_node
                .entry(pod.node)
                .or_default()
                .insert(pod.name, pod.uid);
        }
    }
    Ok(by_node)
}

/// An agent named `name` on bed node `index` with its own dir `dir_name` (a second device
/// that claims a name the cluster already has).
fn device(bed: &TestBed, index: usize, name: &str, dir_name: &str) -> Result<Agent> {
    let mut agent = Agent::new(bed, index, name)?;
    agent.dir = bed.node_dir(dir_name);
    agent.socket = agent.dir.join("api.sock");
    std::fs::create_dir_all(agent.dir.join("manifests"))?;
    agent.pods = Some(PodOptions::default());
    Ok(agent)
}

#[test]
fn a_member_name_is_refused_until_node_remove_frees_it() -> Result<()> {
    // Bed nodes 0-2: the cluster; 3: the impostor; 4: the replacement device.
    let mut cluster =
        Cluster::start_with(TestBed::flat(N + 2)?, N, Some(PodOptions::default()), START)?;
    for agent in &cluster.agents {
        agent.import_test_image()?;
    }
    cluster.agents[0].write_manifest("web.yaml", &web())?;
    let (before, took) = wait_for("3 web pods Running, one per node", WAIT, POLL, || {
        let by_node = running_by_node(&cluster.agents[0])?;
        Ok((by_node.len() == N && by_node.values().all(|p| p.len() == 1)).then_some(by_node))
    })?;
    eprintln!("web spread over {N} nodes after {took:?}: {before:?}");
    let n1 = cluster.agents[0]
        .nodes()?
        .into_iter()
        .find(|r| r.name == "n1")
        .context("n1 listed")?;

    // 1. The impostor: a valid token, the name n1, another device.
    let mut impostor = device(&cluster.bed, N, "n1", "impostor")?;
    impostor.start(Some((
        cluster.agents[0].gossip_addr(),
        Some(&cluster.token),
    )))?;
    let (status, _) = wait_for("the impostor to exit", WAIT, POLL, || impostor.try_exit())?;
    let log = impostor.log();
    eprintln!("impostor: exit {status}; output:\n{log}");
    ensure!(!status.success(), "the impostor was let in");
    ensure!(
        log.contains("node name \"n1\" is already a member of this cluster")
            && log.contains("skiff node remove n1"),
        "the impostor's error does not say why: {log}"
    );
    let issuer_log = cluster.agents[0].log();
    ensure!(
        issuer_log.lines().any(|l| l.contains("WARN")
            && l.contains("join refused: node name \"n1\" is already a member")),
        "the issuer logged no WARN about the refused name: {issuer_log}"
    );
    let watch_until = Instant::now() + STEADY;
    while Instant::now() < watch_until {
        for agent in &cluster.agents {
            let rows = agent.nodes()?;
            let row = rows.iter().find(|r| r.name == "n1");
            ensure!(
                row == Some(&n1),
                "n1 changed on {} after the impostor: {}",
                agent.name,
                summary(&rows)
            );
        }
        let now = running_by_node(&cluster.agents[0])?;
        ensure!(now == before, "pods moved after the impostor: {now:?}");
        std::thread::sleep(POLL);
    }

    // 2. A Ready node is only removed with --force.
    let refused = cluster.agents[2]
        .cli(&["node", "remove", "n1"])
        .expect_err("removing a Ready node must need --force");
    let refused = format!("{refused:#}");
    ensure!(
        refused.contains("is Ready") && refused.contains("--force"),
        "{refused}"
    );

    // 3. The real n1 dies (a reboot that never ends); removed on n2, forwarded to the issuer.
    cluster.agents[1].simulate_reboot()?;
    cluster.wait_phase(&[0, 2], &["n1".to_string()], "NotReady", WAIT)?;
    let out = cluster.agents[2].cli(&["node", "remove", "n1"])?;
    ensure!(out.contains("node/n1 removed"), "{out}");
    wait_until("n1 forgotten on n0 and n2", WAIT, POLL, || {
        Ok([0, 2]
            .iter()
            .all(|o| phase_of(&cluster.agents[*o].nodes().unwrap_or_default(), "n1").is_none()))
    })
    .map_err(|e| e.context(cluster.describe(&[0, 2])))?;

    let mut replacement = device(&cluster.bed, N + 1, "n1", "n1-replacement")?;
    replacement.token_in_file = true;
    replacement.start(Some((
        cluster.agents[0].gossip_addr(),
        Some(&cluster.token),
    )))?;
    wait_api(&mut replacement, START)?;
    let new_addr = replacement.gossip_addr().to_string();
    wait_until("the replacement n1 Ready on every node", WAIT, POLL, || {
        for agent in [&cluster.agents[0], &cluster.agents[2], &replacement] {
            let rows = agent.nodes()?;
            let Some(row) = rows.iter().find(|r| r.name == "n1") else {
                return Ok(false);
            };
            if row.phase != "Ready" || row.address != new_addr {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .map_err(|e| e.context(cluster.describe(&[0, 2])))?;
    ensure!(
        !replacement
            .pid()
            .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .unwrap_or_default()
            .contains("skiff1."),
        "the token shows in the replacement's command line"
    );

    // 4. Tokens through the CLI of the issuer.
    let list = cluster.agents[0].cli(&["token", "list"])?;
    eprintln!("token list:\n{list}");
    let id = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .context("a token row")?
        .to_string();
    ensure!(list.contains("valid"), "{list}");
    ensure!(
        !list.contains(&cluster.token["skiff1.".len()..]),
        "token list shows the token: {list}"
    );
    cluster.agents[0].cli(&["token", "revoke", &id])?;
    let list = cluster.agents[0].cli(&["token", "list"])?;
    ensure!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked")),
        "{list}"
    );
    let too_long = cluster.agents[0]
        .cli(&["token", "create", "--ttl", "400d"])
        .expect_err("a ttl over a year must be refused");
    ensure!(format!("{too_long:#}").contains("365 days"), "{too_long:#}");
    let not_issuer = cluster.agents[2]
        .cli(&["token", "list"])
        .expect_err("only the issuer holds tokens");
    ensure!(
        format!("{not_issuer:#}").contains("node that created the cluster"),
        "{not_issuer:#}"
    );
    Ok(())
}

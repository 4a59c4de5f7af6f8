//! Losing nodes on a cluster of five real agents with real pods: kill -9 of the node a
//! Deployment was dropped on (replacements run elsewhere after the eviction delay, the object
//! stays desired, edits on two other nodes resolve to the newest everywhere, and the node comes
//! back with its old file and subnet: exactly the desired replicas, no flapping, one pod network
//! namespace per listed pod); kill -9 of the leader (the next name leads with a higher term, it
//! comes back and leads again); drain of the leader through its own socket (its pods move, the
//! next node leads; uncordon: it leads again, no pod moves back).
//!
//! Needs root, iproute2, nsenter (util-linux) and busybox-static. The `skiff` binary comes from
//! `SKIFF_BIN` or `target/debug/skiff`. Each test starts its own five-node cluster (see
//! `skiff_tests::web`), so an early failure hides nothing; every wait is a deadline-bounded
//! poll, and the bed's guard removes agents, containers, mounts, namespaces and cgroups even
//! when a test fails.

use anyhow::{Result, ensure};
use skiff_tests::cluster::{Cluster, node_name};
use skiff_tests::web::*;
use std::time::{Duration, Instant};

#[test]
fn killed_node_is_replaced_edits_resolve_and_it_comes_back() -> Result<()> {
    deployed(6, |c, desired| {
        let subnets = pod_subnets_are_distinct_and_routed(c)?;
        kill_the_dropping_node_edit_elsewhere_restart(c, desired, &subnets).map(|_| ())
    })
}

#[test]
fn killed_leader_hands_over_and_leads_again_on_its_return() -> Result<()> {
    deployed(6, kill_the_leader_then_restart)
}

#[test]
fn drained_leader_hands_over_and_uncordon_moves_nothing_back() -> Result<()> {
    deployed(6, |c, desired| drain_the_leader_then_uncordon(c, desired))
}

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

//! Deleting on a cluster of five real agents with real pods: removing the file that holds the
//! newest version of a Deployment deletes it on every node, and a node that was down meanwhile
//! and restarts with its old copy of the file does not bring it back, and stops its pods.
//!
//! Needs root, iproute2, nsenter (util-linux) and busybox-static. The `skiff` binary comes from
//! `SKIFF_BIN` or `target/debug/skiff`. Each test starts its own five-node cluster (see
//! `skiff_tests::web`), so an early failure hides nothing; every wait is a deadline-bounded
//! poll, and the bed's guard removes agents, containers, mounts, namespaces and cgroups even
//! when a test fails.

use anyhow::{Result, bail, ensure};
use skiff_tests::cluster::Cluster;
use skiff_tests::poll::wait_for;
use skiff_tests::web::*;
use std::time::Instant;

#[test]
fn delete_is_cluster_wide_and_not_resurrected_by_an_old_copy() -> Result<()> {
    deployed(6, |c, desired| {
        // Three copies of the file: n2 edit 1 (from `deployed`), n1 edit 2, n3 edit 3 (newest).
        c.agents[1].write_manifest(FILE, &web(desired, 2))?;
        wait_version(c, &all(), Some(("2", desired as u64)), WAIT)?;
        c.agents[3].write_manifest(FILE, &web(desired, 3))?;
        wait_version(c, &all(), Some(("3", desired as u64)), WAIT)?;
        delete_is_cluster_wide_and_not_resurrected(c)
    })
}

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

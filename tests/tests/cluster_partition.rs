//! Edge autonomy on a cluster of five real agents with real pods: a node cut off from all peers
//! keeps (and restarts) its pods and places nothing else (1 of 5 is a minority), and rebooted
//! without network starts what it was last assigned; a 2|3 partition for a minute: the minority
//! keeps exactly its pods and serves, the majority runs the desired replicas, and after the heal
//! there is one leader and exactly the desired replicas within 10 s.
//!
//! Needs root, iproute2, nsenter (util-linux) and busybox-static. The `skiff` binary comes from
//! `SKIFF_BIN` or `target/debug/skiff`. Each test starts its own five-node cluster (see
//! `skiff_tests::web`), so an early failure hides nothing; every wait is a deadline-bounded
//! poll, and the bed's guard removes agents, containers, mounts, namespaces and cgroups even
//! when a test fails.

use anyhow::{Context, Result, ensure};
use skiff_tests::cleanup::netns_with_prefix;
use skiff_tests::cluster::{Cluster, node_name};
use skiff_tests::pods::PodRow;
use skiff_tests::poll::{wait_for, wait_until};
use skiff_tests::web::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[test]
fn isolated_node_keeps_its_pods_and_reboots_into_them() -> Result<()> {
    deployed(6, isolated_node_keeps_its_pods)
}

#[test]
fn partition_two_three_keeps_both_sides_then_heals() -> Result<()> {
    deployed(6, |c, desired| partition_two_three_then_heal(c, desired))
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

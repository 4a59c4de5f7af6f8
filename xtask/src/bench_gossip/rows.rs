//! The gossip rows that need a cluster of their own (issue 13): a 10/10 partition and its heal
//! (skiff and serf), and the soak for false NotReady (skiff): idle with a busy loop per core
//! and agents stopped (SIGSTOP) for 1 s now and then.

use super::{LIMIT, Serf, all_observe, label_via_socket, start_serfs};
use anyhow::{Context, Result, bail};
use skiff_tests::agent::{Agent, phase_of};
use skiff_tests::bed::TestBed;
use skiff_tests::cluster::{Cluster, node_name};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Segments of a bed split in two halves (the second half behind a trunk).
fn halves(n: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let half = n / 2;
    let segments = (0..n).map(|i| usize::from(i >= half)).collect();
    (segments, (0..half).collect(), (half..n).collect())
}

/// skiff: the trunk between the halves cut until each side sees the other NotReady, a label set
/// on one node of each side, then the trunk restored: seconds from the heal until every node
/// shows both labels.
pub(super) fn skiff_partition(n: usize) -> Result<f64> {
    let (segments, left, right) = halves(n);
    let cluster = Cluster::start(TestBed::new(&segments)?, n, LIMIT)?;
    cluster.bed.set_trunk(1, false)?;
    let sees_other_side = |a: &Agent, other: &[usize]| {
        a.nodes_via_socket().is_ok_and(|rows| {
            other
                .iter()
                .all(|i| phase_of(&rows, &node_name(*i)) == Some("NotReady"))
        })
    };
    let side = |ids: &[usize]| -> Vec<&Agent> { ids.iter().map(|i| &cluster.agents[*i]).collect() };
    let since = Instant::now();
    all_observe(since, &side(&left), |a| sees_other_side(a, &right))
        .context("the left side did not see the right side NotReady")?;
    all_observe(since, &side(&right), |a| sees_other_side(a, &left))
        .context("the right side did not see the left side NotReady")?;
    let (a, b) = (left[0], right[0]);
    for (i, value) in [(a, "left"), (b, "right")] {
        cluster.agents[i].cli(&[
            "label",
            "node",
            &node_name(i),
            &format!("side={value}"),
            "--overwrite",
        ])?;
    }
    let since = Instant::now();
    cluster.bed.set_trunk(1, true)?;
    let took = all_observe(since, &cluster.agents, |agent| {
        label_via_socket(agent, &node_name(a), "side").as_deref() == Some("left")
            && label_via_socket(agent, &node_name(b), "side").as_deref() == Some("right")
    })?;
    Ok(took.as_secs_f64())
}

/// serf: the same with `serf tags -set` on one agent of each side.
pub(super) fn serf_partition(n: usize) -> Result<f64> {
    let (segments, left, right) = halves(n);
    let bed = TestBed::new(&segments)?;
    let agents = start_serfs(&bed, n, super::SERF_LAN)?;
    bed.set_trunk(1, false)?;
    let failed_on = |a: &Serf, other: &[usize]| {
        a.members().is_ok_and(|m| {
            other.iter().all(|i| {
                m.iter()
                    .any(|(name, status, _)| *name == node_name(*i) && status == "failed")
            })
        })
    };
    let since = Instant::now();
    let left_agents: Vec<&Serf> = left.iter().map(|i| &agents[*i]).collect();
    let right_agents: Vec<&Serf> = right.iter().map(|i| &agents[*i]).collect();
    all_observe(since, &left_agents, |a| failed_on(a, &right))
        .context("serf: the left side did not see the right side failed")?;
    all_observe(since, &right_agents, |a| failed_on(a, &left))
        .context("serf: the right side did not see the left side failed")?;
    let (a, b) = (left[0], right[0]);
    agents[a].serf(&["tags", "-set", "side=left"])?;
    agents[b].serf(&["tags", "-set", "side=right"])?;
    let since = Instant::now();
    bed.set_trunk(1, true)?;
    let (na, nb) = (node_name(a), node_name(b));
    let took = all_observe(since, &agents, |agent| {
        agent.members().is_ok_and(|m| {
            m.iter()
                .any(|(name, _, t)| *name == na && t["side"].as_str() == Some("left"))
                && m.iter()
                    .any(|(name, _, t)| *name == nb && t["side"].as_str() == Some("right"))
        })
    })?;
    Ok(took.as_secs_f64())
}

/// What the soak saw.
pub(super) struct Soak {
    pub seconds: u64,
    pub stops: usize,
    /// (observer, node) pairs ever seen NotReady while every agent was running or stopped
    /// for at most 1 s.
    pub false_not_ready: usize,
    pub polls: usize,
}

fn signal(pid: i32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

/// skiff, `n` agents idle for `seconds` with a busy loop per core; every `every` one agent (in
/// turn) is stopped with SIGSTOP for 1 s. Every node's list is polled throughout: any node
/// listed NotReady is a false NotReady (no agent is ever down longer than 1 s).
pub(super) fn skiff_soak(n: usize, seconds: u64, every: Duration) -> Result<Soak> {
    let cluster = Cluster::start(TestBed::flat(n)?, n, LIMIT)?;
    let _busy = crate::bench::Busy::start()?;
    let start = Instant::now();
    let (stops, watch) = watch_not_ready(&cluster.agents, || {
        let mut stops = 0;
        while start.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(every);
            let agent = &cluster.agents[stops % n];
            let pid = agent.pid().context("agent pid")?;
            signal(pid, "STOP")?;
            std::thread::sleep(Duration::from_secs(1));
            signal(pid, "CONT")?;
            stops += 1;
        }
        Ok(stops)
    })?;
    Ok(Soak {
        seconds,
        stops,
        false_not_ready: watch.not_ready,
        polls: watch.polls,
    })
}

/// What [`watch_not_ready`] saw.
pub(super) struct Watch {
    /// (observer, node) pairs ever listed NotReady.
    pub not_ready: usize,
    /// Node lists read.
    pub polls: usize,
}

/// Polls every agent's node list (through its API socket, every 100 ms, one thread per agent)
/// while `body` runs, and reports every node ever listed NotReady (each pair once, as seen).
pub(super) fn watch_not_ready<T>(
    agents: &[Agent],
    body: impl FnOnce() -> Result<T>,
) -> Result<(T, Watch)> {
    let done = AtomicBool::new(false);
    let seen: Mutex<BTreeSet<(usize, String)>> = Mutex::new(BTreeSet::new());
    let polls = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let result = std::thread::scope(|scope| {
        for (i, agent) in agents.iter().enumerate() {
            let (done, seen, polls) = (&done, &seen, &polls);
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(rows) = agent.nodes_via_socket() {
                        polls.fetch_add(1, Ordering::Relaxed);
                        for row in rows.iter().filter(|r| r.phase == "NotReady") {
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            if seen.insert((i, row.name.clone())) {
                                eprintln!(
                                    "bench gossip: {} lists {} NotReady after {:?}",
                                    agent.name,
                                    row.name,
                                    start.elapsed()
                                );
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let result = body();
        done.store(true, Ordering::Relaxed);
        result
    })?;
    let not_ready = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    Ok((
        result,
        Watch {
            not_ready,
            polls: polls.load(Ordering::Relaxed),
        },
    ))
}

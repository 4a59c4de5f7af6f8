//! The LTE row (issue 13): five real agents behind the emulated LTE link of [`super::netem`]
//! (40 ms held at each sender, so 80 ms round trips; 1% of the packets dropped), skiff with
//! `--gossip-profile wan` and serf with `-profile wan`, each on a bed of its own: kill -9 ->
//! NotReady / failed on every other node, false NotReady / failed over an idle soak, bytes
//! each node sent per second at rest.

use super::netem::{Link, LinkEmulator};
use super::rows::watch_not_ready;
use super::{
    LIMIT, Serf, SerfConfig, all_observe_within, before_kill, bytes_per_node, median,
    serf_wait_all_alive, start_serfs,
};
use anyhow::Result;
use skiff_tests::agent::{Agent, phase_of};
use skiff_tests::bed::TestBed;
use skiff_tests::cluster::{Cluster, node_name, wait_api};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Agents in the row (the "5 real agents").
pub(super) const NODES: usize = 5;
/// kill -9 repeats (victims n4, n3, n2, n1, n4).
pub(super) const KILLS: usize = 5;
/// serf's WAN suspicion alone lasts 30 s at five nodes (6 x 5 s probe interval); both systems
/// get this long to see a kill.
const DETECT_LIMIT: Duration = Duration::from_secs(120);

/// What one system did on the LTE link.
pub(super) struct Lte {
    /// Seconds from each kill -9 to NotReady / failed on every other node.
    pub failures: Vec<f64>,
    /// (observer, node) pairs reported NotReady / failed during the soak, every agent alive.
    pub false_failed: usize,
    /// Median over the nodes of bytes sent per second at rest.
    pub bytes_per_s: f64,
    /// The self-check's round trips and the emulator's counts, for the notes under the row.
    pub notes: Vec<String>,
}

/// skiff: a bed behind the link, its self-check, five agents with `--gossip-profile wan`, the
/// bytes at rest, `soak` seconds idle watching for NotReady, then [`KILLS`] kills.
pub(super) fn skiff_lte(soak: Duration) -> Result<Lte> {
    let bed = TestBed::flat(NODES)?;
    let link = LinkEmulator::start(&bed, Link::LTE)?;
    let probe = link.self_check(&bed)?;
    eprintln!("bench gossip: LTE self-check (skiff's bed): {probe}");
    let mut cluster = Cluster::start_configured(
        bed,
        NODES,
        |agent| agent.extra_args = vec!["--gossip-profile".into(), "wan".into()],
        LIMIT,
    )?;
    let bytes_per_s = bytes_per_node(&cluster.bed, NODES)?;
    eprintln!("bench gossip: LTE, skiff idle for {soak:?}");
    let ((), watch) = watch_not_ready(&cluster.agents, || {
        // The soak's length is the measurement, not a wait for a condition.
        std::thread::sleep(soak);
        Ok(())
    })?;
    link.healthy()?;
    let mut failures = Vec::new();
    let everyone: Vec<String> = (0..NODES).map(node_name).collect();
    for rep in 0..KILLS {
        let victim = NODES - 1 - rep % (NODES - 1);
        let name = node_name(victim);
        before_kill(rep);
        cluster.agents[victim].kill9()?;
        let since = Instant::now();
        let others: Vec<&Agent> = cluster.agents.iter().filter(|a| a.name != name).collect();
        let took = all_observe_within(since, DETECT_LIMIT, &others, |a| {
            a.nodes_via_socket()
                .is_ok_and(|rows| phase_of(&rows, &name) == Some("NotReady"))
        })?;
        failures.push(took.as_secs_f64());
        cluster.agents[victim].start(None)?;
        wait_api(&mut cluster.agents[victim], LIMIT)?;
        cluster.wait_phase(&(0..NODES).collect::<Vec<_>>(), &everyone, "Ready", LIMIT)?;
    }
    link.healthy()?;
    eprintln!("bench gossip: LTE, skiff kill -9 -> NotReady on all: {failures:.3?}");
    Ok(Lte {
        failures,
        false_failed: watch.not_ready,
        bytes_per_s,
        notes: vec![
            format!("skiff's bed: self-check {probe}"),
            format!(
                "skiff's bed: {}; {} node lists polled in the soak",
                link.summary(),
                watch.polls
            ),
        ],
    })
}

/// serf: the same with `-profile wan`; a false failure is an `EventMemberFailed` line in an
/// agent's log during the soak.
pub(super) fn serf_lte(soak: Duration) -> Result<Lte> {
    let bed = TestBed::flat(NODES)?;
    let link = LinkEmulator::start(&bed, Link::LTE)?;
    let probe = link.self_check(&bed)?;
    eprintln!("bench gossip: LTE self-check (serf's bed): {probe}");
    let config = SerfConfig {
        profile: "wan",
        log_dir: Some(&bed.dir),
    };
    let mut agents = start_serfs(&bed, NODES, config)?;
    let bytes_per_s = bytes_per_node(&bed, NODES)?;
    eprintln!("bench gossip: LTE, serf idle for {soak:?}");
    let before = serf_failures(&bed.dir);
    // The soak's length is the measurement, not a wait for a condition.
    std::thread::sleep(soak);
    let false_failed = serf_failures(&bed.dir).difference(&before).count();
    link.healthy()?;
    let first = &bed.nodes[0];
    let mut failures = Vec::new();
    for rep in 0..KILLS {
        let victim = NODES - 1 - rep % (NODES - 1);
        let name = node_name(victim);
        before_kill(rep);
        agents[victim].kill9();
        let since = Instant::now();
        let others: Vec<&Serf> = agents.iter().filter(|a| a.name != name).collect();
        let took = all_observe_within(since, DETECT_LIMIT, &others, |a| {
            a.status_of(&name).as_deref() == Some("failed")
        })?;
        failures.push(took.as_secs_f64());
        let node = &bed.nodes[victim];
        agents[victim] = Serf::start(&node.netns, &name, node.ip, Some(first.ip), config)?;
        serf_wait_all_alive(&agents, LIMIT)?;
    }
    link.healthy()?;
    eprintln!("bench gossip: LTE, serf kill -9 -> failed on all: {failures:.3?}");
    drop(agents);
    Ok(Lte {
        failures,
        false_failed,
        bytes_per_s,
        notes: vec![
            format!("serf's bed: self-check {probe}"),
            format!("serf's bed: {}", link.summary()),
        ],
    })
}

/// Every (log, failed member) of the `EventMemberFailed` lines in the serf logs of `dir`, each
/// with its line number (so a repeat counts again).
fn serf_failures(dir: &Path) -> BTreeSet<(String, usize, String)> {
    let mut seen = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return seen;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if !(file.starts_with("serf-") && file.ends_with(".log")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for (line_no, line) in text.lines().enumerate() {
            if let Some((_, rest)) = line.split_once("EventMemberFailed: ") {
                let member = rest.split_whitespace().next().unwrap_or("").to_string();
                seen.insert((file.clone(), line_no, member));
            }
        }
    }
    seen
}

/// The LTE rows in the bench table's columns, their target, and the notes.
pub(super) fn print(soak: Duration, skiff: &Result<Lte>, serf: Option<&Result<Lte>>) {
    let (ours, theirs) = (skiff.as_ref().ok(), serf.and_then(|r| r.as_ref().ok()));
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.3} s"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let row = |label: String, a: String, b: String, r: String| {
        println!("{label:<44} {NODES:>5} {a:>12} {b:>12} {r:>8}");
    };
    let link = Link::LTE;
    println!(
        "\n== LTE link, emulated on NFQUEUE ({} ms held at each sender, {}% of packets dropped): \
         skiff --gossip-profile wan vs serf -profile wan ==",
        link.delay.as_millis(),
        link.loss * 100.0
    );
    let med = |l: Option<&Lte>| l.and_then(|l| median(l.failures.clone()));
    let worst = |l: Option<&Lte>| l.and_then(|l| l.failures.iter().copied().reduce(f64::max));
    row(
        format!("(f) LTE: kill -9 -> NotReady, median of {KILLS}"),
        secs(med(ours)),
        secs(med(theirs)),
        ratio(med(ours), med(theirs)),
    );
    row(
        format!("(f) LTE: kill -9 -> NotReady, worst of {KILLS}"),
        secs(worst(ours)),
        secs(worst(theirs)),
        ratio(worst(ours), worst(theirs)),
    );
    let count = |l: Option<&Lte>| l.map_or("-".to_string(), |l| l.false_failed.to_string());
    row(
        format!("(f) LTE: false NotReady, {} s idle", soak.as_secs()),
        count(ours),
        count(theirs),
        "-".into(),
    );
    let bytes = |l: Option<&Lte>| l.map(|l| l.bytes_per_s);
    row(
        "(f) LTE: bytes sent per node at rest".into(),
        bytes(ours).map_or("-".into(), |b| format!("{b:.0} B/s")),
        bytes(theirs).map_or("-".into(), |b| format!("{b:.0} B/s")),
        ratio(bytes(ours), bytes(theirs)),
    );
    println!(
        "target: (f) LTE profile (80 ms RTT, 1% loss), {NODES} real agents: detection <= 4 s, \
         0 false NotReady in 10 min, bytes/s printed.\n\
         (f): serf counts an EventMemberFailed in its log; skiff a node listed NotReady (lists \
         polled every 100 ms). The link drops and delays every IPv4 packet a node sends, UDP \
         and serf's TCP alike."
    );
    for l in [ours, theirs].into_iter().flatten() {
        for note in &l.notes {
            println!("(f) {note}");
        }
    }
}

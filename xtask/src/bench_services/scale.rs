//! (4) Rule sync at scale on one real node, and the node that (2) and (3) run on.
//!
//! Pods first, no Service: `shared` (10 waiting pods labelled `bench: shared`), `small`
//! (2 httpd pods) and `web1` (1 httpd pod); the agent's RSS then. Then 1,000 Services
//! `svc-0000`... that all select `bench: shared` (10 endpoints each) in one manifest file:
//! from the file written to the first `services programmed` event holding all of them (its
//! `us` is the nft transaction). Then Services `small` and `web1`, and the RSS again. One
//! endpoint change: `kill -9` of a `small` pod's container (2 -> 1 endpoints) and its return,
//! several times; one of the shared pods killed changes all 1,000 Services at once (reported
//! apart). Last, the agent is restarted on its data dir (pods keep running): its first sync
//! writes the whole table (`full=true`).

use super::trace::{LogTail, Programmed};
use super::{
    HTTPD, SLEEPER, cluster_ips, deployment, ms, pct, ready_endpoints, secs, service, wait_until,
    write_manifest,
};
use crate::bench::Rss;
use crate::bench_cluster_real::timeline::now_of_day;
use crate::demo::{DemoAgent, NodeOptions};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

pub const SERVICES: usize = 1000;
const SHARED_PODS: usize = 10;
const SMALL_KILLS: usize = 5;
const SHARED_KILLS: usize = 3;
/// ClusterIPs of the lone node: inside 198.18.0.0/15, off its pods' 198.18.0.0/16.
const SERVICE_CIDR: &str = "198.19.0.0/20";
const NAME: &str = "sks";

/// A sync as the trace told it, and when it came after its cause.
#[derive(Clone, Copy)]
struct Sync {
    event: Programmed,
    /// Seconds from the cause (manifest written, kill, restart) to the event.
    after: f64,
}

pub struct NodeReport {
    rss_without: Rss,
    rss_with: Rss,
    /// With the Services, after the restart (a fresh process that loaded them).
    rss_restarted: Rss,
    programmed: Sync,
    /// Syncs between the manifest and the one holding every Service.
    syncs_before: usize,
    restart_full: Option<Sync>,
    restart_all: Sync,
    small_gone: Vec<Sync>,
    small_back: Vec<Sync>,
    shared_gone: Vec<Sync>,
    shared_back: Vec<Sync>,
    pub datapath: super::datapath::Report,
    pub dns: super::dnsperf::Report,
}

pub fn run(skiff: &Path, image: &Path) -> Result<NodeReport> {
    eprintln!("bench services: (2)-(4) one node, {SERVICES} Services x {SHARED_PODS} endpoints");
    let dir = std::path::PathBuf::from("/tmp/skiff-bench-svc");
    let mut opts = NodeOptions::single(NAME, &dir);
    opts.log_filter = "info,skiff::path=debug".into();
    opts.keep_logs = Some(super::logs_dir());
    opts.extra_args = [
        "--service-cidr",
        SERVICE_CIDR,
        "--crash-backoff-base-ms",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    let _ = std::fs::remove_dir_all(super::logs_dir());
    let mut agent = DemoAgent::start_with(skiff, image, opts)?;
    let result = measure(&mut agent);
    drop(agent);
    result
}

/// The next event after `tail`'s point that `want` accepts, within `limit`.
fn next_event(
    tail: &mut LogTail,
    limit: Duration,
    what: &str,
    mut want: impl FnMut(&Programmed) -> bool,
) -> Result<Programmed> {
    let mut found = None;
    wait_until(limit, what, || {
        while let Some(e) = tail.next()? {
            if want(&e) {
                found = Some(e);
                return Ok(true);
            }
        }
        Ok(false)
    })?;
    found.context("no event")
}

fn sync(event: Programmed, since: f64) -> Sync {
    Sync {
        event,
        after: event.at - since,
    }
}

fn measure(agent: &mut DemoAgent) -> Result<NodeReport> {
    let netns = format!("{NAME}node");
    let needle = format!("/skiff-{NAME}/");
    for (file, body) in [
        (
            "shared.yaml",
            deployment("shared", SHARED_PODS, "{bench: shared}", SLEEPER),
        ),
        ("small.yaml", deployment("small", 2, "{app: small}", HTTPD)),
        ("web1.yaml", deployment("web1", 1, "{app: web1}", HTTPD)),
    ] {
        write_manifest(agent, file, &body)?;
    }
    let pods = SHARED_PODS + 3;
    wait_until(Duration::from_secs(120), "13 pods ready", || {
        let p = agent.pods()?;
        Ok(p.len() == pods && p.iter().all(crate::demo::cluster::pod_ready))
    })?;
    let pid = agent.pid().context("the agent is not running")?;
    let rss_without = super::settled_rss(pid)?;
    hold_for_inspection("SKIFF_BENCH_HOLD_WITHOUT", pid, &rss_without, &rss_without)?;

    // 1,000 Services x 10 endpoints, in one file.
    let mut tail = LogTail::at_end(&agent.log_path())?;
    let manifest: Vec<String> = (0..SERVICES)
        .map(|i| service(&format!("svc-{i:04}"), Some("{bench: shared}"), false))
        .collect();
    let written = now_of_day();
    write_manifest(agent, "services.yaml", &manifest.join("---\n"))?;
    let mut syncs_before = 0;
    let programmed = next_event(
        &mut tail,
        Duration::from_secs(180),
        "1,000 Services programmed",
        |e| {
            let all = e.ports >= SERVICES && e.endpoints >= SERVICES * SHARED_PODS;
            syncs_before += usize::from(!all);
            all
        },
    )?;
    let programmed = sync(programmed, written);
    wait_until(
        Duration::from_secs(60),
        "every Service with a ClusterIP",
        || Ok(cluster_ips(agent)?.len() >= SERVICES),
    )?;
    for (file, body) in [
        (
            "svc-small.yaml",
            service("small", Some("{app: small}"), false),
        ),
        ("svc-web1.yaml", service("web1", Some("{app: web1}"), false)),
    ] {
        write_manifest(agent, file, &body)?;
    }
    let total = SERVICES * SHARED_PODS + 3;
    next_event(&mut tail, Duration::from_secs(60), "small and web1", |e| {
        e.endpoints == total
    })?;
    let rss_with = super::settled_rss(pid)?;
    hold_for_inspection("SKIFF_BENCH_HOLD", pid, &rss_without, &rss_with)?;

    // One endpoint gone and back: a small pod, then a shared one (all 1,000 Services).
    let mut small_gone = Vec::new();
    let mut small_back = Vec::new();
    for rep in 0..SMALL_KILLS {
        let (gone, back) = kill_and_return(agent, &mut tail, "small", rep, 1, total, &needle)?;
        small_gone.push(gone);
        small_back.push(back);
    }
    let mut shared_gone = Vec::new();
    let mut shared_back = Vec::new();
    for rep in 0..SHARED_KILLS {
        let (gone, back) =
            kill_and_return(agent, &mut tail, "svc-0000", rep, SERVICES, total, &needle)?;
        shared_gone.push(gone);
        shared_back.push(back);
    }

    let web1 = ready_endpoints(agent, "web1")?
        .first()
        .map(|e| e.ip.clone())
        .context("web1 has no endpoint")?;
    let ips = cluster_ips(agent)?;
    let web1_ip = ips.get("default/web1").context("web1 has no ClusterIP")?;
    let datapath = super::datapath::run(&netns, web1_ip, &web1)?;
    let gateway = super::gateway(&netns)?;
    let names: Vec<(String, String)> = (0..SERVICES)
        .map(|i| {
            let name = format!("svc-{i:04}");
            let ip = ips
                .get(&format!("default/{name}"))
                .cloned()
                .with_context(|| format!("{name} has no ClusterIP"))?;
            Ok((format!("{name}.default.svc.cluster.local"), ip))
        })
        .collect::<Result<_>>()?;
    hold_for_inspection("SKIFF_BENCH_HOLD_DNS", pid, &rss_without, &rss_with)?;
    let dns = super::dnsperf::run(&netns, gateway, &names, pid)?;

    // From scratch: the agent restarted with everything in place.
    agent.stop();
    let restarted = now_of_day();
    agent.restart()?;
    let mut tail = LogTail::from_start(&agent.log_path());
    let mut restart_full = None;
    let restart_all = next_event(
        &mut tail,
        Duration::from_secs(120),
        "every Service programmed after the restart",
        |e| {
            if e.full && restart_full.is_none() {
                restart_full = Some(sync(*e, restarted));
            }
            e.endpoints == total
        },
    )?;
    let rss_restarted = super::settled_rss(agent.pid().context("the agent is not running")?)?;
    Ok(NodeReport {
        rss_without,
        rss_with,
        rss_restarted,
        programmed,
        syncs_before,
        restart_full,
        restart_all: sync(restart_all, restarted),
        small_gone,
        small_back,
        shared_gone,
        shared_back,
        datapath,
        dns,
    })
}

/// With `SKIFF_BENCH_HOLD=<file>` (after the RSS with Services; `SKIFF_BENCH_HOLD_WITHOUT`:
/// after the one without; `SKIFF_BENCH_HOLD_DNS`: before the DNS runs), writes the agent's pid and both RSS figures to the file and waits
/// until it is removed: the agent can be looked at (gdb, heaptrack) in the state the figure
/// was taken in.
fn hold_for_inspection(variable: &str, pid: u32, without: &Rss, with: &Rss) -> Result<()> {
    let Some(file) = std::env::var_os(variable) else {
        return Ok(());
    };
    std::fs::write(
        &file,
        format!(
            "{pid}\nwithout: total {} anon {} KiB; with: total {} anon {} KiB\n",
            without.total, without.anon, with.total, with.anon
        ),
    )?;
    eprintln!(
        "bench services: holding until {} is removed",
        Path::new(&file).display()
    );
    while Path::new(&file).exists() && !crate::demo::interrupted() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// `kill -9` of the container of one of `service`'s endpoints (the `rep`-th): the sync that
/// took its `lost` endpoints out, and the one that put them back once it restarted.
fn kill_and_return(
    agent: &DemoAgent,
    tail: &mut LogTail,
    service: &str,
    rep: usize,
    lost: usize,
    total: usize,
    needle: &str,
) -> Result<(Sync, Sync)> {
    let eps = ready_endpoints(agent, service)?;
    if eps.is_empty() {
        bail!("{service} has no endpoint");
    }
    let victim = &eps[rep % eps.len()];
    tail.events()?;
    let t0 = now_of_day();
    let started = Instant::now();
    super::kill_container(&victim.pod, needle)?;
    let gone = next_event(tail, Duration::from_secs(30), "the endpoint gone", |e| {
        e.endpoints == total - lost
    })?;
    let back = next_event(tail, Duration::from_secs(60), "the endpoint back", |e| {
        e.endpoints == total
    })?;
    eprintln!(
        "bench services: (4) kill {}: gone after {:.3} s (nft {} us, {} B), back after {:.3} s",
        victim.pod,
        gone.at - t0,
        gone.us,
        gone.script_bytes,
        started.elapsed().as_secs_f64()
    );
    Ok((sync(gone, t0), sync(back, t0)))
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

impl NodeReport {
    pub fn print(&self) {
        println!(
            "\n(4) rule sync at scale: {SERVICES} Services x {SHARED_PODS} endpoints on one real node (all select the same {SHARED_PODS} pods)"
        );
        println!(
            "{:<40} {:>3} {:>10} {:>10} {:>10} {:>10} {:>6} {:>9} {:>5}",
            "sync",
            "n",
            "nft p50",
            "nft max",
            "after p50",
            "script B",
            "ports",
            "endpoints",
            "full"
        );
        let row = |label: &str, v: &[Sync]| {
            let us: Vec<f64> = v.iter().map(|s| s.event.us as f64 / 1e6).collect();
            let after: Vec<f64> = v.iter().map(|s| s.after).collect();
            let bytes: Vec<f64> = v.iter().map(|s| s.event.script_bytes as f64).collect();
            let Some(last) = v.last() else { return };
            println!(
                "{:<40} {:>3} {:>10} {:>10} {:>10} {:>10} {:>6} {:>9} {:>5}",
                label,
                v.len(),
                ms(pct(&us, 50.0)),
                ms(pct(&us, 100.0)),
                secs(pct(&after, 50.0)),
                pct(&bytes, 50.0).map_or(0, |b| b as u64),
                last.event.ports,
                last.event.endpoints,
                v.iter().any(|s| s.event.full)
            );
        };
        row(
            &format!("{SERVICES} Services added (one manifest)"),
            &[self.programmed],
        );
        if let Some(full) = self.restart_full {
            row("agent restarted: first sync", &[full]);
        }
        row("agent restarted: every Service back", &[self.restart_all]);
        row("1 endpoint gone (small 2 -> 1, kill -9)", &self.small_gone);
        row("1 endpoint back (restarted)", &self.small_back);
        row(
            &format!("shared pod gone ({SERVICES} Services -1)"),
            &self.shared_gone,
        );
        row(
            &format!("shared pod back ({SERVICES} Services +1)"),
            &self.shared_back,
        );
        println!(
            "nft: the `us` of the agent's `services programmed` event (the nft -f transaction); after: from the cause\n\
             (manifest written, agent restart, kill -9; \"back\" also from the kill, crash backoff 1 s) to that\n\
             event; {} sync(s) came between the manifest and the one holding every Service. Target: one\n\
             endpoint change < 20 ms, as a diff (not the whole table).",
            self.syncs_before
        );
        let delta = |r: &Rss| (r.total as f64 - self.rss_without.total as f64) / 1024.0;
        println!(
            "agent RSS: without Services {:.1} MB {}; with {SERVICES} x {SHARED_PODS} {:.1} MB {}: {:+.1} MB (target < +3 MB);\n\
             after a restart with them {:.1} MB {}: {:+.1} MB",
            mb(self.rss_without.total),
            self.rss_without.parts(),
            mb(self.rss_with.total),
            self.rss_with.parts(),
            delta(&self.rss_with),
            mb(self.rss_restarted.total),
            self.rss_restarted.parts(),
            delta(&self.rss_restarted),
        );
    }
}

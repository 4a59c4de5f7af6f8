//! (2) The data path: `wrk` (Debian) from the node's namespace to `web1`'s ClusterIP:80 and
//! to its one pod's IP:8080 (the same busybox httpd either way), with keep-alive and with
//! `Connection: close`, in interleaved rounds; requests/s and wrk's latency percentiles.
//!
//! Both targets end at the same pod address and port, so a DNATed connection and a direct one
//! from the same source port are the same flow at the pod, with unrelated TCP timestamps (the
//! client derives their offset from the address it dialled): a direct SYN meeting the pod's
//! TIME-WAIT of an earlier ClusterIP connection is refused by PAWS and retried a second later,
//! which would make whichever path runs second look slow. Each target therefore gets its own
//! half of the ephemeral ports, and the client namespace reuses its TIME-WAIT ports
//! (`tcp_tw_reuse = 1`, as load generators do: a few thousand connections a second would
//! otherwise run out of ports within seconds). Both settings are the node namespace's own and
//! are put back after. A round with a run above [`super::steal::LIMIT`] CPU steal is run
//! again whole, a bounded number of times (see [`super::steal`]).

use super::lookup::in_netns;
use super::pct;
use super::steal::{Retries, Ticks};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

const ROUNDS: usize = 7;
const SECONDS: u32 = 3;
const CONNECTIONS: u32 = 8;

/// One wrk run.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    /// Seconds.
    p50: f64,
    p99: f64,
    requests: u64,
    /// Socket errors and non-2xx answers.
    errors: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    ClusterIp,
    Direct,
}

pub struct Report {
    /// (target, close, runs).
    rows: Vec<(Target, bool, Vec<Run>)>,
    /// The machine's CPU time over the counted rounds and its steal; rounds run again.
    machine: Ticks,
    retries: Retries,
    /// Whether the server closed a keep-alive connection after one answer.
    server_closes: bool,
}

/// Sysctls of the node namespace, put back when dropped.
struct Sysctls {
    netns: String,
    saved: Vec<(&'static str, String)>,
}

const PORT_RANGE: &str = "net.ipv4.ip_local_port_range";
const TW_REUSE: &str = "net.ipv4.tcp_tw_reuse";

impl Sysctls {
    fn save(netns: &str, keys: &[&'static str]) -> Result<Sysctls> {
        let mut saved = Vec::new();
        for key in keys {
            let out = Command::new("ip")
                .args(["netns", "exec", netns, "sysctl", "-n", key])
                .output()
                .context("cannot run sysctl")?;
            let value = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if !out.status.success() || value.is_empty() {
                bail!(
                    "sysctl {key} in {netns}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            saved.push((*key, value));
        }
        Ok(Sysctls {
            netns: netns.into(),
            saved,
        })
    }

    fn set(&self, key: &str, value: &str) -> Result<()> {
        let setting = format!("{key}={value}");
        let status = Command::new("ip")
            .args(["netns", "exec", &self.netns, "sysctl", "-q", "-w", &setting])
            .status()
            .context("cannot run sysctl")?;
        if !status.success() {
            bail!("sysctl -w {setting} in {} failed ({status})", self.netns);
        }
        Ok(())
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (key, value) in &self.saved {
            let _ = self.set(key, value);
        }
    }
}

/// Source ports of each target (disjoint).
fn port_range(target: Target) -> &'static str {
    match target {
        Target::ClusterIp => "10000 34999",
        Target::Direct => "35000 59999",
    }
}

pub fn run(netns: &str, cluster_ip: &str, pod_ip: &str) -> Result<Report> {
    eprintln!("bench services: (2) wrk to {cluster_ip}:80 and {pod_ip}:8080 from {netns}");
    let sysctls = Sysctls::save(netns, &[PORT_RANGE, TW_REUSE])?;
    sysctls.set(TW_REUSE, "1")?;
    sysctls.set(PORT_RANGE, port_range(Target::Direct))?;
    let server_closes = closes_after_one_answer(netns, pod_ip)?;
    let mut rows: Vec<(Target, bool, Vec<Run>)> = Vec::new();
    for close in [false, true] {
        for target in [Target::ClusterIp, Target::Direct] {
            rows.push((target, close, Vec::new()));
        }
    }
    let (mut machine, mut retries) = (Ticks::default(), Retries::default());
    let mut round = 0;
    while round < ROUNDS {
        // Which target goes first alternates between rounds.
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1, 2, 3]
        } else {
            vec![1, 0, 3, 2]
        };
        let mut this = Vec::new();
        let mut steal: f64 = 0.0;
        for i in order {
            let (target, close, _) = &rows[i];
            let url = match target {
                Target::ClusterIp => format!("http://{cluster_ip}:80/"),
                Target::Direct => format!("http://{pod_ip}:8080/"),
            };
            sysctls.set(PORT_RANGE, port_range(*target))?;
            let before = Ticks::now()?;
            let run = wrk(netns, &url, *close)?;
            let ticks = before.until(Ticks::now()?);
            steal = steal.max(ticks.percent());
            eprintln!(
                "bench services: (2) {url} {}: {:.0} req/s, p99 {:.3} ms, {} errors, {:.1}% steal",
                if *close { "close" } else { "keep-alive" },
                run.rps,
                run.p99 * 1e3,
                run.errors,
                ticks.percent()
            );
            this.push((i, run, ticks));
        }
        if retries.again(steal, &format!("(2) data path round {round}")) {
            continue;
        }
        for (i, run, ticks) in this {
            rows[i].2.push(run);
            machine += ticks;
        }
        round += 1;
    }
    drop(sysctls);
    Ok(Report {
        rows,
        machine,
        retries,
        server_closes,
    })
}

/// One HTTP/1.1 request without `Connection: close`: does the server end the connection
/// after its answer anyway?
fn closes_after_one_answer(netns: &str, pod_ip: &str) -> Result<bool> {
    let addr: SocketAddr = format!("{pod_ip}:8080").parse()?;
    in_netns(netns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        let mut answer = Vec::new();
        // EOF within the timeout: closed; a timeout: kept open.
        Ok(s.read_to_end(&mut answer).is_ok() && answer.starts_with(b"HTTP/1."))
    })
}

/// `wrk` in `netns` for [`SECONDS`]; fails when wrk does not run or reports nothing.
fn wrk(netns: &str, url: &str, close: bool) -> Result<Run> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "wrk", "-t1", "--latency"])
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{SECONDS}s"));
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(url).output().context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk {url} failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("wrk {url}: no figures in its output:\n{text}"))
}

/// Seconds of a wrk duration (`812.00us`, `1.39ms`, `2.01s`, `1.00m`).
fn duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    })
}

fn parse(text: &str) -> Option<Run> {
    let mut run = Run::default();
    let mut rps = None;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => run.p50 = duration(d)?,
            ["99%", d] => run.p99 = duration(d)?,
            ["Requests/sec:", n] => rps = n.parse().ok(),
            [n, "requests", "in", ..] => run.requests = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse::<u64>().ok()?,
            _ => {}
        }
    }
    run.rps = rps?;
    (run.requests > 0 && run.p99 > 0.0).then_some(run)
}

impl Report {
    fn medians(&self, target: Target, close: bool) -> Option<(f64, f64, f64, u64, u64)> {
        let (_, _, runs) = self
            .rows
            .iter()
            .find(|(t, c, _)| *t == target && *c == close)?;
        let of = |f: fn(&Run) -> f64| pct(&runs.iter().map(f).collect::<Vec<_>>(), 50.0);
        Some((
            of(|r| r.rps)?,
            of(|r| r.p50)?,
            of(|r| r.p99)?,
            runs.iter().map(|r| r.requests).sum(),
            runs.iter().map(|r| r.errors).sum(),
        ))
    }

    /// Medians over rounds of ClusterIP/direct within each round (throughput, p99): the two
    /// runs of a round are back to back, so drift over the section cancels.
    fn paired(&self, close: bool) -> (Option<f64>, Option<f64>) {
        let runs = |target: Target| {
            self.rows
                .iter()
                .find(|(t, c, _)| *t == target && *c == close)
                .map(|r| r.2.clone())
                .unwrap_or_default()
        };
        let (c, d) = (runs(Target::ClusterIp), runs(Target::Direct));
        let rps: Vec<f64> = c.iter().zip(&d).map(|(c, d)| c.rps / d.rps).collect();
        let p99: Vec<f64> = c.iter().zip(&d).map(|(c, d)| c.p99 / d.p99).collect();
        (pct(&rps, 50.0), pct(&p99, 50.0))
    }

    pub fn print(&self) {
        println!(
            "\n(2) data path: wrk -t1 -c{CONNECTIONS}, {SECONDS} s x {ROUNDS} interleaved rounds, from the node namespace (tcp_tw_reuse 1, a port range per target) to one busybox httpd pod; medians of the rounds"
        );
        println!(
            "{:<44} {:>10} {:>9} {:>9} {:>10} {:>7}",
            "target", "req/s", "p50 ms", "p99 ms", "requests", "errors"
        );
        for close in [false, true] {
            for target in [Target::ClusterIp, Target::Direct] {
                let Some((rps, p50, p99, n, errors)) = self.medians(target, close) else {
                    continue;
                };
                let label = format!(
                    "{} ({})",
                    match target {
                        Target::ClusterIp => "ClusterIP:80 (nft DNAT)",
                        Target::Direct => "pod IP:8080 directly",
                    },
                    if close {
                        "Connection: close"
                    } else {
                        "keep-alive"
                    }
                );
                println!(
                    "{:<44} {:>10.0} {:>9.3} {:>9.3} {:>10} {:>7}",
                    label,
                    rps,
                    p50 * 1e3,
                    p99 * 1e3,
                    n,
                    errors
                );
            }
        }
        for close in [false, true] {
            let (Some(c), Some(d)) = (
                self.medians(Target::ClusterIp, close),
                self.medians(Target::Direct, close),
            ) else {
                continue;
            };
            let (rps, p99) = self.paired(close);
            println!(
                "ratio ClusterIP/direct, {}: throughput {:.3}x (target >= 0.95), p99 {:.3}x (target <= 1.1x); paired by round (median): {} and {}",
                if close {
                    "Connection: close"
                } else {
                    "keep-alive"
                },
                c.0 / d.0,
                c.2 / d.2,
                rps.map_or("-".into(), |r| format!("{r:.3}x")),
                p99.map_or("-".into(), |r| format!("{r:.3}x")),
            );
        }
        println!(
            "CPU steal (time the hypervisor gave elsewhere) over the counted rounds: {:.1}% of this VM's CPU time; {}",
            self.machine.percent(),
            self.retries.line()
        );
        if self.server_closes {
            println!(
                "note: busybox httpd closes every connection after one answer, so the keep-alive rows also open a connection per request (wrk reconnects)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 2s test @ http://127.0.0.1:18080/
  1 threads and 4 connections
  Latency Distribution
     50%  812.00us
     75%    2.73ms
     90%    3.72ms
     99%    5.55ms
  4260 requests in 2.01s, 0.87MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:   2123.74
Transfer/sec:    441.75KB
";
        let r = parse(out).expect("figures");
        assert!((r.rps - 2123.74).abs() < 1e-9);
        assert!((r.p50 - 812e-6).abs() < 1e-12);
        assert!((r.p99 - 5.55e-3).abs() < 1e-12);
        assert_eq!(r.requests, 4260);
        assert_eq!(r.errors, 6);
    }
}

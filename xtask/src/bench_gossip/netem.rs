//! A userspace link emulator for the bed's nodes (issue 13's LTE row). This kernel has no netem,
//! so each node's IPv4 output on `eth0` goes through an iptables `NFQUEUE` rule (no
//! `--queue-bypass`: with no emulator bound, the node's packets are dropped, never sent
//! unemulated) to a thread of this process that entered the node's network namespace. The
//! thread drops each packet with probability `loss` and holds the rest `delay` before accepting
//! them, in arrival order. Every packet is delayed once, at its sender, so a round trip between
//! two nodes takes `2 * delay` and loses `1 - (1 - loss)^2` of the exchanges.
//!
//! The delayer polls its queue (the `nfq` crate gives no descriptor to wait on) every
//! [`TICK`], so a packet is held between `delay` and `delay + TICK` plus the timer's lateness.
//! [`LinkEmulator::self_check`] measures the round trip of UDP datagrams between two nodes
//! before anything else runs on the bed.

use anyhow::{Context, Result, bail};
use skiff_tests::bed::{TestBed, ip};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often an idle delayer looks at its queue.
const TICK: Duration = Duration::from_millis(1);
/// The queue number in every node's namespace (queues are per namespace).
const QUEUE: u16 = 0;
/// Packets the kernel holds for one delayer before it drops new ones (the kernel's default is
/// 1024); at rest a node has a handful in flight.
const QUEUE_MAX_LEN: u32 = 8192;
/// iptables (nf_tables backend; `-j NFQUEUE` becomes a native queue expression) or
/// iptables-legacy: the self-check tells whether the one used here really queues.
const IPTABLES: &str = "iptables";
/// The rule, after `-A` / `-D OUTPUT`: every IPv4 packet the node sends on its bed link.
const RULE: [&str; 6] = ["-o", "eth0", "-j", "NFQUEUE", "--queue-num", "0"];

/// What a link does to each packet its node sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    /// Held this long at the sender (a round trip between two nodes is twice this).
    pub delay: Duration,
    /// Probability that a packet is dropped.
    pub loss: f64,
}

impl Link {
    /// The LTE profile: 80 ms round trips, 1% of the packets lost.
    pub const LTE: Link = Link {
        delay: Duration::from_millis(40),
        loss: 0.01,
    };
}

/// Counts across every delayer.
#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    dropped: AtomicU64,
    /// Verdicts the kernel refused: it no longer held the packet.
    vanished: AtomicU64,
}

/// Every node of a bed behind an emulated [`Link`]. Dropping it deletes the rules (where the
/// namespaces still exist) and stops and joins the delayers; the rules also go with the bed's
/// namespaces.
pub(super) struct LinkEmulator {
    link: Link,
    seed: u64,
    netns: Vec<String>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    delayers: Vec<(String, JoinHandle<Result<()>>)>,
    rules: Vec<String>,
}

/// The round trips a [`LinkEmulator::self_check`] measured.
pub(super) struct Probe {
    pub sent: usize,
    pub echoed: usize,
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} UDP echoes back ({:.1}% lost), round trip min {:.1} ms, median {:.1} ms, max {:.1} ms",
            self.echoed,
            self.sent,
            100.0 * (self.sent - self.echoed) as f64 / self.sent.max(1) as f64,
            self.min.as_secs_f64() * 1e3,
            self.median.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

impl LinkEmulator {
    /// Binds a delayer in every node's namespace, then sends the node's output to it.
    pub(super) fn start(bed: &TestBed, link: Link) -> Result<LinkEmulator> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        eprintln!(
            "bench gossip: link emulator on {} nodes: {:?} at each sender, {}% loss, seed {seed}",
            bed.nodes.len(),
            link.delay,
            link.loss * 100.0
        );
        let mut emulator = LinkEmulator {
            link,
            seed,
            netns: bed.nodes.iter().map(|n| n.netns.clone()).collect(),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
            delayers: Vec::new(),
            rules: Vec::new(),
        };
        for (i, netns) in emulator.netns.clone().into_iter().enumerate() {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop, counters) = (emulator.stop.clone(), emulator.counters.clone());
            let rng = SplitMix(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let ns = netns.clone();
            let handle = std::thread::Builder::new()
                .name(format!("delayer-{i}"))
                .spawn(move || delayer(&ns, link, rng, &stop, &counters, ready_tx))
                .context("spawn a delayer thread")?;
            emulator.delayers.push((netns.clone(), handle));
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.context(format!("delayer in {netns}"))),
                Err(_) => bail!("the delayer in {netns} ended before binding its queue"),
            }
        }
        for netns in emulator.netns.clone() {
            iptables(&netns, "-A")?;
            emulator.rules.push(netns);
        }
        Ok(emulator)
    }

    /// Sends numbered UDP datagrams from node 0 to an echo on node 1 (port 7999, before any
    /// agent runs) and fails unless the round trips show the emulated link: none shorter than
    /// `2 * delay` (the rule caught them), the median within 15 ms of it (the delayers keep
    /// up), and some but not most of them lost.
    pub(super) fn self_check(&self, bed: &TestBed) -> Result<Probe> {
        const COUNT: usize = 1000;
        const GAP: Duration = Duration::from_millis(2);
        if bed.nodes.len() < 2 {
            bail!("the link self-check needs two nodes");
        }
        let (from, to) = (&bed.nodes[0], &bed.nodes[1]);
        let echo_addr = SocketAddr::from((to.ip, 7999));
        let done = AtomicBool::new(false);
        let rtts = std::thread::scope(|scope| -> Result<Vec<Duration>> {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let done = &done;
            let echo = scope.spawn(move || -> Result<()> {
                enter_netns(&to.netns)?;
                let socket = UdpSocket::bind(echo_addr).context("bind the echo socket")?;
                socket.set_read_timeout(Some(Duration::from_millis(50)))?;
                let _ = ready_tx.send(());
                let mut buf = [0u8; 64];
                while !done.load(Ordering::Relaxed) {
                    if let Ok((len, peer)) = socket.recv_from(&mut buf) {
                        socket.send_to(&buf[..len], peer)?;
                    }
                }
                Ok(())
            });
            let _ = ready_rx.recv();
            let sender = scope.spawn(move || -> Result<Vec<Duration>> {
                enter_netns(&from.netns)?;
                let socket = UdpSocket::bind(SocketAddr::from((from.ip, 0)))?;
                socket.set_read_timeout(Some(Duration::from_millis(1)))?;
                let start = Instant::now();
                let mut sent_at = vec![None; COUNT];
                let mut rtts = Vec::new();
                let mut next = 0;
                let mut buf = [0u8; 64];
                // Sends every GAP and collects echoes until half a second after the last send.
                let end = GAP * COUNT as u32 + Duration::from_millis(500);
                while start.elapsed() < end {
                    while next < COUNT && start.elapsed() >= GAP * next as u32 {
                        socket.send_to(&(next as u32).to_be_bytes(), echo_addr)?;
                        sent_at[next] = Some(Instant::now());
                        next += 1;
                    }
                    if let Ok(4) = socket.recv(&mut buf) {
                        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        if let Some(at) = sent_at.get_mut(seq).and_then(Option::take) {
                            rtts.push(at.elapsed());
                        }
                    }
                }
                Ok(rtts)
            });
            let rtts = sender.join();
            done.store(true, Ordering::Relaxed);
            let echo = echo.join();
            match echo {
                Ok(r) => r.context("the self-check's echo")?,
                Err(_) => bail!("the self-check's echo panicked"),
            }
            match rtts {
                Ok(r) => r.context("the self-check's sender"),
                Err(_) => bail!("the self-check's sender panicked"),
            }
        })?;
        let mut sorted = rtts.clone();
        sorted.sort();
        let probe = Probe {
            sent: COUNT,
            echoed: sorted.len(),
            min: sorted.first().copied().unwrap_or_default(),
            median: sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
            max: sorted.last().copied().unwrap_or_default(),
        };
        let round_trip = 2 * self.link.delay;
        let lost = (probe.sent - probe.echoed) as f64 / probe.sent as f64;
        let expected_loss = 1.0 - (1.0 - self.link.loss).powi(2);
        let problem = if probe.echoed == 0 {
            Some("no datagram came back".to_string())
        } else if probe.min < round_trip {
            Some(format!(
                "a round trip took {:?}, under the emulated {round_trip:?}: the NFQUEUE rule did not catch it",
                probe.min
            ))
        } else if probe.median > round_trip + Duration::from_millis(15) {
            Some(format!(
                "the median round trip is {:?}, over {round_trip:?} + 15 ms: the delayers fall behind",
                probe.median
            ))
        } else if self.link.loss > 0.0 && (lost < expected_loss / 4.0 || lost > expected_loss * 3.0)
        {
            Some(format!(
                "{:.1}% lost, expected about {:.1}%",
                lost * 100.0,
                expected_loss * 100.0
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            bail!(
                "the link emulator does not work ({probe}): {problem}; \
                 it needs CONFIG_NETFILTER_NETLINK_QUEUE and the NFQUEUE target for `{IPTABLES}`"
            );
        }
        self.healthy()?;
        Ok(probe)
    }

    /// Fails if a delayer has stopped (its node's packets are then all dropped).
    pub(super) fn healthy(&self) -> Result<()> {
        if let Some((netns, _)) = self.delayers.iter().find(|(_, h)| h.is_finished()) {
            bail!("the delayer in {netns} stopped; see the error when the emulator is dropped");
        }
        Ok(())
    }

    /// One line on what the delayers did, and the kernel's own drops (its queue full, or the
    /// delayer's socket overrun) read from each namespace.
    pub(super) fn summary(&self) -> String {
        let packets = self.counters.packets.load(Ordering::Relaxed);
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        let vanished = self.counters.vanished.load(Ordering::Relaxed);
        let kernel: u64 = self.netns.iter().map(|ns| kernel_drops(ns)).sum();
        format!(
            "link emulator (seed {}): {packets} packets, {dropped} dropped at random ({:.2}%), \
             {kernel} dropped by the kernel's queues, {vanished} gone before their verdict",
            self.seed,
            100.0 * dropped as f64 / packets.max(1) as f64
        )
    }
}

impl Drop for LinkEmulator {
    fn drop(&mut self) {
        // Rules first: a bed that outlives the emulator carries its packets undelayed again.
        for netns in std::mem::take(&mut self.rules) {
            let _ = iptables(&netns, "-D");
        }
        self.stop.store(true, Ordering::Relaxed);
        for (netns, handle) in self.delayers.drain(..) {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("bench gossip: delayer in {netns} failed: {e:#}"),
                Err(_) => eprintln!("bench gossip: delayer in {netns} panicked"),
            }
        }
    }
}

/// `iptables -A|-D OUTPUT <RULE>` in `netns`.
fn iptables(netns: &str, verb: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, IPTABLES, verb, "OUTPUT"])
        .args(RULE)
        .output()
        .with_context(|| format!("run {IPTABLES} in {netns}"))?;
    if !out.status.success() {
        bail!(
            "{IPTABLES} {verb} OUTPUT {} in {netns}: {}",
            RULE.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The kernel's drops for [`QUEUE`] in `netns`: `queue_dropped + user_dropped` of
/// /proc/net/netfilter/nfnetlink_queue (0 once the namespace is gone).
fn kernel_drops(netns: &str) -> u64 {
    let Ok(text) = ip(&[
        "netns",
        "exec",
        netns,
        "cat",
        "/proc/net/netfilter/nfnetlink_queue",
    ]) else {
        return 0;
    };
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first().and_then(|q| q.parse::<u16>().ok()) == Some(QUEUE))
        .map(|f| {
            let at = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            at(5) + at(6)
        })
        .sum()
}

/// Moves the calling thread into the network namespace `netns` (`/run/netns/<netns>`).
fn enter_netns(netns: &str) -> Result<()> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {netns}"))
}

/// One node's delayer: enters its namespace, binds [`QUEUE`], reports on `ready`, then holds
/// each packet `link.delay` (dropping `link.loss` of them) until `stop`.
fn delayer(
    netns: &str,
    link: Link,
    mut rng: SplitMix,
    stop: &AtomicBool,
    counters: &Counters,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let bound = (|| -> Result<nfq::Queue> {
        enter_netns(netns)?;
        let mut queue = nfq::Queue::open().context("open a netfilter queue socket")?;
        queue.bind(QUEUE).context("bind the netfilter queue")?;
        queue.set_queue_max_len(QUEUE, QUEUE_MAX_LEN)?;
        queue.set_fail_open(QUEUE, false)?;
        queue.set_nonblocking(true);
        Ok(queue)
    })();
    let mut queue = match bound {
        Ok(q) => {
            let _ = ready.send(Ok(()));
            q
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    counters.packets.fetch_add(1, Ordering::Relaxed);
                    if rng.chance(link.loss) {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        msg.set_verdict(nfq::Verdict::Drop);
                        queue.verdict(msg).context("verdict")?;
                    } else {
                        held.push_back((Instant::now() + link.delay, msg));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The kernel's answer to a verdict on a packet it no longer holds: its device
                // went away (the bed being torn down).
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {
                    counters.vanished.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e).context("receive from the netfilter queue"),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, mut msg)) = held.pop_front() {
                msg.set_verdict(nfq::Verdict::Accept);
                queue.verdict(msg).context("verdict")?;
            }
        }
        let wait = held.front().map_or(TICK, |(due, _)| {
            due.saturating_duration_since(now).min(TICK)
        });
        // The queue has no descriptor to wait on (see the module doc): a bounded tick.
        std::thread::sleep(wait);
    }
    // Closing the socket unbinds the queue; the kernel drops what is still held.
    Ok(())
}

/// SplitMix64: a small seeded generator for the drops (printed seed, no dependency).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix;

    #[test]
    fn drops_about_the_asked_fraction() {
        let mut rng = SplitMix(7);
        let drops = (0..100_000).filter(|_| rng.chance(0.01)).count();
        assert!((800..1200).contains(&drops), "{drops}");
        assert!(!(0..1000).any(|_| rng.chance(0.0)));
    }
}

//! A network-namespace test bed: a "hub" namespace holding one bridge per segment, one
//! namespace per node joined to its segment's bridge by a veth pair, and trunk veths joining
//! every other segment's bridge to segment 0's. Nodes get 198.18.1.<i+1>/24 on `eth0`, loopback
//! up, no default route and no NAT: nothing the bed carries can leave the machine.
//!
//! Every name carries a per-run prefix `skm<pid>x<n>`; [`TestBed`]'s `Drop` kills whatever runs
//! in its namespaces, cgroups and temp dir (agents, shims, containers), unmounts and deletes
//! them (the veths and bridges go with the namespaces), and [`sweep_leftovers`] removes what a
//! killed test run left behind (its pid is gone); see [`crate::cleanup`].

use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace and temp dir this crate makes.
pub const RUN_PREFIX: &str = "skm";

static NEXT_BED: AtomicU32 = AtomicU32::new(0);

/// One node's place in the bed.
#[derive(Debug, Clone)]
pub struct BedNode {
    pub index: usize,
    /// Network namespace name (usable with `ip netns exec`).
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The hub-side end of the node's veth (its counters are the node's traffic).
    pub hub_veth: String,
    pub segment: usize,
}

/// The bed; dropping it removes everything it made.
pub struct TestBed {
    pub run_id: String,
    pub hub: String,
    pub dir: PathBuf,
    pub nodes: Vec<BedNode>,
    segments: usize,
}

pub use skiff_test_support::net::ip;

impl TestBed {
    /// A bed of `segment_of.len()` nodes; node `i` sits on segment `segment_of[i]`.
    pub fn new(segment_of: &[usize]) -> Result<TestBed> {
        sweep_leftovers();
        let run_id = format!(
            "{RUN_PREFIX}{}x{}",
            std::process::id(),
            NEXT_BED.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let hub = format!("{run_id}-hub");
        let segments = segment_of.iter().copied().max().map_or(1, |m| m + 1);
        let mut bed = TestBed {
            run_id: run_id.clone(),
            hub: hub.clone(),
            dir,
            nodes: Vec::new(),
            segments,
        };
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        for s in 0..segments {
            let br = format!("br{s}");
            ip(&["-n", &hub, "link", "add", &br, "type", "bridge"])?;
            ip(&["-n", &hub, "link", "set", &br, "up"])?;
            if s > 0 {
                let (a, b) = (format!("tk{s}a"), format!("tk{s}b"));
                ip(&[
                    "-n", &hub, "link", "add", &a, "type", "veth", "peer", "name", &b,
                ])?;
                ip(&["-n", &hub, "link", "set", &a, "master", "br0", "up"])?;
                ip(&["-n", &hub, "link", "set", &b, "master", &br, "up"])?;
            }
        }
        for (index, segment) in segment_of.iter().copied().enumerate() {
            let netns = format!("{run_id}-n{index}");
            let hub_veth = format!("v{index}");
            let ip_addr = Ipv4Addr::new(198, 18, 1, (index + 1) as u8);
            ip(&["netns", "add", &netns])?;
            bed.nodes.push(BedNode {
                index,
                netns: netns.clone(),
                ip: ip_addr,
                hub_veth: hub_veth.clone(),
                segment,
            });
            ip(&[
                "-n", &hub, "link", "add", &hub_veth, "type", "veth", "peer", "name", "eth0",
                "netns", &netns,
            ])?;
            ip(&[
                "-n",
                &hub,
                "link",
                "set",
                &hub_veth,
                "master",
                &format!("br{segment}"),
                "up",
            ])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip_addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        }
        Ok(bed)
    }

    /// A bed of `n` nodes on one segment.
    pub fn flat(n: usize) -> Result<TestBed> {
        Self::new(&vec![0; n])
    }

    /// Cuts (`up = false`) or restores the trunk between segment `segment` (> 0) and segment 0,
    /// by setting both ends of the trunk veth down or up.
    pub fn set_trunk(&self, segment: usize, up: bool) -> Result<()> {
        if segment == 0 || segment >= self.segments {
            bail!(
                "segment {segment} has no trunk (segments: {})",
                self.segments
            );
        }
        let state = if up { "up" } else { "down" };
        for end in ["a", "b"] {
            ip(&[
                "-n",
                &self.hub,
                "link",
                "set",
                &format!("tk{segment}{end}"),
                state,
            ])?;
        }
        Ok(())
    }

    /// Takes node `index`'s hub-side veth down or up.
    pub fn set_node_link(&self, index: usize, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            &self.nodes[index].hub_veth,
            state,
        ])?;
        Ok(())
    }

    /// Bytes (received, transmitted) by each node, read from its hub-side veth
    /// (the veth's rx is what the node sent).
    pub fn node_bytes(&self) -> Result<Vec<(u64, u64)>> {
        Ok(self
            .hub_counters()?
            .iter()
            .map(|fields| {
                let hub_rx = fields.first().copied().unwrap_or(0);
                let hub_tx = fields.get(8).copied().unwrap_or(0);
                (hub_tx, hub_rx)
            })
            .collect())
    }

    /// Packets each node sent so far (its veth's receive count on the hub side).
    pub fn node_sent_packets(&self) -> Result<Vec<u64>> {
        Ok(self
            .hub_counters()?
            .iter()
            .map(|fields| fields.get(1).copied().unwrap_or(0))
            .collect())
    }

    /// Each node's hub-side veth counters, as the numbers of its `/proc/net/dev` line in the
    /// hub (receive bytes, packets, ... then transmit bytes at index 8).
    fn hub_counters(&self) -> Result<Vec<Vec<u64>>> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.hub, "cat", "/proc/net/dev"])
            .output()
            .context("read /proc/net/dev in the hub")?;
        let text = String::from_utf8_lossy(&out.stdout);
        self.nodes
            .iter()
            .map(|n| {
                let line = text
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{}:", n.hub_veth)))
                    .with_context(|| {
                        format!("{} missing from the hub's /proc/net/dev", n.hub_veth)
                    })?;
                Ok(line
                    .split_once(':')
                    .map(|(_, rest)| rest)
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect())
            })
            .collect()
    }

    /// A per-node directory under the bed's temp dir.
    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        crate::cleanup::purge(&self.run_id, &self.dir);
    }
}

/// Kills every process in `ns` and deletes it.
fn remove_netns(ns: &str) {
    for pid in skiff_test_support::cleanup::netns_pids(ns) {
        skiff_test_support::proc::kill9(pid);
    }
    let _ = ip(&["netns", "del", ns]);
}

/// The pid a run id was made by (`skm<pid>x<n>...`).
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(RUN_PREFIX)?;
    rest.split('x').next()?.parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces, temp dirs and cgroups of earlier runs whose process is gone.
pub fn sweep_leftovers() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner_pid(ns).is_some_and(|pid| !alive(pid)) {
                remove_netns(ns);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|pid| !alive(pid)) {
                crate::cleanup::purge(&name, &e.path());
            }
        }
    }
}

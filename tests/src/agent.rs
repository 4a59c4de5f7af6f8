//! Real `skiff agent` processes in a [`TestBed`]'s namespaces, and what they report.
//!
//! Agents without pods are started with `ip netns exec NS skiff agent ... --no-pod-network`:
//! `ip` execs the agent in place, so the child we hold is the agent itself and `kill -9` of it
//! is a real crash. Agents with [`PodOptions`] run real containers and pod networking; they are
//! started with `nsenter --net=/run/netns/NS` instead, which switches only the network
//! namespace (`ip netns exec` also remounts /sys in a new mount namespace, hiding the cgroup
//! mounts and the pods' namespace mounts from the host), and also execs in place.

use crate::bed::{BedNode, TestBed};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use skiff_test_support::process::AgentProcess;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Gossip port every test agent listens on (each in its own namespace).
pub const GOSSIP_PORT: u16 = 7946;

pub use skiff_test_support::process::skiff_bin;

/// One row of `skiff get nodes -o json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    /// Ready, NotReady or Left.
    pub phase: String,
    pub generation: u64,
    pub address: String,
}

/// Parses a `kind: List` of nodes.
pub fn parse_nodes(list: &Value) -> Result<Vec<NodeRow>> {
    let items = list["items"]
        .as_array()
        .context("node list without items")?;
    items
        .iter()
        .map(|n| {
            Ok(NodeRow {
                name: n["metadata"]["name"]
                    .as_str()
                    .context("node without name")?
                    .into(),
                phase: n["status"]["phase"]
                    .as_str()
                    .context("node without phase")?
                    .into(),
                generation: n["status"]["generation"].as_u64().unwrap_or(0),
                address: n["status"]["gossipAddress"].as_str().unwrap_or("").into(),
            })
        })
        .collect()
}

/// Settings of an agent that runs real pods (containers, pod networking in its namespace).
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// `--cluster-cidr`: the leader hands each node a /24 of it (keep it in 198.18.0.0/15 and
    /// off the bed's node addresses, 198.18.1.0/24).
    pub cluster_cidr: String,
    /// `--eviction-delay-ms`; `None`: the agent's default.
    pub eviction_delay_ms: Option<u64>,
    /// `--crash-backoff-base-ms` and `--sandbox-backoff-base-ms`.
    pub crash_backoff_base_ms: u64,
    /// `--service-cidr` (inside 198.18.0.0/15, off the node and pod ranges).
    pub service_cidr: String,
}

impl Default for PodOptions {
    fn default() -> Self {
        PodOptions {
            cluster_cidr: "198.19.0.0/16".into(),
            eviction_delay_ms: None,
            crash_backoff_base_ms: 200,
            service_cidr: "198.18.128.0/20".into(),
        }
    }
}

/// A `skiff agent` in one namespace of the bed. Dropping it kills the process (the
/// [`AgentProcess`] guard).
pub struct Agent {
    pub name: String,
    pub node: BedNode,
    pub dir: PathBuf,
    pub socket: PathBuf,
    run_id: String,
    bin: PathBuf,
    child: Option<AgentProcess>,
    starts: u32,
    /// Real pods (see [`PodOptions`]); `None`: `--no-pod-network` and no containers expected.
    pub pods: Option<PodOptions>,
    /// Pass the join token in a file (`--token-file`) instead of on the command line.
    pub token_in_file: bool,
    /// More `skiff agent` arguments, after the harness's own (e.g. `--gossip-profile wan`).
    pub extra_args: Vec<String>,
}

impl Agent {
    /// An agent named `name` on bed node `index` (not started).
    pub fn new(bed: &TestBed, index: usize, name: &str) -> Result<Agent> {
        let dir = bed.node_dir(name);
        std::fs::create_dir_all(dir.join("manifests"))?;
        Ok(Agent {
            name: name.into(),
            node: bed.nodes[index].clone(),
            socket: dir.join("api.sock"),
            dir,
            run_id: bed.run_id.clone(),
            bin: skiff_bin()?,
            child: None,
            starts: 0,
            pods: None,
            token_in_file: false,
            extra_args: Vec::new(),
        })
    }

    pub fn gossip_addr(&self) -> SocketAddr {
        SocketAddr::from((self.node.ip, GOSSIP_PORT))
    }

    /// Starts the agent; `join` is `(peer, token)`. Output goes to `agent-<n>.log` in its dir.
    pub fn start(&mut self, join: Option<(SocketAddr, Option<&str>)>) -> Result<()> {
        if self.child.is_some() {
            bail!("agent {} already started", self.name);
        }
        self.starts += 1;
        let log_path = self.dir.join(format!("agent-{}.log", self.starts));
        let listen = self.gossip_addr().to_string();
        let mut cmd = match &self.pods {
            None => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &self.node.netns]);
                cmd
            }
            Some(_) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{}", self.node.netns));
                cmd
            }
        };
        cmd.arg(&self.bin)
            .arg("agent")
            .args([
                "--node-name",
                &self.name,
                "--listen",
                &listen,
                "--advertise",
                &listen,
            ])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--manifests-dir")
            .arg(self.dir.join("manifests"))
            .arg("--api-socket")
            .arg(&self.socket)
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .args([
                "--cgroup-parent",
                &format!("/{}/{}", self.run_id, self.name),
            ])
            .args([
                "--netns-prefix",
                &format!("{}-{}-", self.run_id, self.node.index),
            ])
            .env(
                "RUST_LOG",
                std::env::var("SKIFF_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            );
        match &self.pods {
            None => {
                cmd.arg("--no-pod-network");
            }
            Some(p) => {
                cmd.arg("--node-netns")
                    .arg(Path::new("/run/netns").join(&self.node.netns))
                    .args(["--cluster-cidr", &p.cluster_cidr, "--no-masquerade"])
                    .args(["--service-cidr", &p.service_cidr])
                    .args([
                        "--crash-backoff-base-ms",
                        &p.crash_backoff_base_ms.to_string(),
                    ])
                    .args([
                        "--sandbox-backoff-base-ms",
                        &p.crash_backoff_base_ms.to_string(),
                    ]);
                if let Some(ms) = p.eviction_delay_ms {
                    cmd.args(["--eviction-delay-ms", &ms.to_string()]);
                }
            }
        }
        if let Some((peer, token)) = join {
            cmd.args(["--join", &peer.to_string()]);
            match token {
                Some(token) if self.token_in_file => {
                    let path = self.dir.join("join-token");
                    std::fs::write(&path, format!("{token}\n"))?;
                    cmd.arg("--token-file").arg(path);
                }
                Some(token) => {
                    cmd.args(["--token", token]);
                }
                None => {}
            }
        }
        cmd.args(&self.extra_args);
        self.child = Some(AgentProcess::spawn(cmd, &log_path).context("start skiff agent")?);
        Ok(())
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(AgentProcess::pid)
    }

    /// Everything the agent printed in its latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("agent-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.take().context("agent not running")?.kill9()?;
        Ok(())
    }

    /// `kill -9` of the agent, then what a reboot does to the node (see
    /// [`crate::cleanup::simulate_reboot`]): its containers, pod namespaces, mounts, cgroups,
    /// run dir and pod bridge are gone; its data dir stays. Start it again with `start`.
    pub fn simulate_reboot(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.kill9()?;
        }
        crate::cleanup::simulate_reboot(
            crate::cleanup::Footprint {
                dir: &self.dir,
                cgroup_parent: &format!("/{}/{}", self.run_id, self.name),
                netns_prefix: &format!("{}-{}-", self.run_id, self.node.index),
            },
            &self.dir.join("run"),
        );
        // The bridge lives in the node's own namespace, which a reboot would empty too.
        let _ = crate::bed::ip(&["-n", &self.node.netns, "link", "del", "skiff0"]);
        Ok(())
    }

    /// SIGTERM and wait (up to `timeout`, then SIGKILL and fail).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.take().context("agent not running")?;
        child.terminate(timeout).with_context(|| {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            format!("agent {} (log tail:\n{})", self.name, tail.join("\n"))
        })
    }

    /// The exit status if the agent has exited (it is then forgotten).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("agent {} not started", self.name);
        };
        let status = child.try_exit()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// `skiff --socket S <args>`: stdout on success, else an error with stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "skiff {} on {}: exit {:?}: {}",
                args.join(" "),
                self.name,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `skiff get nodes -o json`, parsed.
    pub fn nodes(&self) -> Result<Vec<NodeRow>> {
        let out = self.cli(&["get", "nodes", "-o", "json"])?;
        parse_nodes(&serde_json::from_str(&out).context("get nodes -o json output")?)
    }

    /// The node list straight from the API socket (one JSON line each way), without starting
    /// a CLI process: for tight polling in benchmarks.
    pub fn nodes_via_socket(&self) -> Result<Vec<NodeRow>> {
        let request = serde_json::json!({
            "op": "get", "kind": "nodes", "name": null, "namespace": null, "all_namespaces": false,
        });
        let nodes =
            skiff_test_support::api::request(&self.socket, &request, Duration::from_secs(5))
                .with_context(|| format!("agent {}", self.name))?;
        parse_nodes(&nodes)
    }

    /// `skiff token create`: the token line.
    pub fn token(&self) -> Result<String> {
        let out = self.cli(&["token", "create", "--ttl", "1h"])?;
        out.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
            .context("token create printed nothing")
    }
}

/// Condition of `name` in `rows`, if listed.
pub fn phase_of<'a>(rows: &'a [NodeRow], name: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.name == name)
        .map(|r| r.phase.as_str())
}

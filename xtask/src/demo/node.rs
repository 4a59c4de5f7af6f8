//! One demo or benchmark agent: `skiff agent` started inside a node network namespace with
//! `nsenter --net` (only the network namespace changes, so the pods' namespace mounts and
//! cgroups stay visible to the host), every path under one directory, the test image imported;
//! and the teardown that deletes its workloads, stops it and removes what it made.

use crate::util;
use anyhow::{Context, Result, bail};
use skiff_tests::cleanup::{node_pids, remove_node};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by the Ctrl-C handler: waits give up so the guards can tear down.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Where and how an agent runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    /// Data, run and manifests dirs, the API socket and the logs go under it.
    pub dir: PathBuf,
    /// An existing namespace the agent runs in (gossip, and the node side of pod networking);
    /// `None`: a namespace `<name>node` with loopback only, made and removed here.
    pub netns: Option<String>,
    pub listen: Option<SocketAddr>,
    /// `(peer, token)`: `--join` and `--token`.
    pub join: Option<(SocketAddr, String)>,
    /// `None`: the leader hands one out from `cluster_cidr`.
    pub pod_subnet: Option<String>,
    pub cluster_cidr: String,
    pub cgroup_parent: String,
    /// Prefix of the pods' namespaces (must not prefix the node namespace).
    pub netns_prefix: String,
    /// `SKIFF_LOG` of the agent.
    pub log_filter: String,
    /// Where the agent's logs are copied (as `<name>-<start>.log`) before its dir is removed.
    pub keep_logs: Option<PathBuf>,
    /// More `skiff agent` flags.
    pub extra_args: Vec<String>,
}

impl NodeOptions {
    /// A lone agent: its own node namespace, pod subnet 198.18.42.0/24.
    pub fn single(name: &str, dir: &Path) -> NodeOptions {
        NodeOptions {
            name: name.into(),
            dir: dir.to_path_buf(),
            netns: None,
            listen: None,
            join: None,
            pod_subnet: Some("198.18.42.0/24".into()),
            cluster_cidr: "198.18.0.0/16".into(),
            cgroup_parent: format!("/skiff-{name}"),
            netns_prefix: format!("{name}-"),
            log_filter: "info".into(),
            keep_logs: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running agent; dropping it tears everything down.
pub struct DemoAgent {
    pub skiff: PathBuf,
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub manifests: PathBuf,
    opts: NodeOptions,
    node_netns: String,
    own_netns: bool,
    child: Option<Child>,
    starts: u32,
}

impl DemoAgent {
    /// Starts the agent, waits for its API and imports the test image. Pods get addresses from
    /// 198.18.0.0/15 in namespaces of their own, so nothing touches the host's network.
    pub fn start_with(skiff: &Path, image: &Path, opts: NodeOptions) -> Result<DemoAgent> {
        let dir = opts.dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
        let (node_netns, own_netns) = match &opts.netns {
            Some(ns) => (ns.clone(), false),
            // Not under the pods' netns prefix, or pod networking's gc would remove it.
            None => (format!("{}node", opts.name), true),
        };
        if own_netns {
            // A leftover from an earlier run, if any (usually there is none: stay quiet).
            let _ = Command::new("ip")
                .args(["netns", "del", &node_netns])
                .stderr(Stdio::null())
                .status();
            util::run(Command::new("ip").args(["netns", "add", &node_netns]))?;
            util::run(Command::new("ip").args(["-n", &node_netns, "link", "set", "lo", "up"]))?;
        }
        for sub in ["data", "run", "m"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut agent = DemoAgent {
            skiff: skiff.to_path_buf(),
            name: opts.name.clone(),
            socket: dir.join("skiff.sock"),
            manifests: dir.join("m"),
            dir,
            opts,
            node_netns,
            own_netns,
            child: None,
            starts: 0,
        };
        agent.spawn()?;
        agent.wait_api()?;
        let out = agent.cli(&["image", "import", &image.display().to_string()])?;
        if !out.status.success() {
            bail!(
                "image import on {} failed: {}",
                agent.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(agent)
    }

    /// The agent's log of its latest start.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("agent-{}.log", self.starts))
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path())?;
        let o = &self.opts;
        let netns_path = Path::new("/run/netns").join(&self.node_netns);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns_path.display()))
            .arg(&self.skiff)
            .arg("agent")
            .arg("--node-name")
            .arg(&o.name)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--manifests-dir")
            .arg(&self.manifests)
            .arg("--api-socket")
            .arg(&self.socket)
            .arg("--cgroup-parent")
            .arg(&o.cgroup_parent)
            .arg("--netns-prefix")
            .arg(&o.netns_prefix)
            .arg("--node-netns")
            .arg(&netns_path)
            .arg("--cluster-cidr")
            .arg(&o.cluster_cidr)
            .env("SKIFF_LOG", &o.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.args(&o.extra_args);
        if let Some(subnet) = &o.pod_subnet {
            cmd.args(["--pod-subnet", subnet]);
        }
        if let Some(listen) = o.listen {
            let listen = listen.to_string();
            cmd.args(["--listen", &listen, "--advertise", &listen]);
        }
        // Every start, as a service unit would: a restart loads its identity from the data dir
        // (the token is not used again) and reaches its peers through the seed at once.
        if let Some((peer, token)) = &o.join {
            cmd.args(["--join", &peer.to_string(), "--token", token]);
        }
        // Its own process group: Ctrl-C in the terminal reaches xtask, which tears down in order.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // nsenter execs the agent in place: the child is the agent itself.
        self.child = Some(
            cmd.spawn()
                .context("cannot start skiff agent with nsenter")?,
        );
        Ok(())
    }

    /// Waits until the API answers; fails early if the agent exits.
    pub fn wait_api(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "agent {} exited ({status}); log: {}",
                    self.name,
                    self.log_path().display()
                );
            }
            if self.cli(&["get", "pods"])?.status.success() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) || interrupted() {
                bail!(
                    "agent {} did not answer on {}; log: {}",
                    self.name,
                    self.socket.display(),
                    self.log_path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of the agent and of everything it started (shims, containers): the node dies.
    /// Its namespaces, mounts and directories stay for a [`DemoAgent::restart`].
    pub fn kill_node(&mut self) -> Result<()> {
        let mut child = self.child.take().context("agent not running")?;
        child.kill()?;
        child.wait()?;
        for pid in node_pids(&self.dir, &self.opts.cgroup_parent, &self.opts.netns_prefix) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        Ok(())
    }

    /// Starts the agent again on its data dir, with the same flags.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("agent {} is running", self.name);
        }
        self.spawn()?;
        self.wait_api()
    }

    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(&self.skiff)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run skiff")
    }

    /// `skiff ARGS` printed as a transcript (command, output).
    pub fn show(&self, args: &[&str]) -> Result<()> {
        self.show_output(args).map(drop)
    }

    /// [`DemoAgent::show`], handing back the command's output (its exit status to check).
    pub fn show_output(&self, args: &[&str]) -> Result<std::process::Output> {
        println!("\n[{}]$ skiff {}", self.name, args.join(" "));
        let out = self.cli(args)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok(out)
    }

    /// One request on the API socket (a JSON line each way, no CLI process); the reply's value.
    pub fn api(&self, request: &serde_json::Value) -> Result<serde_json::Value> {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket)
            .with_context(|| format!("connect {}", self.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stream.write_all(&line)?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply)?;
        let reply: serde_json::Value = serde_json::from_str(&reply)
            .with_context(|| format!("api reply from {}: {reply:?}", self.name))?;
        if reply["type"] != "ok" {
            bail!("api error from {}: {}", self.name, reply["message"]);
        }
        Ok(reply["value"].clone())
    }

    /// Every pod of the cluster as this node lists it (`get pods -A -o json`).
    pub fn pods(&self) -> Result<Vec<serde_json::Value>> {
        let v = self.api(&serde_json::json!({
            "op": "get", "kind": "pods", "name": null, "namespace": null, "all_namespaces": true,
        }))?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `done` every 50 ms until it holds, `limit` passes or Ctrl-C.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        if !self.poll(limit, done) {
            if interrupted() {
                bail!("interrupted while waiting for {what}");
            }
            bail!(
                "timed out after {limit:?} waiting for {what}; agent log: {}",
                self.log_path().display()
            );
        }
        Ok(())
    }

    fn poll(&self, limit: Duration, mut done: impl FnMut(&Self) -> Result<bool>) -> bool {
        let start = Instant::now();
        loop {
            if done(self).unwrap_or(false) {
                return true;
            }
            if start.elapsed() > limit || interrupted() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the agent alone (SIGTERM; SIGKILL after 15 s): its pods keep running, as after a
    /// service stop, for a [`DemoAgent::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Deletes the workloads dropped here, waits (up to a minute) until the cluster runs no
    /// pods, stops the agent, removes what it left and its dirs.
    pub fn teardown(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.manifests) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if self.child.is_some() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if self.pods().is_ok_and(|p| p.is_empty()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.stop();
        if let Some(to) = &self.opts.keep_logs {
            let _ = std::fs::create_dir_all(to);
            for start in 1..=self.starts {
                let _ = std::fs::copy(
                    self.dir.join(format!("agent-{start}.log")),
                    to.join(format!("{}-{start}.log", self.name)),
                );
            }
        }
        remove_node(&self.dir, &self.opts.cgroup_parent, &self.opts.netns_prefix);
        if self.own_netns {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.node_netns])
                .status();
        }
    }
}

impl Drop for DemoAgent {
    fn drop(&mut self) {
        self.teardown();
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

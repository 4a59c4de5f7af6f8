//! `cargo xtask demo`: one agent with no config file, fed the manifests in examples/, shows its
//! pods and waits for Ctrl-C, then deletes the workloads and removes everything it made.
//! `--once` shows the pods and tears down without waiting (for scripts).

use crate::util;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running demo agent; dropping it tears everything down.
pub struct DemoAgent {
    pub skiff: PathBuf,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub manifests: PathBuf,
    cgroup_parent: String,
    netns_prefix: String,
    node_netns: String,
    child: Option<Child>,
}

impl DemoAgent {
    /// Starts `skiff agent` with every path under `dir` and imports the test image. The node
    /// side of pod networking lives in a network namespace of its own and pods get addresses
    /// from 198.18.0.0/15 (the benchmarking range), so nothing touches the host's network.
    pub fn start(skiff: &Path, image: &Path, dir: &Path, name: &str) -> Result<DemoAgent> {
        let _ = std::fs::remove_dir_all(dir);
        // Not under the pods' netns prefix, or pod networking's gc would remove it.
        let node_netns = format!("{name}node");
        // A leftover from an earlier run, if any (usually there is none: stay quiet).
        let _ = Command::new("ip")
            .args(["netns", "del", &node_netns])
            .stderr(Stdio::null())
            .status();
        util::run(Command::new("ip").args(["netns", "add", &node_netns]))?;
        for sub in ["data", "run", "m"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let socket = dir.join("skiff.sock");
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let cgroup_parent = format!("/skiff-{name}");
        let netns_prefix = format!("{name}-");
        let mut cmd = Command::new(skiff);
        cmd.arg("agent")
            .arg("--node-name")
            .arg(name)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--manifests-dir")
            .arg(dir.join("m"))
            .arg("--api-socket")
            .arg(&socket)
            .arg("--cgroup-parent")
            .arg(&cgroup_parent)
            .arg("--netns-prefix")
            .arg(&netns_prefix)
            .arg("--node-netns")
            .arg(format!("/run/netns/{node_netns}"))
            .args([
                "--pod-subnet",
                "198.18.42.0/24",
                "--cluster-cidr",
                "198.18.0.0/16",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: Ctrl-C in the terminal reaches xtask, which tears down in order.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().context("cannot start skiff agent")?;
        let agent = DemoAgent {
            skiff: skiff.to_path_buf(),
            dir: dir.to_path_buf(),
            manifests: dir.join("m"),
            socket,
            cgroup_parent,
            netns_prefix,
            node_netns,
            child: Some(child),
        };
        agent.wait_for(Duration::from_secs(30), "the agent's API socket", |a| {
            Ok(a.cli(&["get", "pods"])?.status.success())
        })?;
        let out = agent.cli(&["image", "import", &image.display().to_string()])?;
        if !out.status.success() {
            bail!(
                "image import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(agent)
    }

    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(&self.skiff)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("cannot run skiff")
    }

    pub fn pods(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.cli(&["get", "pods", "-A", "-o", "json"])?;
        if !out.status.success() {
            bail!("get pods: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `done` every 50 ms until it holds or `limit` passes.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if done(self).unwrap_or(false) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {what}; agent log: {}",
                    self.dir.join("agent.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes every workload, waits for the pods to go, stops the agent, removes its dirs.
    pub fn teardown(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.manifests) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if self.child.is_some() {
            let _ = self.wait_for(Duration::from_secs(60), "pods to stop", |a| {
                Ok(a.pods()?.is_empty())
            });
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        cleanup_leftovers(&self.dir, &self.cgroup_parent, &self.netns_prefix);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.node_netns])
            .status();
    }
}

impl Drop for DemoAgent {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes what a killed agent may have left: processes in its cgroups, mounts, namespaces,
/// cgroup directories, and its directory.
pub fn cleanup_leftovers(dir: &Path, cgroup_parent: &str, netns_prefix: &str) {
    let hierarchies: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let rel = cgroup_parent.trim_start_matches('/');
    for h in &hierarchies {
        let root = h.join(rel);
        let mut dirs = Vec::new();
        collect_dirs(&root, &mut dirs);
        for d in &dirs {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
    }
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(netns_prefix) {
                let _ = Command::new("umount").arg(e.path()).status();
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for h in &hierarchies {
        let mut dirs = Vec::new();
        collect_dirs(&h.join(rel), &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn collect_dirs(root: &Path, out: &mut Vec<PathBuf>) {
    if !root.is_dir() {
        return;
    }
    out.push(root.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let once = args.iter().any(|a| a == "--once");
    crate::packages::ensure(&["libseccomp-dev", "pkg-config", "busybox-static", "iproute2"])?;
    let image = crate::build_test_image()?;
    let skiff = util::build_skiff()?;
    let root = crate::root();
    let dir = PathBuf::from("/tmp/skiff-demo");
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let mut agent = DemoAgent::start(&skiff, &image, &dir, "demo")?;
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("examples"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(
                &path,
                agent.manifests.join(path.file_name().unwrap_or_default()),
            )?;
            count += 1;
        }
    }
    println!(
        "demo: agent running with {count} example manifests in {}",
        agent.manifests.display()
    );
    agent.wait_for(Duration::from_secs(120), "every pod to run", |a| {
        let pods = a.pods()?;
        Ok(!pods.is_empty()
            && pods.iter().all(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["conditions"][3]["status"] == "True"
            }))
    })?;
    let show = |args: &[&str]| -> Result<()> {
        println!("\n$ skiff {}", args.join(" "));
        let out = agent.cli(args)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    show(&["get", "pods", "-o", "wide"])?;
    show(&["get", "deployments"])?;
    show(&["logs", "worker", "--tail", "3"])?;
    if !once {
        println!(
            "\ndemo: try `skiff --socket {} get pods -o wide`; press Ctrl-C to tear down",
            agent.socket.display()
        );
        let _ = stop_rx.recv();
    }
    println!("demo: tearing down");
    agent.teardown();
    println!("demo: done");
    Ok(())
}

//! Harness for the privileged end-to-end tests: a real `skiff agent` process with its own short
//! temp dirs, cgroup parent and netns prefix, the busybox test image imported, CLI helpers,
//! polling with deadlines, and a drop guard that removes everything the agent made.
//!
//! Run as root: `cargo test -p skiff-agent --test <file>` (or `cargo nextest run -p skiff-agent`).
//! Needs busybox-static (test image), iproute2 (`ip netns`), skopeo and docker-registry (image
//! tests). Each agent runs pod networking inside its own node network namespace (`t<tag>n`,
//! pods in 198.18.7.0/24, no masquerade), so nothing touches the host's network. The image
//! comes from `SKIFF_TEST_IMAGE` or is built once into the target dir.
#![allow(dead_code)]

pub mod cleanup;
pub mod counter;
pub mod image;
pub mod netbed;
pub mod proc;
pub mod queries;
pub mod util;

use skiff_test_support::cleanup::Footprint;
use skiff_test_support::process::AgentProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use image::{TEST_IMAGE, test_image_archive};
pub use util::*;

/// The skiff binary under test.
pub const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");

/// Generous deadline for things that should happen within a second or two.
pub const WAIT: Duration = Duration::from_secs(30);

/// Options of one test agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// `--crash-backoff-base-ms` and `--sandbox-backoff-base-ms`.
    pub crash_backoff_base_ms: u64,
    /// Import the busybox test image once the agent is up.
    pub import_test_image: bool,
    /// Extra lines for the agent's TOML config file.
    pub config: String,
    /// Pod networking (bridge, veth, IPAM) inside the agent's own node network namespace;
    /// off: loopback-only pod namespaces.
    pub pod_network: bool,
    /// The node's pod subnet.
    pub pod_subnet: String,
    /// `--cluster-cidr` (not masqueraded).
    pub cluster_cidr: String,
    /// Masquerade pod egress (default off: `--no-masquerade`).
    pub masquerade: bool,
    /// Extra `skiff agent` flags.
    pub extra_args: Vec<String>,
    /// Mount a tmpfs of this size (`mount -o size=`) on the data dir, to make a small disk.
    pub data_tmpfs: Option<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            crash_backoff_base_ms: 200,
            import_test_image: true,
            config: String::new(),
            pod_network: true,
            pod_subnet: "198.18.7.0/24".to_string(),
            cluster_cidr: "198.18.0.0/15".to_string(),
            masquerade: false,
            extra_args: Vec::new(),
            data_tmpfs: None,
        }
    }
}

/// A running agent and everything it owns. Dropping it cleans up, even during a panic.
pub struct TestAgent {
    /// `/tmp/sk-XXXXXX`: holds `data`, `m` (manifests), `run`, the socket and the agent log.
    pub dir: PathBuf,
    pub data: PathBuf,
    pub manifests: PathBuf,
    pub run: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// `/skiff-t-<rand>`.
    pub cgroup_parent: String,
    /// `t<rand>-`: the pods' network namespaces.
    pub netns_prefix: String,
    /// `t<rand>n`: the node side of pod networking (bridge, host ends of veths) lives in this
    /// namespace, made by the harness, so tests never touch the host's network.
    pub node_netns: String,
    /// `t<rand>`: every network namespace of this agent starts with it.
    pub netns_tag: String,
    /// The node's pod subnet (in 198.18.0.0/15, inside the node namespace only).
    pub pod_subnet: String,
    pub node_name: String,
    pub options: AgentOptions,
    child: Option<AgentProcess>,
    cleaned: bool,
}

fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

impl TestAgent {
    /// Starts an agent with default options and the test image imported.
    pub fn start() -> TestAgent {
        TestAgent::start_with(AgentOptions::default())
    }

    pub fn start_with(options: AgentOptions) -> TestAgent {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(cleanup::sweep_dead_owners);
        let (dir, tag) = loop {
            let tag = random_hex(6);
            let dir = PathBuf::from(format!("/tmp/sk-{tag}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => break (dir, tag),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", dir.display()),
            }
        };
        let mut agent = TestAgent {
            data: dir.join("data"),
            manifests: dir.join("m"),
            run: dir.join("run"),
            socket: dir.join("s.sock"),
            log: dir.join("agent.log"),
            cgroup_parent: format!("/skiff-t-{tag}"),
            netns_prefix: format!("t{tag}-"),
            node_netns: format!("t{tag}n"),
            netns_tag: format!("t{tag}"),
            pod_subnet: options.pod_subnet.clone(),
            node_name: format!("node-{tag}"),
            dir,
            options,
            child: None,
            cleaned: false,
        };
        cleanup::write_owner(&agent.dir);
        for d in [&agent.data, &agent.manifests, &agent.run] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        if let Some(size) = &agent.options.data_tmpfs {
            nix::mount::mount(
                Some("tmpfs"),
                &agent.data,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(format!("size={size},mode=0700").as_str()),
            )
            .expect("mount a tmpfs on the data dir");
        }
        agent.make_node_netns();
        agent.spawn();
        if agent.options.import_test_image {
            let archive = test_image_archive();
            agent.skiff_ok(&["image", "import", &archive.display().to_string()]);
        }
        agent
    }

    /// The node's own network namespace (its "host" network), made empty like at boot.
    fn make_node_netns(&self) {
        if !self.options.pod_network {
            return;
        }
        for args in [
            ["netns", "add", self.node_netns.as_str()].as_slice(),
            ["-n", self.node_netns.as_str(), "link", "set", "lo", "up"].as_slice(),
        ] {
            skiff_test_support::net::ip(args).unwrap_or_else(|e| panic!("{e:#}"));
        }
    }

    /// Kills the agent and does to the node what a reboot does (see `cleanup::simulate_reboot`),
    /// then makes the node's network namespace again, empty. Start the agent with `restart`.
    pub fn simulate_reboot(&mut self) {
        self.kill9();
        skiff_test_support::cleanup::simulate_reboot(self.footprint(), &self.run);
        self.make_node_netns();
    }

    /// Where this agent's things are (temp dir, cgroups, every network namespace).
    pub fn footprint(&self) -> Footprint<'_> {
        Footprint {
            dir: &self.dir,
            cgroup_parent: &self.cgroup_parent,
            netns_prefix: &self.netns_tag,
        }
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    /// Starts the agent again expecting it to refuse to start: waits for it to exit and
    /// returns its exit status and log. Panics if it becomes ready instead.
    pub fn restart_expecting_failure(&mut self) -> (std::process::ExitStatus, String) {
        self.launch();
        let deadline = Instant::now() + WAIT;
        loop {
            let child = self.child.as_mut().expect("launched");
            if let Ok(Some(status)) = child.try_exit() {
                self.child = None;
                return (status, self.log_text());
            }
            if self.socket.exists() && self.skiff(&["get", "nodes", "-o", "json"]).status.success()
            {
                panic!(
                    "the agent started although it should have refused\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent neither exited nor started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let mut cmd = Command::new(SKIFF);
        cmd.arg("agent")
            .args(["--node-name", &self.node_name])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--manifests-dir")
            .arg(&self.manifests)
            .arg("--api-socket")
            .arg(&self.socket)
            .arg("--run-dir")
            .arg(&self.run)
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(["--netns-prefix", &self.netns_prefix])
            .args([
                "--crash-backoff-base-ms",
                &self.options.crash_backoff_base_ms.to_string(),
            ])
            .args([
                "--sandbox-backoff-base-ms",
                &self.options.crash_backoff_base_ms.to_string(),
            ])
            // Gossip is not part of these tests; keep the port away from anything real.
            .args(["--listen", "127.0.0.1:0"]);
        // Pod networking runs its node side (bridge, veth host ends, nftables) inside the
        // node namespace the harness made, so nothing touches the host's network.
        if self.options.pod_network {
            cmd.arg("--node-netns")
                .arg(Path::new("/run/netns").join(&self.node_netns))
                .args(["--bridge", &format!("sk{}", &self.netns_tag[1..])])
                .args(["--pod-subnet", &self.pod_subnet])
                .args(["--cluster-cidr", &self.options.cluster_cidr]);
            if !self.options.masquerade {
                cmd.arg("--no-masquerade");
            }
        } else {
            cmd.arg("--no-pod-network");
        }
        cmd.args(&self.options.extra_args);
        if !self.options.config.is_empty() {
            let path = self.dir.join("agent.toml");
            std::fs::write(&path, &self.options.config).expect("write agent config");
            cmd.arg("--config").arg(path);
        }
        cmd.env(
            "SKIFF_LOG",
            std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
        );
        let child = AgentProcess::spawn(cmd, &self.log)
            .unwrap_or_else(|e| panic!("start {SKIFF} agent: {e:#}"));
        self.child = Some(child);
    }

    /// Waits until the agent answers on its socket.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_exit()
            {
                self.child = None;
                panic!(
                    "agent exited during start with {status}\n{}",
                    self.log_text()
                );
            }
            if self.socket.exists() {
                let out = self.skiff(&["get", "nodes", "-o", "json"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready within {WAIT:?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(AgentProcess::pid)
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILLs the agent (its containers and shims keep running).
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = child.kill9();
        }
    }

    /// SIGTERM, and waits for a clean exit (status 0).
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        match child.terminate(WAIT) {
            Ok(status) => assert!(
                status.success(),
                "agent exited with {status} after SIGTERM\n{}",
                self.log_text()
            ),
            Err(e) => panic!("{e:#}\n{}", self.log_text()),
        }
    }

    /// Starts the agent again with the same dirs (after `stop` or `kill9`).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Writes (atomically: temp file outside the watched dir, then rename) a manifest file.
    pub fn write_manifest(&self, name: &str, yaml: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml).expect("write manifest");
        std::fs::rename(&tmp, self.manifests.join(name)).expect("rename manifest");
    }

    pub fn remove_manifest(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(name)).expect("remove manifest");
    }

    /// Runs the full cleanup now (the drop guard does the same; this one reports leftovers).
    pub fn cleanup(&mut self) -> cleanup::Leftovers {
        self.kill9();
        self.cleaned = true;
        skiff_test_support::cleanup::clean(self.footprint())
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        if !self.cleaned {
            self.kill9();
            let left = skiff_test_support::cleanup::clean(self.footprint());
            if !left.is_empty() {
                eprintln!("test agent cleanup left: {left:?}");
            }
        }
    }
}

//! Shared harness for privileged tests: a private netns directory, a "node" namespace the
//! NetlinkNetwork works in, client namespaces, spawned helper processes, and guards that remove
//! all of it even when a test fails. No traffic leaves the namespaces made here.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_cni::netns::{list_netns_files, unmount_netns_dir};
use skiff_cni::{NetlinkNetwork, NetworkConfig, PodNetRequest, create_netns, remove_netns};

/// Everything one test made. Dropping it kills processes, then removes every namespace (the
/// node namespace takes its bridge, veths and nftables table with it), then the mounts.
pub struct TestNode {
    pub tmp: tempfile::TempDir,
    pub netns_dir: PathBuf,
    pub node_ns: PathBuf,
    pub db_path: PathBuf,
    pub cfg: NetworkConfig,
    pub children: Vec<Child>,
}

impl TestNode {
    /// `tag` makes names unique per test; `third` picks the subnet 198.18.<third>.0/24.
    pub fn new(tag: &str, subnet: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let netns_dir = tmp.path().join("netns");
        let node_ns = create_netns(&netns_dir, "node").expect("node netns");
        let mut cfg = NetworkConfig::for_subnet(subnet.parse().expect("subnet"));
        cfg.bridge = format!("br{tag}");
        cfg.nft_table = format!("skt_{tag}");
        cfg.link_prefix = "tv".into();
        cfg.netns_dir = netns_dir.clone();
        cfg.netns_prefix = "pod-".into();
        cfg.node_netns = Some(node_ns.clone());
        let resolv = tmp.path().join("node-resolv.conf");
        std::fs::write(&resolv, "nameserver 198.18.0.53\nnameserver 127.0.0.53\n").expect("resolv");
        cfg.resolv_conf_source = resolv;
        TestNode {
            db_path: tmp.path().join("state.redb"),
            tmp,
            netns_dir,
            node_ns,
            cfg,
            children: Vec::new(),
        }
    }

    pub fn open_db(&self) -> skiff_cni::ipam::SharedDb {
        skiff_cni::ipam::shared(redb::Database::create(&self.db_path).expect("open redb"))
    }

    pub fn network(&self, db: skiff_cni::ipam::SharedDb) -> NetlinkNetwork {
        NetlinkNetwork::new(self.cfg.clone(), db).expect("network")
    }

    pub fn request(&self, id: &str) -> PodNetRequest {
        PodNetRequest {
            id: id.into(),
            netns_name: format!("pod-{id}"),
            hostname: id.into(),
            files_dir: self.tmp.path().join("pods").join(id),
            ports: Vec::new(),
            cluster_dns: None,
            hosts: Default::default(),
        }
    }

    /// A client namespace joined to the node by a veth: node side `node_ip/24`, client side
    /// `client_ip/24`; the client has no route to the pod subnet (only masquerade answers it).
    pub fn client(&self, name: &str, node_ip: &str, client_ip: &str) -> PathBuf {
        let client = create_netns(&self.netns_dir, name).expect("client netns");
        let (n, c) = (format!("cn{name}"), format!("cc{name}"));
        run_ok(
            &self.node_ns,
            &["ip", "link", "add", &n, "type", "veth", "peer", "name", &c],
        );
        run_ok(
            &self.node_ns,
            &[
                "ip",
                "link",
                "set",
                &c,
                "netns",
                &client.display().to_string(),
            ],
        );
        run_ok(
            &self.node_ns,
            &["ip", "addr", "add", &format!("{node_ip}/24"), "dev", &n],
        );
        run_ok(&self.node_ns, &["ip", "link", "set", &n, "up"]);
        run_ok(
            &client,
            &["ip", "addr", "add", &format!("{client_ip}/24"), "dev", &c],
        );
        run_ok(&client, &["ip", "link", "set", &c, "up"]);
        client
    }

    /// Starts busybox httpd in `ns` serving a page that says `marker`; returns the log path.
    pub fn httpd(&mut self, ns: &Path, port: u16, marker: &str) -> PathBuf {
        let root = self.tmp.path().join(format!("www-{marker}"));
        std::fs::create_dir_all(&root).expect("www");
        std::fs::write(root.join("index.html"), marker).expect("index");
        let log = self.tmp.path().join(format!("httpd-{marker}.log"));
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args([
                "busybox",
                "httpd",
                "-f",
                "-vv",
                "-p",
                &port.to_string(),
                "-h",
            ])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn httpd");
        self.children.push(child);
        log
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in list_netns_files(&self.netns_dir, "").unwrap_or_default() {
            let _ = remove_netns(&self.netns_dir, &name);
        }
        let _ = unmount_netns_dir(&self.netns_dir);
    }
}

impl TestNode {
    /// Starts a long-running helper inside `ns`; the guard kills it.
    pub fn spawn_in(&mut self, ns: &Path, args: &[&str]) {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn helper");
        self.children.push(child);
    }
}

/// Runs a command inside a namespace.
pub fn run(ns: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(args)
        .output()
        .expect("run nsenter")
}

pub fn run_ok(ns: &Path, args: &[&str]) -> String {
    let out = run(ns, args);
    assert!(
        out.status.success(),
        "{args:?} in {}: {out:?}",
        ns.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fetches a page with busybox wget from inside `ns`, retrying until `deadline`.
pub fn fetch(ns: &Path, url: &str, deadline: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let out = run(
            ns,
            &["timeout", "3", "busybox", "wget", "-q", "-O", "-", url],
        );
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if start.elapsed() > deadline {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `predicate` until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if predicate() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    predicate()
}

/// Links of the namespace, one name per entry.
pub fn link_names(ns: &Path) -> Vec<String> {
    run_ok(ns, &["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

//! Test bed for the pod networking tests (issue 3): a test agent with pod networking in its own
//! node namespace, plus a client namespace joined to the node by a veth that plays an outside
//! host (198.19.<n>.2, the node's side 198.19.<n>.1), TCP listeners inside any namespace that
//! record who connected, commands run inside a namespace, and the node's leftovers as seen by
//! the `cni` crate. Everything is removed by the guards, even on failure.

use super::{AgentOptions, TestAgent};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A test agent with an outside client namespace. Derefs to the agent.
pub struct NetBed {
    /// Declared first: dropped (client namespace removed) before the agent's guard runs.
    client: ClientNetns,
    agent: TestAgent,
}

/// Where the bed's addresses are.
pub struct ClientNetns {
    /// `t<tag>c`: the outside host's namespace.
    pub name: String,
    /// The node's address on the link to the client (198.19.n.1).
    pub node_ip: Ipv4Addr,
    /// The client's address (198.19.n.2).
    pub client_ip: Ipv4Addr,
}

impl Drop for ClientNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    skiff_test_support::net::ip(args).unwrap_or_else(|e| panic!("{e:#}"))
}

impl NetBed {
    /// An agent with pod subnet `198.18.<n>.0/<prefix>` (cluster range = that subnet, so
    /// the client is "outside") and a client namespace on `198.19.<n>.0/24`.
    pub fn start(n: u8, prefix: u8, masquerade: bool) -> NetBed {
        NetBed::start_with_args(n, prefix, masquerade, &[])
    }

    /// [`NetBed::start`] with extra `skiff agent` flags.
    pub fn start_with_args(n: u8, prefix: u8, masquerade: bool, args: &[&str]) -> NetBed {
        let subnet = format!("198.18.{n}.0/{prefix}");
        let agent = TestAgent::start_with(AgentOptions {
            pod_subnet: subnet.clone(),
            cluster_cidr: subnet.clone(),
            masquerade,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            ..AgentOptions::default()
        });
        let client = ClientNetns {
            name: format!("{}c", agent.netns_tag),
            node_ip: Ipv4Addr::new(198, 19, n, 1),
            client_ip: Ipv4Addr::new(198, 19, n, 2),
        };
        let node = agent.node_netns.clone();
        let (c, host_end, client_end) = (
            client.name.as_str(),
            format!("{}h", agent.netns_tag),
            format!("{}c", agent.netns_tag),
        );
        ip(&["netns", "add", c]);
        ip(&["-n", c, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &node,
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            &client_end,
            "netns",
            c,
        ]);
        ip(&[
            "-n",
            &node,
            "addr",
            "add",
            &format!("{}/24", client.node_ip),
            "dev",
            &host_end,
        ]);
        ip(&["-n", &node, "link", "set", &host_end, "up"]);
        ip(&[
            "-n",
            c,
            "addr",
            "add",
            &format!("{}/24", client.client_ip),
            "dev",
            &client_end,
        ]);
        ip(&["-n", c, "link", "set", &client_end, "up"]);
        // Without masquerade the client can still answer pods (through the node).
        ip(&[
            "-n",
            c,
            "route",
            "add",
            &subnet,
            "via",
            &client.node_ip.to_string(),
        ]);
        NetBed { client, agent }
    }

    pub fn client(&self) -> &ClientNetns {
        &self.client
    }

    /// The node's address on its bridge (the pods' gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        let net: ipnet::Ipv4Net = self.agent.pod_subnet.parse().expect("pod subnet");
        skiff_cni::config::first_host(net)
    }

    /// busybox `wget -q -O - URL` from inside `netns` (3 s limit); `None` on failure.
    pub fn wget_in(netns: &str, url: &str) -> Option<String> {
        skiff_test_support::net::wget_in(netns, url)
    }

    /// Host-side veths (prefix `vsk`) in the node namespace.
    pub fn pod_links(&self) -> Vec<String> {
        ip(&["-n", &self.agent.node_netns, "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("vsk"))
            .collect()
    }

    /// `nft list table ip skiff-svc` (the Services' table) inside the node namespace.
    pub fn nft_service_table(&self) -> String {
        self.nft_list("skiff-svc")
    }

    /// `nft list table ip skiff` inside the node namespace.
    pub fn nft_table(&self) -> String {
        self.nft_list("skiff")
    }

    fn nft_list(&self, table: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.agent.node_netns,
                "nft",
                "list",
                "table",
                "ip",
                table,
            ])
            .output()
            .expect("run nft (install nftables)");
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The cni crate's view of the node with the agent stopped (it holds the database):
    /// leases, records, links, namespaces, published ports.
    pub fn inventory(&self) -> skiff_cni::NodeInventory {
        use skiff_cni::PodNetwork;
        let net = self.cni_instance();
        tokio_runtime()
            .block_on(net.inventory())
            .expect("cni inventory")
    }

    /// A `NetlinkNetwork` configured like the agent's, on the agent's database. Only while
    /// the agent is stopped.
    pub fn cni_instance(&self) -> skiff_cni::NetlinkNetwork {
        assert!(self.agent.pid().is_none(), "stop the agent first");
        let config = skiff_agent::config::AgentConfig {
            pod_subnet: self.agent.pod_subnet.parse().expect("pod subnet"),
            cluster_cidr: self
                .agent
                .options
                .cluster_cidr
                .parse()
                .expect("cluster cidr"),
            masquerade: self.agent.options.masquerade,
            bridge: format!("sk{}", &self.agent.netns_tag[1..]),
            netns_prefix: self.agent.netns_prefix.clone(),
            node_netns: Some(std::path::Path::new("/run/netns").join(&self.agent.node_netns)),
            data_dir: self.agent.data.clone(),
            ..skiff_agent::config::AgentConfig::default()
        };
        let db = redb::Database::create(config.db_path()).expect("open the agent's database");
        skiff_cni::NetlinkNetwork::new(
            skiff_agent::agent::network_config(&config),
            skiff_agent::store::shared(db),
        )
        .expect("cni instance")
    }
}

/// A small runtime for calling the cni crate from a test.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Deref for NetBed {
    type Target = TestAgent;
    fn deref(&self) -> &TestAgent {
        &self.agent
    }
}

impl DerefMut for NetBed {
    fn deref_mut(&mut self) -> &mut TestAgent {
        &mut self.agent
    }
}

/// A TCP server inside a namespace that answers every connection with a tiny HTTP reply and
/// records the peer's address. Stops when dropped.
pub struct PeerRecorder {
    pub addr: SocketAddr,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeerRecorder {
    /// Listens on `addr` inside `/run/netns/<netns>` (the socket is made on a thread that
    /// entered the namespace; it stays there).
    pub fn start(netns: &str, addr: SocketAddr) -> PeerRecorder {
        let listener = in_netns(netns, move || {
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peers, stop) = (peers.clone(), stop.clone());
            std::thread::spawn(move || serve(listener, &peers, &stop))
        };
        PeerRecorder {
            addr,
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// Addresses seen so far.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

fn serve(listener: TcpListener, peers: &Mutex<Vec<IpAddr>>, stop: &AtomicBool) {
    use std::io::{Read, Write};
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, peer)) => {
                if let Ok(mut p) = peers.lock() {
                    p.push(peer.ip());
                }
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nrecorded\n");
            }
            // Idle: check the stop flag again soon (this is the server's loop, not a wait).
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for PeerRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub use skiff_test_support::net::in_netns;

/// A UDP socket inside a namespace that answers each datagram with `echo:<data>`. Busybox in
/// the test image has no UDP server, so UDP hostPort tests answer from the pod's namespace
/// with this. Stops when dropped.
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(netns: &str, addr: SocketAddr) -> UdpEcho {
        UdpEcho::start_tagged(netns, addr, "echo")
    }

    /// Answers `<tag>:<data>` (to tell backends apart).
    pub fn start_tagged(netns: &str, addr: SocketAddr, tag: &str) -> UdpEcho {
        let prefix = format!("{tag}:").into_bytes();
        let socket = in_netns(netns, move || {
            std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind udp {addr}: {e}"))
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("udp timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let reply = [prefix.as_slice(), &buf[..n]].concat();
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        UdpEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `msg` over UDP from inside `netns` to `to`; the reply, if one comes within 1 s.
pub fn udp_ask(netns: &str, to: SocketAddr, msg: &str) -> Option<String> {
    let socket = in_netns(netns, || {
        std::net::UdpSocket::bind("0.0.0.0:0").expect("bind udp")
    });
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("udp timeout");
    socket.send_to(msg.as_bytes(), to).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

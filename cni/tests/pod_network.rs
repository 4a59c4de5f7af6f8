//! Privileged tests (root) of NetlinkNetwork in namespaces the tests create: pod-to-pod,
//! pod-to-node, hostPort, masquerade, restart survival, crash repair, exhaustion.

mod common;

use std::time::Duration;

use common::{TestNode, fetch, link_names, run_ok, wait_until};
use skiff_cni::{Action, HostPortMapping, PodNetwork, Protocol};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_and_the_node() {
    let mut node = TestNode::new("p2p", "198.18.10.0/24");
    let net = node.network(node.open_db());
    net.ensure_bridge().await.expect("bridge");
    net.ensure_bridge().await.expect("bridge is idempotent");

    let a = net.setup_pod(&node.request("a")).await.expect("pod a");
    let b = net.setup_pod(&node.request("b")).await.expect("pod b");
    assert_ne!(a.ip, b.ip);
    assert!(node.cfg.subnet.contains(&a.ip) && a.ip != node.cfg.gateway);
    let again = net
        .setup_pod(&node.request("a"))
        .await
        .expect("setup is idempotent");
    assert_eq!(again, a);

    // eth0, lo and the default route inside the pod.
    let mut links = link_names(&a.netns_path);
    links.sort();
    assert_eq!(links, vec!["eth0".to_string(), "lo".to_string()]);
    let route = run_ok(&a.netns_path, &["ip", "route", "show", "default"]);
    assert!(
        route.contains(&format!("via {}", node.cfg.gateway)),
        "{route}"
    );

    // hosts and resolv.conf.
    let hosts = std::fs::read_to_string(&a.hosts_file).expect("hosts");
    assert!(hosts.contains(&format!("{}\ta\n", a.ip)), "{hosts}");
    let resolv = std::fs::read_to_string(&a.resolv_file).expect("resolv");
    assert_eq!(resolv, "nameserver 198.18.0.53\n");

    node.httpd(&b.netns_path, 8080, "from-b");
    let page = fetch(&a.netns_path, &format!("http://{}:8080/", b.ip), WAIT).expect("pod to pod");
    assert_eq!(page, "from-b");

    let node_ns = node.node_ns.clone();
    node.httpd(&node_ns, 8081, "from-node");
    let url = format!("http://{}:8081/", node.cfg.gateway);
    assert_eq!(
        fetch(&a.netns_path, &url, WAIT).expect("pod to node"),
        "from-node"
    );

    net.teardown_pod("a").await.expect("teardown a");
    net.teardown_pod("a").await.expect("teardown is idempotent");
    assert!(!a.netns_path.exists());
    assert!(!a.hosts_file.exists());
    net.teardown_pod("b").await.expect("teardown b");
    let inv = net.inventory().await.expect("inventory");
    assert!(inv.is_empty(), "{inv:?}");
    net.remove_node_network()
        .await
        .expect("remove node network");
    assert!(!link_names(&node.node_ns).contains(&node.cfg.bridge));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_and_masquerade_toward_an_outside_client() {
    let mut node = TestNode::new("hp", "198.18.11.0/24");
    let client = node.client("client", "198.19.11.1", "198.19.11.2");
    let db = node.open_db();
    let net = node.network(db.clone());
    net.ensure_bridge().await.expect("bridge");
    let mut req = node.request("web");
    req.ports = vec![
        HostPortMapping {
            protocol: Protocol::Tcp,
            host_port: 18080,
            container_port: 8080,
        },
        HostPortMapping {
            protocol: Protocol::Udp,
            host_port: 15353,
            container_port: 5353,
        },
    ];
    let web = net.setup_pod(&req).await.expect("pod");
    let inv = net.inventory().await.expect("inventory");
    assert_eq!(inv.published.len(), 2, "{inv:?}");
    assert!(
        inv.published
            .iter()
            .any(|p| p.protocol == Protocol::Udp && p.host_port == 15353)
    );

    // hostPort: the client reaches the pod through the node's address.
    node.httpd(&web.netns_path, 8080, "web");
    let page = fetch(&client, "http://198.19.11.1:18080/", WAIT).expect("host port");
    assert_eq!(page, "web");

    // Hairpin: the pod itself and another pod reach the host port through the node address.
    let own = fetch(&web.netns_path, "http://198.18.11.1:18080/", WAIT).expect("own host port");
    assert_eq!(own, "web");
    let other = net
        .setup_pod(&node.request("other"))
        .await
        .expect("other pod");
    let via_node =
        fetch(&other.netns_path, "http://198.19.11.1:18080/", WAIT).expect("pod to host port");
    assert_eq!(via_node, "web");
    net.teardown_pod("other").await.expect("teardown other");

    // UDP hostPort: a datagram sent to the node's address arrives in the pod.
    let got = node.tmp.path().join("udp.out");
    node.spawn_in(
        &web.netns_path,
        &[
            "python3",
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('0.0.0.0', 5353)); d,a=s.recvfrom(100); \
             open(sys.argv[1],'w').write(d.decode())",
            &got.display().to_string(),
        ],
    );
    let sent = wait_until(WAIT, || {
        common::run(
            &client,
            &[
                "python3",
                "-c",
                "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hello-udp', ('198.19.11.1', 15353))",
            ],
        );
        std::fs::read_to_string(&got).is_ok_and(|s| s == "hello-udp")
    });
    assert!(
        sent,
        "udp datagram did not reach the pod through the host port"
    );

    // Masquerade: the pod reaches the client (which has no route back to the pod subnet) and
    // the client sees the node's address as the source.
    let log = node.httpd(&client, 9090, "client");
    let page = fetch(&web.netns_path, "http://198.19.11.2:9090/", WAIT).expect("egress");
    assert_eq!(page, "client");
    let seen = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(WAIT, || seen().contains("198.19.11.1]:")),
        "log: {}",
        seen()
    );
    assert!(
        !seen().contains(&web.ip.to_string()),
        "pod address leaked: {}",
        seen()
    );

    // Masquerade off: the same request now fails (the client cannot answer the pod address).
    let mut cfg = node.cfg.clone();
    cfg.masquerade = false;
    let off = skiff_cni::NetlinkNetwork::new(cfg, db).expect("net");
    off.ensure_bridge()
        .await
        .expect("bridge without masquerade");
    assert!(
        fetch(
            &web.netns_path,
            "http://198.19.11.2:9090/",
            Duration::from_millis(300)
        )
        .is_err()
    );

    // Per-pod removal of host ports.
    off.teardown_pod("web").await.expect("teardown");
    assert!(off.inventory().await.expect("inventory").is_empty());
    assert!(
        fetch(
            &client,
            "http://198.19.11.1:18080/",
            Duration::from_millis(300)
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_survive_a_restart_and_keep_their_address() {
    let mut node = TestNode::new("rs", "198.18.12.0/24");
    let client = node.client("client", "198.19.12.1", "198.19.12.2");
    let db = node.open_db();
    let net = node.network(db.clone());
    net.ensure_bridge().await.expect("bridge");
    let mut req = node.request("keep");
    req.ports = vec![HostPortMapping {
        protocol: Protocol::Tcp,
        host_port: 18081,
        container_port: 8080,
    }];
    let before = net.setup_pod(&req).await.expect("pod");
    node.httpd(&before.netns_path, 8080, "kept");
    fetch(&client, "http://198.19.12.1:18081/", WAIT).expect("before restart");

    // "kill -9": drop everything in memory, reopen the database file.
    drop(net);
    drop(db);
    let net = node.network(node.open_db());
    assert_eq!(
        fetch(&client, "http://198.19.12.1:18081/", WAIT).expect("after restart"),
        "kept"
    );
    let other = net.setup_pod(&node.request("new")).await.expect("new pod");
    assert_ne!(other.ip, before.ip, "address handed out twice");
    let report = net
        .reconcile(&[req.clone(), node.request("new")])
        .await
        .expect("reconcile");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.gc.actions.is_empty(), "{:?}", report.gc.actions);
    assert_eq!(report.ready["keep"], before);
    assert_eq!(
        fetch(&client, "http://198.19.12.1:18081/", WAIT).expect("after reconcile"),
        "kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_steps_is_repaired() {
    let node = TestNode::new("cr", "198.18.13.0/24");
    let net = node.network(node.open_db());
    net.ensure_bridge().await.expect("bridge");
    let steps = [
        Action::Allocate,
        Action::CreateNetns,
        Action::CreateVeth,
        Action::AttachHostLink,
        Action::ConfigurePodIface,
        Action::WriteFiles,
    ];
    for step in steps {
        // Crash, then the next setup completes the pod.
        net.inject_failure_after(Some(step));
        let err = net
            .setup_pod(&node.request("x"))
            .await
            .expect_err("injected");
        assert!(err.to_string().contains("injected"), "{err}");
        let st = net.setup_pod(&node.request("x")).await.expect("completed");
        let route = run_ok(&st.netns_path, &["ip", "route", "show", "default"]);
        assert!(route.contains("via 198.18.13.1"), "after {step:?}: {route}");
        net.teardown_pod("x").await.expect("teardown");

        // Crash, then gc of a node that no longer expects the pod removes everything.
        net.inject_failure_after(Some(step));
        net.setup_pod(&node.request("y"))
            .await
            .expect_err("injected");
        let report = net.gc(&Default::default()).await.expect("gc");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let inv = net.inventory().await.expect("inventory");
        assert!(inv.is_empty(), "after {step:?}: {inv:?}");
    }
    // A crash in teardown is finished by gc too.
    net.setup_pod(&node.request("z")).await.expect("pod");
    net.inject_failure_after(Some(Action::DeleteHostLink));
    net.teardown_pod("z").await.expect_err("injected");
    net.gc(&Default::default()).await.expect("gc");
    assert!(net.inventory().await.expect("inventory").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_subnet_gives_a_clear_error_and_nothing_half_made() {
    let node = TestNode::new("ex", "198.18.14.0/30");
    let net = node.network(node.open_db());
    net.ensure_bridge().await.expect("bridge");
    let only = net
        .setup_pod(&node.request("one"))
        .await
        .expect("the one address");
    assert_eq!(only.ip.to_string(), "198.18.14.2");
    let err = net
        .setup_pod(&node.request("two"))
        .await
        .expect_err("exhausted");
    assert_eq!(err.to_string(), "no free address in 198.18.14.0/30");
    let inv = net.inventory().await.expect("inventory");
    assert_eq!(inv.records, vec!["one".to_string()]);
    assert_eq!(inv.netns_files, vec!["pod-one".to_string()]);
    assert_eq!(inv.links.len(), 1, "{inv:?}");
    assert!(!node.tmp.path().join("pods/two").exists());
    net.teardown_pod("one").await.expect("teardown");
    net.setup_pod(&node.request("two"))
        .await
        .expect("freed address is usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_routes_converge_to_the_wanted_set() {
    let node = TestNode::new("rt", "198.18.17.0/24");
    let _client = node.client("peer", "198.19.17.1", "198.19.17.2");
    let net = node.network(node.open_db());
    net.ensure_bridge().await.expect("bridge");
    let route = |subnet: &str, via: &str| skiff_cni::PeerRoute {
        subnet: subnet.parse().expect("subnet"),
        via: via.parse().expect("via"),
    };
    let two = vec![
        route("198.18.18.0/24", "198.19.17.2"),
        route("198.18.19.0/24", "198.19.17.2"),
    ];
    net.ensure_peer_routes(&two).await.expect("routes");
    net.ensure_peer_routes(&two).await.expect("routes again");
    assert_eq!(net.peer_routes().await.expect("list"), two);
    let shown = run_ok(&node.node_ns, &["ip", "route", "show", "proto", "83"]);
    assert_eq!(shown.lines().count(), 2, "{shown}");

    let one = vec![route("198.18.19.0/24", "198.19.17.3")];
    net.ensure_peer_routes(&one)
        .await
        .expect("shrink and change");
    assert_eq!(net.peer_routes().await.expect("list"), one);
    net.ensure_peer_routes(&[]).await.expect("none");
    assert!(net.peer_routes().await.expect("list").is_empty());
    // Other routes are untouched.
    let all = run_ok(&node.node_ns, &["ip", "route"]);
    assert!(all.contains("198.19.17.0/24"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_setups_get_distinct_addresses() {
    let node = TestNode::new("cc", "198.18.21.0/24");
    let net = node.network(node.open_db());
    net.ensure_bridge().await.expect("bridge");
    let reqs: Vec<_> = (0..16).map(|i| node.request(&format!("c{i}"))).collect();
    let results = futures::future::join_all(reqs.iter().map(|r| net.setup_pod(r))).await;
    let mut ips: Vec<_> = results.into_iter().map(|r| r.expect("setup").ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 16, "an address was handed out twice");
    let removed = futures::future::join_all(reqs.iter().map(|r| net.teardown_pod(&r.id))).await;
    assert!(removed.iter().all(Result::is_ok), "{removed:?}");
    assert!(net.inventory().await.expect("inventory").is_empty());
}

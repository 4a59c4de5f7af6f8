//! Issue 3 at the agent level: pod addresses (inside the pod and in `get pods`), default route,
//! hosts/resolv.conf/hostname, pod-to-pod and pod-to-node traffic, hostPort from an outside
//! client namespace, masquerade on and off, kill -9 survival, leak checks after deletes, subnet
//! exhaustion, and a crash between setup steps repaired by the next agent. Each test runs a real
//! agent whose node side lives in a namespace the test made (see `support::netbed`).
//!
//! Run as root: `cargo test -p skiff-agent --test pod_network` (needs iproute2, nftables,
//! busybox-static).

mod support;

use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use support::netbed::{NetBed, PeerRecorder, UdpEcho, tokio_runtime, udp_ask};
use support::{TEST_IMAGE, WAIT};

const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";
const HTTPD: &str = "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"]
        .as_str()
        .unwrap_or_else(|| panic!("no podIP: {pod}"))
        .to_string()
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let net: ipnet::Ipv4Net = subnet.parse().expect("subnet");
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| net.contains(&a))
}

/// Waits until the pod's log contains `marker`; returns the whole log.
fn wait_log(bed: &NetBed, pod: &str, container: &str, marker: &str) -> String {
    bed.wait_until(
        WAIT,
        &format!("{marker:?} in the log of {pod}/{container}"),
        || {
            let out = bed.skiff(&["logs", pod, "-c", container]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(marker).then_some(text)
        },
    )
}

/// The IP column of `get pods -o wide` for `name`.
fn wide_ip(bed: &NetBed, name: &str) -> String {
    let text = bed.skiff_ok(&["get", "pods", "-o", "wide"]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let col = header
        .iter()
        .position(|h| *h == "IP")
        .unwrap_or_else(|| panic!("no IP column: {text}"));
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&name))
        .and_then(|w| w.get(col).map(|s| s.to_string()))
        .unwrap_or_else(|| panic!("{name} not listed: {text}"))
}

#[test]
fn pods_get_an_address_a_route_names_and_resolvers() {
    let bed = NetBed::start(40, 24, false);
    let script = "ip -o -4 addr show dev eth0; ip route; ip -o link show lo; echo host=$(hostname); cat /etc/hosts; echo resolv-begin; cat /etc/resolv.conf; echo done; trap 'exit 0' TERM; sleep 100000 & wait";
    for name in ["alpha", "beta"] {
        bed.write_manifest(
            &format!("{name}.yaml"),
            &support::pod_yaml(name, script, ""),
        );
    }
    let mut ips = Vec::new();
    for name in ["alpha", "beta"] {
        let pod = bed.wait_phase(name, "Running");
        let ip = pod_ip(&pod);
        assert!(
            in_subnet(&ip, &bed.pod_subnet),
            "{ip} not in {}",
            bed.pod_subnet
        );
        assert_eq!(
            wide_ip(&bed, name),
            ip,
            "get pods -o wide disagrees with -o json"
        );
        let log = wait_log(&bed, name, "main", "done");
        assert!(
            log.contains(&format!("inet {ip}/24")),
            "eth0 lacks {ip}/24: {log}"
        );
        let gw = bed.gateway().to_string();
        assert!(
            log.lines()
                .any(|l| l.starts_with(&format!("default via {gw} dev eth0"))),
            "no default route via the bridge {gw}: {log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains(": lo: ") && l.contains("UP")),
            "lo is not up: {log}"
        );
        assert!(log.contains(&format!("host={name}\n")), "hostname: {log}");
        let hosts = log.split("resolv-begin").next().unwrap_or_default();
        assert!(
            hosts
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [ip.as_str(), name]),
            "/etc/hosts lacks `{ip} {name}`: {log}"
        );
        assert!(
            log.contains("resolv-begin\n") && !log.contains("can't open '/etc/resolv.conf'"),
            "{log}"
        );
        // Cluster DNS: the node's server on the gateway, the cluster search domains first.
        assert!(
            log.contains(&format!("nameserver {gw}\n"))
                && log.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
                && log.contains("options ndots:5"),
            "resolv.conf for cluster DNS: {log}"
        );
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1], "two pods share an address");
}

#[test]
fn pods_reach_each_other_the_node_and_their_own_localhost() {
    let bed = NetBed::start(41, 24, false);
    let gw = bed.gateway();
    let node = PeerRecorder::start(&bed.node_netns, SocketAddr::new(IpAddr::V4(gw), 9100));
    bed.write_manifest(
        "server.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: server
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{HTTPD}"]
  - name: side
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; until wget -q -O - http://127.0.0.1:8080/index.html; do sleep 0.2; done; echo localhost-ok; sleep 100000 & wait"]
"#
        ),
    );
    let server = bed.wait_phase("server", "Running");
    let ip = pod_ip(&server);
    let side = wait_log(&bed, "server", "side", "localhost-ok");
    assert!(side.contains("served-by-server"), "{side}");
    bed.write_manifest(
        "client.yaml",
        &support::pod_yaml(
            "client",
            &format!(
                "until wget -q -O - http://{ip}:8080/index.html; do sleep 0.2; done; echo pod-ok; until wget -q -O - http://{gw}:9100/; do sleep 0.2; done; echo node-ok; {IDLE}"
            ),
            "",
        ),
    );
    let client = bed.wait_phase("client", "Running");
    let log = wait_log(&bed, "client", "main", "node-ok");
    assert!(log.contains("served-by-server"), "pod-to-pod: {log}");
    assert!(log.contains("recorded"), "pod-to-node: {log}");
    // Inside the node the pod is seen with its own address.
    let client_ip: IpAddr = pod_ip(&client).parse().expect("client ip");
    assert!(node.peers().contains(&client_ip), "{:?}", node.peers());
}

#[test]
fn host_port_answers_an_outside_client_on_the_node_address() {
    let bed = NetBed::start(42, 24, true);
    bed.write_manifest(
        "hp.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hp
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{HTTPD}"]
    ports:
    - {{containerPort: 8080, hostPort: 18080}}
"#
        ),
    );
    bed.wait_phase("hp", "Running");
    let url = format!("http://{}:18080/index.html", bed.client().node_ip);
    let body = bed.wait_until(WAIT, "the hostPort from the client namespace", || {
        NetBed::wget_in(&bed.client().name, &url)
    });
    assert_eq!(body.trim(), "served-by-hp");
    assert!(bed.nft_table().contains("18080"), "{}", bed.nft_table());
    bed.remove_manifest("hp.yaml");
    bed.wait_until(WAIT, "hp to go", || bed.pod("hp").is_none().then_some(()));
    assert!(
        NetBed::wget_in(&bed.client().name, &url).is_none(),
        "the hostPort still answers after the pod is gone"
    );
    assert!(!bed.nft_table().contains("18080"), "{}", bed.nft_table());
}

/// A pod calls a server in the client namespace; returns (what the server saw, pod IP).
fn egress_source(bed: &NetBed) -> (Vec<IpAddr>, IpAddr) {
    let client = bed.client();
    let server = PeerRecorder::start(
        &client.name,
        SocketAddr::new(IpAddr::V4(client.client_ip), 9200),
    );
    bed.write_manifest(
        "out.yaml",
        &support::pod_yaml(
            "out",
            &format!(
                "until wget -q -O - http://{}:9200/; do sleep 0.2; done; echo egress-ok; {IDLE}",
                client.client_ip
            ),
            "",
        ),
    );
    let pod = bed.wait_phase("out", "Running");
    let log = wait_log(bed, "out", "main", "egress-ok");
    assert!(log.contains("recorded"), "{log}");
    (server.peers(), pod_ip(&pod).parse().expect("pod ip"))
}

#[test]
fn egress_is_masqueraded_to_the_node_address() {
    let bed = NetBed::start(43, 24, true);
    let (peers, pod) = egress_source(&bed);
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == IpAddr::V4(bed.client().node_ip)),
        "outside saw {peers:?}, expected only the node {} (pod {pod})",
        bed.client().node_ip
    );
    assert!(bed.nft_table().contains("masquerade"));
}

#[test]
fn without_masquerade_the_outside_sees_the_pod_address() {
    let bed = NetBed::start(44, 24, false);
    let (peers, pod) = egress_source(&bed);
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == pod),
        "outside saw {peers:?}, expected the pod {pod}"
    );
}

#[test]
fn kill9_and_restart_keep_addresses_and_traffic() {
    let mut bed = NetBed::start(45, 24, true);
    for name in ["s1", "s2"] {
        bed.write_manifest(&format!("{name}.yaml"), &support::pod_yaml(name, HTTPD, ""));
    }
    let before: Vec<(String, String)> = bed
        .wait_running(2)
        .iter()
        .map(|p| (support::name_of(p), pod_ip(p)))
        .collect();
    let client = bed.client().name.clone();
    for (name, ip) in &before {
        let body = bed.wait_until(WAIT, "the pod to answer the client", || {
            NetBed::wget_in(&client, &format!("http://{ip}:8080/index.html"))
        });
        assert_eq!(body.trim(), format!("served-by-{name}"));
    }
    let links = bed.pod_links();
    bed.kill9();
    // Pods answer while no agent runs.
    for (name, ip) in &before {
        let body = NetBed::wget_in(&client, &format!("http://{ip}:8080/index.html"));
        assert_eq!(
            body.as_deref().map(str::trim),
            Some(format!("served-by-{name}").as_str())
        );
    }
    bed.restart();
    bed.write_manifest("s3.yaml", &support::pod_yaml("s3", HTTPD, ""));
    let after = bed.wait_running(3);
    for (name, ip) in &before {
        let pod = after
            .iter()
            .find(|p| support::name_of(p) == *name)
            .expect("pod kept");
        assert_eq!(&pod_ip(pod), ip, "{name} changed its address");
        let body = NetBed::wget_in(&client, &format!("http://{ip}:8080/index.html"));
        assert_eq!(
            body.as_deref().map(str::trim),
            Some(format!("served-by-{name}").as_str())
        );
    }
    let mut ips: Vec<String> = after.iter().map(pod_ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "an address was handed out twice: {ips:?}");
    let now = bed.pod_links();
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(
        links.iter().all(|l| now.contains(l)),
        "veths replaced: {links:?} -> {now:?}"
    );
}

#[test]
fn deleting_every_pod_leaves_nothing_behind() {
    let mut bed = NetBed::start(46, 24, true);
    for round in 0..3 {
        for i in 0..3 {
            bed.write_manifest(
                &format!("p{i}.yaml"),
                &format!(
                    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {IDLE:?}]\n    ports:\n    - {{containerPort: 80, hostPort: {}}}\n",
                    19000 + i
                ),
            );
        }
        bed.wait_running(3);
        assert_eq!(bed.pod_links().len(), 3, "round {round}");
        assert!(bed.nft_table().contains("19002"), "round {round}");
        for i in 0..3 {
            bed.remove_manifest(&format!("p{i}.yaml"));
        }
        bed.wait_until(WAIT, "no pods", || bed.pods().is_empty().then_some(()));
        assert_eq!(
            bed.pod_links(),
            Vec::<String>::new(),
            "round {round}: veths left"
        );
        assert_eq!(
            support::cleanup::netns_with_prefix(&bed.netns_prefix),
            Vec::<String>::new(),
            "round {round}: namespaces left"
        );
        let table = bed.nft_table();
        assert!(
            !table.contains("elements"),
            "round {round}: map elements left: {table}"
        );
        let pods_dir = bed.data.join("pods");
        assert_eq!(
            support::cleanup::mounts_under(&pods_dir),
            Vec::<std::path::PathBuf>::new(),
            "round {round}: mounts left"
        );
    }
    bed.kill9();
    let inv = bed.inventory();
    assert!(inv.is_empty(), "the cni crate still holds: {inv:?}");
}

#[test]
fn an_exhausted_subnet_gives_an_event_and_nothing_half_made() {
    // A /30 has one address for pods (.2): the gateway takes .1.
    let bed = NetBed::start(47, 30, false);
    for name in ["x1", "x2", "x3"] {
        // x1 is stopped soon after it runs: a short grace bounds a SIGTERM lost before the
        // shell's trap.
        let grace = "  terminationGracePeriodSeconds: 2\n";
        bed.write_manifest(
            &format!("{name}.yaml"),
            &support::pod_yaml(name, IDLE, grace),
        );
        if name == "x1" {
            bed.wait_phase("x1", "Running");
        }
    }
    let expected = "no free address in 198.18.47.0/30";
    for name in ["x2", "x3"] {
        let event = bed.wait_until(WAIT, &format!("the exhaustion event of {name}"), || {
            bed.events().into_iter().find(|e| {
                e.to_string().contains(name)
                    && e["message"].as_str().is_some_and(|m| m.contains(expected))
            })
        });
        assert!(event.to_string().contains(expected), "{event}");
        let pod = bed.pod(name).expect("pod listed");
        assert_ne!(pod["status"]["phase"], "Running", "{pod}");
        assert!(
            pod["status"].get("podIP").is_none_or(Value::is_null),
            "{pod}"
        );
    }
    assert_eq!(bed.pod_links().len(), 1, "{:?}", bed.pod_links());
    assert_eq!(
        support::cleanup::netns_with_prefix(&bed.netns_prefix).len(),
        1
    );
    // Freeing the address lets a waiting pod in.
    bed.remove_manifest("x1.yaml");
    bed.wait_until(WAIT, "another pod to get the address", || {
        bed.pods().into_iter().find(|p| {
            ["x2", "x3"].contains(&support::name_of(p).as_str())
                && p["status"]["phase"] == "Running"
        })
    });
}

#[test]
fn a_crash_between_setup_steps_is_repaired_by_the_next_agent() {
    use skiff_cni::{Action, PodNetRequest, PodNetwork};
    let mut bed = NetBed::start(48, 24, true);
    bed.write_manifest("keep.yaml", &support::pod_yaml("keep", HTTPD, ""));
    let keep = bed.wait_phase("keep", "Running");
    let keep_ip = pod_ip(&keep);
    bed.kill9();
    // What a crash mid-setup leaves: a lease, a namespace and a veth of a pod that the agent
    // never recorded (the cni crate's own hook stops setup right after the step).
    let orphans = [
        Action::CreateNetns,
        Action::CreateVeth,
        Action::AttachHostLink,
    ];
    {
        let net = bed.cni_instance();
        let rt = tokio_runtime();
        for (i, step) in orphans.iter().enumerate() {
            net.inject_failure_after(Some(*step));
            let req = PodNetRequest {
                id: format!("0rphan{i}"),
                netns_name: format!("{}0rphan{i}", bed.netns_prefix),
                hostname: "orphan".into(),
                files_dir: bed.dir.join(format!("orphan{i}")),
                ports: Vec::new(),
                cluster_dns: None,
                hosts: Default::default(),
            };
            let err = rt.block_on(net.setup_pod(&req));
            assert!(
                err.is_err(),
                "the injected failure after {step:?} did not happen"
            );
        }
        let inv = rt.block_on(net.inventory()).expect("inventory");
        assert_eq!(inv.leases, 4, "{inv:?}");
        assert!(inv.netns_files.len() >= 4, "{inv:?}");
    }
    bed.restart();
    // The restarted agent's gc removes what no pod owns and leaves the real pod alone.
    bed.wait_until(WAIT, "orphan namespaces to go", || {
        (support::cleanup::netns_with_prefix(&bed.netns_prefix).len() == 1).then_some(())
    });
    assert_eq!(bed.pod_links().len(), 1, "{:?}", bed.pod_links());
    // The kill can land before the started container was committed to the store; the
    // restarted agent then replaces it (same pod, same address), so wait for the answer.
    bed.wait_until(WAIT, "the kept pod to answer on its address", || {
        let body = NetBed::wget_in(
            &bed.node_netns,
            &format!("http://{keep_ip}:8080/index.html"),
        );
        (body.as_deref().map(str::trim) == Some("served-by-keep")).then_some(())
    });
    bed.write_manifest("new.yaml", &support::pod_yaml("new", IDLE, ""));
    let new = bed.wait_phase("new", "Running");
    assert_ne!(pod_ip(&new), keep_ip);
    bed.kill9();
    let inv = bed.inventory();
    assert_eq!(inv.leases, 2, "{inv:?}");
    assert_eq!(inv.records.len(), 2, "{inv:?}");
}

#[test]
fn a_pod_left_half_wired_is_completed_by_the_next_agent() {
    use skiff_cni::{Action, PodNetwork};
    let mut bed = NetBed::start(49, 24, true);
    bed.write_manifest("srv.yaml", &support::pod_yaml("srv", HTTPD, ""));
    let pod = bed.wait_phase("srv", "Running");
    let ip = pod_ip(&pod);
    let url = format!("http://{ip}:8080/index.html");
    let body = bed.wait_until(WAIT, "the pod to answer", || {
        NetBed::wget_in(&bed.node_netns, &url)
    });
    assert_eq!(body.trim(), "served-by-srv");
    bed.kill9();
    // A crash in the middle of the pod's wiring: its veth is gone, namespace and lease stay.
    {
        let net = bed.cni_instance();
        net.inject_failure_after(Some(Action::DeleteHostLink));
        let uid = support::uid_of(&pod);
        assert!(tokio_runtime().block_on(net.teardown_pod(&uid)).is_err());
    }
    assert!(bed.pod_links().is_empty());
    assert!(
        NetBed::wget_in(&bed.node_netns, &url).is_none(),
        "still reachable without its veth"
    );
    bed.restart();
    let body = bed.wait_until(WAIT, "the restarted agent to rewire the pod", || {
        NetBed::wget_in(&bed.node_netns, &url)
    });
    assert_eq!(body.trim(), "served-by-srv");
    assert_eq!(
        pod_ip(&bed.pod("srv").expect("srv")),
        ip,
        "the address changed"
    );
}

#[test]
fn udp_host_port_reaches_the_pod_namespace() {
    let bed = NetBed::start(50, 24, true);
    bed.write_manifest(
        "u.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: u
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{IDLE}"]
    ports:
    - {{containerPort: 5353, hostPort: 15353, protocol: UDP}}
"#
        ),
    );
    let pod = bed.wait_phase("u", "Running");
    let ip: IpAddr = pod_ip(&pod).parse().expect("pod ip");
    assert!(bed.nft_table().contains("udp"), "{}", bed.nft_table());
    // The answer comes from a socket in the pod's own namespace on the container port.
    let netns = format!("{}{}", bed.netns_prefix, support::uid_of(&pod));
    let _echo = UdpEcho::start(&netns, SocketAddr::new(ip, 5353));
    let to = SocketAddr::new(IpAddr::V4(bed.client().node_ip), 15353);
    let reply = bed.wait_until(WAIT, "a UDP answer through the hostPort", || {
        udp_ask(&bed.client().name, to, "hello-udp")
    });
    assert_eq!(reply, "echo:hello-udp");
}

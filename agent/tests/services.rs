//! Services on one real node (issue 11): a ClusterIP spreads new connections over the ready
//! endpoints, from pods and from the node itself; a pod reaches itself through its Service
//! (hairpin); a NodePort answers an outside client; a Service with no ready endpoint refuses at
//! once; `get services` and `get endpoints` show what is programmed; a deleted Service leaves
//! nothing in nftables; the node's DNS keeps answering UDP while TCP clients crowd it and
//! while relays wait on a silent resolver. Real containers, real nftables in the test's own
//! namespaces; the service CIDR is inside the test range.
//!
//! Run as root: `cargo test -p skiff-agent --test services`.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::netbed::NetBed;
use support::{TEST_IMAGE, WAIT};

const HTTPD: &str = "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";

fn start(n: u8) -> (NetBed, String) {
    let cidr = format!("198.19.{}.0/24", 100 + n);
    let bed = NetBed::start_with_args(n, 24, false, &["--service-cidr", &cidr]);
    (bed, cidr)
}

fn web(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "{HTTPD}"]
        ports:
        - {{name: http, containerPort: 8080}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - {{port: 80, targetPort: http}}
"#
    )
}

/// `get ARGS -o json`, parsed; `None` when the command fails.
fn json(bed: &NetBed, args: &[&str]) -> Option<serde_json::Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = bed.skiff(&full);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The ClusterIP `get svc NAME -o json` shows, once allocated.
fn cluster_ip(bed: &NetBed, name: &str) -> String {
    bed.wait_until(WAIT, &format!("a ClusterIP for {name}"), || {
        let v = json(bed, &["svc", name])?;
        let ip = v["spec"]["clusterIP"].as_str()?.to_string();
        (ip != "<pending>").then_some(ip)
    })
}

fn ready_endpoints(bed: &NetBed, name: &str) -> usize {
    json(bed, &["endpoints", name])
        .and_then(|v| {
            v["subsets"]
                .get(0)
                .and_then(|s| s["addresses"].as_array().map(Vec::len))
        })
        .unwrap_or(0)
}

fn log_of(bed: &NetBed, pod: &str, marker: &str) -> String {
    bed.wait_until(WAIT, &format!("{marker:?} in the log of {pod}"), || {
        let out = bed.skiff(&["logs", pod]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(marker).then_some(text)
    })
}

#[test]
fn a_cluster_ip_spreads_over_ready_endpoints_from_pods_and_the_node() {
    let (bed, cidr) = start(60);
    bed.write_manifest("web.yaml", &web("web", 2));
    let ip = cluster_ip(&bed, "web");
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    assert!(
        net.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap()),
        "{ip} in {cidr}"
    );
    bed.wait_until(WAIT, "2 ready endpoints", || {
        (ready_endpoints(&bed, "web") == 2).then_some(())
    });
    let table = bed.skiff_ok(&["get", "svc"]);
    assert!(
        table.contains("web")
            && table.contains("ClusterIP")
            && table.contains(&ip)
            && table.contains("80/TCP"),
        "{table}"
    );
    let status = bed.skiff_ok(&["status"]);
    assert!(
        status.contains("name: web") && status.contains("endpoints: 2/2 ready"),
        "status lists the Service: {status}"
    );
    let eps = bed.skiff_ok(&["get", "ep", "web"]);
    assert_eq!(eps.matches(":8080").count(), 2, "{eps}");
    let wide = bed.skiff_ok(&["get", "svc", "web", "-o", "wide"]);
    assert!(
        wide.contains("SELECTOR") && wide.contains("app=web"),
        "{wide}"
    );
    let described = bed.skiff_ok(&["describe", "service", "web"]);
    assert!(
        described.contains(&ip)
            && described.contains("app: web")
            && described.contains("endpoints:")
            && described.matches("8080").count() >= 1
            && described.matches("ip: 198.18.60.").count() == 2,
        "selector, address, port and both endpoints: {described}"
    );
    // A second Service pinned on web's address is refused, and says why where users look.
    bed.write_manifest(
        "dup.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: dup\nspec:\n  clusterIP: {ip}\n  selector: {{app: web}}\n  ports:\n  - {{port: 80}}\n"
        ),
    );
    let refused =
        format!("AllocationFailed: clusterIP {ip} is already used by Service default/web");
    bed.wait_until(WAIT, "the refused pin in describe service dup", || {
        let out = bed.skiff(&["describe", "service", "dup"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&refused)
            .then_some(())
    });
    bed.remove_manifest("dup.yaml");
    // From the node itself (a host process, through the service CIDR route).
    let url = format!("http://{ip}/index.html");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some(body) = NetBed::wget_in(&bed.node_netns, &url) {
            seen.insert(body.trim().to_string());
        }
    }
    assert_eq!(seen.len(), 2, "both backends answer the node: {seen:?}");
    // From a pod: many requests, more than one backend.
    bed.write_manifest(
        "client.yaml",
        &support::pod_yaml(
            "client",
            &format!(
                "echo host=$WEB_SERVICE_HOST port=$WEB_SERVICE_PORT link=$WEB_PORT name=$HOSTNAME expanded=$(WEB_SERVICE_HOST) escaped=$$(echo kept) api=[$KUBERNETES_SERVICE_HOST$KUBERNETES_PORT]; i=0; while [ $i -lt 40 ]; do wget -q -O - {url}; i=$((i+1)); done; echo client-done; trap 'exit 0' TERM; sleep 100000 & wait"
            ),
            "  terminationGracePeriodSeconds: 1\n",
        ),
    );
    // enableServiceLinks: false: no service variables (HOSTNAME still).
    bed.write_manifest(
        "nolinks.yaml",
        &support::pod_yaml(
            "nolinks",
            "echo links=[$WEB_SERVICE_HOST] name=$HOSTNAME; echo nolinks-done; trap 'exit 0' TERM; sleep 100000 & wait",
            "  terminationGracePeriodSeconds: 1\n  enableServiceLinks: false\n",
        ),
    );
    let log = log_of(&bed, "client", "client-done");
    assert!(
        log.contains(&format!("host={ip} port=80"))
            && log.contains(&format!("expanded={ip} escaped=kept")),
        "service variables, $(VAR) and $$ in the command: {log}"
    );
    // skiff serves no Kubernetes API inside the cluster, so there are no variables for one.
    assert!(log.contains("api=[]"), "no KUBERNETES_* variables: {log}");
    // Names: the pod's node answers for the cluster domain; the search path makes `web` do.
    bed.write_manifest(
        "dns.yaml",
        &support::pod_yaml(
            "dns",
            "nslookup web.default.svc.cluster.local; echo short=$(wget -q -O - http://web/index.html); nslookup nope.default.svc.cluster.local && echo nope-resolved; echo dns-done; trap 'exit 0' TERM; sleep 100000 & wait",
            "  terminationGracePeriodSeconds: 1\n",
        ),
    );
    let dns = log_of(&bed, "dns", "dns-done");
    assert!(
        dns.contains(&format!("Address: {ip}")),
        "web's name gives its ClusterIP: {dns}"
    );
    assert!(
        dns.contains("short=served-by-web-"),
        "`web` through the search path: {dns}"
    );
    assert!(
        !dns.contains("nope-resolved"),
        "a missing Service does not resolve: {dns}"
    );
    let nolinks = log_of(&bed, "nolinks", "nolinks-done");
    assert!(
        nolinks.contains("links=[] name=nolinks"),
        "enableServiceLinks: false: {nolinks}"
    );
    let backends: BTreeSet<&str> = log
        .lines()
        .filter(|l| l.starts_with("served-by-web-"))
        .collect();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("served-by-")).count(),
        40,
        "{log}"
    );
    assert_eq!(
        backends.len(),
        2,
        "requests spread over both pods: {backends:?}"
    );
}

#[test]
fn hairpin_node_port_and_a_service_without_endpoints() {
    // Node ports from a range of the node's own.
    let cidr = "198.19.161.0/24".to_string();
    let bed = NetBed::start_with_args(
        61,
        24,
        false,
        &[
            "--service-cidr",
            &cidr,
            "--service-node-port-range",
            "30000-30099",
        ],
    );
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    let base = u32::from(net.network());
    let solo_ip = std::net::Ipv4Addr::from(base + 10);
    let empty_ip = std::net::Ipv4Addr::from(base + 11);
    // A pinned address; the pod fetches its own Service (hairpin), then the empty one.
    bed.write_manifest(
        "solo.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: solo\nspec:\n  clusterIP: {solo_ip}\n  selector: {{app: solo}}\n  ports:\n  - {{port: 80, targetPort: 8080}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  clusterIP: {empty_ip}\n  selector: {{app: nobody}}\n  ports:\n  - {{port: 80}}\n---\n{}",
            support::pod_yaml(
                "solo",
                &format!(
                    "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && httpd -p 8080 -h /www; until wget -q -O - http://{solo_ip}/index.html; do sleep 0.2; done; echo hairpin-ok; wget -q -O - http://{empty_ip}/ 2>&1; echo empty-done; trap 'exit 0' TERM; sleep 100000 & wait"
                ),
                "  terminationGracePeriodSeconds: 1\n",
            )
            .replace("metadata:\n  name: solo\nspec:", "metadata:\n  name: solo\n  labels: {app: solo}\nspec:")
        ),
    );
    assert_eq!(
        cluster_ip(&bed, "solo"),
        solo_ip.to_string(),
        "the pinned address"
    );
    let log = log_of(&bed, "solo", "empty-done");
    assert!(log.contains("served-by-solo"), "hairpin: {log}");
    assert!(
        log.contains("refused"),
        "the empty Service refuses a pod's connection: {log}"
    );
    // From the node: refused at once (a reset), not a timeout.
    let attempt = Instant::now();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &bed.node_netns, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{empty_ip}/80"))
        .output()
        .expect("run bash");
    let took = attempt.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("refused"),
        "{}: {err} {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        bed.nft_service_table()
    );
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    // NodePort, from a client outside the cluster, on the node's address.
    bed.write_manifest(
        "np.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: np\nspec:\n  type: NodePort\n  selector: {app: solo}\n  ports:\n  - {port: 80, targetPort: 8080, nodePort: 30080}\n",
    );
    let url = format!("http://{}:30080/index.html", bed.client().node_ip);
    let body = bed.wait_until(WAIT, "the NodePort from the client namespace", || {
        NetBed::wget_in(&bed.client().name, &url)
    });
    assert_eq!(body.trim(), "served-by-solo");
    let table = bed.skiff_ok(&["get", "svc", "np"]);
    assert!(
        table.contains("NodePort") && table.contains("80:30080/TCP"),
        "{table}"
    );
    // A node port left to the leader comes from the node's range and answers; a file pinning
    // one outside it is refused with the file and the field named, and nothing else is lost.
    bed.write_manifest(
        "np2.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: np2\nspec:\n  type: NodePort\n  selector: {app: solo}\n  ports:\n  - {port: 80, targetPort: 8080}\n",
    );
    let np2 = bed.wait_until(WAIT, "np2's node port", || {
        json(&bed, &["svc", "np2"])?["spec"]["ports"][0]["nodePort"].as_u64()
    });
    assert!((30000..=30099).contains(&np2), "np2 got {np2}");
    let url2 = format!("http://{}:{np2}/index.html", bed.client().node_ip);
    let body = bed.wait_until(WAIT, "np2 from the client namespace", || {
        NetBed::wget_in(&bed.client().name, &url2)
    });
    assert_eq!(body.trim(), "served-by-solo");
    bed.write_manifest(
        "np3.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: np3\nspec:\n  type: NodePort\n  selector: {app: solo}\n  ports:\n  - {port: 80, targetPort: 8080, nodePort: 32000}\n",
    );
    let refused = bed.wait_until(WAIT, "np3.yaml refused", || {
        bed.events()
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "np3.yaml" && e["reason"] == "InvalidManifest")
            .and_then(|e| e["message"].as_str().map(str::to_string))
    });
    assert!(
        refused.contains("np3.yaml")
            && refused.contains(
                "spec.ports[0].nodePort: must be in the node port range 30000-30099 (got 32000"
            ),
        "{refused}"
    );
    assert!(json(&bed, &["svc", "np3"]).is_none(), "np3 is not created");
    // `apply` checks the same range.
    let dir = tempfile::tempdir().expect("temp dir");
    let np4 = dir.path().join("np4.yaml");
    std::fs::write(
        &np4,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: np4\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 31000}\n",
    )
    .expect("write np4.yaml");
    let out = bed.skiff(&["apply", "-f", np4.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("np4.yaml")
            && err.contains("spec.ports[0].nodePort: must be in the node port range 30000-30099"),
        "{err}"
    );
    assert_eq!(
        NetBed::wget_in(&bed.client().name, &url)
            .as_deref()
            .map(str::trim),
        Some("served-by-solo"),
        "np still answers"
    );
    bed.remove_manifest("np2.yaml");
    bed.remove_manifest("np3.yaml");
    // Deleted Services leave nothing behind; the others stay.
    bed.write_manifest(
        "solo.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: solo\nspec:\n  clusterIP: {solo_ip}\n  selector: {{app: solo}}\n  ports:\n  - {{port: 80, targetPort: 8080}}\n"
        ),
    );
    bed.remove_manifest("np.yaml");
    let empty = empty_ip.to_string();
    bed.wait_until(WAIT, "the deleted Services' rules to go", || {
        let t = bed.nft_service_table();
        (!t.contains("30080") && !t.contains(&empty)).then_some(())
    });
    assert!(
        bed.nft_service_table().contains(&solo_ip.to_string()),
        "solo stays"
    );
    // The last one gone: no chain, set or map element of any Service is left.
    bed.remove_manifest("solo.yaml");
    bed.wait_until(WAIT, "every Service's rules to go", || {
        let t = bed.nft_service_table();
        let leftover = ["chain svc-", "chain sep-", "chain snp-", "set saf-"]
            .iter()
            .any(|n| t.contains(n))
            || t.contains("elements")
            || t.contains(&solo_ip.to_string());
        (!leftover).then_some(())
    });
}

const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

/// A UDP backend pod (the answers come from a socket the test opens in its namespace).
fn udp_pod(name: &str, extra_spec: &str) -> String {
    support::pod_yaml(
        name,
        &format!("hostname; cat /etc/hosts; echo up; {IDLE}"),
        &format!("  terminationGracePeriodSeconds: 1\n{extra_spec}"),
    )
    .replace(
        &format!("metadata:\n  name: {name}\nspec:"),
        &format!("metadata:\n  name: {name}\n  labels: {{app: echo}}\nspec:"),
    ) + "    ports:\n    - {name: echo, containerPort: 5353, protocol: UDP}\n"
}

/// A UDP client in the node namespace on `port`, asking `ip`:53: one datagram, the answer
/// within 300 ms (none: `None`).
fn udp_client(
    bed: &NetBed,
    port: u16,
    ip: std::net::Ipv4Addr,
) -> impl Fn(&str) -> Option<String> + use<> {
    udp_client_to(bed, port, std::net::SocketAddr::new(ip.into(), 53))
}

/// As [`udp_client`], sending to `to`.
fn udp_client_to(
    bed: &NetBed,
    port: u16,
    to: std::net::SocketAddr,
) -> impl Fn(&str) -> Option<String> + use<> {
    let client = support::netbed::in_netns(&bed.node_netns, move || {
        std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind the client port")
    });
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    move |msg: &str| {
        client.send_to(msg.as_bytes(), to).ok()?;
        let mut buf = [0u8; 256];
        let (n, _) = client.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// The node namespace's tracked flows.
fn node_flows(bed: &NetBed) -> Vec<skiff_cni::conntrack::Flow> {
    support::netbed::in_netns(&bed.node_netns, || {
        skiff_cni::conntrack::list().expect("list flows")
    })
}

#[test]
fn a_udp_service_pod_names_and_resolver_settings() {
    let (bed, _) = start(62);
    bed.write_manifest(
        "echo-svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  selector: {app: echo}\n  ports:\n  - {name: dns, port: 53, targetPort: echo, protocol: UDP}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: echo-h\nspec:\n  clusterIP: None\n  selector: {app: echo}\n  ports:\n  - {name: echo, port: 5353, protocol: UDP}\n",
    );
    bed.write_manifest(
        "u1.yaml",
        &udp_pod("u1", "  hostname: primary\n  subdomain: echo-h\n"),
    );
    bed.write_manifest("u2.yaml", &udp_pod("u2", "  subdomain: echo-h\n"));
    let ip: std::net::Ipv4Addr = cluster_ip(&bed, "echo").parse().unwrap();
    let mut echoes = std::collections::BTreeMap::new();
    let mut addresses = std::collections::BTreeMap::new();
    for name in ["u1", "u2"] {
        let pod = bed.wait_phase(name, "Running");
        let pod_ip: std::net::IpAddr = pod["status"]["podIP"].as_str().unwrap().parse().unwrap();
        let netns = format!("{}{}", bed.netns_prefix, support::uid_of(&pod));
        let addr = std::net::SocketAddr::new(pod_ip, 5353);
        echoes.insert(
            name,
            support::netbed::UdpEcho::start_tagged(&netns, addr, name),
        );
        addresses.insert(name, pod_ip.to_string());
    }
    bed.wait_until(WAIT, "2 ready endpoints", || {
        (ready_endpoints(&bed, "echo") == 2).then_some(())
    });
    // The pod's own name: hostname and its line in /etc/hosts.
    let u1 = log_of(&bed, "u1", "up");
    assert!(
        u1.starts_with("primary\n")
            && u1.contains(&format!(
                "{}\tprimary.echo-h.default.svc.cluster.local\tprimary",
                addresses["u1"]
            )),
        "{u1}"
    );

    // Names: the pod's hostname under its headless Service, SRV, pod names; the resolver
    // settings and host aliases.
    bed.write_manifest(
        "names.yaml",
        &support::pod_yaml(
            "names",
            &format!("cat /etc/resolv.conf; cat /etc/hosts; nslookup primary.echo-h.default.svc.cluster.local; nslookup -type=srv _echo._udp.echo-h.default.svc.cluster.local; nslookup 10-1-2-3.default.pod.cluster.local; echo names-done; {IDLE}"),
            "  terminationGracePeriodSeconds: 1\n  dnsConfig:\n    searches: [corp.example]\n    options:\n    - {name: ndots, value: \"2\"}\n  hostAliases:\n  - ip: 192.0.2.10\n    hostnames: [foo.local, bar.local]\n",
        ),
    );
    bed.write_manifest(
        "none.yaml",
        &support::pod_yaml(
            "none",
            &format!("echo begin; cat /etc/resolv.conf; echo none-done; {IDLE}"),
            "  terminationGracePeriodSeconds: 1\n  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [corp.example]\n",
        ),
    );
    bed.write_manifest(
        "host.yaml",
        &support::pod_yaml(
            "host",
            &format!("echo begin; cat /etc/resolv.conf /etc/hosts; echo host-done; {IDLE}"),
            "  terminationGracePeriodSeconds: 1\n  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n  hostAliases:\n  - ip: 192.0.2.11\n    hostnames: [local.example]\n",
        ),
    );
    let names = log_of(&bed, "names", "names-done");
    assert!(
        names.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && names.contains("corp.example\n")
            && names.contains(&format!("nameserver {}", bed.gateway()))
            && names.contains("options ndots:2\n"),
        "resolv.conf: {names}"
    );
    assert!(
        names.contains("192.0.2.10\tfoo.local\tbar.local"),
        "hostAliases: {names}"
    );
    assert!(
        names.contains(&format!("Address: {}", addresses["u1"])),
        "primary: {names}"
    );
    assert!(
        names.contains("service = 0 100 5353 primary.echo-h.default.svc.cluster.local"),
        "SRV: {names}"
    );
    assert!(names.contains("Address: 10.1.2.3"), "pod name: {names}");
    let none = log_of(&bed, "none", "none-done");
    let host = log_of(&bed, "host", "host-done");
    assert!(
        host.contains(&format!("nameserver {}", bed.gateway()))
            && host.contains("search default.svc.cluster.local")
            && host.contains("# Entries added by HostAliases.\n192.0.2.11\tlocal.example"),
        "a host-network pod with ClusterFirstWithHostNet and host aliases: {host}"
    );
    assert!(
        none.contains("begin\nsearch corp.example\nnameserver 192.0.2.53\nnone-done"),
        "dnsPolicy None: {none}"
    );

    // A subdomain without a hostname: the pod's name is its hostname in /etc/hosts.
    let u2 = log_of(&bed, "u2", "up");
    assert!(
        u2.contains(&format!(
            "{}\tu2.echo-h.default.svc.cluster.local\tu2",
            addresses["u2"]
        )),
        "{u2}"
    );
    // One client flow from the node: it sticks to one backend while that backend lives, and
    // moves to the other as soon as the endpoint leaves (its conntrack entry is deleted).
    let ask = udp_client(&bed, 40053, ip);
    let first = bed.wait_until(WAIT, "a UDP answer through the ClusterIP", || ask("hi"));
    let (first, _) = first.split_once(':').expect("tagged answer");
    let first = first.to_string();
    for _ in 0..3 {
        assert_eq!(
            ask("again").as_deref(),
            Some(format!("{first}:again").as_str()),
            "the flow sticks"
        );
    }
    let other = if first == "u1" { "u2" } else { "u1" };
    bed.remove_manifest(&format!("{first}.yaml"));
    bed.wait_until(WAIT, "1 ready endpoint", || {
        (ready_endpoints(&bed, "echo") == 1).then_some(())
    });
    let moved = bed.wait_until(
        Duration::from_secs(5),
        "the same client flow to reach the other backend",
        || ask("moved").filter(|r| r.starts_with(other)),
    );
    assert_eq!(moved, format!("{other}:moved"));

    // A deleted Service leaves no tracked flow behind.
    bed.remove_manifest("echo-svc.yaml");
    bed.wait_until(WAIT, "no flow to the deleted Service", || {
        (!node_flows(&bed).iter().any(|f| f.orig.dst == ip)).then_some(())
    });
    drop(echoes);
}

/// A UDP client that kept sending to an address before it was a Service's (its tracked flow
/// went past, untranslated, and each datagram keeps that flow alive) is answered once the
/// Service is there: the agent deletes the untranslated flow when the port gets its endpoints.
#[test]
fn a_udp_flow_from_before_the_service_is_answered_once_it_exists() {
    let (mut bed, cidr) = start(68);
    let prefix = cidr.trim_end_matches(".0/24");
    let ip: std::net::Ipv4Addr = format!("{prefix}.53").parse().unwrap();
    bed.write_manifest("u1.yaml", &udp_pod("u1", ""));
    let pod = bed.wait_phase("u1", "Running");
    let pod_ip: std::net::IpAddr = pod["status"]["podIP"].as_str().unwrap().parse().unwrap();
    let netns = format!("{}{}", bed.netns_prefix, support::uid_of(&pod));
    let _echo = support::netbed::UdpEcho::start_tagged(
        &netns,
        std::net::SocketAddr::new(pod_ip, 5353),
        "u1",
    );
    let ask = udp_client(&bed, 40056, ip);
    // Before the Service: no answer, and a tracked flow that nothing translated.
    assert_eq!(ask("early"), None);
    let untranslated = |f: &skiff_cni::conntrack::Flow| {
        f.orig.dst == ip && f.orig.sport == 40056 && f.reply.src == ip
    };
    bed.wait_until(WAIT, "the untranslated flow to be tracked", || {
        ask("early");
        node_flows(&bed).iter().any(untranslated).then_some(())
    });
    bed.write_manifest(
        "echo-svc.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  type: NodePort\n  clusterIP: {ip}\n  selector: {{app: echo}}\n  ports:\n  - {{port: 53, targetPort: echo, protocol: UDP, nodePort: 30053}}\n"
        ),
    );
    // The same client flow, sending all along (every 300 ms), gets its answer.
    let answer = bed.wait_until(
        WAIT,
        "an answer on the flow from before the Service",
        || ask("late").filter(|r| r.starts_with("u1:")),
    );
    assert_eq!(answer, "u1:late");
    // And a flow through the node port, on the node's address.
    let node_port = std::net::SocketAddr::new(bed.gateway().into(), 30053);
    let ask_node_port = udp_client_to(&bed, 40057, node_port);
    let answer = bed.wait_until(WAIT, "an answer through the node port", || {
        ask_node_port("np").filter(|r| r.starts_with("u1:"))
    });
    assert_eq!(answer, "u1:np");

    // The Service deleted while the agent is down: when it starts again it does not know the
    // Service was there, yet the flow that would still reach the old endpoint is forgotten.
    let std::net::IpAddr::V4(pod_v4) = pod_ip else {
        panic!("an IPv4 pod address")
    };
    let through = |f: &skiff_cni::conntrack::Flow| {
        f.orig.dst == ip && f.orig.sport == 40056 && f.reply.src == pod_v4
    };
    let through_node_port = |f: &skiff_cni::conntrack::Flow| {
        f.orig.dport == 30053 && f.orig.sport == 40057 && f.reply.src == pod_v4
    };
    let flows = node_flows(&bed);
    assert!(flows.iter().any(through), "the flow to forget");
    assert!(
        flows.iter().any(through_node_port),
        "the node port flow to forget: {flows:?}"
    );
    bed.stop();
    bed.remove_manifest("echo-svc.yaml");
    assert_eq!(
        ask("down").as_deref(),
        Some("u1:down"),
        "the tracked flow still reaches the endpoint while the agent is down"
    );
    assert_eq!(
        ask_node_port("down").as_deref(),
        Some("u1:down"),
        "the tracked node port flow too"
    );
    bed.restart();
    bed.wait_until(
        WAIT,
        "the flows through the deleted Service forgotten",
        || {
            // Each datagram would keep the flow alive while it is there.
            ask("kept?");
            ask_node_port("kept?");
            let flows = node_flows(&bed);
            (!flows.iter().any(through) && !flows.iter().any(through_node_port)).then_some(())
        },
    );
    assert_eq!(ask("after"), None, "no answer through the deleted Service");
    assert_eq!(
        ask_node_port("after"),
        None,
        "no answer through its deleted node port"
    );
}

/// `sessionAffinity: ClientIP`: the rules load into real nftables, and one client keeps its
/// backend while another Service over the same two pods spreads the same client's requests.
#[test]
fn session_affinity_keeps_a_client_on_one_backend() {
    let (bed, _) = start(69);
    bed.write_manifest("web.yaml", &web("web", 2));
    bed.write_manifest(
        "sticky.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: sticky\nspec:\n  selector: {app: web}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n  ports:\n  - {port: 80, targetPort: http}\n",
    );
    let (web_ip, sticky_ip) = (cluster_ip(&bed, "web"), cluster_ip(&bed, "sticky"));
    bed.wait_until(WAIT, "2 ready endpoints behind each", || {
        (ready_endpoints(&bed, "web") == 2 && ready_endpoints(&bed, "sticky") == 2).then_some(())
    });
    let get = |ip: &str| NetBed::wget_in(&bed.node_netns, &format!("http://{ip}/index.html"));
    // Both backends answer this client through the Service without affinity...
    let mut spread = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while spread.len() < 2 && Instant::now() < deadline {
        if let Some(body) = get(&web_ip) {
            spread.insert(body.trim().to_string());
        }
    }
    assert_eq!(spread.len(), 2, "both backends answer: {spread:?}");
    // ...and one of them, every time, through the one with affinity.
    let first = bed.wait_until(WAIT, "an answer through the sticky Service", || {
        get(&sticky_ip)
    });
    for i in 0..20 {
        let again = get(&sticky_ip).unwrap_or_default();
        assert_eq!(again.trim(), first.trim(), "request {i} kept its backend");
    }
    // The clients are remembered for the Service's timeout, one set per endpoint...
    let table = bed.nft_service_table();
    assert_eq!(
        table
            .lines()
            .filter(|l| l.trim_start().starts_with("set saf-"))
            .count(),
        2,
        "{table}"
    );
    assert!(table.contains("timeout 10m"), "600 s: {table}");
    // ...and the sets go with the Service; web's rules stay.
    bed.remove_manifest("sticky.yaml");
    bed.wait_until(WAIT, "the affinity sets to go", || {
        let t = bed.nft_service_table();
        (!t.contains("set saf-") && !t.contains(&sticky_ip)).then_some(())
    });
    assert!(bed.nft_service_table().contains(&web_ip), "web stays");
}

/// The node's DNS keeps serving when a client holds many TCP connections: past the limit a new
/// connection is closed at once, UDP queries are answered all along, and TCP answers again
/// once the held connections are gone.
#[test]
fn the_dns_serves_udp_while_tcp_clients_crowd_it() {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream, UdpSocket};
    let (bed, _) = start(70);
    let dns = SocketAddr::new(bed.gateway().into(), 53);
    let query = |id: u16| {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(
            Name::from_ascii("nothing-here.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        m.to_vec().unwrap()
    };
    let nxdomain = |bytes: &[u8], id: u16| {
        Message::from_vec(bytes).is_ok_and(|m| {
            m.metadata.id == id && m.metadata.response_code == ResponseCode::NXDomain
        })
    };
    let udp = support::netbed::in_netns(&bed.node_netns, || {
        UdpSocket::bind("0.0.0.0:0").expect("bind a udp client")
    });
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let ask_udp = |id: u16| {
        udp.send_to(&query(id), dns).ok()?;
        let mut buf = [0u8; 512];
        let (n, _) = udp.recv_from(&mut buf).ok()?;
        Some(nxdomain(&buf[..n], id))
    };
    let connect = || {
        support::netbed::in_netns(&bed.node_netns, move || {
            TcpStream::connect_timeout(&dns, Duration::from_secs(2))
        })
    };
    let ask_tcp = |id: u16| -> std::io::Result<bool> {
        let mut s = connect()?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let q = query(id);
        s.write_all(&(q.len() as u16).to_be_bytes())?;
        s.write_all(&q)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut answer)?;
        Ok(nxdomain(&answer, id))
    };
    // The DNS is up (it binds once the bridge has its address).
    bed.wait_until(WAIT, "the node's DNS answering", || {
        ask_udp(1).filter(|ok| *ok)
    });
    assert!(ask_tcp(2).expect("a tcp query"), "tcp answers");

    // 64 clients hold a connection each (and send nothing): the next is closed at once.
    let held: Vec<TcpStream> = (0..64)
        .map(|_| connect().expect("a held connection"))
        .collect();
    let started = Instant::now();
    bed.wait_until(WAIT, "a connection past the limit closed", || {
        let mut extra = connect().ok()?;
        extra.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut buf = [0u8; 1];
        // Closed: end of stream (or a reset), not a read that times out.
        match extra.read(&mut buf) {
            Ok(0) => Some(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(()),
            _ => None,
        }
    });
    for id in 10..20 {
        assert_eq!(ask_udp(id), Some(true), "udp answered while tcp is full");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the checks ran while the held connections were still open ({:?})",
        started.elapsed()
    );
    drop(held);
    bed.wait_until(WAIT, "tcp answering again", || {
        ask_tcp(30).ok().filter(|ok| *ok)
    });
}

/// Names outside the cluster go to the node's resolvers (`--resolv-conf`); while 150 are
/// waiting on a resolver that does not answer, one more gets SERVFAIL at once (no socket of its
/// own), and names of the cluster are answered all along.
#[test]
fn relays_to_a_silent_resolver_are_bounded_and_cluster_names_still_answer() {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use std::net::{SocketAddr, UdpSocket};
    const IN_FLIGHT: usize = 150;
    const MORE: u16 = 20;
    let dir = tempfile::tempdir().expect("a temp dir");
    let resolv = dir.path().join("resolv.conf");
    // A local stub (as 127.0.0.53 is) that takes the queries and never answers: the agent
    // relays from its own namespace, the host's, as it does on a device.
    let silent = UdpSocket::bind("127.0.71.53:53").expect("bind the silent resolver");
    std::fs::write(&resolv, "nameserver 127.0.71.53\n").expect("write resolv.conf");
    let bed = NetBed::start_with_args(
        71,
        24,
        false,
        &[
            "--service-cidr",
            "198.19.171.0/24",
            "--resolv-conf",
            resolv.to_str().expect("utf-8 path"),
        ],
    );
    let dns = SocketAddr::new(bed.gateway().into(), 53);
    let query = |id: u16, name: &str| {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    };
    let client = support::netbed::in_netns(&bed.node_netns, || {
        UdpSocket::bind("0.0.0.0:0").expect("bind a udp client")
    });
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let answer = |client: &UdpSocket| {
        let mut buf = [0u8; 512];
        let (n, _) = client.recv_from(&mut buf).ok()?;
        Message::from_vec(&buf[..n]).ok()
    };
    let cluster_name = "nothing-here.default.svc.cluster.local.";
    bed.wait_until(WAIT, "the node's DNS answering", || {
        client.send_to(&query(1, cluster_name), dns).ok()?;
        answer(&client).filter(|m| m.metadata.response_code == ResponseCode::NXDomain)
    });
    let fds = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let pid = bed.pid().expect("the agent's pid");
    let fds_before = fds(pid);

    // 150 relays wait on the resolver (its timeout is 2 s)...
    let started = Instant::now();
    for id in 0..IN_FLIGHT as u16 {
        client
            .send_to(&query(1000 + id, &format!("n{id}.example.com.")), dns)
            .expect("send");
    }
    // ...so each further one, asked one at a time, is answered SERVFAIL at once.
    for id in 0..MORE {
        let id = 2000 + id;
        client
            .send_to(&query(id, &format!("m{id}.example.com.")), dns)
            .expect("send");
        let m = bed.wait_until(WAIT, "the answer past the limit", || {
            answer(&client).filter(|m| m.metadata.id == id)
        });
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "the queries past the limit were answered while the 150 waited ({took:?})"
    );
    let fds_during = fds(pid);
    assert!(
        fds_during <= fds_before + IN_FLIGHT + 20,
        "the agent holds {fds_during} descriptors (before: {fds_before})"
    );
    // A name of the cluster is answered while the relays wait.
    client.send_to(&query(2, cluster_name), dns).expect("send");
    let asked = Instant::now();
    let m = bed.wait_until(WAIT, "the cluster name answered", || {
        answer(&client).filter(|m| m.metadata.id == 2)
    });
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    drop(silent);

    // A resolver that answers, named by a new resolv.conf (read again when it changes): an
    // outside name comes back with the resolver's own answer, through the agent.
    let answering = UdpSocket::bind("127.0.71.54:53").expect("bind the answering resolver");
    answering
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let resolver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = answering.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
                reply.metadata.recursion_desired = request.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                reply.queries = request.queries.clone();
                if let Some(q) = request.queries.first() {
                    reply.add_answer(hickory_proto::rr::Record::from_rdata(
                        q.name().clone(),
                        60,
                        hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(
                            std::net::Ipv4Addr::new(192, 0, 2, 7),
                        )),
                    ));
                }
                let _ = answering.send_to(&reply.to_vec().unwrap(), from);
            }
        })
    };
    std::fs::write(&resolv, "nameserver 127.0.71.54\n").expect("write resolv.conf");
    let mut id = 3000;
    let m = bed.wait_until(WAIT, "an outside name answered by the resolver", || {
        id += 1;
        client
            .send_to(&query(id, "outside.example.com."), dns)
            .ok()?;
        // Read past what is queued (the SERVFAILs of the 150 relays above, earlier tries).
        loop {
            let m = answer(&client)?;
            if m.metadata.id == id && m.metadata.response_code == ResponseCode::NoError {
                return Some(m);
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    resolver.join().expect("the resolver thread");
    let got: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(got, ["192.0.2.7"], "{m:?}");
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "outside.example.com.",
        "{m:?}"
    );
}

//! Services on one real node (issue 11): a ClusterIP spreads new connections over the ready
//! endpoints, from pods and from the node itself; a pod reaches itself through its Service
//! (hairpin); a NodePort answers an outside client; a Service with no ready endpoint refuses at
//! once; `get services` and `get endpoints` show what is programmed; a deleted Service leaves
//! nothing in nftables. Real containers, real nftables in the test's own namespaces; the
//! service CIDR is inside the test range.
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
                "echo host=$WEB_SERVICE_HOST port=$WEB_SERVICE_PORT link=$WEB_PORT name=$HOSTNAME; i=0; while [ $i -lt 40 ]; do wget -q -O - {url}; i=$((i+1)); done; echo client-done; trap 'exit 0' TERM; sleep 100000 & wait"
            ),
            "  terminationGracePeriodSeconds: 1\n",
        ),
    );
    let log = log_of(&bed, "client", "client-done");
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
    let (bed, cidr) = start(61);
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
}

//! Pod networking on one node: containers of a pod share one network namespace (loopback
//! traffic between them works) that is not the host's; a hostNetwork pod uses the host's.

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT};

fn netns_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("netns of {pid}: {e}"))
}

#[test]
fn containers_of_a_pod_share_localhost() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "web.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: server
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
  - name: client
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; until wget -q -O - http://127.0.0.1:8080/index.html; do sleep 0.2; done; echo fetched; ip -o link; sleep 100000 & wait"]
"#
        ),
    );
    let pod = agent.wait_phase("web", "Running");
    let log = agent.wait_until(WAIT, "the client to fetch the page", || {
        let out = agent.skiff_ok(&["logs", "web", "-c", "client"]);
        out.contains("fetched").then_some(out)
    });
    assert!(log.contains("hello-from-httpd"), "{log}");
    // Only the pod's own loopback, not the host's interfaces.
    assert!(
        !log.contains("eth0") || !host_has("eth0"),
        "pod sees host interfaces: {log}"
    );
    let server = agent
        .container_process(&pod, "server")
        .expect("server process");
    let client = agent
        .container_process(&pod, "client")
        .expect("client process");
    assert_eq!(netns_of(server.pid), netns_of(client.pid));
    assert_ne!(netns_of(server.pid), netns_of(std::process::id() as i32));
}

fn host_has(iface: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(iface).exists()
}

#[test]
fn host_network_pod_sees_the_host_interfaces() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "hostnet.yaml",
        &support::pod_yaml(
            "hostnet",
            "trap 'exit 0' TERM; ip -o link; echo listed; sleep 100000 & wait",
            "  hostNetwork: true\n",
        ),
    );
    let pod = agent.wait_phase("hostnet", "Running");
    let log = agent.wait_until(WAIT, "the interface list", || {
        let out = agent.skiff_ok(&["logs", "hostnet"]);
        out.contains("listed").then_some(out)
    });
    let names: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    assert!(!host.is_empty());
    // Interfaces of other tests come and go; the host's stable ones must all be listed.
    for stable in host
        .iter()
        .filter(|n| !n.starts_with("veth") && !n.starts_with("sk"))
    {
        if host_has(stable) {
            assert!(
                names.contains(&stable.as_str()),
                "host interface {stable} missing in the pod: {log}"
            );
        }
    }
    let main = agent.container_process(&pod, "main").expect("process");
    assert_eq!(netns_of(main.pid), netns_of(std::process::id() as i32));
    assert!(
        support::cleanup::netns_with_prefix(&agent.netns_prefix).is_empty(),
        "a hostNetwork pod got a netns"
    );
}

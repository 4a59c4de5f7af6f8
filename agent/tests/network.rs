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

#[test]
fn pods_reach_each_other_on_their_pod_ips() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "server.yaml",
        &support::pod_yaml(
            "server",
            "mkdir -p /www && echo hello-across-pods > /www/index.html && exec httpd -f -p 8080 -h /www",
            "",
        ),
    );
    let server = agent.wait_phase("server", "Running");
    let ip = server["status"]["podIP"]
        .as_str()
        .expect("server podIP")
        .to_string();
    assert!(ip.starts_with("198.18.7."), "{ip}");
    agent.write_manifest(
        "client.yaml",
        &support::pod_yaml(
            "client",
            &format!(
                "trap 'exit 0' TERM; until wget -q -O - http://{ip}:8080/index.html; do sleep 0.2; done; echo fetched; cat /etc/hosts; sleep 100000 & wait"
            ),
            "",
        ),
    );
    let client = agent.wait_phase("client", "Running");
    let log = agent.wait_until(WAIT, "the client to fetch from the server pod", || {
        let out = agent.skiff_ok(&["logs", "client"]);
        out.contains("fetched").then_some(out)
    });
    assert!(log.contains("hello-across-pods"), "{log}");
    let client_ip = client["status"]["podIP"].as_str().expect("client podIP");
    assert_ne!(client_ip, ip);
    assert!(
        log.contains(client_ip) && log.contains("client"),
        "/etc/hosts lacks the pod: {log}"
    );
    // The node side of pod networking lives in the node's namespace, not on the host.
    let bridge = format!("sk{}", &agent.netns_tag[1..]);
    assert!(
        !host_has(&bridge),
        "the bridge {bridge} leaked onto the host"
    );
}

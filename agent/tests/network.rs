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

/// Runs busybox `wget` inside the agent's node namespace (where the bridge lives).
fn wget_from_node(agent: &TestAgent, url: &str) -> Option<String> {
    // (busybox's own `wget -T` crashes on this Debian build: coreutils' timeout instead.)
    let mut cmd = std::process::Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &agent.node_netns,
        "timeout",
        "3",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        url,
    ]);
    let out = support::run_with_timeout(cmd, std::time::Duration::from_secs(10));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

const HTTPD: &str = "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";

#[test]
fn host_ports_reach_the_pod() {
    let agent = TestAgent::start();
    agent.write_manifest(
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
    agent.wait_phase("hp", "Running");
    // The node's own address on its bridge: the gateway of the pod subnet.
    let body = agent.wait_until(WAIT, "the hostPort to answer", || {
        wget_from_node(&agent, "http://198.18.7.1:18080/index.html")
    });
    assert_eq!(body.trim(), "served-by-hp");
    agent.remove_manifest("hp.yaml");
    agent.wait_until(WAIT, "hp to go", || agent.pod("hp").is_none().then_some(()));
    assert!(
        wget_from_node(&agent, "http://198.18.7.1:18080/index.html").is_none(),
        "the hostPort still answers after the pod is gone"
    );
}

#[test]
fn pod_networking_survives_agent_restarts() {
    let mut agent = TestAgent::start();
    agent.write_manifest("srv.yaml", &support::pod_yaml("srv", HTTPD, ""));
    let pod = agent.wait_phase("srv", "Running");
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    let url = format!("http://{ip}:8080/index.html");
    let body = agent.wait_until(WAIT, "the pod to answer", || wget_from_node(&agent, &url));
    assert_eq!(body.trim(), "served-by-srv");
    for kill in [false, true] {
        if kill {
            agent.kill9();
        } else {
            agent.stop();
        }
        agent.restart();
        // A marker pod proves the restarted agent has reconciled (and run its network gc).
        let marker = format!("m{}", u8::from(kill));
        agent.write_manifest(
            &format!("{marker}.yaml"),
            &support::pod_yaml(&marker, HTTPD, ""),
        );
        let m = agent.wait_phase(&marker, "Running");
        let now = agent.pod("srv").expect("srv");
        assert_eq!(
            now["status"]["podIP"].as_str(),
            Some(ip.as_str()),
            "the pod's IP changed"
        );
        assert_eq!(support::uid_of(&now), support::uid_of(&pod));
        assert_ne!(
            m["status"]["podIP"].as_str(),
            Some(ip.as_str()),
            "IP handed out twice"
        );
        assert_eq!(
            wget_from_node(&agent, &url).as_deref().map(str::trim),
            Some("served-by-srv")
        );
    }
}

#[test]
fn addresses_are_released_when_pods_go() {
    // A /29 has 5 addresses for pods: three rounds of 4 pods need released addresses back.
    let agent = TestAgent::start_with(support::AgentOptions {
        pod_subnet: "198.18.9.0/29".into(),
        ..support::AgentOptions::default()
    });
    for round in 0..3 {
        for i in 0..4 {
            agent.write_manifest(
                &format!("p{i}.yaml"),
                &support::pod_yaml(
                    &format!("p{i}"),
                    "trap 'exit 0' TERM; sleep 100000 & wait",
                    // Stopped as soon as they run: before the shell's trap, SIGTERM is lost.
                    "  terminationGracePeriodSeconds: 2\n",
                ),
            );
        }
        let pods = agent.wait_running(4);
        let mut ips: Vec<&str> = pods
            .iter()
            .filter_map(|p| p["status"]["podIP"].as_str())
            .collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 4, "round {round}: {ips:?}");
        for i in 0..4 {
            agent.remove_manifest(&format!("p{i}.yaml"));
        }
        agent.wait_until(WAIT, "no pods", || agent.pods().is_empty().then_some(()));
    }
}

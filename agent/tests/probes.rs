//! Probes on one real node (issue 12): a readiness probe holds a pod out of READY (and out of
//! its Service's endpoints) until its check passes; a failed liveness probe restarts the
//! container with an `Unhealthy` event that says why; exec probes and an exec postStart hook run
//! inside the container. Real containers, pod networking in the
//! test's own namespaces; httpGet checks go from the node to the pod's address.
//!
//! Run as root: `cargo test -p skiff-agent --test probes`.

mod support;

use support::netbed::NetBed;
use support::{TEST_IMAGE, WAIT};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: probed
  labels: {app: probed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/alive && (httpd -f -p 8080 -h /www &) && sleep 2 && echo ok > /www/ready && sleep 3 && rm /www/alive && echo removed; trap 'exit 0' TERM; sleep 100000 & wait"]
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
    livenessProbe:
      httpGet: {path: /alive, port: 8080}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata:
  name: probed
spec:
  selector: {app: probed}
  ports:
  - {port: 80, targetPort: http}
"#;

fn ready_of(bed: &NetBed) -> Option<(bool, u64)> {
    let pod = bed.pod("probed")?;
    let status = &pod["status"]["containerStatuses"][0];
    Some((status["ready"].as_bool()?, status["restartCount"].as_u64()?))
}

fn endpoints(bed: &NetBed) -> usize {
    let out = bed.skiff(&["get", "endpoints", "probed", "-o", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["subsets"][0]["addresses"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn readiness_gates_ready_and_endpoints_and_liveness_restarts() {
    let bed = NetBed::start_with_args(63, 24, false, &["--service-cidr", "198.19.163.0/24"]);
    bed.write_manifest("probed.yaml", &POD.replace("IMAGE", TEST_IMAGE));
    bed.wait_phase("probed", "Running");
    // Running, but not ready until /ready is served (about 2 s after the start).
    let (ready, _) = bed.wait_until(WAIT, "the container's status", || ready_of(&bed));
    assert!(!ready, "ready before its readiness probe passed");
    assert_eq!(endpoints(&bed), 0, "a pod that is not ready is no endpoint");
    bed.wait_until(WAIT, "READY through the readiness probe", || {
        ready_of(&bed).filter(|(r, _)| *r)
    });
    bed.wait_until(WAIT, "the ready pod among the endpoints", || {
        (endpoints(&bed) == 1).then_some(())
    });
    // /alive goes away: two failed checks restart the container, with the reason.
    bed.wait_until(WAIT, "a restart by the liveness probe", || {
        ready_of(&bed).filter(|(_, restarts)| *restarts >= 1)
    });
    let events = bed.events();
    let unhealthy = events.iter().find(|e| {
        e["reason"] == "Unhealthy"
            && e["message"].as_str().is_some_and(|m| {
                m.contains("Liveness probe failed: HTTP probe failed with statuscode: 404")
            })
    });
    assert!(unhealthy.is_some(), "{events:#?}");
}

/// Without pod networking a pod has a loopback-only namespace: its checks run inside it.
#[test]
fn a_pod_without_pod_networking_is_probed_on_its_own_loopback() {
    let agent = support::TestAgent::start_with(support::AgentOptions {
        pod_network: false,
        ..support::AgentOptions::default()
    });
    agent.write_manifest(
        "lo.yaml",
        &support::pod_yaml(
            "lo",
            "mkdir -p /www && echo ok > /www/ready && exec httpd -f -p 8080 -h /www",
            "  terminationGracePeriodSeconds: 1\n",
        )
        .replace(
            "    command:",
            "    readinessProbe:\n      httpGet: {path: /ready, port: 8080}\n      periodSeconds: 1\n    command:",
        ),
    );
    agent.wait_until(WAIT, "lo READY through its readiness probe", || {
        let pod = agent.pod("lo")?;
        (pod["status"]["containerStatuses"][0]["ready"] == true).then_some(())
    });
    // The checks reach the pod's own server: a missing path is its 404.
    agent.write_manifest(
        "dead.yaml",
        &support::pod_yaml(
            "dead",
            "mkdir -p /www && exec httpd -f -p 8080 -h /www",
            "  terminationGracePeriodSeconds: 1\n",
        )
        .replace(
            "    command:",
            "    livenessProbe:\n      httpGet: {path: /missing, port: 8080}\n      periodSeconds: 1\n      failureThreshold: 1\n    command:",
        ),
    );
    agent.wait_until(WAIT, "dead restarted by its liveness probe", || {
        agent.events().into_iter().find(|e| {
            e["message"].as_str().is_some_and(|m| {
                m.contains("Liveness probe failed: HTTP probe failed with statuscode: 404")
            })
        })
    });
}

/// The Kubernetes `exec-liveness` example with an exec readiness probe and an exec postStart
/// hook: the hook's file makes the pod ready, `skiff exec` reads it, and the liveness command
/// failing once the file it reads is gone restarts the container with its output as the reason.
const EXEC_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: execprobed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 4; rm -f /tmp/healthy; trap 'exit 0' TERM; sleep 100000 & wait"]
    lifecycle:
      postStart:
        exec: {command: ["sh", "-c", "echo hooked > /tmp/started"]}
    readinessProbe:
      exec: {command: ["test", "-e", "/tmp/started"]}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
"#;

#[test]
fn exec_probes_and_an_exec_post_start_hook_run_in_the_container() {
    let agent = support::TestAgent::start_with(support::AgentOptions {
        pod_network: false,
        ..support::AgentOptions::default()
    });
    agent.write_manifest("execprobed.yaml", &EXEC_POD.replace("IMAGE", TEST_IMAGE));
    agent.wait_until(WAIT, "READY through the exec readiness probe", || {
        let pod = agent.pod("execprobed")?;
        (pod["status"]["containerStatuses"][0]["ready"] == true).then_some(())
    });
    let marker = agent.skiff_ok(&["exec", "execprobed", "--", "cat", "/tmp/started"]);
    assert_eq!(
        marker, "hooked\n",
        "the postStart hook ran in the container"
    );
    let event = agent.wait_until(WAIT, "a restart by the exec liveness probe", || {
        let pod = agent.pod("execprobed")?;
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_u64()?;
        let events = agent.events();
        let unhealthy = events.into_iter().find(|e| {
            e["reason"] == "Unhealthy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Liveness probe failed: cat: can't open"))
        });
        (restarts >= 1).then_some(unhealthy).flatten()
    });
    assert!(
        event["message"]
            .as_str()
            .unwrap_or("")
            .contains("/tmp/healthy"),
        "{event}"
    );
}

//! Lifecycle hooks on one real node (issue 12): a preStop hook runs before the container gets
//! SIGTERM, within the grace period; a postStart hook that fails kills the container, which
//! restarts with a `FailedPostStartHook` event; an exec preStop hook runs in the container before
//! its SIGTERM. Real containers, pod networking in the test's own namespaces (httpGet hooks go
//! from the node to the pod's address, like probes).
//!
//! Run as root: `cargo test -p skiff-agent --test hooks`.

mod support;

use std::time::{Duration, Instant};

use support::netbed::NetBed;
use support::{TEST_IMAGE, WAIT};

/// A container that leaves at once on SIGTERM, with a 3 s preStop sleep and a 20 s grace.
const STOPPER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: stopper
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.1; done"]
    lifecycle:
      preStop:
        sleep: {seconds: 3}
"#;

/// A postStart hook to a port nothing listens on.
const BAD_START: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: badstart
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    lifecycle:
      postStart:
        httpGet: {path: /started, port: 9}
"#;

#[test]
fn a_pre_stop_hook_runs_before_sigterm_within_the_grace_period() {
    let bed = NetBed::start(64, 24, false);
    bed.write_manifest("stopper.yaml", &STOPPER.replace("IMAGE", TEST_IMAGE));
    bed.wait_phase("stopper", "Running");
    bed.wait_until(WAIT, "the container's first line", || {
        let out = bed.skiff(&["logs", "stopper"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("started")
            .then_some(())
    });
    let deleted = Instant::now();
    bed.remove_manifest("stopper.yaml");
    bed.wait_until(WAIT, "the pod gone", || {
        bed.pod("stopper").is_none().then_some(())
    });
    let took = deleted.elapsed();
    eprintln!("pod gone {took:?} after its deletion");
    // The hook's 3 s pass before SIGTERM; the trap then ends the container at once, long
    // before the 20 s grace period would have ended it with SIGKILL.
    assert!(
        took >= Duration::from_secs(3),
        "gone after {took:?}: the preStop sleep did not run first"
    );
    assert!(
        took < Duration::from_secs(12),
        "gone after {took:?}: SIGTERM did not follow the hook"
    );
    assert!(
        !bed.events()
            .iter()
            .any(|e| e["reason"] == "FailedPreStopHook"),
        "the hook did not fail"
    );
}

#[test]
fn a_failed_post_start_hook_kills_the_container_which_restarts() {
    let bed = NetBed::start(65, 24, false);
    bed.write_manifest("badstart.yaml", &BAD_START.replace("IMAGE", TEST_IMAGE));
    bed.wait_until(WAIT, "a restart after the failed hook", || {
        let pod = bed.pod("badstart")?;
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_u64()?;
        (restarts >= 1).then_some(())
    });
    let events = bed.events();
    let failed = events
        .iter()
        .find(|e| e["reason"] == "FailedPostStartHook")
        .unwrap_or_else(|| panic!("no FailedPostStartHook event: {events:#?}"));
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PostStartHook failed for container main") && message.contains(":9"),
        "{message}"
    );
}

/// An exec preStop hook writes to a hostPath before the container's SIGTERM trap does.
const EXEC_STOP: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: execstop
spec:
  terminationGracePeriodSeconds: 20
  volumes:
  - name: out
    hostPath: {path: OUT, type: Directory}
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo term >> /out/order; exit 0' TERM; echo started; while true; do sleep 0.1; done"]
    volumeMounts:
    - {name: out, mountPath: /out}
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "echo prestop >> /out/order; sleep 1"]}
"#;

#[test]
fn an_exec_pre_stop_hook_runs_in_the_container_before_sigterm() {
    let agent = support::TestAgent::start_with(support::AgentOptions {
        pod_network: false,
        ..support::AgentOptions::default()
    });
    let out = agent.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    agent.write_manifest(
        "execstop.yaml",
        &EXEC_STOP
            .replace("IMAGE", TEST_IMAGE)
            .replace("OUT", out.to_str().unwrap()),
    );
    agent.wait_until(WAIT, "the container's first line", || {
        let logs = agent.skiff(&["logs", "execstop"]);
        String::from_utf8_lossy(&logs.stdout)
            .contains("started")
            .then_some(())
    });
    agent.remove_manifest("execstop.yaml");
    agent.wait_until(WAIT, "the pod gone", || {
        agent.pod("execstop").is_none().then_some(())
    });
    let order = std::fs::read_to_string(out.join("order")).unwrap_or_default();
    assert_eq!(order, "prestop\nterm\n", "the hook ran first, then SIGTERM");
}

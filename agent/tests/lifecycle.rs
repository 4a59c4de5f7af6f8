//! Container lifecycle in real containers: restart policies and exit reasons, crash-loop
//! backoff that doubles, OOM kills, and stopping with a grace period.

mod support;

use std::time::{Duration, Instant};
use support::{TEST_IMAGE, TestAgent, WAIT, container_status, pod_yaml};

fn terminated(pod: &serde_json::Value) -> serde_json::Value {
    container_status(pod, "main")["state"]["terminated"].clone()
}

#[test]
fn never_and_on_failure_end_in_failed_and_succeeded() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "fail.yaml",
        &pod_yaml("fail", "echo bye; exit 1", "  restartPolicy: Never\n"),
    );
    agent.write_manifest(
        "ok.yaml",
        &pod_yaml("ok", "exit 0", "  restartPolicy: OnFailure\n"),
    );
    let fail = agent.wait_phase("fail", "Failed");
    let t = terminated(&fail);
    assert_eq!(t["exitCode"], 1, "{fail}");
    assert_eq!(t["reason"], "Error", "{fail}");
    assert_eq!(container_status(&fail, "main")["restartCount"], 0);
    let ok = agent.wait_phase("ok", "Succeeded");
    let t = terminated(&ok);
    assert_eq!(t["exitCode"], 0, "{ok}");
    assert_eq!(t["reason"], "Completed", "{ok}");
    let table = agent.skiff_ok(&["get", "pods"]);
    let status = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    };
    assert_eq!(status("fail").as_deref(), Some("Error"), "{table}");
    assert_eq!(status("ok").as_deref(), Some("Completed"), "{table}");
    // Nothing restarts afterwards: the phases stay.
    assert!(agent.skiff_ok(&["logs", "fail"]).contains("bye"));
    let events = agent.events();
    assert!(
        !events.iter().any(|e| e["reason"] == "BackOff"),
        "{events:#?}"
    );
}

#[test]
fn always_restarts_with_doubling_backoff() {
    let agent = TestAgent::start();
    // Each run records its start (seconds since boot, from the host-wide /proc/uptime) in an
    // emptyDir that outlives the container, then fails.
    agent.write_manifest(
        "crash.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  volumes: [{{name: d, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: d, mountPath: /d}}]
    command: ["sh", "-c", "cut -d' ' -f1 /proc/uptime >> /d/starts; exit 1"]
"#
        ),
    );
    let mut seen_backoff = false;
    let mut counts = Vec::new();
    let pod = agent.wait_until(Duration::from_secs(60), "5 restarts", || {
        let p = agent.pod("crash")?;
        let c = container_status(&p, "main");
        if c["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            seen_backoff = true;
        }
        let n = c["restartCount"].as_u64()?;
        if counts.last() != Some(&n) {
            counts.push(n);
        }
        (n >= 5).then_some(p)
    });
    assert!(
        seen_backoff,
        "CrashLoopBackOff never shown between attempts"
    );
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "restart counts went back: {counts:?}"
    );
    let last = &container_status(&pod, "main")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{pod}");
    assert_eq!(last["reason"], "Error", "{pod}");
    assert_eq!(pod["status"]["phase"], "Running");

    let starts_file = agent
        .data
        .join("pods")
        .join(support::uid_of(&pod))
        .join("volumes/d/starts");
    let text = std::fs::read_to_string(&starts_file).expect("starts file");
    let starts: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(starts.len() >= 5, "{text}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).take(4).collect();
    // Base 200 ms: 0.2, 0.4, 0.8, 1.6 s, plus the time to notice the exit and start again.
    for (i, gap) in gaps.iter().enumerate() {
        let delay = 0.2 * f64::from(1u32 << i);
        assert!(
            *gap >= delay * 0.9,
            "gap {i} = {gap:.2}s, shorter than the backoff {delay}s: {gaps:?}"
        );
        assert!(
            *gap <= delay + 3.0,
            "gap {i} = {gap:.2}s, far longer than the backoff {delay}s: {gaps:?}"
        );
    }
    // The lower bounds above already show the doubling; the fourth gap must also clearly
    // exceed the first (1.6 s against 0.2 s, whatever the noise of noticing exits).
    assert!(gaps[3] > gaps[0] + 1.0, "gaps do not grow: {gaps:?}");
}

fn time_to_stop(agent: &TestAgent, name: &str) -> Duration {
    let pod = agent.wait_phase(name, "Running");
    let id = agent
        .container_process(&pod, "main")
        .expect("container process");
    let started = Instant::now();
    agent.remove_manifest(&format!("{name}.yaml"));
    agent.wait_until(WAIT, "the container to stop", || {
        (!id.alive()).then_some(())
    });
    let took = started.elapsed();
    agent.wait_until(WAIT, "the pod to go", || {
        agent.pod(name).is_none().then_some(())
    });
    took
}

#[test]
fn stop_kills_after_the_grace_period_or_at_once_when_the_process_exits() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "stubborn.yaml",
        &pod_yaml(
            "stubborn",
            "trap '' TERM; while true; do sleep 1; done",
            "  terminationGracePeriodSeconds: 2\n",
        ),
    );
    agent.write_manifest(
        "polite.yaml",
        &pod_yaml("polite", "trap \"exit 0\" TERM; sleep 100000 & wait", ""),
    );
    let took = time_to_stop(&agent, "stubborn");
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_secs(10),
        "a TERM-ignoring container stopped after {took:?} with a 2 s grace period"
    );
    let took = time_to_stop(&agent, "polite");
    // Well under its 30 s default grace period (generous: a loaded machine runs this).
    assert!(
        took < Duration::from_secs(15),
        "a TERM-handling container took {took:?} to stop"
    );
}

#[test]
fn a_missing_executable_is_reported_and_retried_with_backoff() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "nope.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nope\nspec:\n  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"/no/such/binary\"]\n"
        ),
    );
    let started = Instant::now();
    let pod = agent.wait_until(WAIT, "a start error", || {
        let p = agent.pod("nope")?;
        let c = container_status(&p, "main");
        let reason = c["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let failed = reason.contains("Error") || reason == "CrashLoopBackOff";
        let last = c["lastState"]["terminated"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (failed || last.contains("Error")).then_some(p)
    });
    let text = pod["status"].to_string();
    assert!(
        text.contains("/no/such/binary"),
        "the error does not name the binary: {pod}"
    );
    assert_ne!(pod["status"]["phase"], "Running", "{pod}");
    // Retries back off: not more than a handful of attempts in the first ~2 s.
    agent.wait_until(WAIT, "two seconds", || {
        (started.elapsed() > Duration::from_secs(2)).then_some(())
    });
    let events = agent.events();
    let attempts: u64 = events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == "nope" && e["type"] == "Warning")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    assert!(attempts >= 2, "no retries: {events:#?}");
    assert!(attempts <= 8, "{attempts} failures in 2 s: {events:#?}");
}

#[test]
fn on_failure_retries_until_success() {
    let agent = TestAgent::start();
    // Fails on the first run, succeeds on the second (the emptyDir outlives the container).
    agent.write_manifest(
        "retry.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: retry
spec:
  restartPolicy: OnFailure
  volumes: [{{name: d, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: d, mountPath: /d}}]
    command: ["sh", "-c", "if [ -f /d/once ]; then echo second; exit 0; fi; touch /d/once; echo first; exit 2"]
"#
        ),
    );
    let pod = agent.wait_phase("retry", "Succeeded");
    let c = container_status(&pod, "main");
    assert_eq!(c["restartCount"], 1, "{c}");
    assert_eq!(c["state"]["terminated"]["reason"], "Completed", "{c}");
    let logs = agent.skiff_ok(&["logs", "retry"]);
    assert!(logs.contains("second"), "{logs}");
}

#[test]
fn a_crash_looping_pod_is_deleted_at_once() {
    let agent = TestAgent::start_with(support::AgentOptions {
        // A first backoff of 30 s: a delete that waited for it could not pass the 15 s bound.
        crash_backoff_base_ms: 30_000,
        ..support::AgentOptions::default()
    });
    agent.write_manifest("loop.yaml", &pod_yaml("loop", "exit 1", ""));
    agent.wait_until(WAIT, "CrashLoopBackOff", || {
        let p = agent.pod("loop")?;
        (container_status(&p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff")
            .then_some(())
    });
    let started = Instant::now();
    agent.remove_manifest("loop.yaml");
    agent.wait_until(WAIT, "the pod to go", || {
        agent.pod("loop").is_none().then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(support::cleanup::netns_with_prefix(&agent.netns_prefix).is_empty());
}

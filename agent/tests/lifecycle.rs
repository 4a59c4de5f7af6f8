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

#[test]
fn memory_limit_oom_kill_is_reported() {
    let agent = TestAgent::start();
    // `tail` keeps its input in memory until it sees the end: 64 MiB with no newline.
    agent.write_manifest(
        "oom.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: oom
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "head -c 67108864 /dev/zero | tail >/dev/null"]
    resources:
      limits: {{memory: 16Mi}}
"#
        ),
    );
    let pod = agent.wait_until(WAIT, "the oom pod to end", || {
        agent
            .pod("oom")
            .filter(|p| p["status"]["phase"] == "Failed" || p["status"]["phase"] == "Succeeded")
    });
    let t = terminated(&pod);
    assert_eq!(
        t["reason"],
        "OOMKilled",
        "{pod}\n{}",
        agent.skiff_ok(&["logs", "oom"])
    );
    assert_eq!(t["exitCode"], 137, "{pod}");
    assert_eq!(pod["status"]["phase"], "Failed");
    let events = agent.events();
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "OOMKilled" && e["involvedObject"]["name"] == "oom"),
        "{events:#?}"
    );

    // Restarted after an OOM kill: the reason moves to lastState.
    agent.write_manifest(
        "oom2.yaml",
        &agent
            .dir
            .join("m/oom.yaml")
            .to_str()
            .map(|p| {
                std::fs::read_to_string(p)
                    .expect("oom.yaml")
                    .replace("name: oom", "name: oom2")
                    .replace("restartPolicy: Never", "restartPolicy: Always")
            })
            .expect("path"),
    );
    let pod = agent.wait_until(WAIT, "oom2 restarted", || {
        agent
            .pod("oom2")
            .filter(|p| container_status(p, "main")["restartCount"].as_u64() >= Some(1))
    });
    let last = &container_status(&pod, "main")["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{pod}");
}

#[test]
fn the_same_command_without_a_limit_completes() {
    // The control for the OOM test: the command really allocates and works when memory allows.
    let agent = TestAgent::start();
    agent.write_manifest(
        "big.yaml",
        &pod_yaml(
            "big",
            "head -c 67108864 /dev/zero | tail | wc -c",
            "  restartPolicy: Never\n",
        ),
    );
    let pod = agent.wait_phase("big", "Succeeded");
    assert_eq!(terminated(&pod)["reason"], "Completed");
    assert_eq!(agent.skiff_ok(&["logs", "big"]).trim(), "67108864");
}

/// Deletes the pod's file and returns how long its container process took to die.
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
    assert!(
        took < Duration::from_secs(5),
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
fn cpu_and_memory_limits_reach_the_cgroup() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "limited.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: limited\nspec:\n  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n    resources:\n      limits: {{cpu: 500m, memory: 48Mi}}\n"
        ),
    );
    let pod = agent.wait_phase("limited", "Running");
    let id = agent.container_process(&pod, "main").expect("process");
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", id.pid)).expect("cgroup");
    let path_of = |controller: &str| {
        cgroups
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == controller))
            })
            .and_then(|l| l.split(':').nth(2))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {controller} cgroup in {cgroups}"))
    };
    let memory = path_of("memory");
    assert!(
        memory.starts_with(&format!(
            "{}/{}/",
            agent.cgroup_parent,
            support::uid_of(&pod)
        )),
        "{memory}"
    );
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"
    ))
    .expect("memory limit");
    assert_eq!(limit.trim(), (48 * 1024 * 1024).to_string());
    let cpu = path_of("cpu");
    let dir = std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == "cpu"))
                && p.join(cpu.trim_start_matches('/')).is_dir()
        })
        .expect("cpu hierarchy");
    let base = dir.join(cpu.trim_start_matches('/'));
    let quota: i64 = std::fs::read_to_string(base.join("cpu.cfs_quota_us"))
        .expect("quota")
        .trim()
        .parse()
        .expect("number");
    let period: i64 = std::fs::read_to_string(base.join("cpu.cfs_period_us"))
        .expect("period")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(quota * 1000 / period, 500, "quota {quota} period {period}");
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
        crash_backoff_base_ms: 5000,
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
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(support::cleanup::netns_with_prefix(&agent.netns_prefix).is_empty());
}

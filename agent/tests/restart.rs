//! Agent restarts: graceful (SIGTERM) and `kill -9`. Containers outlive the agent; the new agent
//! re-adopts them (same processes, same restart counts, no new starts) and their logs go on.

mod support;

use std::collections::BTreeMap;
use support::counter::{deployment, state};
use support::{TestAgent, WAIT, container_status, name_of, pod_yaml};

/// Starts a marker pod and waits for it: by then the agent has re-adopted and reconciled.
fn sync_with_marker(agent: &TestAgent, name: &str) {
    agent.write_manifest(
        &format!("{name}.yaml"),
        &pod_yaml(name, "trap 'exit 0' TERM; sleep 100000 & wait", ""),
    );
    agent.wait_phase(name, "Running");
}

fn started_events(agent: &TestAgent) -> Vec<String> {
    agent
        .events()
        .iter()
        .filter(|e| e["reason"] == "Started")
        .map(|e| {
            e["involvedObject"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line ")?.trim().parse().ok())
        .collect()
}

#[test]
fn graceful_restart_readopts_running_pods() {
    let mut agent = TestAgent::start();
    agent.write_manifest("web.yaml", &deployment());
    agent.wait_running(2);
    let before = state(&agent);
    assert_eq!(before.len(), 2);

    agent.stop();
    for (name, (id, _)) in &before {
        assert!(id.alive(), "{name}'s container died with the agent");
    }
    agent.restart();
    sync_with_marker(&agent, "marker");
    let after = state(&agent);
    let after_web: BTreeMap<_, _> = after.into_iter().filter(|(n, _)| n != "marker").collect();
    assert_eq!(
        after_web, before,
        "pods, processes or restart counts changed"
    );
    let started = started_events(&agent);
    assert_eq!(
        started,
        vec!["marker".to_string()],
        "only the marker was started"
    );
}

#[test]
fn kill9_restart_readopts_and_logs_continue() {
    let mut agent = TestAgent::start();
    agent.write_manifest("web.yaml", &deployment());
    let pods = agent.wait_running(2);
    let pod = name_of(&pods[0]);
    agent.wait_until(WAIT, "some log lines", || {
        (line_numbers(&agent.skiff_ok(&["logs", &pod])).len() > 3).then_some(())
    });
    let before = state(&agent);

    agent.kill9();
    // Containers run on without their agent, and keep logging.
    let log_file = agent
        .data
        .join("pods")
        .join(support::uid_of(&pods[0]))
        .join("logs")
        .join("app.log");
    let size = std::fs::metadata(&log_file).map(|m| m.len()).unwrap_or(0);
    agent.wait_until(WAIT, "log growth while the agent is down", || {
        (std::fs::metadata(&log_file).map(|m| m.len()).unwrap_or(0) > size).then_some(())
    });
    for (name, (id, _)) in &before {
        assert!(id.alive(), "{name}'s container died with the agent");
    }

    agent.restart();
    sync_with_marker(&agent, "marker");
    let after: BTreeMap<_, _> = state(&agent)
        .into_iter()
        .filter(|(n, _)| n != "marker")
        .collect();
    assert_eq!(after, before, "pods, processes or restart counts changed");
    assert_eq!(started_events(&agent), vec!["marker".to_string()]);

    // Lines written after the restart appear, with none missing.
    let last = *line_numbers(&agent.skiff_ok(&["logs", &pod]))
        .last()
        .expect("log lines");
    let numbers = agent.wait_until(WAIT, "new log lines after the restart", || {
        let n = line_numbers(&agent.skiff_ok(&["logs", &pod]));
        (n.last().is_some_and(|l| *l >= last + 5)).then_some(n)
    });
    let expected: Vec<u64> = (0..=*numbers.last().unwrap_or(&0)).collect();
    assert_eq!(
        numbers, expected,
        "log lines lost or repeated across the restart"
    );
    // Re-adopted pods are deleted as cleanly as any.
    agent.remove_manifest("web.yaml");
    agent.remove_manifest("marker.yaml");
    agent.wait_until(WAIT, "no pods, mounts or namespaces", || {
        let left =
            support::cleanup::leftovers(&agent.dir, &agent.cgroup_parent, &agent.netns_prefix);
        let clean = agent.pods().is_empty()
            && left.mounts.is_empty()
            && left.netns.is_empty()
            && left.processes.is_empty();
        clean.then_some(())
    });
}

#[test]
fn changes_made_while_the_agent_was_down_are_applied_on_start() {
    let mut agent = TestAgent::start();
    agent.write_manifest("web.yaml", &deployment());
    agent.write_manifest(
        "solo.yaml",
        &pod_yaml(
            "solo",
            "trap 'exit 0' TERM; sleep 100000 & wait",
            "  terminationGracePeriodSeconds: 2\n",
        ),
    );
    agent.write_manifest(
        "crashy.yaml",
        &pod_yaml("crashy", "trap 'exit 0' TERM; sleep 100000 & wait", ""),
    );
    agent.wait_running(4);
    let web = state(&agent);
    let solo = agent.pod("solo").expect("solo");
    let solo_proc = agent
        .container_process(&solo, "main")
        .expect("solo process");
    let crashy = agent.pod("crashy").expect("crashy");
    let crashy_proc = agent
        .container_process(&crashy, "main")
        .expect("crashy process");

    agent.kill9();
    // While the agent is down: a file goes, another is scaled, a container dies.
    agent.remove_manifest("solo.yaml");
    agent.write_manifest(
        "web.yaml",
        &deployment().replace("replicas: 2", "replicas: 3"),
    );
    support::proc::signal(crashy_proc.pid, libc::SIGKILL);
    agent.wait_until(WAIT, "crashy's container to die", || {
        (!crashy_proc.alive()).then_some(())
    });

    agent.restart();
    agent.wait_until(WAIT, "solo to be deleted", || {
        agent.pod("solo").is_none().then_some(())
    });
    assert!(!solo_proc.alive(), "solo's container outlived its pod");
    let pods = agent.wait_until(WAIT, "3 web pods and crashy running again", || {
        let pods = agent.live_pods();
        let webs = pods
            .iter()
            .filter(|p| name_of(p).starts_with("web-") && support::all_running(p))
            .count();
        let crashy = pods
            .iter()
            .find(|p| name_of(p) == "crashy")
            .filter(|p| support::all_running(p) && agent.container_process(p, "main").is_some())?;
        (webs == 3).then_some(crashy.clone())
    });
    for (name, (id, restarts)) in &web {
        let p = agent
            .pod(name)
            .unwrap_or_else(|| panic!("{name} was replaced"));
        assert_eq!(agent.container_process(&p, "app").as_ref(), Some(id));
        assert_eq!(&container_status(&p, "app")["restartCount"], restarts);
    }
    let c = container_status(&pods, "main");
    assert_eq!(c["restartCount"], 1, "{c}");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 137, "{c}");
    assert_eq!(
        support::uid_of(&pods),
        support::uid_of(&crashy),
        "crashy was replaced, not restarted"
    );
}

#[test]
fn a_deletion_in_progress_finishes_after_a_restart() {
    let mut agent = TestAgent::start();
    agent.write_manifest(
        "stubborn.yaml",
        &pod_yaml(
            "stubborn",
            "trap '' TERM; while true; do sleep 1; done",
            "  terminationGracePeriodSeconds: 3\n",
        ),
    );
    let pod = agent.wait_phase("stubborn", "Running");
    let id = agent.container_process(&pod, "main").expect("process");
    let started = std::time::Instant::now();
    agent.remove_manifest("stubborn.yaml");
    agent.wait_until(WAIT, "the pod to be terminating", || {
        agent
            .pod("stubborn")
            .filter(|p| p["metadata"].get("deletionTimestamp").is_some())
    });
    agent.stop();
    assert!(id.alive(), "killed before the grace period");
    agent.restart();
    agent.wait_until(WAIT, "the pod to go", || {
        agent.pod("stubborn").is_none().then_some(())
    });
    assert!(!id.alive());
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(2500),
        "killed after {took:?}, grace is 3 s"
    );
    assert!(support::cleanup::netns_with_prefix(&agent.netns_prefix).is_empty());
}

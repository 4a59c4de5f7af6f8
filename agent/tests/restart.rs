//! Agent restarts: graceful (SIGTERM) and `kill -9`. Containers outlive the agent; the new agent
//! re-adopts them (same processes, same restart counts, no new starts) and their logs go on.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use support::proc::ProcessId;
use support::{TEST_IMAGE, TestAgent, WAIT, container_status, name_of, pod_yaml};

const COUNTER: &str =
    "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";

fn deployment() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      volumes:
      - name: mem
        emptyDir: {{medium: Memory}}
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "{COUNTER}"]
        volumeMounts: [{{name: mem, mountPath: /mem}}]
"#
    )
}

/// name -> (process, restartCount)
fn state(agent: &TestAgent) -> BTreeMap<String, (ProcessId, Value)> {
    agent
        .live_pods()
        .iter()
        .filter(|p| name_of(p).starts_with("web-"))
        .map(|p| {
            let id = agent
                .container_process(p, "app")
                .unwrap_or_else(|| panic!("no process for {p}"));
            (
                name_of(p),
                (id, container_status(p, "app")["restartCount"].clone()),
            )
        })
        .collect()
}

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
        &pod_yaml("solo", "trap 'exit 0' TERM; sleep 100000 & wait", ""),
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

#[test]
fn after_a_reboot_the_node_restarts_its_pods() {
    let mut agent = TestAgent::start();
    let manifest = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      volumes:
      - name: mem
        emptyDir: {{medium: Memory}}
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        volumeMounts: [{{name: mem, mountPath: /mem}}]
        command: ["sh", "-c", "trap 'exit 0' TERM; echo booted; sleep 100000 & wait"]
"#
    );
    agent.write_manifest("web.yaml", &manifest);
    let before: Vec<String> = agent.wait_running(2).iter().map(name_of).collect();
    let old = state(&agent);

    agent.simulate_reboot();
    assert!(old.values().all(|(id, _)| !id.alive()));
    agent.restart();

    // (Right after the start the agent may still show the records it loaded, before it has
    // looked at the runtime: wait for the restarted containers themselves.)
    let pods = agent.wait_until(WAIT, "both pods restarted", || {
        let pods = agent.live_pods();
        let done = pods.len() == 2
            && pods.iter().all(|p| {
                support::all_running(p)
                    && container_status(p, "app")["restartCount"] == 1
                    && agent.container_process(p, "app").is_some()
            });
        done.then_some(pods)
    });
    let mut after: Vec<String> = pods.iter().map(name_of).collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(
        after, before,
        "the node should restart the pods it had, not make new ones"
    );
    for p in &pods {
        let c = container_status(p, "app");
        assert_eq!(c["restartCount"], 1, "{c}");
        assert!(agent.container_process(p, "app").is_some());
    }
    assert_eq!(
        support::cleanup::netns_with_prefix(&agent.netns_prefix).len(),
        2
    );
    // Deleting after the reboot removes the re-made sandboxes (tmpfs volumes included).
    agent.remove_manifest("web.yaml");
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
fn kill9_while_pods_are_being_created_leaves_no_orphans() {
    let mut agent = TestAgent::start();
    let manifest = deployment().replace("replicas: 2", "replicas: 6");
    agent.write_manifest("web.yaml", &manifest);
    // Kill the agent in the middle: some pods started, some not yet.
    agent.wait_until(WAIT, "the first container to start", || {
        let pods = agent.live_pods();
        pods.iter().any(support::all_running).then_some(())
    });
    agent.kill9();
    agent.restart();
    let pods = agent.wait_until(WAIT, "6 running pods with live processes", || {
        let pods = agent.live_pods();
        let ok = pods.len() == 6
            && pods
                .iter()
                .all(|p| support::all_running(p) && agent.container_process(p, "app").is_some());
        ok.then_some(pods)
    });
    assert_eq!(agent.pods().len(), 6, "extra pods");
    let mut ips: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "pod IPs missing or shared: {ips:?}");
    agent.wait_until(
        WAIT,
        "exactly the pods' containers, namespaces and cgroups",
        || {
            let containers: Vec<String> = std::fs::read_dir(agent.run.join("c/containers"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            let netns = support::cleanup::netns_with_prefix(&agent.netns_prefix);
            let uids: Vec<String> = pods.iter().map(support::uid_of).collect();
            let stray_netns: Vec<_> = netns
                .iter()
                .filter(|n| {
                    !uids
                        .iter()
                        .any(|u| n.to_string_lossy().ends_with(u.as_str()))
                })
                .collect();
            let parent = std::path::Path::new("/sys/fs/cgroup/memory")
                .join(agent.cgroup_parent.trim_start_matches('/'));
            let pod_cgroups: Vec<String> = std::fs::read_dir(&parent)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            let ok = containers.len() == 6
                && netns.len() == 6
                && stray_netns.is_empty()
                && pod_cgroups.len() == 6
                && pod_cgroups.iter().all(|c| uids.contains(c));
            if !ok {
                eprintln!("containers {containers:?} netns {netns:?} cgroups {pod_cgroups:?}");
            }
            ok.then_some(())
        },
    );
    // Each container is `sh` plus (most of the time) its `sleep`: nothing else lives in the
    // pods' cgroups (an orphaned container would add its own).
    let procs = support::cleanup::cgroup_pids(&agent.cgroup_parent);
    assert!(
        (6..=12).contains(&procs.len()),
        "processes in the pods' cgroups: {procs:?}"
    );
}

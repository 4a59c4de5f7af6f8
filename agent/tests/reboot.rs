//! The node after a reboot (processes, mounts, namespaces and /run gone; the data dir kept) and
//! after an agent killed in the middle of creating pods: pods come back as they were, nothing is
//! orphaned.

mod support;

use support::counter::{deployment, state};
use support::{TEST_IMAGE, TestAgent, WAIT, container_status, name_of};

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
      terminationGracePeriodSeconds: 2
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
    // From its first answer on, the agent must not report the dead containers as running.
    for p in agent.pods() {
        let c = container_status(&p, "app");
        assert!(
            c["state"].get("running").is_none() || c["restartCount"] != 0,
            "a container that died in the reboot is shown running: {p}"
        );
    }
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
                .filter(|n| !uids.iter().any(|u| n.ends_with(u.as_str())))
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
    // pods' cgroups (an orphaned container would add its own, and stay). Counted until the
    // count holds: a sample can catch a process in passing (a loaded machine saw 13 once).
    agent.wait_until(
        WAIT,
        "only the pods' own processes in their cgroups",
        || {
            let procs = support::cleanup::cgroup_pids(&agent.cgroup_parent);
            if !(6..=12).contains(&procs.len()) {
                eprintln!("processes in the pods' cgroups: {procs:?}");
                return None;
            }
            Some(())
        },
    );
}

//! The harness itself: a stopped and cleaned agent leaves no process, shim, mount, network
//! namespace, cgroup or directory behind, even while it had pods with tmpfs volumes running.

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT};

#[test]
fn cleaned_agent_leaves_nothing_behind() {
    let mut agent = TestAgent::start();
    agent.write_manifest(
        "web.yaml",
        &format!(
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
      - name: scratch
        emptyDir: {{medium: Memory}}
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
        volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
"#
        ),
    );
    let pods = agent.wait_running(2);
    let before = support::cleanup::leftovers(&agent.dir, &agent.cgroup_parent, &agent.netns_tag);
    // The test only means something if there was something to clean.
    assert!(
        before.processes.len() >= 2,
        "container processes: {before:?}"
    );
    assert!(before.shims.len() >= 2, "shims: {before:?}");
    assert!(
        before.netns.len() == 3,
        "two pods' and the node's netns: {before:?}"
    );
    assert!(
        before.mounts.len() >= 4,
        "rootfs and tmpfs mounts: {before:?}"
    );
    assert!(!before.cgroups.is_empty(), "cgroups: {before:?}");
    for p in &pods {
        assert!(
            agent.container_process(p, "app").is_some(),
            "no process for {p}"
        );
    }
    let left = agent.cleanup();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = WAIT;
}

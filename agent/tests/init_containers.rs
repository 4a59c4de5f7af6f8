//! Init containers in real containers: they run to completion, one at a time and in order,
//! before the main containers; a failing one blocks the pod (Never: Failed; Always: retried).

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT, container_status};

#[test]
fn init_containers_run_to_completion_in_order_first() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "init.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: init
spec:
  volumes:
  - name: work
    emptyDir: {{}}
  initContainers:
  - name: first
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: work, mountPath: /work}}]
    command: ["sh", "-c", "sleep 1; echo one >> /work/order"]
  - name: second
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: work, mountPath: /work}}]
    command: ["sh", "-c", "grep -q one /work/order && echo two >> /work/order"]
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: work, mountPath: /work}}]
    command: ["sh", "-c", "trap 'exit 0' TERM; echo order: $(cat /work/order); sleep 100000 & wait"]
"#
        ),
    );
    // While the first init container runs, the pod is Pending and nothing else has started.
    let during = agent.wait_until(WAIT, "the first init container running", || {
        let p = agent.pod("init")?;
        p["status"]["initContainerStatuses"][0]["state"]
            .get("running")
            .is_some()
            .then_some(p)
    });
    assert_eq!(during["status"]["phase"], "Pending", "{during}");
    assert!(
        during["status"]["initContainerStatuses"][1]["state"]
            .get("running")
            .is_none()
    );
    assert!(
        container_status(&during, "main")["state"]
            .get("running")
            .is_none()
    );
    let table = agent.skiff_ok(&["get", "pods"]);
    assert!(
        table.contains("Init:0/2") || table.contains("Init:1/2"),
        "{table}\n{during}"
    );

    let pod = agent.wait_phase("init", "Running");
    for i in 0..2 {
        let t = &pod["status"]["initContainerStatuses"][i]["state"]["terminated"];
        assert_eq!(t["exitCode"], 0, "{pod}");
        assert_eq!(t["reason"], "Completed", "{pod}");
    }
    agent.wait_until(WAIT, "main's report", || {
        agent
            .skiff_ok(&["logs", "init", "-c", "main"])
            .contains("order: one two")
            .then_some(())
    });
    // The init containers' logs are kept.
    assert!(
        agent
            .skiff(&["logs", "init", "-c", "first"])
            .status
            .success()
    );
}

fn failing_init(name: &str, policy: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  initContainers:
  - name: setup
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo setup failing; exit 3"]
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo main ran; sleep 100000"]
"#
    )
}

#[test]
fn a_failing_init_container_blocks_the_pod() {
    let agent = TestAgent::start();
    agent.write_manifest("never.yaml", &failing_init("never", "Never"));
    agent.write_manifest("always.yaml", &failing_init("always", "Always"));
    let never = agent.wait_phase("never", "Failed");
    let t = &never["status"]["initContainerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{never}");
    assert_eq!(t["reason"], "Error", "{never}");
    let always = agent.wait_until(WAIT, "the init container to restart", || {
        let p = agent.pod("always")?;
        (p["status"]["initContainerStatuses"][0]["restartCount"].as_u64() >= Some(2)).then_some(p)
    });
    assert_eq!(always["status"]["phase"], "Pending", "{always}");
    for p in [&never, &always] {
        let main = container_status(p, "main");
        assert!(
            main["state"].get("running").is_none() && main["lastState"].is_null(),
            "main ran: {p}"
        );
    }
    let out = agent.skiff(&["logs", "always", "-c", "main"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("main ran"));
    let table = agent.skiff_ok(&["get", "pods"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("always"))
        .unwrap_or_default();
    assert!(row.contains("Init:"), "{table}");
}

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
    // The rootfs overlays live in the shims' own mount namespaces, not the host's.
    assert!(
        before.mounts.len() >= 2,
        "the pods' tmpfs mounts: {before:?}"
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

/// A test process that dies without running its drop guards (a timeout's SIGKILL) leaves an
/// agent behind; the next harness start sweeps it away.
#[test]
fn leftovers_of_a_killed_test_process_are_swept() {
    if let Ok(dir) = std::env::var("SKIFF_SWEEP_CHILD") {
        // The child: start an agent with a running pod, report, and wait to be killed.
        let agent = TestAgent::start();
        agent.write_manifest(
            "p.yaml",
            &support::pod_yaml("p", "trap 'exit 0' TERM; sleep 100000 & wait", ""),
        );
        agent.wait_running(1);
        std::fs::write(
            std::path::Path::new(&dir).join("child"),
            format!(
                "{}\n{}\n{}\n",
                agent.dir.display(),
                agent.cgroup_parent,
                agent.netns_tag
            ),
        )
        .expect("report");
        std::mem::forget(agent);
        loop {
            std::thread::park();
        }
    }
    let report_dir = std::env::temp_dir().join(format!("sk-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&report_dir).expect("report dir");
    let report = report_dir.join("child");
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "leftovers_of_a_killed_test_process_are_swept",
            "--nocapture",
        ])
        .env("SKIFF_SWEEP_CHILD", &report_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child test");
    // Killed on drop, even if an assertion fails first.
    let mut child = KillOnDrop(child);
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&report)
            && t.lines().count() == 3
        {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never reported"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let lines: Vec<&str> = text.lines().collect();
    let (dir, cgroup_parent, netns_tag) = (std::path::PathBuf::from(lines[0]), lines[1], lines[2]);
    let before = support::cleanup::leftovers(&dir, cgroup_parent, netns_tag);
    assert!(
        !before.processes.is_empty() && before.dir_exists,
        "{before:?}"
    );
    // Checked while the child lives: no sweep touches a live owner's agent.
    support::cleanup::sweep_dead_owners();
    assert!(dir.exists(), "a live owner's agent was swept");
    child.kill();
    support::cleanup::sweep_dead_owners();
    let after = support::cleanup::leftovers(&dir, cgroup_parent, netns_tag);
    let _ = std::fs::remove_dir_all(&report_dir);
    assert!(after.is_empty(), "the sweep left {after:?}");
}

struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

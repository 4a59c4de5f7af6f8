//! The CLI contract against a real agent: exit codes (0, 1 user error, 2 unreachable), `apply`
//! and `delete` through the API, and objects owned by a manifest file refused through the API.

mod support;

use support::{SKIFF, TestAgent, WAIT, pod_yaml, run_with_timeout};

#[test]
fn unreachable_agent_exits_2_and_dry_run_still_validates() {
    let dir = std::env::temp_dir().join(format!("sk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("none.sock");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(SKIFF);
        cmd.arg("--socket").arg(&socket).args(args);
        run_with_timeout(cmd, std::time::Duration::from_secs(30))
    };
    let out = run(&["get", "pods"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stderr.is_empty());
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n  replicas: -1\n",
    )
    .expect("write");
    let out = run(&["apply", "--dry-run", "-f", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.replicas"));
    // Warnings come with the errors, and the user is told that nothing of the file applies.
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  colour: red\n  containers: [{name: c, image: i}]\n  volumes: [{name: d, persistentVolumeClaim: {claimName: x}}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n",
    )
    .expect("write");
    let out = run(&["apply", "--dry-run", "-f", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "document 1: spec.volumes[0].persistentVolumeClaim: not supported yet",
        "warning: manifest bad.yaml: document 1: spec.colour: unknown field",
        "nothing is applied or deleted until every document is valid",
    ] {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    let good = dir.join("good.yaml");
    std::fs::write(&good, pod_yaml("p", "true", "")).expect("write");
    let out = run(&["apply", "--dry-run", "-f", &good.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn apply_and_delete_through_the_api() {
    let agent = TestAgent::start();
    let file = agent.dir.join("api.yaml");
    std::fs::write(
        &file,
        pod_yaml(
            "api",
            "trap 'exit 0' TERM; sleep 100000 & wait",
            "  terminationGracePeriodSeconds: 2\n",
        ),
    )
    .expect("write");
    let f = file.display().to_string();
    let dry = agent.skiff_ok(&["apply", "--dry-run", "-f", &f]);
    assert!(dry.contains("pod/api created (dry run)"), "{dry}");
    assert!(agent.pod("api").is_none());
    let out = agent.skiff_ok(&["apply", "-f", &f]);
    assert!(out.contains("pod/api created"), "{out}");
    agent.wait_phase("api", "Running");
    let again = agent.skiff_ok(&["apply", "-f", &f]);
    assert!(again.contains("pod/api unchanged"), "{again}");
    let out = agent.skiff_ok(&["delete", "pod", "api"]);
    assert!(out.contains("pod/api deleted"), "{out}");
    agent.wait_until(WAIT, "the api pod to go", || {
        agent.pod("api").is_none().then_some(())
    });
    let out = agent.skiff(&["delete", "pod", "api"]);
    assert_eq!(out.status.code(), Some(1));

    // An object declared by a manifest file cannot be changed or deleted through the API.
    agent.write_manifest(
        "owned.yaml",
        &pod_yaml("owned", "trap 'exit 0' TERM; sleep 100000 & wait", ""),
    );
    agent.wait_phase("owned", "Running");
    let out = agent.skiff(&["delete", "pod", "owned"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("owned.yaml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owned = agent.dir.join("owned-api.yaml");
    std::fs::write(&owned, pod_yaml("owned", "sleep 5", "")).expect("write");
    let out = agent.skiff(&["apply", "-f", &owned.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(agent.pod("owned").is_some_and(|p| support::all_running(&p)));

    let out = agent.skiff(&["get", "gizmos"]);
    assert_eq!(out.status.code(), Some(1));
    let status = agent.skiff_ok(&["status"]);
    assert!(status.contains(&agent.node_name), "{status}");
}

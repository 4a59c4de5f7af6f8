//! Images through the agent: pull policy Never, an unreachable registry (ErrImagePull, then
//! ImagePullBackOff, with pulls backing off), a real registry (docker-registry on 127.0.0.1,
//! pushed with skopeo) pulled by a Deployment, and importing a docker-archive.

mod support;

use skiff_runtime::image::testing::{TestRegistry, skopeo_copy};
use std::time::{Duration, Instant};
use support::{AgentOptions, TEST_IMAGE, TestAgent, WAIT, container_status, test_image_archive};

fn image_pod(name: &str, image: &str, policy: Option<&str>) -> String {
    let policy = policy
        .map(|p| format!("    imagePullPolicy: {p}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n{policy}    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo up; sleep 100000 & wait\"]\n"
    )
}

fn waiting_reason(agent: &TestAgent, pod: &str) -> Option<String> {
    let p = agent.pod(pod)?;
    container_status(&p, "main")["state"]["waiting"]["reason"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn pull_policy_never_without_the_image() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "never.yaml",
        &image_pod("never", "skiff.local/missing:1", Some("Never")),
    );
    agent.wait_until(WAIT, "ErrImageNeverPull", || {
        (waiting_reason(&agent, "never").as_deref() == Some("ErrImageNeverPull")).then_some(())
    });
    let events = agent.events();
    assert!(
        !events.iter().any(|e| e["reason"] == "Pulling"),
        "pulled despite Never: {events:#?}"
    );
    assert_eq!(
        agent.pod("never").map(|p| p["status"]["phase"].clone()),
        Some("Pending".into())
    );
}

#[test]
fn unreachable_registry_err_image_pull_then_backoff() {
    // A long base so the first state (ErrImagePull) lasts long enough to be seen.
    let agent = TestAgent::start_with(AgentOptions {
        crash_backoff_base_ms: 1500,
        ..AgentOptions::default()
    });
    agent.write_manifest(
        "far.yaml",
        &image_pod("far", "127.0.0.1:1/nothing/here:1", Some("IfNotPresent")),
    );
    let first = agent.wait_until(WAIT, "ErrImagePull", || {
        let p = agent.pod("far")?;
        let w = container_status(&p, "main")["state"]["waiting"].clone();
        (w["reason"] == "ErrImagePull").then_some(w)
    });
    assert!(
        first["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{first}"
    );
    let w = agent.wait_until(WAIT, "ImagePullBackOff", || {
        let p = agent.pod("far")?;
        let w = container_status(&p, "main")["state"]["waiting"].clone();
        (w["reason"] == "ImagePullBackOff").then_some(w)
    });
    assert!(
        w["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1:1")),
        "{w}"
    );
    let events = agent.events();
    let failed = events
        .iter()
        .find(|e| e["reason"] == "Failed" && e["involvedObject"]["name"] == "far")
        .unwrap_or_else(|| panic!("no pull failure event: {events:#?}"));
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed to pull image")),
        "{failed}"
    );
}

/// Pull policy Always (the default for `:latest`) with the image present but its registry
/// unreachable: Kubernetes reports ErrImagePull/ImagePullBackOff and retries with backoff; it
/// must not retry the pull in a tight loop.
#[test]
fn failing_always_pull_backs_off() {
    let agent = TestAgent::start();
    let started = Instant::now();
    agent.write_manifest("always.yaml", &image_pod("always", TEST_IMAGE, None));
    let pulls = |agent: &TestAgent| -> u64 {
        agent
            .events()
            .iter()
            .filter(|e| e["reason"] == "Pulling" && e["involvedObject"]["name"] == "always")
            .filter_map(|e| e["count"].as_u64())
            .sum()
    };
    agent.wait_until(WAIT, "4 pull attempts", || {
        (pulls(&agent) >= 4).then_some(())
    });
    let took = started.elapsed();
    // Base 200 ms: attempts at 0, 0.2, 0.6 and 1.4 s at the earliest.
    assert!(
        took >= Duration::from_millis(1200),
        "4 pulls within {took:?}: no backoff"
    );
    let reason = waiting_reason(&agent, "always");
    assert!(
        matches!(reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff")),
        "a failing pull shows as {reason:?}"
    );
}

#[test]
fn deployment_pulls_from_a_registry() {
    let registry = TestRegistry::start().expect("start docker-registry");
    let reference = registry
        .push_oci_archive(&test_image_archive(), "skiff/busybox:v1")
        .expect("push the test image with skopeo");
    let agent = TestAgent::start_with(AgentOptions {
        import_test_image: false,
        config: format!("insecure-registries = [\"{}\"]\n", registry.host()),
        ..AgentOptions::default()
    });
    assert!(!agent.skiff_ok(&["image", "ls"]).contains("busybox"));
    agent.write_manifest(
        "pulled.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: pulled
spec:
  replicas: 2
  selector:
    matchLabels: {{app: pulled}}
  template:
    metadata:
      labels: {{app: pulled}}
    spec:
      containers:
      - name: main
        image: {reference}
        command: ["sh", "-c", "trap 'exit 0' TERM; echo up; sleep 100000 & wait"]
"#
        ),
    );
    let pods = agent.wait_running(2);
    let events = agent.events();
    assert!(
        events.iter().any(|e| e["reason"] == "Pulled"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains(&reference))),
        "no Pulled event: {events:#?}\n{}",
        registry.log()
    );
    assert!(agent.skiff_ok(&["image", "ls"]).contains(&reference));
    // `image pull` through the CLI: another tag of the same image, and a missing one.
    let v2 = registry
        .push_oci_archive(&test_image_archive(), "skiff/busybox:v2")
        .expect("push v2");
    let out = agent.skiff_ok(&["image", "pull", &v2]);
    assert!(out.contains(&v2), "{out}");
    let out = agent.skiff(&[
        "image",
        "pull",
        &format!("{}/skiff/busybox:nope", registry.host()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    agent.wait_until(WAIT, "output of the pulled image", || {
        agent
            .skiff_ok(&["logs", &support::name_of(&pods[0])])
            .contains("up")
            .then_some(())
    });
}

#[test]
fn docker_archive_import() {
    let agent = TestAgent::start_with(AgentOptions {
        import_test_image: false,
        ..AgentOptions::default()
    });
    let archive = agent.dir.join("docker.tar");
    skopeo_copy(
        &format!("oci-archive:{}", test_image_archive().display()),
        &format!(
            "docker-archive:{}:skiff.local/dockerbox:v1",
            archive.display()
        ),
    )
    .expect("skopeo copy to docker-archive");
    let out = agent.skiff_ok(&["image", "import", &archive.display().to_string()]);
    assert!(out.contains("skiff.local/dockerbox:v1"), "{out}");
    let ls = agent.skiff_ok(&["image", "ls"]);
    assert!(ls.contains("skiff.local/dockerbox:v1"), "{ls}");
    // Importing again is fine; a missing or bogus file is a user error.
    agent.skiff_ok(&["image", "import", &archive.display().to_string()]);
    let out = agent.skiff(&["image", "import", "/nonexistent/image.tar"]);
    assert_eq!(out.status.code(), Some(1));
    let bogus = agent.dir.join("bogus.tar");
    std::fs::write(&bogus, b"not a tar at all").expect("write");
    let out = agent.skiff(&["image", "import", &bogus.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.write_manifest(
        "d.yaml",
        &image_pod("d", "skiff.local/dockerbox:v1", Some("Never")),
    );
    agent.wait_phase("d", "Running");
    agent.wait_until(WAIT, "output", || {
        agent.skiff_ok(&["logs", "d"]).contains("up").then_some(())
    });
}

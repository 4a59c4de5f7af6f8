//! Local storage limits in real containers (issue 14): a disk emptyDir that grows past its
//! `sizeLimit`, or a container whose writable layer outgrows `limits.ephemeral-storage`, gets
//! its pod evicted as kubelet does: the containers stop for good, the pod is Failed with reason
//! Evicted and kubelet's message, its volumes are gone and its logs stay until the pod is
//! removed; a Deployment's evicted pod is replaced; a pod within its limits is left alone.
//!
//! Run as root: `cargo test -p skiff-agent --test storage_limits`.

mod support;

use support::{AgentOptions, TEST_IMAGE, TestAgent, WAIT};

fn manifests() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: filler
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {{sizeLimit: 1Mi}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
    command: [sh, -c, "dd if=/dev/zero of=/scratch/blob bs=64k count=32 2>/dev/null; echo wrote; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: modest
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {{sizeLimit: 1Mi}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    resources:
      limits: {{ephemeral-storage: 2Mi}}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
    command: [sh, -c, "dd if=/dev/zero of=/scratch/blob bs=64k count=2 2>/dev/null; dd if=/dev/zero of=/tmp/blob bs=64k count=2 2>/dev/null; echo wrote; exec sleep 3600"]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: layer
spec:
  replicas: 1
  selector:
    matchLabels: {{app: layer}}
  template:
    metadata:
      labels: {{app: layer}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        resources:
          limits: {{ephemeral-storage: 1Mi}}
        command: [sh, -c, "dd if=/dev/zero of=/tmp/blob bs=64k count=32 2>/dev/null; exec sleep 3600"]
"#
    )
}

fn evicted_event<'a>(events: &'a [serde_json::Value], pod: &str) -> Option<&'a serde_json::Value> {
    events
        .iter()
        .find(|e| e["reason"] == "Evicted" && e["involvedObject"]["name"].as_str() == Some(pod))
}

#[test]
fn pods_over_their_storage_limits_are_evicted_and_others_are_left_alone() {
    let agent = TestAgent::start_with(AgentOptions {
        config: "volume-check-interval-ms = 200\n".into(),
        ..AgentOptions::default()
    });
    agent.write_manifest("storage.yaml", &manifests());

    // The emptyDir over its sizeLimit: Failed, reason Evicted, kubelet's message.
    let filler = agent.wait_until(WAIT, "filler evicted", || {
        let p = agent.pod("filler")?;
        (p["status"]["reason"] == "Evicted").then_some(p)
    });
    assert_eq!(filler["status"]["phase"], "Failed", "{filler}");
    let message = filler["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\""),
        "{message}"
    );
    let uid = support::uid_of(&filler);
    let pod_dir = agent.data.join("pods").join(&uid);
    // Its containers stop for good and its volumes go; its logs stay.
    let stopped = agent.wait_until(WAIT, "filler's sandbox torn down", || {
        let p = agent.pod("filler")?;
        let c = support::container_status(&p, "main");
        (c["state"]["terminated"].is_object() && !pod_dir.join("volumes").exists()).then_some(p)
    });
    let text = agent.skiff_ok(&["get", "pods"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("filler "))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("Evicted"), "STATUS shows Evicted:\n{text}");
    assert_eq!(
        support::container_status(&stopped, "main")["restartCount"],
        0,
        "not restarted: {stopped}"
    );
    assert!(agent.skiff_ok(&["logs", "filler"]).contains("wrote"));
    let events = agent.events();
    let event = evicted_event(&events, "filler").expect("an Evicted event for filler");
    assert_eq!(event["type"], "Warning", "{event}");

    // The Deployment's pod whose writable layer outgrew its limit is replaced by a new pod.
    let first = agent.wait_until(WAIT, "a layer pod evicted", || {
        let events = agent.events();
        let e = events.iter().find(|e| {
            e["reason"] == "Evicted"
                && e["involvedObject"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("layer-"))
        })?;
        Some(e["message"].as_str().unwrap_or_default().to_string())
    });
    assert!(
        first.starts_with("Container main exceeded its local ephemeral storage limit \"1Mi\""),
        "{first}"
    );
    let mut seen = std::collections::BTreeSet::new();
    agent.wait_until(WAIT, "a second layer pod (the replacement)", || {
        for p in agent.pods() {
            if support::name_of(&p).starts_with("layer-") {
                seen.insert(support::uid_of(&p));
            }
        }
        (seen.len() >= 2).then_some(())
    });

    // Within its limits (128 KiB in the volume, 128 KiB in the layer): running, after the
    // others were found out by several measurements.
    let modest = agent.pod("modest").expect("modest");
    assert_eq!(modest["status"]["phase"], "Running", "{modest}");
    assert!(evicted_event(&agent.events(), "modest").is_none());

    // Removing the evicted pod removes its logs too.
    agent.write_manifest(
        "storage.yaml",
        &manifests()
            .split("\n---\n")
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n---\n"),
    );
    agent.wait_until(WAIT, "filler gone with its directory", || {
        (agent.pod("filler").is_none() && !pod_dir.exists()).then_some(())
    });
}

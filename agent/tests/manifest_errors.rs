//! Broken manifests: every problem becomes one event naming the file, the document and the
//! field path; the last good version of a file keeps running; other files are unaffected;
//! unknown fields are warnings only; `apply --dry-run` reports the same problems.

mod support;

use serde_json::Value;
use support::{TEST_IMAGE, TestAgent, WAIT, name_of, uid_of};

fn web(replicas: &str, memory: &str, extra_field: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        {extra_field}
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
        resources:
          limits:
            memory: {memory}
"#
    )
}

const OTHER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: other
spec:
  containers:
  - name: main
    image: skiff.local/busybox:latest
    imagePullPolicy: IfNotPresent
    colour: blue
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
"#;

const GADGET: &str = "apiVersion: v1\nkind: Gadget\nmetadata:\n  name: g\n";
const NOT_YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: [\n";

fn events_for(events: &[Value], file: &str, reason: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == file && e["reason"] == reason)
        .map(|e| {
            assert_eq!(e["count"], 1, "repeated event {e}");
            e["message"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn broken_files_are_reported_and_the_last_good_version_keeps_running() {
    let agent = TestAgent::start();
    agent.write_manifest("web.yaml", &web("1", "64Mi", ""));
    let pods = agent.wait_running(1);
    let web_uid = uid_of(&pods[0]);
    let web_proc = agent
        .container_process(&pods[0], "app")
        .expect("web process");

    // Break web.yaml twice over (plus an unknown field), and drop three more files at once.
    agent.write_manifest("web.yaml", &web("-1", "12Q", "colour: blue"));
    agent.write_manifest("other.yaml", OTHER);
    agent.write_manifest("gadget.yaml", GADGET);
    agent.write_manifest("broken.yaml", NOT_YAML);

    let other = agent.wait_phase("other", "Running");
    assert!(agent.container_process(&other, "main").is_some());
    let events = agent.wait_until(WAIT, "errors of all three broken files", || {
        let events = agent.events();
        let done = ["web.yaml", "gadget.yaml", "broken.yaml"]
            .iter()
            .all(|f| !events_for(&events, f, "ManifestRejected").is_empty());
        done.then_some(events)
    });

    let web_errors = events_for(&events, "web.yaml", "InvalidManifest");
    assert_eq!(
        web_errors.len(),
        2,
        "one error per problem: {web_errors:#?}"
    );
    let replicas = web_errors
        .iter()
        .find(|m| m.contains("spec.replicas"))
        .expect("replicas error");
    assert!(
        replicas.contains("web.yaml") && replicas.contains("document 1"),
        "{replicas}"
    );
    let memory = web_errors
        .iter()
        .find(|m| m.contains("spec.template.spec.containers[0].resources.limits.memory"))
        .expect("memory error with its field path");
    assert!(
        memory.contains("12Q") && memory.contains("document 1"),
        "{memory}"
    );
    let gadget = events_for(&events, "gadget.yaml", "InvalidManifest");
    assert_eq!(gadget.len(), 1, "{gadget:#?}");
    assert!(
        gadget[0].contains("document 1")
            && gadget[0].contains("kind")
            && gadget[0].contains("Gadget"),
        "{gadget:?}"
    );
    let yaml = events_for(&events, "broken.yaml", "InvalidManifest");
    assert_eq!(yaml.len(), 1, "{yaml:#?}");
    assert!(
        yaml[0].contains("broken.yaml") && yaml[0].contains("document 1"),
        "{yaml:?}"
    );
    for e in events.iter().filter(|e| e["reason"] == "InvalidManifest") {
        assert_eq!(e["type"], "Warning", "{e}");
    }

    // Unknown fields: warnings, and the file still runs (other.yaml) or is rejected only for
    // its real errors (web.yaml).
    let unknown: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "UnknownField")
        .collect();
    for file in ["other.yaml", "web.yaml"] {
        let e = unknown
            .iter()
            .find(|e| e["involvedObject"]["name"] == file)
            .unwrap_or_else(|| panic!("no unknown-field warning for {file}: {events:#?}"));
        assert_eq!(e["type"], "Warning");
        assert!(
            e["message"].as_str().unwrap_or_default().contains("colour"),
            "{e}"
        );
    }
    assert!(events_for(&events, "other.yaml", "InvalidManifest").is_empty());

    // The last good web.yaml still runs: the same pod and the same process.
    let pods = agent.live_pods();
    let web_pods: Vec<&Value> = pods
        .iter()
        .filter(|p| name_of(p).starts_with("web-"))
        .collect();
    assert_eq!(web_pods.len(), 1, "{pods:#?}");
    assert_eq!(uid_of(web_pods[0]), web_uid);
    assert_eq!(agent.container_process(web_pods[0], "app"), Some(web_proc));
    assert!(web_proc.alive());
    assert!(agent.pod("g").is_none());

    // The dry run says the same on stderr and exits 1; a valid file exits 0.
    let file = agent.manifests.join("web.yaml").display().to_string();
    let out = agent.skiff(&["apply", "--dry-run", "-f", &file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for message in &web_errors {
        assert!(
            stderr.contains(message.as_str()),
            "dry run lacks {message:?}: {stderr}"
        );
    }
    let out = agent.skiff(&[
        "apply",
        "--dry-run",
        "-f",
        &agent.manifests.join("broken.yaml").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(yaml[0].as_str()));
    let good = agent.dir.join("good.yaml");
    std::fs::write(&good, web("2", "64Mi", "")).expect("write good.yaml");
    let out = agent.skiff(&["apply", "--dry-run", "-f", &good.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A dry run changes nothing.
    assert_eq!(
        agent
            .live_pods()
            .iter()
            .filter(|p| name_of(p).starts_with("web-"))
            .count(),
        1
    );

    // Fixing the file takes effect.
    agent.write_manifest("web.yaml", &web("2", "64Mi", ""));
    agent.wait_until(WAIT, "2 web pods after the fix", || {
        let n = agent
            .live_pods()
            .iter()
            .filter(|p| name_of(p).starts_with("web-") && support::all_running(p))
            .count();
        (n == 2).then_some(())
    });
    assert!(web_proc.alive(), "the fix replaced the running web pod");
}

fn dup(word: &str) -> String {
    support::pod_yaml(
        "dup",
        &format!("trap 'exit 0' TERM; echo from-{word}; sleep 100000 & wait"),
        "",
    )
}

#[test]
fn an_object_declared_twice_keeps_the_first_and_falls_back_to_the_second() {
    let agent = TestAgent::start();
    agent.write_manifest("a.yaml", &dup("a"));
    let first = agent.wait_phase("dup", "Running");
    let first_proc = agent.container_process(&first, "main").expect("process");
    agent.write_manifest("b.yaml", &dup("b"));
    let events = agent.wait_until(WAIT, "a DuplicateObject event", || {
        let events = agent.events();
        events
            .iter()
            .any(|e| e["reason"] == "DuplicateObject")
            .then_some(events)
    });
    let e = events
        .iter()
        .find(|e| e["reason"] == "DuplicateObject")
        .cloned()
        .unwrap_or_default();
    assert_eq!(e["involvedObject"]["name"], "b.yaml", "{e}");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("a.yaml")),
        "{e}"
    );
    // Rewriting a file with the same bytes changes nothing.
    agent.write_manifest("a.yaml", &dup("a"));
    agent.write_manifest(
        "marker.yaml",
        &support::pod_yaml("marker", "sleep 100000", ""),
    );
    agent.wait_phase("marker", "Running");
    let now = agent.pod("dup").expect("dup");
    assert_eq!(uid_of(&now), uid_of(&first));
    assert_eq!(agent.container_process(&now, "main"), Some(first_proc));
    assert!(agent.skiff_ok(&["logs", "dup"]).contains("from-a"));

    // Without a.yaml the declaration in b.yaml takes over.
    agent.remove_manifest("a.yaml");
    let second = agent.wait_until(WAIT, "dup from b.yaml", || {
        agent
            .pod("dup")
            .filter(|p| uid_of(p) != uid_of(&first) && support::all_running(p))
    });
    agent.wait_until(WAIT, "b's output", || {
        agent
            .skiff_ok(&["logs", "dup"])
            .contains("from-b")
            .then_some(())
    });
    assert!(!first_proc.alive());
    let _ = second;
}

//! The watched directory as users and editors use it: JSON files, subdirectories, files that are
//! not manifests, in-place writes that arrive in pieces, and a whole subdirectory removed.

mod support;

use std::io::Write;
use support::{TestAgent, WAIT, pod_yaml};

const SLEEPER: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

#[test]
fn json_subdirectories_and_ignored_files() {
    let agent = TestAgent::start();
    let sub = agent.manifests.join("team").join("edge");
    std::fs::create_dir_all(&sub).expect("subdir");
    // Stopped soon after it runs: a short grace bounds a SIGTERM lost before the shell's trap.
    let deep = pod_yaml("deep", SLEEPER, "  terminationGracePeriodSeconds: 2\n");
    std::fs::write(sub.join("deep.yaml"), deep).expect("write");
    let json = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "json"},
        "spec": {"containers": [{
            "name": "main",
            "image": support::TEST_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", SLEEPER],
        }]},
    });
    agent.write_manifest("pod.json", &json.to_string());
    // Not manifests: editor leftovers and other files.
    for name in ["README.md", ".swap.yaml.swp", "notes.txt", "ignored.yaml~"] {
        std::fs::write(agent.manifests.join(name), pod_yaml("ignored", SLEEPER, ""))
            .expect("write");
    }
    agent.wait_phase("deep", "Running");
    agent.wait_phase("json", "Running");
    assert!(
        agent.pod("ignored").is_none(),
        "a non-manifest file was read"
    );
    let events = agent.events();
    assert!(
        !events.iter().any(|e| e["reason"] == "InvalidManifest"),
        "{events:#?}"
    );

    // Removing the whole subdirectory deletes what it declared.
    std::fs::remove_dir_all(agent.manifests.join("team")).expect("remove subdir");
    agent.wait_until(WAIT, "deep to be deleted", || {
        agent.pod("deep").is_none().then_some(())
    });
    assert!(agent.pod("json").is_some());
}

#[test]
fn a_file_written_in_pieces_is_applied_once_closed_with_no_event_for_the_parts() {
    let agent = TestAgent::start();
    let text = pod_yaml("slow", SLEEPER, "");
    let (a, b) = text.split_at(text.len() / 2);
    let mut f = std::fs::File::create(agent.manifests.join("slow.yaml")).expect("create");
    f.write_all(a.as_bytes()).expect("write");
    f.flush().expect("flush");
    // A marker the watcher looks at no earlier than the half file: a hard link makes only
    // debounced events (no close), later than the half file's, and its name sorts after it.
    // File events reach the agent in order, so once the marker's pod is known the half file
    // has been seen.
    let hidden = agent.manifests.join(".z-marker.tmp");
    std::fs::write(&hidden, pod_yaml("marker", SLEEPER, "")).expect("write marker");
    std::fs::hard_link(&hidden, agent.manifests.join("z-marker.yaml")).expect("link marker");
    agent.wait_until(WAIT, "the marker pod to be known", || {
        agent.pod("marker").map(|_| ())
    });
    // Held while the writer has the file open: no error for the half, no pod.
    let about_slow = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| e["involvedObject"]["name"] == "slow.yaml")
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(about_slow(&agent.events()), Vec::<String>::new());
    assert!(agent.pod("slow").is_none());
    f.write_all(b.as_bytes()).expect("write");
    f.flush().expect("flush");
    drop(f);
    let pod = agent.wait_phase("slow", "Running");
    assert_eq!(pod["spec"]["containers"][0]["command"][2], SLEEPER);
    let reasons = agent.wait_until(WAIT, "the applied event", || {
        let reasons = about_slow(&agent.events());
        reasons
            .contains(&"ManifestApplied".to_string())
            .then_some(reasons)
    });
    assert_eq!(
        reasons,
        ["ManifestApplied"],
        "only the whole file was acted on"
    );
}

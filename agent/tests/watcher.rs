//! The watched directory as users and editors use it: JSON files, subdirectories, files that are
//! not manifests, in-place writes that arrive in pieces, and a whole subdirectory removed.

mod support;

use std::io::Write;
use std::time::Duration;
use support::{TestAgent, WAIT, pod_yaml};

const SLEEPER: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

#[test]
fn json_subdirectories_and_ignored_files() {
    let agent = TestAgent::start();
    let sub = agent.manifests.join("team").join("edge");
    std::fs::create_dir_all(&sub).expect("subdir");
    std::fs::write(sub.join("deep.yaml"), pod_yaml("deep", SLEEPER, "")).expect("write");
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
fn a_file_written_in_pieces_ends_up_applied() {
    let agent = TestAgent::start();
    let text = pod_yaml("slow", SLEEPER, "");
    let (a, b) = text.split_at(text.len() / 2);
    let mut f = std::fs::File::create(agent.manifests.join("slow.yaml")).expect("create");
    f.write_all(a.as_bytes()).expect("write");
    f.flush().expect("flush");
    // Longer than the watcher's debounce: the half file may be read (and rejected) first.
    let half_seen = agent.wait_until(
        Duration::from_secs(5),
        "the half file to be noticed",
        || {
            let events = agent.events();
            let seen = events
                .iter()
                .any(|e| e["involvedObject"]["name"] == "slow.yaml");
            seen.then_some(true)
        },
    );
    f.write_all(b.as_bytes()).expect("write");
    f.flush().expect("flush");
    drop(f);
    let pod = agent.wait_phase("slow", "Running");
    assert!(half_seen);
    assert_eq!(pod["spec"]["containers"][0]["command"][2], SLEEPER);
    agent.wait_until(WAIT, "the applied event", || {
        agent
            .events()
            .iter()
            .any(|e| e["reason"] == "ManifestApplied" && e["involvedObject"]["name"] == "slow.yaml")
            .then_some(())
    });
}

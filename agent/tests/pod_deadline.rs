//! `activeDeadlineSeconds` and `nodeName` in real containers (issue 14): a pod active longer
//! than its deadline is stopped for good and is Failed with reason DeadlineExceeded, as kubelet
//! does, while a pod with a longer deadline keeps running; a pod whose nodeName is another node
//! stays Pending with the reason, and one naming this node runs here.
//!
//! Run as root: `cargo test -p skiff-agent --test pod_deadline`.

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT};

fn pod(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, \"echo up; exec sleep 3600\"]\n"
    )
}

#[test]
fn a_pod_past_its_deadline_fails_and_node_name_places_pods() {
    let agent = TestAgent::start();
    let node = agent
        .get_json(&["nodes"])
        .pointer("/items/0/metadata/name")
        .and_then(|v| v.as_str())
        .expect("this node's name")
        .to_string();
    let manifests = [
        pod("brief", "  activeDeadlineSeconds: 2\n"),
        pod("patient", "  activeDeadlineSeconds: 600\n"),
        pod("here", &format!("  nodeName: {node}\n")),
        pod("elsewhere", "  nodeName: some-other-node\n"),
    ]
    .join("---\n");
    agent.write_manifest("pods.yaml", &manifests);

    let brief = agent.wait_until(WAIT, "brief failed past its deadline", || {
        let p = agent.pod("brief")?;
        (p["status"]["reason"] == "DeadlineExceeded").then_some(p)
    });
    assert_eq!(brief["status"]["phase"], "Failed", "{brief}");
    assert_eq!(
        brief["status"]["message"],
        "Pod was active on the node longer than the specified deadline (2 s)"
    );
    agent.wait_until(WAIT, "brief's container stopped", || {
        let p = agent.pod("brief")?;
        let c = support::container_status(&p, "main");
        (c["state"]["terminated"].is_object() && c["restartCount"] == 0).then_some(())
    });
    let events = agent.events();
    assert!(
        events.iter().any(|e| e["reason"] == "DeadlineExceeded"
            && e["involvedObject"]["name"] == "brief"
            && e["type"] == "Warning"),
        "{events:#?}"
    );
    assert!(agent.skiff_ok(&["logs", "brief"]).contains("up"));

    assert_eq!(
        agent.wait_phase("patient", "Running")["status"]["phase"],
        "Running"
    );
    let here = agent.wait_phase("here", "Running");
    assert_eq!(here["spec"]["nodeName"], node.as_str(), "{here}");
    let elsewhere = agent.wait_until(WAIT, "elsewhere pending with its reason", || {
        let text = agent.skiff_ok(&["describe", "pod", "elsewhere"]);
        text.contains("match the requested node name")
            .then_some(text)
    });
    assert!(elsewhere.contains("Pending"), "{elsewhere}");
}

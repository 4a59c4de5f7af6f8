//! The CLI at the edges against a real agent: a bare Pod that fits nowhere is listed as Pending
//! and described with its scheduling reason; an apply larger than the API's request limit is
//! answered "request too large"; importing a file that is no archive never quotes the file.

mod support;

use support::{AgentOptions, TestAgent, WAIT};

fn agent() -> TestAgent {
    TestAgent::start_with(AgentOptions {
        import_test_image: false,
        pod_network: false,
        ..AgentOptions::default()
    })
}

#[test]
fn a_bare_pod_that_fits_nowhere_is_listed_pending_and_described_with_the_reason() {
    let agent = agent();
    agent.write_manifest(
        "res.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: res\nspec:\n  containers:\n  - name: main\n    image: skiff.local/busybox:latest\n    resources:\n      requests:\n        cpu: \"1000000\"\n",
    );
    let pod = agent.wait_until(WAIT, "res listed with its scheduling reason", || {
        agent.pod("res").filter(|p| {
            p["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("insufficient cpu"))
        })
    });
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");

    let table = agent.skiff_ok(&["get", "pods"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("res "))
        .unwrap_or_else(|| panic!("res not in the table:\n{table}"));
    assert!(row.contains("Pending"), "{row}");

    let described = agent.skiff_ok(&["describe", "pod", "res"]);
    assert!(described.contains("insufficient cpu"), "{described}");
}

#[test]
fn an_apply_over_the_request_limit_says_request_too_large() {
    let agent = agent();
    // A single file over 1 MiB is refused by the CLI itself, naming the file.
    let big = agent.dir.join("big.yaml");
    std::fs::write(&big, "x".repeat(2 << 20)).unwrap();
    let out = agent.skiff(&["apply", "--dry-run", "-f", &big.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("big.yaml: file is 2097152 bytes"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // 70 files of 1,000,000 bytes, one request of 70 MB: past the 64 MiB limit; the CLI is
    // still writing when the agent answers.
    let dir = agent.dir.join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..70 {
        let mut text =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-{i}\ndata:\n  k: ");
        text.push_str(&"x".repeat(1_000_000 - text.len() - 1));
        text.push('\n');
        std::fs::write(dir.join(format!("big-{i:02}.yaml")), text).unwrap();
    }
    let out = agent.skiff(&["apply", "--dry-run", "-f", &dir.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("request too large (max 64 MiB)"),
        "{}: {stderr}",
        out.status
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The agent still answers.
    agent.skiff_ok(&["get", "pods"]);
}

#[test]
fn importing_a_file_that_is_no_archive_never_quotes_it() {
    let agent = agent();
    let secret = agent.dir.join("shadow");
    std::fs::write(
        &secret,
        "root:$y$j9T$c2VjcmV0LWhhc2g$topsecrethash0123456789:20228:0:99999:7:::\n".repeat(8),
    )
    .unwrap();
    let out = agent.skiff(&["image", "import", &secret.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a tar archive"), "{stderr}");
    for leak in ["root:", "topsecrethash", "20228"] {
        assert!(
            !stderr.contains(leak),
            "the error quotes the file: {stderr}"
        );
    }
}

/// What `apply` and `delete` answer is what a `get` right after them shows: the API waits for
/// the change to come back through the cluster task into the node's view. Asked straight on
/// the socket, with nothing between the answer and the next question.
#[test]
fn a_get_right_after_apply_or_delete_shows_the_change() {
    use skiff_agent::api::client::Client;
    use skiff_agent::api::{ApplyFile, DeleteTarget, Request, ResourceKind, Response};
    let agent = agent();
    let ask = |request: &Request| match Client::call(&agent.socket, request) {
        Ok(Response::Ok { value }) => Ok(value),
        Ok(Response::Error { message }) => Err(message),
        other => panic!("{request:?}: {other:?}"),
    };
    let get = Request::Get {
        kind: ResourceKind::ConfigMaps,
        name: Some("settings".into()),
        namespace: None,
        all_namespaces: false,
    };
    for round in 0..20 {
        let apply = Request::Apply {
            files: vec![ApplyFile {
                name: "settings.yaml".into(),
                content: format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  round: \"{round}\"\n"
                ),
            }],
            dry_run: false,
        };
        ask(&apply).expect("apply");
        let shown = ask(&get).unwrap_or_else(|e| panic!("round {round}: get after apply: {e}"));
        assert_eq!(shown["data"]["round"], round.to_string(), "{shown:#}");
        if round % 2 == 1 {
            let delete = Request::Delete {
                target: DeleteTarget::Files {
                    files: vec![ApplyFile {
                        name: "settings.yaml".into(),
                        content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"
                            .into(),
                    }],
                },
            };
            ask(&delete).expect("delete");
            let gone = ask(&get).expect_err("the ConfigMap is gone");
            assert!(gone.contains("not found"), "round {round}: {gone}");
        }
    }
}

/// Likewise for this node's own metadata: `get nodes` right after `label`, `taint` and
/// `cordon` / `uncordon` shows the change.
#[test]
fn a_get_right_after_label_taint_or_cordon_shows_the_change() {
    use skiff_agent::api::client::Client;
    use skiff_agent::api::{Request, ResourceKind, Response};
    let agent = agent();
    let ask = |request: &Request| match Client::call(&agent.socket, request) {
        Ok(Response::Ok { value }) => value,
        other => panic!("{request:?}: {other:?}"),
    };
    let list = ask(&Request::Get {
        kind: ResourceKind::Nodes,
        name: None,
        namespace: None,
        all_namespaces: false,
    });
    let node = list["items"][0]["metadata"]["name"]
        .as_str()
        .expect("the node's name")
        .to_string();
    let get = Request::Get {
        kind: ResourceKind::Nodes,
        name: Some(node.clone()),
        namespace: None,
        all_namespaces: false,
    };
    for round in 0..10 {
        ask(&Request::LabelNode {
            node: node.clone(),
            set: [("round".to_string(), round.to_string())].into(),
            remove: Vec::new(),
            overwrite: true,
        });
        let shown = ask(&get);
        assert_eq!(
            shown["metadata"]["labels"]["round"],
            round.to_string(),
            "{shown:#}"
        );
        let taint = format!("round=r{round}:NoSchedule");
        ask(&Request::TaintNode {
            node: node.clone(),
            changes: vec![taint.clone()],
        });
        let shown = ask(&get);
        let taints = shown["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            taints.iter().any(|t| t["value"] == format!("r{round}")),
            "{taint}: {shown:#}"
        );
        let cordoned = round % 2 == 0;
        ask(&Request::SetScheduling {
            node: node.clone(),
            cordoned,
            draining: false,
        });
        let shown = ask(&get);
        assert_eq!(
            shown["spec"]["unschedulable"].as_bool().unwrap_or(false),
            cordoned,
            "{shown:#}"
        );
    }
}

//! Deployments from the watched directory: replicas become running pods with kubectl-shaped
//! output; editing the file scales or replaces pods; deleting it removes every trace.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use support::{TEST_IMAGE, TestAgent, WAIT, container_status, name_of, uid_of};

fn deployment(replicas: u32, greeting: &str) -> String {
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
      # The pods are stopped right after they start: a SIGTERM that lands
      # before the shell has set its trap is ignored by PID 1, so a short
      # grace bounds that race instead of the default 30 s.
      terminationGracePeriodSeconds: 2
      volumes:
      - name: cache
        emptyDir: {{medium: Memory}}
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        env:
        - {{name: GREETING, value: "{greeting}"}}
        command: ["sh", "-c", "trap 'exit 0' TERM; echo $GREETING; sleep 100000 & wait"]
        volumeMounts:
        - {{name: cache, mountPath: /cache}}
"#
    )
}

fn is_pod_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() == 3
        && parts[0] == "web"
        && parts[1].len() == 10
        && parts[1]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && parts[2].len() == 5
        && parts[2]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[test]
fn deployment_runs_replicas_with_kubectl_shaped_output() {
    let agent = TestAgent::start();
    agent.write_manifest("web.yaml", &deployment(2, "hello"));
    let pods = agent.wait_running(2);
    let list = agent.pods_json();
    assert_eq!(list["kind"], "List", "{list}");
    for p in &pods {
        let name = name_of(p);
        assert!(
            is_pod_name(&name),
            "pod name {name:?} is not web-<10 hex>-<5 chars>"
        );
        assert_eq!(p["kind"], "Pod");
        assert_eq!(p["spec"]["nodeName"], agent.node_name.as_str(), "{p}");
        assert_eq!(p["status"]["phase"], "Running");
        let c = container_status(p, "app");
        assert_eq!(c["restartCount"], 0, "{c}");
        assert!(c["state"]["running"]["startedAt"].is_string(), "{c}");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert!(
            agent.container_process(p, "app").is_some(),
            "no live process for {name}"
        );
    }
    let names: Vec<String> = pods.iter().map(name_of).collect();
    assert_ne!(names[0], names[1]);
    let ips: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str())
        .collect();
    assert_eq!(ips.len(), 2, "every pod has a podIP: {pods:#?}");
    assert_ne!(ips[0], ips[1]);
    for ip in &ips {
        assert!(
            ip.starts_with("198.18.7."),
            "{ip} is not in the pod subnet {}",
            agent.pod_subnet
        );
    }
    let wide = agent.skiff_ok(&["get", "pods", "-o", "wide"]);
    assert!(ips.iter().all(|ip| wide.contains(ip)), "{wide}");
    // The same template hash in both names.
    assert_eq!(names[0].split('-').nth(1), names[1].split('-').nth(1));

    let table = agent.skiff_ok(&["get", "deployments"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row.split_whitespace().nth(1), Some("2/2"), "{table}");
    let d = agent.get_json(&["deployments"]);
    assert_eq!(d["items"][0]["status"]["readyReplicas"], 2, "{d}");

    // One pod by name is the object itself; YAML says the same as JSON; describe adds events.
    let one = agent.get_json(&["pods", &names[0]]);
    assert_eq!(one["kind"], "Pod", "{one}");
    assert_eq!(one["metadata"]["name"], names[0].as_str());
    let yaml = agent.skiff_ok(&["get", "pods", "-o", "yaml"]);
    assert!(yaml.lines().any(|l| l == "kind: List"), "{yaml}");
    assert!(
        names.iter().all(|n| yaml.contains(&format!("name: {n}"))),
        "{yaml}"
    );
    let describe = agent.skiff_ok(&["describe", "pod", &names[0]]);
    assert!(
        describe.contains("Started"),
        "describe shows no events:\n{describe}"
    );
    let out = agent.skiff(&["get", "pods", "nosuchpod"]);
    assert_eq!(out.status.code(), Some(1));

    let table = agent.skiff_ok(&["get", "pods"]);
    for name in &names {
        let row = table
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("{table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[1..4], &["1/1", "Running", "0"], "{table}");
    }
}

/// (uid -> pid) of the live pods.
fn processes(agent: &TestAgent) -> BTreeMap<String, support::proc::ProcessId> {
    agent
        .live_pods()
        .iter()
        .map(|p| {
            let id = agent
                .container_process(p, "app")
                .unwrap_or_else(|| panic!("no process for {}", name_of(p)));
            (uid_of(p), id)
        })
        .collect()
}

#[test]
fn editing_the_file_scales_replaces_and_deletes() {
    let agent = TestAgent::start();
    agent.write_manifest("web.yaml", &deployment(2, "hello"));
    agent.wait_running(2);
    let old = processes(&agent);

    // Scale 2 -> 3: the two pods stay (same uid, same process), one is added.
    agent.write_manifest("web.yaml", &deployment(3, "hello"));
    let pods = agent.wait_running(3);
    let now = processes(&agent);
    for (uid, id) in &old {
        assert_eq!(
            now.get(uid),
            Some(id),
            "pod {uid} was touched by a replica change"
        );
        assert!(id.alive());
    }
    assert_eq!(
        pods.iter()
            .filter(|p| !old.contains_key(&uid_of(p)))
            .count(),
        1
    );
    let three = now;

    // A template change replaces every pod.
    agent.write_manifest("web.yaml", &deployment(3, "bonjour"));
    let pods = agent.wait_until(WAIT, "3 new running pods", || {
        let pods = agent.pods();
        let fresh = pods.len() == 3
            && pods
                .iter()
                .all(|p| !three.contains_key(&uid_of(p)) && support::all_running(p));
        fresh.then_some(pods)
    });
    for id in three.values() {
        agent.wait_until(WAIT, "old container processes to exit", || {
            (!id.alive()).then_some(())
        });
    }
    for p in &pods {
        let env = &p["spec"]["containers"][0]["env"][0]["value"];
        assert_eq!(env, "bonjour", "{p}");
        let logs = agent.wait_until(WAIT, "greeting in the log", || {
            let out = agent.skiff_ok(&["logs", &name_of(p)]);
            out.contains("bonjour").then_some(out)
        });
        assert!(!logs.contains("hello"), "{logs}");
    }
    let last = processes(&agent);

    // Deleting the file removes everything.
    agent.remove_manifest("web.yaml");
    agent.wait_until(WAIT, "no pods", || agent.pods().is_empty().then_some(()));
    for id in last.values() {
        assert!(!id.alive(), "container process {id:?} still alive");
    }
    agent.wait_until(WAIT, "nothing left of the pods", || {
        let left =
            support::cleanup::leftovers(&agent.dir, &agent.cgroup_parent, &agent.netns_prefix);
        let pod_cgroups: Vec<_> = left
            .cgroups
            .iter()
            .filter(|d| {
                d.file_name().is_some_and(|n| {
                    n.to_string_lossy() != agent.cgroup_parent.trim_start_matches('/')
                })
            })
            .collect();
        let state: Vec<String> = ["containers", "lc"]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(agent.run.join("c").join(d))
                    .into_iter()
                    .flatten()
            })
            .filter_map(Result::ok)
            .map(|e| e.path().display().to_string())
            .collect();
        let pod_dirs: Vec<String> = std::fs::read_dir(agent.data.join("pods"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().display().to_string())
            .collect();
        let clean = left.processes.is_empty()
            && left.netns.is_empty()
            && left.mounts.is_empty()
            && pod_cgroups.is_empty()
            && state.is_empty()
            && pod_dirs.is_empty();
        if !clean {
            eprintln!("left: {left:?} state {state:?} pod dirs {pod_dirs:?}");
        }
        clean.then_some(())
    });
    let d: Value = agent.get_json(&["deployments"]);
    assert!(d["items"].as_array().is_some_and(|a| a.is_empty()), "{d}");
}

fn solo(env: &str) -> String {
    support::pod_yaml(
        "solo",
        &format!("trap 'exit 0' TERM; echo value={env}; sleep 100000 & wait"),
        "  terminationGracePeriodSeconds: 2\n",
    )
}

#[test]
fn bare_pods_are_replaced_on_change_and_documents_removed_one_by_one() {
    let agent = TestAgent::start();
    agent.write_manifest("solo.yaml", &solo("one"));
    let first = agent.wait_phase("solo", "Running");
    agent.write_manifest("solo.yaml", &solo("two"));
    let second = agent.wait_until(WAIT, "a new solo pod", || {
        agent
            .pod("solo")
            .filter(|p| uid_of(p) != uid_of(&first) && support::all_running(p))
    });
    assert_eq!(agent.pods().len(), 1);
    agent.wait_until(WAIT, "the new value in the log", || {
        agent
            .skiff_ok(&["logs", "solo"])
            .contains("value=two")
            .then_some(())
    });

    // Two documents in one file; removing one deletes only what it declared.
    let both = format!("{}---\n{}", deployment(1, "x"), solo("two"));
    agent.remove_manifest("solo.yaml");
    agent.write_manifest("both.yaml", &both);
    agent.wait_until(WAIT, "web and solo running", || {
        let pods = agent.live_pods();
        (pods.len() == 2 && pods.iter().all(support::all_running)).then_some(())
    });
    agent.write_manifest("both.yaml", &deployment(1, "x"));
    agent.wait_until(WAIT, "solo deleted, web kept", || {
        let pods = agent.pods();
        (pods.len() == 1 && name_of(&pods[0]).starts_with("web-")).then_some(())
    });
    let _ = second;
}

#[test]
fn pods_in_a_missing_namespace_wait_for_it() {
    let agent = TestAgent::start();
    let pod = support::pod_yaml("nsd", "trap 'exit 0' TERM; sleep 100000 & wait", "")
        .replace("  name: nsd\n", "  name: nsd\n  namespace: prod\n");
    agent.write_manifest("nsd.yaml", &pod);
    let events = agent.wait_until(WAIT, "a Blocked event", || {
        let events = items_of(&agent.get_json(&["events", "-n", "prod"]));
        events
            .iter()
            .any(|e| e["reason"] == "Blocked")
            .then_some(events)
    });
    let blocked = events
        .iter()
        .find(|e| e["reason"] == "Blocked")
        .cloned()
        .unwrap_or_default();
    assert!(
        blocked["message"]
            .as_str()
            .is_some_and(|m| m.contains("prod")),
        "{blocked}"
    );
    // Listed, but only as Pending with the reason (no node runs it).
    let listed = items_of(&agent.get_json(&["pods", "-A"]));
    assert!(
        listed.len() == 1
            && listed[0]["status"]["phase"] == "Pending"
            && listed[0]["spec"]["nodeName"].is_null()
            && listed[0]["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("namespace \"prod\" not found")),
        "{listed:#?}"
    );
    agent.write_manifest(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n",
    );
    agent.wait_until(WAIT, "the pod in prod", || {
        let pods = items_of(&agent.get_json(&["pods", "-n", "prod"]));
        pods.iter()
            .any(|p| name_of(p) == "nsd" && support::all_running(p))
            .then_some(())
    });
    assert!(
        agent.pods().is_empty(),
        "the default namespace lists pods of prod"
    );
}

fn items_of(v: &Value) -> Vec<Value> {
    support::items(v)
}

#[test]
fn scaling_to_zero_and_back_leaves_nothing_behind() {
    let agent = TestAgent::start();
    for round in 0..3 {
        agent.write_manifest("web.yaml", &deployment(4, "hi"));
        agent.wait_running(4);
        assert_eq!(
            support::cleanup::netns_with_prefix(&agent.netns_prefix).len(),
            4
        );
        agent.write_manifest("web.yaml", &deployment(0, "hi"));
        agent.wait_until(WAIT, "no pods", || agent.pods().is_empty().then_some(()));
        let table = agent.skiff_ok(&["get", "deployments"]);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("web ") && l.split_whitespace().nth(1) == Some("0/0")),
            "{table}"
        );
        agent.wait_until(WAIT, &format!("a clean node after round {round}"), || {
            let left =
                support::cleanup::leftovers(&agent.dir, &agent.cgroup_parent, &agent.netns_prefix);
            let parent = agent.cgroup_parent.trim_start_matches('/');
            let pod_cgroups = left
                .cgroups
                .iter()
                .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy() != parent))
                .count();
            let clean = left.processes.is_empty()
                && left.netns.is_empty()
                && left.mounts.is_empty()
                && pod_cgroups == 0;
            if !clean {
                eprintln!("left: {left:?}");
            }
            clean.then_some(())
        });
    }
}

#[test]
fn twenty_replicas_start_and_go_together() {
    let agent = TestAgent::start();
    agent.write_manifest("web.yaml", &deployment(20, "many"));
    let pods = agent.wait_until(
        std::time::Duration::from_secs(90),
        "20 running pods",
        || {
            let pods = agent.live_pods();
            (pods.len() == 20 && pods.iter().all(support::all_running)).then_some(pods)
        },
    );
    let mut ips: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "{ips:?}");
    for p in &pods {
        assert!(
            agent.container_process(p, "app").is_some(),
            "{}",
            name_of(p)
        );
    }
    agent.remove_manifest("web.yaml");
    agent.wait_until(std::time::Duration::from_secs(90), "a clean node", || {
        let left =
            support::cleanup::leftovers(&agent.dir, &agent.cgroup_parent, &agent.netns_prefix);
        let clean = agent.pods().is_empty()
            && left.processes.is_empty()
            && left.netns.is_empty()
            && left.mounts.is_empty();
        clean.then_some(())
    });
}

/// `web` whose revision 2 never turns ready (its readiness probe knocks on a closed port).
fn stalling(revision: u32) -> String {
    let probe = if revision == 2 {
        "        readinessProbe:\n          tcpSocket: {port: 9}\n          periodSeconds: 1\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  progressDeadlineSeconds: 3
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{revision: "{revision}"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
{probe}"#
    )
}

#[test]
fn a_rollout_that_never_becomes_ready_exceeds_its_deadline_and_keeps_the_old_pod() {
    let agent = TestAgent::start();
    agent.write_manifest("web.yaml", &stalling(1));
    agent.wait_until(WAIT, "the Deployment known", || {
        agent
            .skiff(&["get", "deployments", "web"])
            .status
            .success()
            .then_some(())
    });
    let done = agent.skiff(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    assert!(done.status.success(), "{done:?}");
    let old: Vec<String> = agent.pods().iter().map(name_of).collect();
    agent.write_manifest("web.yaml", &stalling(2));
    agent.wait_until(WAIT, "the new template", || {
        let d: Value =
            serde_json::from_str(&agent.skiff_ok(&["get", "deployments", "web", "-o", "json"]))
                .ok()?;
        let d = d["items"].get(0).cloned().unwrap_or(d);
        (d["spec"]["template"]["metadata"]["annotations"]["revision"] == "2").then_some(())
    });
    let started = std::time::Instant::now();
    let failed = agent.skiff(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "failed after {:?}",
        started.elapsed()
    );
    let d: Value =
        serde_json::from_str(&agent.skiff_ok(&["get", "deployments", "web", "-o", "json"]))
            .expect("json");
    let d = d["items"].get(0).cloned().unwrap_or(d);
    let progressing = d["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing").cloned())
        .unwrap_or_default();
    assert_eq!(progressing["status"], "False", "{d:#}");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    // maxUnavailable 0: the old pod still runs beside the unready new one.
    let names: Vec<String> = agent.pods().iter().map(name_of).collect();
    assert!(names.contains(&old[0]), "{names:?}");
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A 2-replica Deployment applied through the API (`paused` as given) whose template carries
/// `revision`.
fn pausable(replicas: u32, revision: u32, paused: bool) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  paused: {paused}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{revision: "{revision}"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
"#
    )
}

/// Running pods of `web` by their template's revision annotation.
fn revisions(agent: &TestAgent) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in agent.pods() {
        let running =
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null();
        if let (true, Some(r)) = (running, p["metadata"]["annotations"]["revision"].as_str()) {
            *out.entry(r.to_string()).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_paused_rollout_keeps_its_pods_scales_and_goes_on_when_resumed() {
    let agent = TestAgent::start();
    let file = agent.dir.join("web.yaml");
    let apply = |body: &str| {
        std::fs::write(&file, body).expect("write manifest");
        agent.skiff_ok(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    };
    apply(&pausable(2, 1, false));
    let done = agent.skiff(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    assert!(done.status.success(), "{done:?}");
    let paused = agent.skiff_ok(&["rollout", "pause", "deployment/web"]);
    assert!(paused.contains("deployment.apps/web paused"), "{paused}");
    // A new template while paused (a manifest applied whole keeps `paused: true`).
    apply(&pausable(2, 2, true));
    let held = agent.skiff(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    assert_eq!(held.status.code(), Some(1), "{held:?}");
    assert!(
        String::from_utf8_lossy(&held.stderr).contains("is paused"),
        "{held:?}"
    );
    let d: Value =
        serde_json::from_str(&agent.skiff_ok(&["get", "deployments", "web", "-o", "json"]))
            .expect("json");
    let d = d["items"].get(0).cloned().unwrap_or(d);
    let progressing = d["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing").cloned())
        .unwrap_or_default();
    assert_eq!(progressing["reason"], "DeploymentPaused", "{d:#}");
    // Scaling up while paused makes one pod of the new template; the old two stay.
    agent.skiff_ok(&["scale", "deployment/web", "--replicas", "3"]);
    agent.wait_until(WAIT, "one new pod beside the two old", || {
        let r = revisions(&agent);
        (r.get("1") == Some(&2) && r.get("2") == Some(&1)).then_some(())
    });
    assert_eq!(
        revisions(&agent).get("1"),
        Some(&2),
        "the old pods were kept"
    );
    let resumed = agent.skiff_ok(&["rollout", "resume", "deployment/web"]);
    assert!(resumed.contains("deployment.apps/web resumed"), "{resumed}");
    let done = agent.skiff(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    assert!(done.status.success(), "{done:?}");
    agent.wait_until(WAIT, "three pods of the new template", || {
        (revisions(&agent) == BTreeMap::from([("2".to_string(), 3)])).then_some(())
    });
}

#[test]
fn history_and_undo_of_a_file_declared_deployment_until_the_file_changes() {
    let mut agent = TestAgent::start();
    let done = |agent: &TestAgent| {
        // The watcher takes the file in a moment after it is written.
        agent.wait_until(WAIT, "the deployment to be known", || {
            let out = agent.skiff(&["get", "deployments", "web", "-o", "json"]);
            out.status.success().then_some(())
        });
        let out = agent.skiff(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
        assert!(out.status.success(), "{out:?}");
    };
    agent.write_manifest("web.yaml", &pausable(2, 1, false));
    done(&agent);
    agent.write_manifest("web.yaml", &pausable(2, 2, false));
    agent.wait_until(WAIT, "two pods of revision 2", || {
        (revisions(&agent) == BTreeMap::from([("2".to_string(), 2)])).then_some(())
    });
    let listed = agent.skiff_ok(&["rollout", "history", "deployment/web"]);
    let rows: Vec<&str> = listed.lines().map(str::trim_end).collect();
    assert_eq!(
        rows,
        [
            "deployment.apps/web",
            "REVISION   CHANGE-CAUSE",
            "1          <none>",
            "2          <none>"
        ],
        "{listed}"
    );
    let one = agent.skiff_ok(&["rollout", "history", "deployment/web", "--revision", "1"]);
    assert!(
        one.contains("deployment.apps/web with revision #1"),
        "{one}"
    );
    assert!(
        one.contains("revision: '1'") || one.contains("revision: \"1\""),
        "{one}"
    );
    // Undo: the file still says revision 2; the pods go back to revision 1's template.
    let undo = agent.skiff(&["rollout", "undo", "deployment/web"]);
    assert!(undo.status.success(), "{undo:?}");
    let stdout = String::from_utf8_lossy(&undo.stdout);
    let stderr = String::from_utf8_lossy(&undo.stderr);
    assert!(
        stdout.contains("deployment.apps/web rolled back to revision 1 (now revision 3)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("web.yaml on node") && stderr.contains("now differs"),
        "{stderr}"
    );
    done(&agent);
    agent.wait_until(WAIT, "two pods of revision 1 again", || {
        (revisions(&agent) == BTreeMap::from([("1".to_string(), 2)])).then_some(())
    });
    let events = agent.skiff_ok(&["get", "events"]);
    assert!(
        events.contains("RolledBack") && events.contains("now differs"),
        "{events}"
    );
    let refused = agent.skiff(&["rollout", "undo", "deployment/web", "--to-revision", "7"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unable to find specified revision 7"),
        "{refused:?}"
    );
    let pod = agent.skiff(&["rollout", "history", "pod/x"]);
    assert!(!pod.status.success());
    // An agent restart does not bring the file's revision back; the file's next change does.
    agent.stop();
    agent.restart();
    done(&agent);
    assert_eq!(revisions(&agent), BTreeMap::from([("1".to_string(), 2)]));
    agent.write_manifest("web.yaml", &pausable(2, 4, false));
    agent.wait_until(WAIT, "two pods of revision 4", || {
        (revisions(&agent) == BTreeMap::from([("4".to_string(), 2)])).then_some(())
    });
    let listed = agent.skiff_ok(&["rollout", "history", "deployment/web"]);
    let numbers: Vec<&str> = listed
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["2", "3", "4"], "{listed}");
}

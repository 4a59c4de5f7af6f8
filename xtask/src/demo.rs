//! `cargo xtask demo`: a 3-node cluster in network namespaces on this machine. Node n0 starts
//! the cluster, `skiff token create` on it gives the token n1 and n2 join with; each imports the
//! test image; the manifests in examples/ are dropped on n0; `skiff status` and
//! `skiff get pods -A -o wide` are shown from n2, which also fetches a web pod's page on another
//! node over the pod routes, reaches the web Service by its ClusterIP and a pod reaches it by
//! name, then a template change of web rolls out (followed with `skiff rollout status`) and is undone from another node (`skiff rollout history`, `skiff rollout undo`); last, an Indexed Job runs its parts across the nodes and a CronJob is run on demand (examples/batch/). Ctrl-C (or `--once`, for scripts: no wait) deletes the workloads
//! and removes everything: agents, pods, namespaces, bridge, cgroups and temp dirs.

pub mod cluster;
mod node;

pub use node::{DemoAgent, INTERRUPTED, NodeOptions, interrupted};

use anyhow::{Context, Result};
use cluster::{DemoCluster, pod_ready};
use std::sync::atomic::Ordering;
use std::time::Duration;

const NODES: usize = 3;

/// Installs a Ctrl-C handler that makes the waits give up; returns a receiver that gets one
/// message per Ctrl-C.
pub fn on_ctrl_c() -> Result<std::sync::mpsc::Receiver<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        INTERRUPTED.store(true, Ordering::Relaxed);
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(rx)
}

/// Fetches the page of a web pod on another node from n2's node namespace, over the routes to
/// the other nodes' pod subnets.
fn show_cross_node_http(demo: &DemoCluster) -> Result<()> {
    let viewer = &demo.agents[NODES - 1];
    let pods = viewer.pods()?;
    let Some(ip) = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] != viewer.name.as_str())
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("web-"))
        })
        .find_map(|p| p["status"]["podIP"].as_str())
    else {
        return Ok(());
    };
    let netns = &demo.bed.nodes[NODES - 1].netns;
    let url = format!("http://{ip}:8080/");
    println!(
        "\n[{} node namespace]$ busybox wget -q -O - {url}",
        viewer.name
    );
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "timeout", "5", "busybox", "wget", "-q", "-O", "-",
        ])
        .arg(&url)
        .output()
        .context("cannot run busybox wget in the node namespace")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The web Service from n2: its ClusterIP and endpoints, and a few requests to the ClusterIP
/// from n2's node namespace (each new connection goes to either pod, on any node).
fn show_service(demo: &DemoCluster) -> Result<()> {
    let viewer = &demo.agents[NODES - 1];
    viewer.wait_for(
        Duration::from_secs(60),
        "web's ClusterIP and 2 endpoints",
        |a| {
            let eps = a.cli(&["get", "endpoints", "web", "-o", "json"])?;
            let v: serde_json::Value = serde_json::from_slice(&eps.stdout).unwrap_or_default();
            Ok(v["subsets"][0]["addresses"]
                .as_array()
                .is_some_and(|a| a.len() == 2))
        },
    )?;
    viewer.show(&["get", "services", "-o", "wide"])?;
    viewer.show(&["get", "endpoints"])?;
    let svc = viewer.cli(&["get", "svc", "web", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_slice(&svc.stdout).unwrap_or_default();
    let Some(ip) = v["spec"]["clusterIP"].as_str() else {
        return Ok(());
    };
    let netns = &demo.bed.nodes[NODES - 1].netns;
    let url = format!("http://{ip}/");
    println!(
        "\n[{} node namespace]$ for i in 1 2 3; do busybox wget -q -O - {url}; done",
        viewer.name
    );
    for _ in 0..3 {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", netns, "timeout", "5", "busybox", "wget", "-q", "-O", "-",
            ])
            .arg(&url)
            .output()
            .context("cannot run busybox wget in the node namespace")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    // The worker pod fetches http://web/ by name (cluster DNS on its node, then the ClusterIP).
    let other = &demo.agents[1];
    other.wait_for(
        Duration::from_secs(30),
        "the worker to reach web by name",
        |a| {
            let out = a.cli(&["logs", "worker"])?;
            Ok(String::from_utf8_lossy(&out.stdout).contains("hello from skiff"))
        },
    )?;
    other.show(&["logs", "worker", "--tail", "3"])?;
    // Its own labels, from a downwardAPI volume.
    let out = other.cli(&["logs", "worker"])?;
    if let Some(line) = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("labels:"))
    {
        println!("worker's downwardAPI volume: {line}");
    }
    Ok(())
}

/// `skiff exec` from n2 into the worker pod, wherever it runs: the command's output and exit
/// code come back through the node that runs it.
fn show_exec(demo: &DemoCluster) -> Result<()> {
    let viewer = &demo.agents[NODES - 1];
    let args = [
        "exec",
        "worker",
        "--",
        "sh",
        "-c",
        "echo \"inside $(hostname)\"; wget -q -O - http://web/ | head -1",
    ];
    println!(
        "\n[{}]$ skiff exec worker -- sh -c '{}'",
        viewer.name, args[5]
    );
    let out = viewer.cli(&args)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "skiff exec failed: {}", out.status);
    Ok(())
}

/// The `demo/revision` annotation of web's template as `a` sees it (null when absent).
fn demo_revision(a: &DemoAgent) -> Result<serde_json::Value> {
    let out = a.cli(&["get", "deployments", "web", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let d = v["items"].get(0).unwrap_or(&v);
    Ok(d["spec"]["template"]["metadata"]["annotations"]["demo/revision"].clone())
}

/// A rolling update: web.yaml on n0 gets a new template annotation; `skiff rollout status` on
/// n2 follows the pods being replaced one at a time (maxSurge 1, maxUnavailable 0).
fn show_rollout(demo: &DemoCluster) -> Result<()> {
    let (origin, viewer) = (&demo.agents[0], &demo.agents[NODES - 1]);
    let file = origin.manifests.join("web.yaml");
    let yaml = std::fs::read_to_string(&file).context("read web.yaml")?;
    let anchor = "      labels:\n        app: web\n    spec:";
    anyhow::ensure!(yaml.contains(anchor), "examples/web.yaml changed shape");
    let updated = yaml.replacen(
        anchor,
        "      labels:\n        app: web\n      annotations:\n        demo/revision: \"2\"\n    spec:",
        1,
    );
    println!(
        "\ndemo: web.yaml on {} gets a new template annotation (a new revision)",
        origin.name
    );
    std::fs::write(&file, updated).context("write web.yaml")?;
    viewer.wait_for(Duration::from_secs(30), "the new template on n2", |a| {
        Ok(demo_revision(a)? == "2")
    })?;
    let args = ["rollout", "status", "deployment/web", "--timeout", "120s"];
    let out = viewer.show_output(&args)?;
    anyhow::ensure!(out.status.success(), "the rolling update did not finish");
    viewer.show(&["get", "deployments"])?;
    // History and undo from a node that did not declare web: the file on n0 now differs.
    viewer.show(&["rollout", "history", "deployment/web"])?;
    let out = viewer.show_output(&["rollout", "undo", "deployment/web"])?;
    anyhow::ensure!(out.status.success(), "rollout undo failed");
    viewer.wait_for(
        Duration::from_secs(30),
        "the first template back on n2",
        |a| Ok(demo_revision(a)?.is_null()),
    )?;
    let out = viewer.cli(&args)?;
    anyhow::ensure!(out.status.success(), "the rollback did not finish");
    viewer.show(&["rollout", "history", "deployment/web"])?;
    Ok(())
}

/// Drops examples/batch/ on n0: the Indexed Job `report` runs its three parts across the nodes
/// (shown from n2 with `get jobs` and `logs job/report`), and the CronJob `cleanup` is run at
/// once with `create job --from=cronjob/cleanup`.
fn show_batch(demo: &DemoCluster) -> Result<()> {
    let origin = &demo.agents[0];
    let viewer = &demo.agents[NODES - 1];
    let source = crate::root().join("examples/batch/report.yaml");
    std::fs::copy(&source, origin.manifests.join("report.yaml")).context("copy report.yaml")?;
    println!(
        "\ndemo: examples/batch/report.yaml dropped on {}: a Job and a CronJob",
        origin.name
    );
    let done = |a: &DemoAgent, job: &str| -> Result<bool> {
        let out = a.cli(&["get", "jobs", job, "-o", "json"])?;
        if !out.status.success() {
            return Ok(false);
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let condition = v
            .pointer("/status/conditions/0/type")
            .and_then(|t| t.as_str());
        anyhow::ensure!(condition != Some("Failed"), "job {job} failed: {v}");
        Ok(condition == Some("Complete"))
    };
    viewer.wait_for(Duration::from_secs(120), "the report Job complete", |a| {
        done(a, "report")
    })?;
    viewer.show(&["get", "jobs"])?;
    let out = viewer.cli(&["get", "pods", "-A", "-o", "wide"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.contains(" report-"))
        .map(|(_, l)| l)
        .collect();
    println!(
        "$ skiff get pods -A -o wide   (the report Job's pods)\n{}",
        lines.join("\n")
    );
    for index in ["0", "1", "2"] {
        let pod = viewer.pods()?.into_iter().find(|p| {
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
                && p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "report"
        });
        if let Some(name) = pod.as_ref().and_then(|p| p["metadata"]["name"].as_str()) {
            viewer.show(&["logs", name])?;
        }
    }
    viewer.wait_for(Duration::from_secs(30), "the cleanup CronJob on n2", |a| {
        Ok(a.cli(&["get", "cronjobs", "cleanup"])?.status.success())
    })?;
    viewer.show(&["get", "cronjobs"])?;
    let out = viewer.show_output(&["create", "job", "cleanup-now", "--from=cronjob/cleanup"])?;
    anyhow::ensure!(
        out.status.success(),
        "create job --from=cronjob/cleanup failed"
    );
    viewer.wait_for(Duration::from_secs(60), "cleanup-now complete", |a| {
        done(a, "cleanup-now")
    })?;
    viewer.show(&["logs", "job/cleanup-now"])?;
    viewer.show(&["get", "jobs"])?;
    // Applied through the API (not a file): deleted here, with its pod.
    viewer.show(&["delete", "job", "cleanup-now"])?;
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let once = args.iter().any(|a| a == "--once");
    crate::packages::ensure(crate::packages::AGENT)?;
    let skiff = crate::util::build_skiff()?;
    let image = crate::build_test_image_with(&skiff)?;
    let stop = on_ctrl_c()?;
    println!("demo: starting {NODES} nodes in network namespaces");
    let demo = DemoCluster::start(&skiff, &image, NODES, "info")?;
    let bed = &demo.bed;
    for (a, node) in demo.agents.iter().zip(&bed.nodes) {
        println!(
            "demo: {} in namespace {} at {}:{} (api {})",
            a.name,
            node.netns,
            node.ip,
            cluster::PORT,
            a.socket.display()
        );
    }
    println!(
        "demo: bridge br0 in namespace {}; n1 and n2 joined n0 with a token from `skiff token create`",
        bed.hub
    );
    let origin = &demo.agents[0];
    let viewer = &demo.agents[NODES - 1];
    let root = crate::root();
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("examples"))? {
        let path = entry?.path();
        if let (Some(name), true) = (
            path.file_name(),
            path.extension().is_some_and(|e| e == "yaml"),
        ) {
            std::fs::copy(&path, origin.manifests.join(name))?;
            count += 1;
        }
    }
    println!(
        "demo: {count} example manifests dropped on {} ({})",
        origin.name,
        origin.manifests.display()
    );
    // Every node must know every workload the origin declared, see each one's pods all ready,
    // and list exactly those pods (objects, tables and reports travel by gossip separately).
    let declared = |a: &DemoAgent| -> Result<Vec<(String, u64, u64)>> {
        let status = a.api(&serde_json::json!({ "op": "status" }))?;
        let mut rows: Vec<(String, u64, u64)> = status["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                (
                    format!("{}/{}/{}", w["kind"], w["namespace"], w["name"]),
                    w["desired"].as_u64().unwrap_or(0),
                    w["ready"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        rows.sort();
        Ok(rows)
    };
    for a in &demo.agents {
        a.wait_for(Duration::from_secs(120), "every pod to run", |a| {
            let (mine, origin) = (declared(a)?, declared(origin)?);
            let names = |rows: &[(String, u64, u64)]| -> Vec<String> {
                rows.iter().map(|r| r.0.clone()).collect()
            };
            let desired: u64 = mine.iter().map(|r| r.1).sum();
            let pods = a.pods()?;
            Ok(!origin.is_empty()
                && names(&mine) == names(&origin)
                && mine.iter().all(|(_, d, r)| d == r)
                && pods.len() as u64 == desired
                && pods.iter().all(pod_ready))
        })?;
    }
    viewer.show(&["status"])?;
    viewer.show(&["get", "pods", "-A", "-o", "wide"])?;
    show_cross_node_http(&demo)?;
    show_service(&demo)?;
    show_exec(&demo)?;
    show_rollout(&demo)?;
    show_batch(&demo)?;
    if !once {
        println!(
            "\ndemo: try `skiff --socket {} get pods -A -o wide` (any node's socket); press Ctrl-C to tear down",
            viewer.socket.display()
        );
        let _ = stop.recv();
    }
    println!("demo: tearing down");
    drop(demo);
    println!("demo: done");
    Ok(())
}

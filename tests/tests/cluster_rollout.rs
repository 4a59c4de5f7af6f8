//! A rolling update on a cluster of five real agents with real pods behind a Service (issue 12):
//! six replicas with a readiness probe, `maxSurge: 1, maxUnavailable: 0`. A client on one node
//! asks the ClusterIP all the while and no request fails; `skiff rollout status` on another node
//! waits until the rollout is done; every pod ends on the new template; `skiff scale` then sets
//! the replica count cluster-wide.
//!
//! Needs root, iproute2, nftables and busybox-static; see `cluster_deploy.rs` for the harness.

use anyhow::{Context, Result, ensure};
use skiff_tests::cluster::Cluster;
use skiff_tests::pods::TEST_IMAGE;
use skiff_tests::poll::wait_for;
use skiff_tests::web::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
";

/// `web` with a readiness probe; `version` goes into the template (a new revision).
fn rolling_web(replicas: usize, version: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{version: "{version}"}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: main
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo v{version}-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
"#
    )
}

/// The ClusterIP of `web` and its ready endpoint count as node `i` sees them.
fn service_of(c: &Cluster, i: usize) -> Option<(String, usize)> {
    let agent = &c.agents[i];
    let svc = agent
        .api(&serde_json::json!({
            "op": "get", "kind": "services", "name": "web", "namespace": "default", "all_namespaces": false,
        }))
        .ok()?;
    let eps = agent
        .api(&serde_json::json!({
            "op": "get", "kind": "endpoints", "name": "web", "namespace": "default", "all_namespaces": false,
        }))
        .ok()?;
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| *ip != "<pending>")?;
    let ready = eps["subsets"][0]["addresses"]
        .as_array()
        .map_or(0, Vec::len);
    Some((ip.to_string(), ready))
}

#[test]
fn a_rolling_update_behind_a_service_fails_no_request() -> Result<()> {
    with_cluster(|c| {
        c.agents[2].write_manifest("svc.yaml", SERVICE)?;
        c.agents[2].write_manifest(FILE, &rolling_web(6, 1))?;
        let (ip, took) = wait_for("web with 6 ready endpoints on n0", WAIT, POLL, || {
            Ok(service_of(c, 0)
                .filter(|(_, ready)| *ready == 6)
                .map(|(ip, _)| ip))
        })?;
        eprintln!("web at {ip} with 6 ready endpoints after {took:?}");
        let url = format!("http://{ip}/index.html");
        let netns = c.bed.nodes[0].netns.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let client = {
            let (stop, sent, failed, url) =
                (stop.clone(), sent.clone(), failed.clone(), url.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match skiff_test_support::net::wget_in(&netns, &url) {
                        Some(body) if body.starts_with('v') => {}
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.push(format!("{other:?}"));
                        }
                    }
                }
                failures
            })
        };
        // The new revision, from another node's manifests dir; `rollout status` on n1 once n1
        // has it (before, it would report the old revision rolled out).
        c.agents[2].write_manifest(FILE, &rolling_web(6, 2))?;
        wait_for("the new template on n1", WAIT, POLL, || {
            let d = c.agents[1].api(&serde_json::json!({
                "op": "get", "kind": "deployments", "name": "web", "namespace": "default", "all_namespaces": false,
            }))?;
            let d = d["items"].get(0).cloned().unwrap_or(d);
            Ok((d["spec"]["template"]["metadata"]["annotations"]["version"] == "2").then_some(()))
        })?;
        let status =
            c.agents[1].cli(&["rollout", "status", "deployment/web", "--timeout", "180s"])?;
        eprintln!("rollout status on n1:\n{status}");
        ensure!(
            status.contains("successfully rolled out"),
            "rollout status: {status}"
        );
        // Every answer now comes from the new revision.
        let (_, took) = wait_for("only v2 pods answer", WAIT, POLL, || {
            let bodies: Vec<String> = (0..12)
                .filter_map(|_| skiff_test_support::net::wget_in(&c.bed.nodes[0].netns, &url))
                .collect();
            Ok((bodies.len() == 12 && bodies.iter().all(|b| b.starts_with("v2-"))).then_some(()))
        })?;
        eprintln!("only v2 answers {took:?} after the rollout");
        stop.store(true, Ordering::Relaxed);
        let failures = client
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))?;
        let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        eprintln!("client on n0: {sent} requests, {failed} failed");
        ensure!(
            sent >= 20,
            "the client kept asking during the update ({sent})"
        );
        ensure!(
            failed == 0,
            "requests failed during the rollout: {failures:?}"
        );
        // Every node's view settles on the 6 new pods (reports of stopped pods leave through
        // gossip).
        let new_hash = |name: &str| name.rsplit_once('-').map(|(head, _)| head.to_string());
        let (_, took) = wait_for("6 pods of one template on every node", WAIT, POLL, || {
            let mut settled = true;
            for i in all() {
                let pods = web_pods(&c.agents[i])?;
                let hashes: std::collections::BTreeSet<Option<String>> =
                    pods.iter().map(|p| new_hash(&p.name)).collect();
                settled &= pods.len() == 6 && hashes.len() == 1;
            }
            Ok(settled.then_some(()))
        })?;
        eprintln!("6 pods of the new template on every node {took:?} after that");

        // Scale from another node: every node converges on 3 pods.
        let out = c.agents[3].cli(&["scale", "deployment/web", "--replicas", "3"])?;
        ensure!(out.contains("scaled"), "scale: {out}");
        let (_, took) = wait_for("3 web pods everywhere", WAIT, POLL, || {
            let mut all_three = true;
            for i in all() {
                let pods = web_pods(&c.agents[i])?;
                all_three &= pods.iter().filter(|p| !p.deleting).count() == 3
                    && pods.iter().all(|p| !p.deleting);
            }
            Ok(all_three.then_some(()))
        })?;
        eprintln!("scaled to 3 on every node after {took:?}");

        // A restart from yet another node replaces the three pods with new ones.
        let before: std::collections::BTreeSet<String> = web_pods(&c.agents[0])?
            .into_iter()
            .map(|p| p.name)
            .collect();
        let out = c.agents[4].cli(&["rollout", "restart", "deployment/web"])?;
        ensure!(out.contains("restarted"), "rollout restart: {out}");
        let (_, took) = wait_for("3 new pods everywhere", WAIT, POLL, || {
            let mut replaced = true;
            for i in all() {
                let pods = web_pods(&c.agents[i])?;
                replaced &= pods.len() == 3
                    && pods.iter().all(|p| !p.deleting && !before.contains(&p.name));
            }
            Ok(replaced.then_some(()))
        })?;
        eprintln!("restarted: 3 new pods on every node after {took:?}");
        let daemon = c.agents[3].cli(&["scale", "daemonset/agent", "--replicas", "3"]);
        ensure!(
            daemon
                .as_ref()
                .is_err_and(|e| e.to_string().contains("one pod on every matching node")),
            "a DaemonSet cannot be scaled: {daemon:?}"
        );
        Ok(())
    })
    .context("rolling update")
}

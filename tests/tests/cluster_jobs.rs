//! Jobs on a cluster of three real agents with real containers (issue 15): an Indexed Job of 3
//! completions with parallelism 2, declared on a follower, runs its indexes on more than one
//! node, each index once, every pod seeing its own `JOB_COMPLETION_INDEX`; every node shows the
//! Job Complete and any node reads any pod's logs.
//!
//! Needs root, iproute2, nsenter (util-linux) and busybox-static. The `skiff` binary comes from
//! `SKIFF_BIN` or `target/debug/skiff`. Every wait is a deadline-bounded poll, and the bed's
//! guard removes agents, containers, mounts, namespaces and cgroups even when the test fails.

use anyhow::{Result, ensure};
use serde_json::Value;
use skiff_tests::agent::PodOptions;
use skiff_tests::bed::TestBed;
use skiff_tests::cluster::Cluster;
use skiff_tests::poll::wait_for;
use skiff_tests::web::{POLL, START, WAIT, dump, wait_leader};
use std::collections::BTreeSet;

const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: parts
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: part
        image: skiff.local/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, \"echo part=$JOB_COMPLETION_INDEX; sleep 2\"]
";

fn json(agent: &skiff_tests::agent::Agent, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&agent.cli(&all)?)?)
}

#[test]
fn an_indexed_job_runs_each_index_once_across_three_nodes() -> Result<()> {
    let bed = TestBed::new(&[0, 0, 0])?;
    let c = Cluster::start_with(bed, 3, Some(PodOptions::default()), START)?;
    let outcome = (|| -> Result<()> {
        for agent in &c.agents {
            agent.import_test_image()?;
        }
        wait_leader(&c, &[0, 1, 2], "n0", 0, WAIT)?;
        c.agents[1].write_manifest("parts.yaml", JOB)?;
        let (_, took) = wait_for("the Job Complete on every node", WAIT * 2, POLL, || {
            for agent in &c.agents {
                let Ok(v) = json(agent, &["get", "jobs", "parts"]) else {
                    return Ok(None);
                };
                if v.pointer("/status/conditions/0/type") != Some(&Value::from("Complete")) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
        eprintln!("parts: Complete on every node {took:?} after the write");
        let job = json(&c.agents[2], &["get", "jobs", "parts"])?;
        ensure!(job["status"]["succeeded"] == 3, "{job}");
        ensure!(job["status"]["completedIndexes"] == "0-2", "{job}");
        let pods: Vec<Value> = json(&c.agents[0], &["get", "pods", "-A"])?["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "parts")
            .collect();
        ensure!(pods.len() == 3, "one pod per index: {pods:#?}");
        let nodes: BTreeSet<&str> = pods
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str())
            .collect();
        ensure!(
            nodes.len() >= 2,
            "the indexes ran on more than one node: {nodes:?}"
        );
        let mut indexes = BTreeSet::new();
        for p in &pods {
            ensure!(p["status"]["phase"] == "Succeeded", "{p}");
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let index = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // Logs from a node that did not run it (forwarded over rpc).
            let reader = c
                .agents
                .iter()
                .find(|a| p["spec"]["nodeName"] != a.name.as_str())
                .expect("another node");
            let logs = reader.cli(&["logs", name])?;
            ensure!(logs.contains(&format!("part={index}")), "{name}: {logs}");
            indexes.insert(index);
        }
        ensure!(indexes.len() == 3, "each index once: {indexes:?}");
        Ok(())
    })();
    if let Err(e) = &outcome {
        eprintln!("FAILED: {e:#}");
        dump(&c);
    }
    outcome
}

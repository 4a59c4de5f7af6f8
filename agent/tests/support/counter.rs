//! A workload shared by the restart tests: a Deployment whose containers print a numbered line
//! every 0.1 s (so tests can see logs continue), and its pods' processes and restart counts.

use super::proc::ProcessId;
use super::{TEST_IMAGE, TestAgent, container_status, name_of};
use serde_json::Value;
use std::collections::BTreeMap;

pub const COUNTER: &str =
    "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";

pub fn deployment() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      volumes:
      - name: mem
        emptyDir: {{medium: Memory}}
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "{COUNTER}"]
        volumeMounts: [{{name: mem, mountPath: /mem}}]
"#
    )
}

/// name -> (process, restartCount)
pub fn state(agent: &TestAgent) -> BTreeMap<String, (ProcessId, Value)> {
    agent
        .live_pods()
        .iter()
        .filter(|p| name_of(p).starts_with("web-"))
        .map(|p| {
            let id = agent
                .container_process(p, "app")
                .unwrap_or_else(|| panic!("no process for {p}"));
            (
                name_of(p),
                (id, container_status(p, "app")["restartCount"].clone()),
            )
        })
        .collect()
}

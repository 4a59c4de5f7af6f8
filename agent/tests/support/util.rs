//! Small helpers for the tests: reading Kubernetes-shaped JSON, running commands with a
//! deadline, and writing one-container pod manifests.

use super::TEST_IMAGE;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// A List's `items`.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Every container of the pod is in state `running` and the phase is Running.
pub fn all_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| {
                !cs.is_empty() && cs.iter().all(|c| c["state"].get("running").is_some())
            })
}

/// The status of the named container.
pub fn container_status(pod: &Value, name: &str) -> Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

pub fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn uid_of(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Runs a command, killing it after `timeout` (then panics).
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    skiff_test_support::net::output_within(cmd, timeout).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A pod manifest with one busybox container running `script` under `sh -c`.
pub fn pod_yaml(name: &str, script: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

/// Whether `path` exists (for readability in assertions).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

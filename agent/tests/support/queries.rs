//! Asking a test agent things: the CLI against its socket, `get ... -o json` parsed, pods and
//! events, polling with deadlines, and the host process behind a pod's container.

use super::{SKIFF, TestAgent, WAIT, all_running, items, proc, run_with_timeout};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

impl TestAgent {
    /// Runs `skiff --socket <ours> ARGS` (at most 60 s).
    pub fn skiff(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(SKIFF);
        cmd.arg("--socket").arg(&self.socket).args(args);
        run_with_timeout(cmd, Duration::from_secs(60))
    }

    /// Like `skiff`, but the command must succeed; returns stdout.
    pub fn skiff_ok(&self, args: &[&str]) -> String {
        let out = self.skiff(args);
        assert!(
            out.status.success(),
            "skiff {args:?} failed with {}: {}\n--- agent log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `get <kind> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let text = self.skiff_ok(&full);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("get {args:?}: not JSON ({e}): {text}"))
    }

    /// `get pods -o json` (the whole List).
    pub fn pods_json(&self) -> Value {
        self.get_json(&["pods"])
    }

    /// The pods' items.
    pub fn pods(&self) -> Vec<Value> {
        items(&self.pods_json())
    }

    /// One pod by name, if listed.
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Pods that are not being deleted.
    pub fn live_pods(&self) -> Vec<Value> {
        self.pods()
            .into_iter()
            .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
            .collect()
    }

    pub fn events(&self) -> Vec<Value> {
        items(&self.get_json(&["events"]))
    }

    /// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` saying `what`
    /// and showing the pods and the agent's log.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        if let Some(v) = skiff_test_support::poll::poll(timeout, Duration::from_millis(50), &mut f)
        {
            return v;
        }
        let pods = self.skiff(&["get", "pods", "-o", "json"]);
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- pods ---\n{}\n--- agent log ---\n{}",
            String::from_utf8_lossy(&pods.stdout),
            self.log_text()
        );
    }

    /// Waits until the pod named `name` has phase `phase`; returns the pod.
    pub fn wait_phase(&self, name: &str, phase: &str) -> Value {
        self.wait_until(WAIT, &format!("pod {name} {phase}"), || {
            self.pod(name).filter(|p| p["status"]["phase"] == phase)
        })
    }

    /// Waits until exactly `n` live pods exist and all are Running with every container running.
    pub fn wait_running(&self, n: usize) -> Vec<Value> {
        self.wait_until(WAIT, &format!("{n} running pods"), || {
            let pods = self.live_pods();
            (pods.len() == n && pods.iter().all(all_running)).then_some(pods)
        })
    }

    /// The host pid and start time of a pod's running container (from the runtime's record in
    /// the run dir, checked against /proc).
    pub fn container_process(&self, pod: &Value, container: &str) -> Option<proc::ProcessId> {
        let uid = pod["metadata"]["uid"].as_str()?;
        let index = pod["spec"]["containers"]
            .as_array()?
            .iter()
            .position(|c| c["name"] == container)?;
        proc::running_container(&self.run.join("c"), &format!("{uid}-c{index}-"))
    }
}

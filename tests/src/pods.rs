//! Real workloads on test agents: the busybox test image, manifests dropped into an agent's
//! watched directory, the agent's API answers as JSON, and the cluster-wide pod list.

use crate::agent::{Agent, skiff_bin};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The reference the test image archive carries.
pub const TEST_IMAGE: &str = "skiff.local/busybox:latest";

/// The busybox test image as an OCI archive: `SKIFF_TEST_IMAGE` when set, else
/// `target/tmp/skiff-busybox-test-image.tar` (shared with the agent's tests), built by
/// `skiff dev build-test-image` when missing.
pub fn test_image_archive() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_TEST_IMAGE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SKIFF_TEST_IMAGE={} does not exist", p.display());
        }
        return Ok(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    let path = dir.join("skiff-busybox-test-image.tar");
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    // Each builder writes its own temp name, then renames into place.
    let tmp = dir.join(format!(
        "skiff-busybox-test-image.{}.tmp",
        std::process::id()
    ));
    let out = Command::new(skiff_bin()?)
        .args(["dev", "build-test-image", "--out"])
        .arg(&tmp)
        .output()
        .context("run skiff dev build-test-image")?;
    if !out.status.success() {
        bail!(
            "skiff dev build-test-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// One pod of `get pods -A -o json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub phase: String,
    pub ip: Option<String>,
    /// `Kind/name` of the owner, if any.
    pub owner: Option<String>,
    pub deleting: bool,
    pub restarts: u64,
}

/// Parses a `kind: List` of pods.
pub fn parse_pods(list: &Value) -> Result<Vec<PodRow>> {
    let items = list["items"].as_array().context("pod list without items")?;
    items
        .iter()
        .map(|p| {
            let meta = &p["metadata"];
            let owner = meta["ownerReferences"]
                .as_array()
                .and_then(|o| o.first())
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap_or(""),
                        o["name"].as_str().unwrap_or("")
                    )
                });
            Ok(PodRow {
                namespace: meta["namespace"].as_str().unwrap_or("default").into(),
                name: meta["name"].as_str().context("pod without name")?.into(),
                uid: meta["uid"].as_str().unwrap_or("").into(),
                node: p["spec"]["nodeName"].as_str().unwrap_or("").into(),
                phase: p["status"]["phase"].as_str().unwrap_or("").into(),
                ip: p["status"]["podIP"].as_str().map(str::to_string),
                owner,
                deleting: !meta["deletionTimestamp"].is_null(),
                restarts: p["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["restartCount"].as_u64())
                    .sum(),
            })
        })
        .collect()
}

impl Agent {
    /// One request on the API socket (a JSON line each way); the reply's value.
    pub fn api(&self, request: &Value) -> Result<Value> {
        let mut stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("connect {}", self.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stream.write_all(&line)?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply)?;
        let reply: Value = serde_json::from_str(&reply)
            .with_context(|| format!("api reply from {}: {reply:?}", self.name))?;
        if reply["type"] != "ok" {
            bail!("api error from {}: {}", self.name, reply["message"]);
        }
        Ok(reply["value"].clone())
    }

    /// `skiff status` as JSON (leader, term, nodes, workloads).
    pub fn status(&self) -> Result<Value> {
        self.api(&serde_json::json!({ "op": "status" }))
    }

    /// `skiff get KIND -A -o json` (`name` narrows to one object).
    pub fn get_all(&self, kind: &str) -> Result<Value> {
        self.api(&serde_json::json!({
            "op": "get", "kind": kind, "name": null, "namespace": null, "all_namespaces": true,
        }))
    }

    /// Every pod of the cluster as this node lists it (`get pods -A -o json`).
    pub fn pods(&self) -> Result<Vec<PodRow>> {
        parse_pods(&self.get_all("pods")?)
    }

    /// Imports the test image into this agent's store.
    pub fn import_test_image(&self) -> Result<()> {
        let archive = test_image_archive()?;
        self.cli(&["image", "import", &archive.display().to_string()])?;
        Ok(())
    }

    /// Writes a manifest into the watched directory (temp file beside it, then rename).
    pub fn write_manifest(&self, file: &str, yaml: &str) -> Result<()> {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, self.dir.join("manifests").join(file))?;
        Ok(())
    }

    pub fn remove_manifest(&self, file: &str) -> Result<()> {
        std::fs::remove_file(self.dir.join("manifests").join(file))
            .with_context(|| format!("remove manifest {file} of {}", self.name))
    }
}

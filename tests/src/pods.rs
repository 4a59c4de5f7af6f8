//! Real workloads on test agents: the busybox test image, manifests dropped into an agent's
//! watched directory, the agent's API answers as JSON, and the cluster-wide pod list.

use crate::agent::{Agent, skiff_bin};
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use skiff_test_support::image::TEST_IMAGE;

/// The busybox test image as an OCI archive: `SKIFF_TEST_IMAGE` when set, else built once into
/// `target/tmp` (see `skiff_test_support::image`).
pub fn test_image_archive() -> Result<PathBuf> {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    skiff_test_support::image::test_image_archive(&skiff_bin()?, &cache)
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
        skiff_test_support::api::request(&self.socket, request, Duration::from_secs(10))
            .with_context(|| format!("agent {}", self.name))
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

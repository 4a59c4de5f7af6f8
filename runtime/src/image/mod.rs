//! Images: a content store (blobs by digest, metadata in the node's redb database), archive
//! import (OCI and docker archives), registry pull with resume, and layer unpack into overlayfs
//! lowerdirs shared by every image and container on the node.
//!
//! Code map: `store.rs` (the [`ImageStore`] facade), `archive.rs` (import), `pull.rs`
//! (registry), `unpack/` (tar -> directory with overlayfs whiteouts), `blobs.rs`
//! (content-addressed files), `records.rs` (redb tables `image_refs`, `image_layers`),
//! `manifest.rs` (JSON documents), [`test_image`] (the project's deterministic busybox test
//! image), and, behind the `testing` feature, `testing.rs` (a real `docker-registry` on
//! 127.0.0.1 for tests).
//!
//! On-disk layout under the store root: `blobs/sha256/<hex>`, `blobs/partial/<hex>` (resumable
//! downloads), `blobs/tmp/`, `layers/<diff_id hex>/` (one unpacked layer each).

mod archive;
mod blobs;
mod digest;
mod error;
mod manifest;
mod pull;
mod records;
mod reference;
mod store;
pub mod test_image;
#[cfg(feature = "testing")]
pub mod testing;
mod unpack;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use digest::sha256_digest;
pub use error::ImageError;
pub use records::{SharedDb, shared};
pub use reference::normalize_reference;
pub use store::ImageStore;

/// An image known to the local store under one reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Normalized reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// Digest of the image manifest (for an index, the manifest of this node's platform).
    pub digest: String,
    /// Digest of the image config (the image id).
    pub id: String,
    pub config: ImageConfig,
    /// Uncompressed layer digests (diff_ids), bottom to top.
    pub layers: Vec<String>,
    /// Bytes of config and layer blobs as stored (compressed).
    pub size: u64,
}

/// The process defaults an image carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// `None` means `/`.
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; `None` means root.
    pub user: Option<String>,
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach registries during a pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback hosts always are.
    pub insecure_registries: Vec<String>,
    /// Basic auth per registry (`host` or `host:port`, as in the reference; `docker.io` for Hub).
    pub auth: BTreeMap<String, RegistryAuth>,
}

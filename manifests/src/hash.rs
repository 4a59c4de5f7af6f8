//! Stable content hashes: of any object (to notice "unchanged") and of a Deployment's pod
//! template (the `pod-template-hash`) of a Deployment or DaemonSet. Hashes are SHA-256 over the object's canonical JSON:
//! struct fields in declaration order, map keys sorted (every map is a `BTreeMap`), defaults
//! filled in, so key order and spelling of defaults in the manifest do not matter.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::object::Object;
use crate::model::workloads::{DaemonSet, Deployment, PodTemplate};

/// Hex characters of a pod template hash (like Kubernetes' `pod-template-hash` label).
pub const POD_TEMPLATE_HASH_LEN: usize = 10;
/// Hex characters of an object content hash.
pub const CONTENT_HASH_LEN: usize = 16;

/// Compact JSON of a model value.
pub(crate) fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Model types have string map keys only and no fallible Serialize impls, so this cannot fail.
    serde_json::to_vec(value).expect("model values always serialize to JSON")
}

fn hex_sha256<T: Serialize>(value: &T, len: usize) -> String {
    // The JSON goes straight into the hasher: no copy of the whole object is made (hashing a
    // thousand objects at once would otherwise leave the heap fragmented by their copies).
    let mut hasher = Sha256::new();
    serde_json::to_writer(&mut hasher, value).expect("model values always serialize to JSON");
    let digest = hasher.finalize();
    // Only the bytes shown are encoded: the text is kept with its object, without spare room.
    let mut text = hex::encode(&digest[..len.div_ceil(2).min(digest.len())]);
    text.truncate(len);
    text
}

impl Object {
    /// 16 hex characters that change whenever anything in the object changes.
    pub fn content_hash(&self) -> String {
        hex_sha256(self, CONTENT_HASH_LEN)
    }
}

impl PodTemplate {
    /// 10 hex characters over the template's labels, annotations and pod spec only.
    pub fn hash(&self) -> String {
        hex_sha256(self, POD_TEMPLATE_HASH_LEN)
    }
}

impl Deployment {
    /// The template hash: unchanged by replicas, strategy or the Deployment's own metadata.
    pub fn pod_template_hash(&self) -> String {
        self.spec.template.hash()
    }
}

impl crate::model::jobs::Job {
    /// The template hash: a Job's pods are made from this template (a new template starts
    /// the Job over).
    pub fn pod_template_hash(&self) -> String {
        self.spec.template.hash()
    }
}

impl DaemonSet {
    /// The template hash: unchanged by the DaemonSet's own metadata.
    pub fn pod_template_hash(&self) -> String {
        self.spec.template.hash()
    }
}

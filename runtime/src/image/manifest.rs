//! The JSON documents of an image (manifest, index, config, docker archive manifest.json), read
//! leniently: only the fields skiff uses, accepting both OCI and Docker media types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ImageConfig, ImageError};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Media types a registry may answer a manifest request with.
pub(crate) const ACCEPTED_MANIFESTS: &[&str] =
    &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Annotation holding the full image name (containerd, skiff's test image).
pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation holding the reference name given to `skopeo copy ... oci-archive:FILE:NAME`.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// A manifest or an index: which one is decided by `is_index`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ManifestDoc {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl ManifestDoc {
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Self, ImageError> {
        let doc: ManifestDoc =
            serde_json::from_slice(bytes).map_err(|e| ImageError::json(what, e))?;
        if doc.schema_version != 2 {
            return Err(ImageError::Manifest {
                what: what.to_string(),
                reason: format!("unsupported schemaVersion {}", doc.schema_version),
            });
        }
        Ok(doc)
    }

    pub(crate) fn is_index(&self) -> bool {
        matches!(
            self.media_type.as_deref(),
            Some(OCI_INDEX) | Some(DOCKER_LIST)
        ) || (self.config.is_none() && !self.manifests.is_empty())
    }

    /// The image manifest entry for the platform this node runs.
    pub(crate) fn pick_platform(&self, what: &str) -> Result<&Descriptor, ImageError> {
        let arch = host_architecture();
        self.manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .ok_or_else(|| ImageError::Manifest {
                what: what.to_string(),
                reason: format!("image index has no linux/{arch} manifest"),
            })
    }

    /// Config and layer descriptors of an image manifest.
    pub(crate) fn image_parts(
        &self,
        what: &str,
    ) -> Result<(&Descriptor, &[Descriptor]), ImageError> {
        let config = self.config.as_ref().ok_or_else(|| ImageError::Manifest {
            what: what.to_string(),
            reason: "manifest has no config descriptor".into(),
        })?;
        Ok((config, &self.layers))
    }
}

/// The image config blob: process defaults and the uncompressed layer digests.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConfigDoc {
    #[serde(default)]
    pub config: Option<ProcessDefaults>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ProcessDefaults {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigDoc {
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::json(what, e))
    }

    pub(crate) fn image_config(&self) -> ImageConfig {
        let defaults = self.config.clone().unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: defaults.entrypoint.unwrap_or_default(),
            cmd: defaults.cmd.unwrap_or_default(),
            env: defaults.env.unwrap_or_default(),
            working_dir: non_empty(defaults.working_dir),
            user: non_empty(defaults.user),
        }
    }
}

/// One image in a docker archive's `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// The OCI name of the architecture this binary was built for.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_defaults_with_nulls() {
        let config = br#"{"architecture":"amd64","os":"linux",
            "config":{"Env":["PATH=/bin"],"Entrypoint":null,"Cmd":["sh"],"WorkingDir":"","User":"65534"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let doc = ConfigDoc::parse(config, "config").unwrap();
        assert_eq!(doc.rootfs.diff_ids, ["sha256:aa"]);
        let c = doc.image_config();
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.env, ["PATH=/bin"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("65534"));
    }

    #[test]
    fn picks_host_platform_from_index() {
        let arch = host_architecture();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:01","size":1,"platform":{{"os":"linux","architecture":"s390x-not"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:02","size":1,"platform":{{"os":"windows","architecture":"{arch}"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:03","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#
        );
        let doc = ManifestDoc::parse(index.as_bytes(), "index").unwrap();
        assert!(doc.is_index());
        assert_eq!(doc.pick_platform("index").unwrap().digest, "sha256:03");
    }
}

//! Validated pod volumes: emptyDir, hostPath, configMap and secret sources, key projections
//! and file modes. Serialized in Kubernetes shape.

use serde::Serialize;

use super::pod::is_false;
use crate::quantity::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub name: String,
    #[serde(flatten)]
    pub source: VolumeSource,
}

/// Exactly one source per volume, written as `emptyDir: {...}`, `hostPath: {...}`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeSource {
    EmptyDir(EmptyDirVolume),
    HostPath(HostPathVolume),
    ConfigMap(ConfigMapVolume),
    Secret(SecretVolume),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolume {
    #[serde(skip_serializing_if = "StorageMedium::is_default")]
    pub medium: StorageMedium,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

impl EmptyDirVolume {
    pub fn size_limit_bytes(&self) -> Option<u64> {
        self.size_limit.as_ref().and_then(|q| q.to_units().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StorageMedium {
    /// Node disk (written as `""` or left out).
    #[serde(rename = "")]
    Default,
    /// tmpfs.
    Memory,
}

impl StorageMedium {
    fn is_default(&self) -> bool {
        *self == StorageMedium::Default
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPathVolume {
    pub path: String,
    #[serde(rename = "type", skip_serializing_if = "HostPathType::is_unset")]
    pub type_: HostPathType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HostPathType {
    /// No check before mounting (written as `""` or left out).
    #[serde(rename = "")]
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    pub(crate) const ALL: [(&'static str, HostPathType); 8] = [
        ("", HostPathType::Unset),
        ("DirectoryOrCreate", HostPathType::DirectoryOrCreate),
        ("Directory", HostPathType::Directory),
        ("FileOrCreate", HostPathType::FileOrCreate),
        ("File", HostPathType::File),
        ("Socket", HostPathType::Socket),
        ("CharDevice", HostPathType::CharDevice),
        ("BlockDevice", HostPathType::BlockDevice),
    ];

    fn is_unset(&self) -> bool {
        *self == HostPathType::Unset
    }
}

/// File mode written as a decimal integer (0644 octal = 420), default 0644.
pub const DEFAULT_VOLUME_MODE: u32 = 0o644;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolume {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    pub default_mode: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume {
    pub secret_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    pub default_mode: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// Projects one key to a relative file path inside the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

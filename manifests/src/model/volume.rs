//! Validated pod volumes: emptyDir, hostPath, configMap, secret, downwardAPI and projected
//! sources, key projections and file modes. Serialized in Kubernetes shape.

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
    #[serde(rename = "downwardAPI")]
    DownwardApi(DownwardApiVolume),
    Projected(ProjectedVolume),
}

impl VolumeSource {
    /// Whether the volume's files come from objects or the pod's own fields (written by the
    /// agent, replaced in one step when what they hold changes).
    pub fn is_projection(&self) -> bool {
        matches!(
            self,
            VolumeSource::ConfigMap(_)
                | VolumeSource::Secret(_)
                | VolumeSource::DownwardApi(_)
                | VolumeSource::Projected(_)
        )
    }
}

/// `downwardAPI`: files holding the pod's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiVolume {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardApiFile>,
    pub default_mode: u32,
}

/// One file of a downwardAPI volume (or projection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiFile {
    pub path: String,
    #[serde(flatten)]
    pub source: DownwardApiSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownwardApiSource {
    /// `fieldRef`.
    Field(VolumeField),
    /// `resourceFieldRef` (its `containerName` is required in a volume).
    Resource(crate::model::pod::ResourceFieldRef),
}

// By hand: a derived externally tagged enum becomes a YAML tag in YAML output.
impl Serialize for DownwardApiSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            DownwardApiSource::Field(field) => map.serialize_entry(
                "fieldRef",
                &std::collections::BTreeMap::from([("fieldPath", field.path())]),
            )?,
            DownwardApiSource::Resource(r) => map.serialize_entry("resourceFieldRef", r)?,
        }
        map.end()
    }
}

/// A pod field a downwardAPI file can hold (Kubernetes allows fewer than in the environment:
/// no addresses or node name, but the whole label and annotation maps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeField {
    Name,
    Namespace,
    Uid,
    /// Every label, one `key="value"` line each, sorted by key.
    Labels,
    Annotations,
    Label(String),
    Annotation(String),
}

impl VolumeField {
    /// The field path as a manifest writes it.
    pub fn path(&self) -> String {
        match self {
            VolumeField::Name => "metadata.name".into(),
            VolumeField::Namespace => "metadata.namespace".into(),
            VolumeField::Uid => "metadata.uid".into(),
            VolumeField::Labels => "metadata.labels".into(),
            VolumeField::Annotations => "metadata.annotations".into(),
            VolumeField::Label(k) => format!("metadata.labels['{k}']"),
            VolumeField::Annotation(k) => format!("metadata.annotations['{k}']"),
        }
    }

    /// The fields Kubernetes allows in a downwardAPI volume.
    pub fn parse(path: &str) -> Option<VolumeField> {
        let keyed = |prefix: &str| {
            path.strip_prefix(prefix)?
                .strip_suffix("']")
                .filter(|k| !k.is_empty())
                .map(str::to_string)
        };
        Some(match path {
            "metadata.name" => VolumeField::Name,
            "metadata.namespace" => VolumeField::Namespace,
            "metadata.uid" => VolumeField::Uid,
            "metadata.labels" => VolumeField::Labels,
            "metadata.annotations" => VolumeField::Annotations,
            _ => {
                if let Some(k) = keyed("metadata.labels['") {
                    VolumeField::Label(k)
                } else {
                    VolumeField::Annotation(keyed("metadata.annotations['")?)
                }
            }
        })
    }
}

/// `projected`: one directory combining ConfigMap, Secret and downwardAPI files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedVolume {
    pub sources: Vec<Projection>,
    pub default_mode: u32,
}

/// One source of a projected volume, written as `configMap: {...}`, `secret: {...}` or
/// `downwardAPI: {...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Projection {
    ConfigMap(ObjectProjection),
    Secret(ObjectProjection),
    #[serde(rename = "downwardAPI")]
    DownwardApi(DownwardApiProjection),
}

/// A ConfigMap or Secret in a projected volume (both are named by `name` there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectProjection {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "is_false")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownwardApiProjection {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardApiFile>,
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

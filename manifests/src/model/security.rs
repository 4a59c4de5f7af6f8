//! Validated `securityContext` of a pod and of a container. Every field here is enforced by the
//! agent; a field skiff cannot enforce is refused by validation, never dropped.

use serde::Serialize;

/// Every Linux capability name skiff knows, without the `CAP_` prefix.
pub const CAPABILITY_NAMES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETGID",
    "SETFCAP",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// `spec.securityContext`: defaults for every container of the pod, plus pod-wide groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Added to every container's groups; emptyDir volumes are owned by this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

impl PodSecurityContext {
    pub fn is_empty(&self) -> bool {
        *self == PodSecurityContext::default()
    }
}

/// `containers[].securityContext`; a field set here wins over the pod's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Capabilities::is_empty")]
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

impl SecurityContext {
    pub fn is_empty(&self) -> bool {
        *self == SecurityContext::default()
    }
}

/// Capability names, upper case and without `CAP_` (`NET_ADMIN`), or `ALL`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

impl Capabilities {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.drop.is_empty()
    }
}

/// Which seccomp filter a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompProfile {
    /// skiff's default filter (also what a container gets when nothing is set).
    RuntimeDefault,
    /// No filter at all.
    Unconfined,
    /// A profile file, relative to the agent's `<data-dir>/seccomp/` directory.
    Localhost(String),
}

// By hand: Kubernetes writes `{type: Localhost, localhostProfile: ...}`.
impl Serialize for SeccompProfile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            SeccompProfile::RuntimeDefault => map.serialize_entry("type", "RuntimeDefault")?,
            SeccompProfile::Unconfined => map.serialize_entry("type", "Unconfined")?,
            SeccompProfile::Localhost(file) => {
                map.serialize_entry("type", "Localhost")?;
                map.serialize_entry("localhostProfile", file)?;
            }
        }
        map.end()
    }
}

//! `ContainerSpec`: everything the agent decides about one container, validated before use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ContainerError;

/// Longest container id accepted; ids name directories and the libcontainer state entry.
pub const MAX_ID_LEN: usize = 64;

/// What the agent wants run. Serialized into the container's state dir for the shim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Short unique id: `[A-Za-z0-9_.-]`, not starting with `.`, at most [`MAX_ID_LEN`] bytes.
    pub id: String,
    /// Unpacked image layers, bottom to top, whiteouts already in overlayfs form.
    pub layers: Vec<PathBuf>,
    pub process: ProcessSpec,
    pub hostname: Option<String>,
    pub mounts: Vec<BindMount>,
    pub resources: Resources,
    /// `Some(/run/netns/<name>)` joins that network namespace, `None` uses the host network.
    pub network_namespace: Option<PathBuf>,
    /// Absolute cgroup path `/<parent>/<pod>/<container>`.
    pub cgroups_path: PathBuf,
    pub log: LogConfig,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Absent in specs written before it existed: those get the safe default.
    #[serde(default)]
    pub security: SecuritySpec,
}

/// How the container process is confined. The default is skiff's safe default: the default
/// capability set, the default seccomp filter, masked and read-only `/proc` paths, a writable
/// rootfs and privilege escalation allowed (Kubernetes' defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecuritySpec {
    /// Every capability, no masked or read-only paths, host devices (the seccomp filter is
    /// `seccomp`'s to say).
    pub privileged: bool,
    /// Capability names without `CAP_` (`NET_ADMIN`) or `ALL`. `ALL` applies first, then the
    /// single names; a name in both lists is dropped (containerd's rule).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    /// `allowPrivilegeEscalation: false`: the process and its children never gain privileges.
    pub no_new_privileges: bool,
    pub read_only_rootfs: bool,
    pub seccomp: Seccomp,
    /// Groups added to the process's own (supplementalGroups, fsGroup).
    pub supplemental_groups: Vec<u32>,
}

/// The seccomp filter of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// skiff's default filter (see `container::seccomp`), adjusted to the granted capabilities.
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
    /// A profile read by the agent (OCI `linux.seccomp` JSON).
    Profile(Box<oci_spec::runtime::LinuxSeccomp>),
}

/// The main process of the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Full argv, already merged from image entrypoint/cmd and manifest command/args.
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub cwd: String,
    /// `uid`, `uid:gid`, `name`, `name:group`; empty means root. Names resolve against the
    /// rootfs `/etc/passwd` and `/etc/group`.
    pub user: String,
}

/// A bind mount into the container (configMap, secret, emptyDir, hostPath volumes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Cgroup limits; `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in millicores, applied as a CFS quota over [`CFS_PERIOD_US`].
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores, applied as cpu shares (1000m = 1024 shares).
    pub cpu_request_millis: Option<u64>,
    pub pids_limit: Option<i64>,
    /// Limit on the processes of the whole pod, written to the pod's cgroup (`pids.max`).
    #[serde(default)]
    pub pod_pids_limit: Option<i64>,
}

/// Where the shim writes the container's stdout/stderr (CRI log format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate when the live file would grow past this many bytes.
    pub max_size_bytes: u64,
    /// Files kept in total, the live one included (`path`, `path.1`, ...); at least 1.
    pub max_files: u32,
    /// Stop writing (and count what is dropped) while the log's filesystem has less free space
    /// than this; 0: no floor.
    #[serde(default)]
    pub min_free_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            path: PathBuf::new(),
            max_size_bytes: 10 * 1024 * 1024,
            max_files: 5,
            min_free_bytes: 0,
        }
    }
}

/// CFS period used for CPU limits.
pub const CFS_PERIOD_US: u64 = 100_000;

impl Resources {
    /// CFS quota in microseconds for the CPU limit, at least 1000 (the kernel minimum).
    pub fn cfs_quota_us(&self) -> Option<i64> {
        self.cpu_limit_millis.map(|m| {
            let quota = m.saturating_mul(CFS_PERIOD_US) / 1000;
            i64::try_from(quota.max(1000)).unwrap_or(i64::MAX)
        })
    }

    /// cpu.shares for the CPU request, at least 2 (the kernel minimum).
    pub fn cpu_shares(&self) -> Option<u64> {
        self.cpu_request_millis
            .map(|m| (m.saturating_mul(1024) / 1000).max(2))
    }
}

/// Checks an id: non-empty, short, `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn validate_id(id: &str) -> Result<(), ContainerError> {
    let bad = |reason: &str| ContainerError::InvalidSpec {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(bad("id must be 1 to 64 characters"));
    }
    if id.starts_with('.') {
        return Err(bad("id must not start with '.'"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(bad("id may only use letters, digits, '_', '-' and '.'"));
    }
    Ok(())
}

impl ContainerSpec {
    /// Checks what the shim cannot recover from later, reporting the first problem.
    pub fn validate(&self) -> Result<(), ContainerError> {
        validate_id(&self.id)?;
        let bad = |reason: String| ContainerError::InvalidSpec {
            id: self.id.clone(),
            reason,
        };
        if self.layers.is_empty() {
            return Err(bad("at least one rootfs layer is required".into()));
        }
        if let Some(layer) = self.layers.iter().find(|l| !l.is_absolute()) {
            return Err(bad(format!(
                "layer path {} must be absolute",
                layer.display()
            )));
        }
        if self.process.args.is_empty() {
            return Err(bad("process args must not be empty".into()));
        }
        if !self.cgroups_path.is_absolute() || self.cgroups_path.parent().is_none() {
            return Err(bad(format!(
                "cgroups path {:?} must be absolute like /<parent>/<pod>/<container>",
                self.cgroups_path
            )));
        }
        if !self.log.path.is_absolute() {
            return Err(bad(format!(
                "log path {:?} must be absolute",
                self.log.path
            )));
        }
        for m in &self.mounts {
            if !m.source.is_absolute() || !m.destination.is_absolute() {
                return Err(bad(format!(
                    "mount {:?} -> {:?}: source and destination must be absolute",
                    m.source, m.destination
                )));
            }
        }
        if let Some(ns) = &self.network_namespace
            && !ns.is_absolute()
        {
            return Err(bad(format!(
                "network namespace path {ns:?} must be absolute"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "web-1.app_2", &"x".repeat(64)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65), ".."] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_conversions() {
        let r = Resources {
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            ..Default::default()
        };
        assert_eq!(r.cfs_quota_us(), Some(50_000));
        assert_eq!(r.cpu_shares(), Some(256));
        let tiny = Resources {
            cpu_limit_millis: Some(1),
            cpu_request_millis: Some(1),
            ..Default::default()
        };
        assert_eq!(tiny.cfs_quota_us(), Some(1000));
        assert_eq!(tiny.cpu_shares(), Some(2));
    }
}

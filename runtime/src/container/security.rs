//! Applies a container's [`SecuritySpec`] to its OCI config: capabilities, no_new_privs, the
//! seccomp filter, masked and read-only paths, a read-only rootfs, and for privileged
//! containers every capability, no masked paths, a writable /sys and the host's devices (the
//! agent also turns the filter off for them unless a profile was asked for).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, Spec,
};

use super::oci::default_capabilities;
use super::seccomp;
use super::spec::{Seccomp, SecuritySpec};

/// Every capability with its bit number in the kernel's capability sets.
const CAPABILITY_BITS: [(Capability, u32); 41] = {
    use Capability::*;
    [
        (Chown, 0),
        (DacOverride, 1),
        (DacReadSearch, 2),
        (Fowner, 3),
        (Fsetid, 4),
        (Kill, 5),
        (Setgid, 6),
        (Setuid, 7),
        (Setpcap, 8),
        (LinuxImmutable, 9),
        (NetBindService, 10),
        (NetBroadcast, 11),
        (NetAdmin, 12),
        (NetRaw, 13),
        (IpcLock, 14),
        (IpcOwner, 15),
        (SysModule, 16),
        (SysRawio, 17),
        (SysChroot, 18),
        (SysPtrace, 19),
        (SysPacct, 20),
        (SysAdmin, 21),
        (SysBoot, 22),
        (SysNice, 23),
        (SysResource, 24),
        (SysTime, 25),
        (SysTtyConfig, 26),
        (Mknod, 27),
        (Lease, 28),
        (AuditWrite, 29),
        (AuditControl, 30),
        (Setfcap, 31),
        (MacOverride, 32),
        (MacAdmin, 33),
        (Syslog, 34),
        (WakeAlarm, 35),
        (BlockSuspend, 36),
        (AuditRead, 37),
        (Perfmon, 38),
        (Bpf, 39),
        (CheckpointRestore, 40),
    ]
};

/// Every capability the kernel knows (what `ALL` and `privileged` ask for).
pub fn all_capabilities() -> Vec<Capability> {
    CAPABILITY_BITS.iter().map(|(cap, _)| *cap).collect()
}

fn bit(cap: Capability) -> u32 {
    CAPABILITY_BITS
        .iter()
        .find(|(c, _)| *c == cap)
        .map_or(63, |(_, bit)| *bit)
}

/// What the node can hand to a container.
#[derive(Clone, Debug)]
pub struct HostSecurity {
    /// The shim's capability bounding set (bit n = capability n): no container gets more.
    pub bounding: u64,
    /// Host devices, for privileged containers.
    pub devices: Vec<LinuxDevice>,
}

impl HostSecurity {
    /// Everything allowed, no devices (tests, and hosts where nothing can be read).
    pub fn unrestricted() -> HostSecurity {
        HostSecurity {
            bounding: u64::MAX,
            devices: Vec::new(),
        }
    }

    /// This process's bounding set, and /dev's devices when `privileged`.
    pub fn of_this_process(privileged: bool) -> HostSecurity {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let bounding = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(u64::MAX);
        HostSecurity {
            bounding,
            devices: if privileged {
                host_devices(Path::new("/dev"))
            } else {
                Vec::new()
            },
        }
    }
}

/// Why a container's security settings cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error(
        "capability {0:?} cannot be granted: this node's agent does not hold it (not in its bounding set)"
    )]
    NotHeld(String),
    #[error(transparent)]
    Spec(#[from] oci_spec::OciSpecError),
}

fn parse_capability(name: &str) -> Result<Capability, SecurityError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| SecurityError::UnknownCapability(name.to_string()))
}

/// The capability set: privileged gets all; otherwise the default set, then `ALL` in add or
/// drop, then single adds, then single drops (a name in both lists ends up dropped). Only what
/// the node holds (`bounding`) is granted: a capability added by name that the node lacks is an
/// error, the rest (`ALL`, privileged, defaults) is quietly limited to what the node has.
pub fn capabilities(
    security: &SecuritySpec,
    bounding: u64,
) -> Result<Vec<Capability>, SecurityError> {
    let held = |cap: &Capability| bounding & (1u64 << bit(*cap)) != 0;
    if security.privileged {
        return Ok(all_capabilities().into_iter().filter(held).collect());
    }
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    let mut caps = default_capabilities();
    if security.capabilities_add.iter().any(is_all) {
        caps = all_capabilities();
    }
    if security.capabilities_drop.iter().any(is_all) {
        caps.clear();
    }
    for name in security.capabilities_add.iter().filter(|n| !is_all(n)) {
        let cap = parse_capability(name)?;
        if !held(&cap) {
            return Err(SecurityError::NotHeld(name.clone()));
        }
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    for name in security.capabilities_drop.iter().filter(|n| !is_all(n)) {
        let cap = parse_capability(name)?;
        caps.retain(|c| *c != cap);
    }
    caps.retain(held);
    Ok(caps)
}

/// Writes the security settings into `oci` (built by `oci::build_oci_spec`).
pub fn apply(
    oci: &mut Spec,
    security: &SecuritySpec,
    host: &HostSecurity,
) -> Result<(), SecurityError> {
    let caps = capabilities(security, host.bounding)?;
    let set: oci_spec::runtime::Capabilities = caps.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()?;
    let mut process = oci.process().clone().unwrap_or_default();
    process.set_capabilities(Some(capabilities));
    // `Some(false)` is not the same as `None` to libcontainer: with `Some(_)` it loads the
    // seccomp filter after switching to the container user, which a non-root user without
    // no_new_privs is not allowed to do. `None` loads it first, while still privileged.
    process.set_no_new_privileges(security.no_new_privileges.then_some(true));
    oci.set_process(Some(process));

    if let Some(root) = oci.root().clone() {
        let mut root = root;
        root.set_readonly(Some(security.read_only_rootfs));
        oci.set_root(Some(root));
    }

    let mut linux = oci.linux().clone().unwrap_or_default();
    let filter = match &security.seccomp {
        Seccomp::Profile(profile) => Some((**profile).clone()),
        Seccomp::Unconfined => None,
        Seccomp::RuntimeDefault => Some(seccomp::default_profile(&caps)?),
    };
    linux.set_seccomp(filter);
    if security.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        linux.set_devices(Some(host.devices.clone()));
        if let Some(mut resources) = linux.resources().clone() {
            let allow_all = LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()?;
            resources.set_devices(Some(vec![allow_all]));
            linux.set_resources(Some(resources));
        }
        if let Some(mounts) = oci.mounts().clone() {
            let mounts = mounts
                .into_iter()
                .map(|mut m| {
                    if m.destination() == Path::new("/sys")
                        && let Some(options) = m.options().clone()
                    {
                        let options = options
                            .into_iter()
                            .map(|o| if o == "ro" { "rw".to_string() } else { o })
                            .collect();
                        m.set_options(Some(options));
                    }
                    m
                })
                .collect();
            oci.set_mounts(Some(mounts));
        }
    }
    oci.set_linux(Some(linux));
    Ok(())
}

/// Entries of /dev that are not host devices to hand over (libcontainer makes its own).
const NOT_HANDED_OVER: [&str; 10] = [
    "pts", "shm", "mqueue", "fd", "console", "ptmx", "tty", "stdin", "stdout", "stderr",
];

/// The character and block devices in `dev` and its direct subdirectories (`/dev/net/tun`),
/// for a privileged container. Unreadable entries are skipped.
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs: Vec<(PathBuf, PathBuf, usize)> =
        vec![(dev.to_path_buf(), PathBuf::from("/dev"), 0)];
    while let Some((dir, inside, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if depth == 0 && NOT_HANDED_OVER.contains(&name) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let kind = meta.file_type();
            let typ = if kind.is_char_device() {
                LinuxDeviceType::C
            } else if kind.is_block_device() {
                LinuxDeviceType::B
            } else {
                if kind.is_dir() && depth == 0 {
                    dirs.push((entry.path(), inside.join(name), depth + 1));
                }
                continue;
            };
            let rdev = meta.rdev();
            let device = LinuxDeviceBuilder::default()
                .path(inside.join(name))
                .typ(typ)
                .major(i64::from(nix::sys::stat::major(rdev) as u32))
                .minor(i64::from(nix::sys::stat::minor(rdev) as u32))
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build();
            if let Ok(device) = device {
                out.push(device);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;

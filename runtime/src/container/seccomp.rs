//! skiff's default seccomp filter (Kubernetes' `RuntimeDefault`) and the reading of Localhost
//! profiles.
//!
//! The default filter is a denylist: every syscall is allowed except those below, which fail
//! with EPERM. They are the calls that reach kernel state a container does not own (modules,
//! kexec, reboot, the clock, keyrings, swap, accounting, quotas), that create or enter
//! namespaces or mounts (the way most container escapes start), or that are obsolete or mostly
//! used in exploits (userfaultfd, bpf, perf events, file handles). A group is allowed again when
//! the container holds the capability that governs it, so `capabilities.add: [SYS_TIME]` can
//! set the clock, as with Docker's and containerd's default profiles. `clone` with a
//! `CLONE_NEW*` flag is refused the same way; `clone3` answers ENOSYS (its flags live in memory
//! a filter cannot read), so C libraries fall back to `clone`. ptrace, process_vm_* and kcmp
//! stay allowed: since Linux 4.8 seccomp cannot be bypassed through ptrace.
//!
//! The rules apply to every ABI of the machine (x86-64, i386 and x32 on x86-64; arm64 and arm on
//! arm64), so 32-bit syscalls do not slip past them.

pub use oci_spec::runtime::LinuxSeccomp;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// A group of syscalls the default filter refuses, unless the container holds one of `unless`.
pub struct BlockedGroup {
    pub syscalls: &'static [&'static str],
    pub unless: &'static [Capability],
}

/// The denylist of the default filter.
pub const BLOCKED: &[BlockedGroup] = &[
    BlockedGroup {
        // Keyrings are not namespaced.
        syscalls: &["add_key", "keyctl", "request_key"],
        unless: &[],
    },
    BlockedGroup {
        // Obsolete interfaces, only useful to exploits.
        syscalls: &[
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
        ],
        unless: &[],
    },
    BlockedGroup {
        syscalls: &[
            "create_module",
            "init_module",
            "finit_module",
            "delete_module",
            "query_module",
            "get_kernel_syms",
        ],
        unless: &[Capability::SysModule],
    },
    BlockedGroup {
        syscalls: &["kexec_load", "kexec_file_load", "reboot"],
        unless: &[Capability::SysBoot],
    },
    BlockedGroup {
        syscalls: &["settimeofday", "stime", "clock_settime", "clock_adjtime"],
        unless: &[Capability::SysTime],
    },
    BlockedGroup {
        syscalls: &["acct"],
        unless: &[Capability::SysPacct],
    },
    BlockedGroup {
        syscalls: &["ioperm", "iopl"],
        unless: &[Capability::SysRawio],
    },
    BlockedGroup {
        syscalls: &["syslog"],
        unless: &[Capability::Syslog, Capability::SysAdmin],
    },
    BlockedGroup {
        syscalls: &["open_by_handle_at", "name_to_handle_at"],
        unless: &[Capability::DacReadSearch],
    },
    BlockedGroup {
        syscalls: &["bpf"],
        unless: &[Capability::Bpf, Capability::SysAdmin],
    },
    BlockedGroup {
        syscalls: &["perf_event_open"],
        unless: &[Capability::Perfmon, Capability::SysAdmin],
    },
    BlockedGroup {
        syscalls: &["userfaultfd"],
        unless: &[Capability::SysPtrace],
    },
    BlockedGroup {
        // Namespaces and mounts.
        syscalls: &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "swapon",
            "swapoff",
            "lookup_dcookie",
            "fanotify_init",
        ],
        unless: &[Capability::SysAdmin],
    },
];

/// `CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWUSER`,
/// `CLONE_NEWPID`, `CLONE_NEWNET`: `clone` with any of them is refused without SYS_ADMIN.
pub const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const ENOSYS: u32 = 38;

/// The ABIs a filter must cover on this machine.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn deny(names: Vec<String>) -> Result<LinuxSyscall, oci_spec::OciSpecError> {
    LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActErrno)
        .build()
}

/// The default filter for a container holding `caps`.
pub fn default_profile(caps: &[Capability]) -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let holds = |unless: &[Capability]| unless.iter().any(|c| caps.contains(c));
    let mut names: Vec<String> = Vec::new();
    for group in BLOCKED.iter().filter(|g| !holds(g.unless)) {
        names.extend(group.syscalls.iter().map(|s| s.to_string()));
    }
    let mut syscalls = vec![deny(names)?];
    if !holds(&[Capability::SysAdmin]) {
        for flag in CLONE_NAMESPACE_FLAGS {
            // (flags & flag) == flag; mask and datum are equal, so the rule reads the same
            // whichever of `value` / `valueTwo` a runtime takes as the mask.
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()?;
            syscalls.push(
                LinuxSyscallBuilder::default()
                    .names(vec!["clone".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .args(vec![arg])
                    .build()?,
            );
        }
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone3".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(ENOSYS)
                .build()?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
}

/// Reads a Localhost profile: OCI `linux.seccomp` JSON (`defaultAction`, `architectures`,
/// `syscalls[].names/action/errnoRet/args`), which is also the shape of Docker's profiles.
pub fn parse_profile(bytes: &[u8]) -> Result<LinuxSeccomp, ProfileError> {
    let profile: LinuxSeccomp = serde_json::from_slice(bytes).map_err(ProfileError::NotAProfile)?;
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify
        || profile
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify)
    {
        return Err(ProfileError::Notify);
    }
    Ok(profile)
}

/// A Localhost seccomp profile skiff cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("not a seccomp profile (OCI linux.seccomp JSON with defaultAction and syscalls): {0}")]
    NotAProfile(#[source] serde_json::Error),
    #[error("SCMP_ACT_NOTIFY is not supported (skiff runs no seccomp agent)")]
    Notify,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(profile: &LinuxSeccomp) -> Vec<String> {
        profile.syscalls().as_ref().unwrap()[0].names().clone()
    }

    #[test]
    fn default_profile_denies_the_dangerous_calls() {
        let profile = default_profile(&crate::container::oci::default_capabilities()).unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let names = denied(&profile);
        for call in [
            "kexec_load",
            "open_by_handle_at",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "keyctl",
            "add_key",
            "request_key",
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "reboot",
            "clock_settime",
        ] {
            assert!(names.iter().any(|n| n == call), "{call} is not denied");
        }
        for allowed in ["ptrace", "read", "clone", "chown", "execve"] {
            assert!(!names.iter().any(|n| n == allowed), "{allowed} is denied");
        }
        let syscalls = profile.syscalls().as_ref().unwrap();
        let clone_rules = syscalls.iter().filter(|s| s.names() == &["clone"]).count();
        assert_eq!(clone_rules, CLONE_NAMESPACE_FLAGS.len());
        let clone3 = syscalls.iter().find(|s| s.names() == &["clone3"]).unwrap();
        assert_eq!(clone3.errno_ret(), Some(ENOSYS));
        assert!(
            profile
                .architectures()
                .as_ref()
                .is_some_and(|a| !a.is_empty())
        );
    }

    #[test]
    fn a_capability_allows_its_group_again() {
        let mut caps = crate::container::oci::default_capabilities();
        caps.push(Capability::SysTime);
        caps.push(Capability::SysAdmin);
        let profile = default_profile(&caps).unwrap();
        let names = denied(&profile);
        for allowed in ["clock_settime", "settimeofday", "mount", "unshare", "bpf"] {
            assert!(
                !names.iter().any(|n| n == allowed),
                "{allowed} still denied"
            );
        }
        assert!(names.iter().any(|n| n == "kexec_load"));
        assert!(names.iter().any(|n| n == "keyctl"));
        let syscalls = profile.syscalls().as_ref().unwrap();
        assert!(!syscalls.iter().any(|s| s.names() == &["clone"]));
        assert!(!syscalls.iter().any(|s| s.names() == &["clone3"]));
    }

    #[test]
    fn profiles_are_parsed_or_explained() {
        let good = br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let profile = parse_profile(good).unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        let bad = parse_profile(b"{\"defaultAction\": \"SCMP_ACT_MAYBE\"}")
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("not a seccomp profile"), "{bad}");
        let notify = br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#;
        assert!(
            parse_profile(notify)
                .unwrap_err()
                .to_string()
                .contains("SCMP_ACT_NOTIFY")
        );
    }
}

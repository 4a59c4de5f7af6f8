//! The OCI config produced for each security setting.

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxSeccompAction, Spec};

use super::*;
use crate::container::oci::build_oci_spec;
use crate::container::spec::{ContainerSpec, ProcessSpec, Resources};
use crate::container::user::ResolvedUser;

fn spec_with(security: SecuritySpec) -> ContainerSpec {
    ContainerSpec {
        id: "c1".into(),
        layers: vec!["/l".into()],
        process: ProcessSpec {
            args: vec!["sh".into()],
            ..Default::default()
        },
        resources: Resources {
            pids_limit: Some(4096),
            pod_pids_limit: Some(4096),
            ..Default::default()
        },
        cgroups_path: "/skiff/pod/c1".into(),
        security,
        ..Default::default()
    }
}

fn build(security: SecuritySpec) -> Spec {
    let user = ResolvedUser {
        uid: 1000,
        gid: 3000,
        additional_gids: vec![50],
    };
    let host = HostSecurity {
        bounding: u64::MAX,
        devices: host_devices(Path::new("/dev")),
    };
    build_oci_spec(&spec_with(security), &user, 1024, &host).unwrap()
}

fn effective(oci: &Spec) -> Vec<Capability> {
    let caps = oci
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    let mut list: Vec<Capability> = caps.effective().clone().unwrap().into_iter().collect();
    list.sort_by_key(|c| c.to_string());
    list
}

fn sorted(mut caps: Vec<Capability>) -> Vec<Capability> {
    caps.sort_by_key(|c| c.to_string());
    caps
}

#[test]
fn defaults_are_safe() {
    let oci = build(SecuritySpec::default());
    assert_eq!(effective(&oci), sorted(default_capabilities()));
    assert_eq!(default_capabilities().len(), 14);
    let process = oci.process().as_ref().unwrap();
    assert_eq!(process.no_new_privileges(), None);
    assert_eq!(process.user().additional_gids().as_deref(), Some(&[50][..]));
    assert_eq!(oci.root().as_ref().unwrap().readonly(), Some(false));
    let linux = oci.linux().as_ref().unwrap();
    let seccomp = linux.seccomp().as_ref().expect("a default seccomp filter");
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
    let masked = linux.masked_paths().clone().unwrap();
    for path in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/sys/firmware",
        "/proc/acpi",
    ] {
        assert!(masked.iter().any(|m| m == path), "{path} not masked");
    }
    let readonly = linux.readonly_paths().clone().unwrap();
    for path in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        assert!(readonly.iter().any(|m| m == path), "{path} not read-only");
    }
    let resources = linux.resources().as_ref().unwrap();
    assert_eq!(resources.pids().unwrap().limit(), 4096);
    let devices = resources.devices().clone().unwrap();
    assert!(devices.iter().all(|d| !d.allow()), "{devices:?}");
    assert!(linux.devices().as_ref().is_none_or(|d| d.is_empty()));
}

#[test]
fn capabilities_add_and_drop_follow_containerd_rules() {
    let caps = |add: &[&str], drop: &[&str]| {
        capabilities(
            &SecuritySpec {
                capabilities_add: add.iter().map(|s| s.to_string()).collect(),
                capabilities_drop: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            u64::MAX,
        )
    };
    assert_eq!(caps(&[], &["ALL"]).unwrap(), vec![]);
    assert_eq!(
        caps(&["NET_ADMIN"], &["ALL"]).unwrap(),
        vec![Capability::NetAdmin]
    );
    assert_eq!(
        sorted(caps(&["ALL"], &["CHOWN"]).unwrap()).len(),
        all_capabilities().len() - 1
    );
    let dropped = caps(&["CAP_SYS_TIME"], &["chown", "NET_RAW"]).unwrap();
    assert!(dropped.contains(&Capability::SysTime));
    assert!(!dropped.contains(&Capability::Chown));
    assert!(!dropped.contains(&Capability::NetRaw));
    assert_eq!(dropped.len(), 13);
    // A name in both lists ends up dropped.
    assert!(
        !caps(&["NET_ADMIN"], &["NET_ADMIN"])
            .unwrap()
            .contains(&Capability::NetAdmin)
    );
    assert!(
        caps(&["MAGIC"], &[])
            .unwrap_err()
            .to_string()
            .contains("unknown capability")
    );
}

#[test]
fn only_capabilities_the_node_holds_are_granted() {
    // A node without CAP_SYS_RESOURCE (bit 24) and CAP_NET_ADMIN (bit 12).
    let bounding: u64 = !((1 << 24) | (1 << 12));
    let privileged = SecuritySpec {
        privileged: true,
        ..Default::default()
    };
    let caps = capabilities(&privileged, bounding).unwrap();
    assert_eq!(caps.len(), all_capabilities().len() - 2);
    assert!(!caps.contains(&Capability::SysResource));
    let all = SecuritySpec {
        capabilities_add: vec!["ALL".into()],
        ..Default::default()
    };
    assert!(
        !capabilities(&all, bounding)
            .unwrap()
            .contains(&Capability::NetAdmin)
    );
    let named = SecuritySpec {
        capabilities_add: vec!["NET_ADMIN".into()],
        ..Default::default()
    };
    let err = capabilities(&named, bounding).unwrap_err().to_string();
    assert!(err.contains("\"NET_ADMIN\" cannot be granted"), "{err}");
    assert_eq!(bit(Capability::CheckpointRestore), 40);
    assert_eq!(bit(Capability::SysResource), 24);
}

#[test]
fn dropping_all_capabilities_empties_every_set() {
    let oci = build(SecuritySpec {
        capabilities_drop: vec!["ALL".into()],
        ..Default::default()
    });
    let caps = oci
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(caps.bounding().as_ref().unwrap().is_empty());
    assert!(caps.permitted().as_ref().unwrap().is_empty());
    assert!(caps.effective().as_ref().unwrap().is_empty());
}

#[test]
fn privileged_gets_everything_and_no_confinement() {
    let oci = build(SecuritySpec {
        privileged: true,
        seccomp: Seccomp::Unconfined,
        ..Default::default()
    });
    assert_eq!(effective(&oci), sorted(all_capabilities()));
    let linux = oci.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().is_none());
    assert!(linux.readonly_paths().is_none());
    let devices = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(devices.iter().all(|d| d.allow()), "{devices:?}");
    let host = linux.devices().clone().unwrap_or_default();
    assert!(host.iter().any(|d| d.path() == Path::new("/dev/null")));
    assert!(!host.iter().any(|d| d.path().starts_with("/dev/pts")));
    let sys = oci
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().iter().any(|o| o == "rw"));
}

#[test]
fn a_privileged_container_keeps_a_filter_it_asks_for() {
    let oci = build(SecuritySpec {
        privileged: true,
        ..Default::default()
    });
    let filter = oci.linux().as_ref().unwrap().seccomp().clone().unwrap();
    let denied = filter.syscalls().as_ref().unwrap()[0].names().clone();
    // Every capability is held, so only the groups no capability allows stay denied.
    assert!(denied.iter().any(|n| n == "keyctl"));
    assert!(!denied.iter().any(|n| n == "mount"));
}

#[test]
fn read_only_root_no_new_privs_and_groups() {
    let oci = build(SecuritySpec {
        read_only_rootfs: true,
        no_new_privileges: true,
        supplemental_groups: vec![3000, 4000, 50, 4000],
        ..Default::default()
    });
    assert_eq!(oci.root().as_ref().unwrap().readonly(), Some(true));
    let process = oci.process().as_ref().unwrap();
    assert_eq!(process.no_new_privileges(), Some(true));
    assert_eq!(
        process.user().additional_gids().as_deref(),
        Some(&[50, 4000][..])
    );
}

#[test]
fn seccomp_choices() {
    let unconfined = build(SecuritySpec {
        seccomp: Seccomp::Unconfined,
        ..Default::default()
    });
    assert!(unconfined.linux().as_ref().unwrap().seccomp().is_none());
    let profile = crate::container::seccomp::parse_profile(
        br#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[]}"#,
    )
    .unwrap();
    let custom = build(SecuritySpec {
        seccomp: Seccomp::Profile(Box::new(profile.clone())),
        ..Default::default()
    });
    assert_eq!(
        custom.linux().as_ref().unwrap().seccomp().as_ref(),
        Some(&profile)
    );
    // The default filter follows the granted capabilities.
    let admin = build(SecuritySpec {
        capabilities_add: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    let filter = admin.linux().as_ref().unwrap().seccomp().clone().unwrap();
    let denied = filter.syscalls().as_ref().unwrap()[0].names().clone();
    assert!(!denied.iter().any(|n| n == "mount"));
    assert!(denied.iter().any(|n| n == "kexec_load"));
}

#[test]
fn specs_written_before_security_existed_get_the_default() {
    let mut json = serde_json::to_value(spec_with(SecuritySpec::default())).unwrap();
    json.as_object_mut().unwrap().remove("security");
    json["resources"]
        .as_object_mut()
        .unwrap()
        .remove("pod_pids_limit");
    let old: ContainerSpec = serde_json::from_value(json).unwrap();
    assert_eq!(old.security, SecuritySpec::default());
    assert_eq!(old.resources.pod_pids_limit, None);
}

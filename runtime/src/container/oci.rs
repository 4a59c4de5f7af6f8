//! Generates the OCI runtime config (config.json) for a container from its `ContainerSpec`.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, RootBuilder, Spec, UserBuilder,
};

use super::security;
use super::spec::{CFS_PERIOD_US, ContainerSpec};
use super::user::ResolvedUser;

/// PATH given to processes whose env has none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Highest nofile limit handed to containers when the host allows more.
const MAX_NOFILE: u64 = 1_048_576;

/// The capabilities a container gets by default (the usual runc/containerd set).
pub fn default_capabilities() -> Vec<Capability> {
    vec![
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
}

/// Why a config.json could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OciSpecError {
    #[error(transparent)]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("security settings: {0}")]
    Security(#[from] security::SecurityError),
}

/// Builds the OCI spec. `nofile_hard` is the caller's hard RLIMIT_NOFILE (containers stay within
/// it); `host` says which capabilities and devices the node can hand over.
pub fn build_oci_spec(
    spec: &ContainerSpec,
    user: &ResolvedUser,
    nofile_hard: u64,
    host: &security::HostSecurity,
) -> Result<Spec, OciSpecError> {
    let mut oci = Spec::default();

    let nofile = nofile_hard.min(MAX_NOFILE);
    let rlimit = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(nofile)
        .hard(nofile)
        .build()?;
    let mut env = spec.process.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        spec.process.cwd.as_str()
    };
    let mut process = oci.process().clone().unwrap_or_default();
    process.set_terminal(Some(false));
    process.set_args(Some(spec.process.args.clone()));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_user(
        UserBuilder::default()
            .uid(user.uid)
            .gid(user.gid)
            .additional_gids(additional_gids(user, &spec.security.supplemental_groups))
            .build()?,
    );
    process.set_rlimits(Some(vec![rlimit]));
    oci.set_process(Some(process));

    oci.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(false)
            .build()?,
    ));
    oci.set_hostname(Some(
        spec.hostname.clone().unwrap_or_else(|| spec.id.clone()),
    ));

    let mut mounts: Vec<Mount> = oci.mounts().clone().unwrap_or_default();
    for m in &spec.mounts {
        let rw = if m.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(m.destination.clone())
                .typ("bind")
                .source(m.source.clone())
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    rw.to_string(),
                ])
                .build()?,
        );
    }
    oci.set_mounts(Some(mounts));

    let mut namespaces: Vec<LinuxNamespace> = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<_, _>>()?;
    if let Some(path) = &spec.network_namespace {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.clone())
                .build()?,
        );
    }

    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ]);
    if let Some(limit) = spec.resources.memory_limit_bytes {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    let (quota, shares) = (spec.resources.cfs_quota_us(), spec.resources.cpu_shares());
    if quota.is_some() || shares.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(quota) = quota {
            cpu = cpu.quota(quota).period(CFS_PERIOD_US);
        }
        if let Some(shares) = shares {
            cpu = cpu.shares(shares);
        }
        resources = resources.cpu(cpu.build()?);
    }
    if let Some(limit) = spec.resources.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    let mut linux = oci.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(spec.cgroups_path.clone()));
    linux.set_resources(Some(resources.build()?));
    oci.set_linux(Some(linux));

    let annotations: HashMap<String, String> = spec
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    oci.set_annotations(Some(annotations));
    security::apply(&mut oci, &spec.security, host)?;
    Ok(oci)
}

/// The image user's groups, then the manifest's (supplementalGroups, fsGroup), each once.
fn additional_gids(user: &ResolvedUser, extra: &[u32]) -> Vec<u32> {
    let mut gids = user.additional_gids.clone();
    for gid in extra {
        if !gids.contains(gid) && *gid != user.gid {
            gids.push(*gid);
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::{BindMount, Resources};

    fn sample() -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            layers: vec!["/l".into()],
            process: crate::container::spec::ProcessSpec {
                args: vec!["sh".into()],
                env: vec!["A=1".into()],
                ..Default::default()
            },
            mounts: vec![BindMount {
                source: "/src".into(),
                destination: "/dst".into(),
                read_only: true,
            }],
            resources: Resources {
                memory_limit_bytes: Some(64 << 20),
                cpu_limit_millis: Some(250),
                cpu_request_millis: Some(100),
                pids_limit: Some(50),
                pod_pids_limit: None,
            },
            network_namespace: Some("/run/netns/x".into()),
            cgroups_path: "/skiff/pod/c1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn spec_carries_the_decisions() {
        let user = ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
        };
        let oci = build_oci_spec(
            &sample(),
            &user,
            20_000,
            &security::HostSecurity::unrestricted(),
        )
        .unwrap();
        let p = oci.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["sh".to_string()]);
        assert_eq!(p.env().as_ref().unwrap()[0], DEFAULT_PATH);
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.rlimits().as_ref().unwrap()[0].hard(), 20_000);
        assert_eq!(p.no_new_privileges(), None);
        let linux = oci.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(std::path::Path::new("/run/netns/x"))
        );
        let r = linux.resources().as_ref().unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(25_000));
        assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(102));
        assert_eq!(r.pids().unwrap().limit(), 50);
        let bind = oci
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == std::path::Path::new("/dst"))
            .unwrap();
        assert!(bind.options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn host_network_has_no_network_namespace() {
        let mut s = sample();
        s.network_namespace = None;
        let oci = build_oci_spec(
            &s,
            &ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            1024,
            &security::HostSecurity::unrestricted(),
        )
        .unwrap();
        let ns = oci.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Network));
    }
}

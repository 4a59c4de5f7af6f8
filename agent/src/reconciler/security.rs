//! A container's effective security settings: the pod's `securityContext` with the container's
//! on top (the container wins, as in Kubernetes), turned into the runtime's `SecuritySpec` and
//! user string. `runAsNonRoot` is checked here, against the uid the container will run as.

use std::path::Path;

use skiff_manifests::model::pod::{Container, PodSpec, SeccompProfile};
use skiff_runtime::container::{Seccomp, SecuritySpec};
use skiff_runtime::image::ImageConfig;

use super::container::ConfigError;

/// Where Localhost seccomp profiles live, under the agent's data dir.
pub const SECCOMP_DIR: &str = "seccomp";

/// The user the process runs as and how it is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// `uid`, `uid:gid`, `name`, `name:group` (resolved against the image by the runtime).
    pub user: String,
    pub security: SecuritySpec,
}

/// Merges pod and container settings. `seccomp_dir` holds Localhost profiles.
pub fn effective(
    spec: &PodSpec,
    c: &Container,
    image: &ImageConfig,
    seccomp_dir: &Path,
) -> Result<Effective, ConfigError> {
    let pod = &spec.security_context;
    let sc = &c.security_context;
    let run_as_user = sc.run_as_user.or(pod.run_as_user);
    let run_as_group = sc.run_as_group.or(pod.run_as_group);
    let image_user = image.user.clone().unwrap_or_default();
    let user = user_string(&image_user, run_as_user, run_as_group);
    if sc.run_as_non_root.or(pod.run_as_non_root) == Some(true) {
        check_non_root(&user, run_as_user.is_some())?;
    }
    let mut supplemental_groups = pod.supplemental_groups.clone();
    if let Some(fs_group) = pod.fs_group
        && !supplemental_groups.contains(&fs_group)
    {
        supplemental_groups.push(fs_group);
    }
    let privileged = sc.privileged == Some(true);
    let seccomp = match sc.seccomp_profile.as_ref().or(pod.seccomp_profile.as_ref()) {
        // A privileged container runs unfiltered unless a profile is asked for (containerd's
        // rule); an explicit profile is always applied.
        None if privileged => Seccomp::Unconfined,
        None | Some(SeccompProfile::RuntimeDefault) => Seccomp::RuntimeDefault,
        Some(SeccompProfile::Unconfined) => Seccomp::Unconfined,
        Some(SeccompProfile::Localhost(file)) => {
            Seccomp::Profile(Box::new(load_profile(seccomp_dir, file)?))
        }
    };
    Ok(Effective {
        user,
        security: SecuritySpec {
            privileged,
            capabilities_add: sc.capabilities.add.clone(),
            capabilities_drop: sc.capabilities.drop.clone(),
            no_new_privileges: sc.allow_privilege_escalation == Some(false),
            read_only_rootfs: sc.read_only_root_filesystem == Some(true),
            seccomp,
            supplemental_groups,
        },
    })
}

/// runAsUser replaces the image's user, runAsGroup its group. A uid without a group takes the
/// primary group from the image's /etc/passwd (0 when it has none), as containerd does.
fn user_string(image_user: &str, run_as_user: Option<u32>, run_as_group: Option<u32>) -> String {
    let (image_uid, image_gid) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let uid = match run_as_user {
        Some(uid) => uid.to_string(),
        None if image_uid.is_empty() => "0".to_string(),
        None => image_uid.to_string(),
    };
    match (run_as_group, image_gid, run_as_user) {
        (Some(gid), _, _) => format!("{uid}:{gid}"),
        // The image's group belongs to the image's user, not to a uid set by the manifest.
        (None, Some(gid), None) if !gid.is_empty() => format!("{uid}:{gid}"),
        _ if run_as_user.is_none() && image_user.is_empty() => String::new(),
        _ => uid,
    }
}

/// Kubernetes' check: the uid must be known and non-zero before the container starts.
fn check_non_root(user: &str, uid_from_manifest: bool) -> Result<(), ConfigError> {
    let uid_part = user.split(':').next().unwrap_or_default();
    let uid_part = if uid_part.is_empty() { "0" } else { uid_part };
    match uid_part.parse::<u32>() {
        Ok(0) if uid_from_manifest => Err(ConfigError(
            "container's runAsUser breaks non-root policy: runAsNonRoot is true and runAsUser is 0"
                .into(),
        )),
        Ok(0) => Err(ConfigError(
            "container has runAsNonRoot and image will run as root: set runAsUser to a non-zero uid, or use an image with a non-root USER"
                .into(),
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({uid_part}), cannot verify user is non-root: set runAsUser"
        ))),
    }
}

/// Reads `<seccomp_dir>/<file>` (validation already refused absolute paths and `..`).
fn load_profile(
    seccomp_dir: &Path,
    file: &str,
) -> Result<skiff_runtime::container::seccomp::LinuxSeccomp, ConfigError> {
    let path = seccomp_dir.join(file);
    let bytes = std::fs::read(&path).map_err(|e| {
        ConfigError(format!(
            "seccomp profile {file:?}: cannot read {}: {e}; put the profile in the agent's {} directory",
            path.display(),
            seccomp_dir.display()
        ))
    })?;
    skiff_runtime::container::seccomp::parse_profile(&bytes)
        .map_err(|e| ConfigError(format!("seccomp profile {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_strings() {
        let table = [
            ("", None, None, ""),
            ("", Some(1000), None, "1000"),
            ("", Some(1000), Some(3000), "1000:3000"),
            ("", None, Some(3000), "0:3000"),
            ("app", None, None, "app"),
            ("app", None, Some(7), "app:7"),
            ("app:staff", Some(5), None, "5"),
            ("app:staff", None, None, "app:staff"),
            ("1000:50", None, Some(60), "1000:60"),
        ];
        for (image, uid, gid, want) in table {
            assert_eq!(
                user_string(image, uid, gid),
                want,
                "{image} {uid:?} {gid:?}"
            );
        }
    }

    #[test]
    fn non_root_checks() {
        assert!(check_non_root("1000", true).is_ok());
        assert!(check_non_root("1000:0", false).is_ok());
        let root = check_non_root("", false).unwrap_err().0;
        assert!(
            root.starts_with("container has runAsNonRoot and image will run as root"),
            "{root}"
        );
        assert!(check_non_root("0:5", false).is_err());
        assert!(
            check_non_root("0", true)
                .unwrap_err()
                .0
                .contains("runAsUser is 0")
        );
        assert!(
            check_non_root("nobody", false)
                .unwrap_err()
                .0
                .contains("non-numeric user (nobody)")
        );
    }
}

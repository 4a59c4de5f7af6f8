//! A pod's sandbox on this node: its directory (volumes, logs), its network namespace, and its
//! volumes made real (emptyDir, ConfigMap and Secret files, hostPath checks). Idempotent; the
//! teardown removes everything it made, mounts included.

use super::container::Objects;
use skiff_manifests::model::pod::{HostPathType, KeyToPath, StorageMedium, Volume, VolumeSource};
use skiff_manifests::model::workloads::Pod;
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a pod's files live: `<data>/pods/<uid>/{volumes,logs}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPaths {
    pub dir: PathBuf,
    /// The containers' log files: `<dir>/logs`, or `<log dir>/<uid>` with `--log-dir`.
    pub logs: PathBuf,
}

impl PodPaths {
    pub fn new(pods_dir: &Path, uid: &str) -> Self {
        let dir = pods_dir.join(uid);
        PodPaths {
            logs: dir.join("logs"),
            dir,
        }
    }

    /// Keeps the logs under `root/<uid>` instead of the pod directory.
    pub fn with_logs_root(mut self, root: Option<&Path>, uid: &str) -> Self {
        if let Some(root) = root {
            self.logs = root.join(uid);
        }
        self
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }
    pub fn log_file(&self, container: &str) -> PathBuf {
        self.logs.join(format!("{container}.log"))
    }
}

/// The host directory a volume's mounts come from.
pub fn volume_source_dir(volume: &Volume, paths: &PodPaths) -> PathBuf {
    match &volume.source {
        VolumeSource::HostPath(h) => PathBuf::from(&h.path),
        _ => paths.volume(&volume.name),
    }
}

/// Why a sandbox could not be made (the pod waits and retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("volume {volume:?}: {source}")]
    Volume {
        volume: String,
        #[source]
        source: VolumeError,
    },
    #[error("pod directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace: {0}")]
    Network(#[from] skiff_cni::CniError),
}

/// Why one volume could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fsGroup {gid}: {}: {source}", path.display())]
    FsGroup {
        gid: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("key {0:?} not found")]
    KeyNotFound(String),
    #[error("hostPath {}: {source}", path.display())]
    HostPath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hostPath {}: is not a {expected:?}", path.display())]
    HostPathType {
        path: PathBuf,
        expected: HostPathType,
    },
    #[error("mount tmpfs on {}: {source}", dir.display())]
    Tmpfs {
        dir: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

/// `VolumeError::Io` for `path`.
fn volume_io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `VolumeError::FsGroup` for `path`.
fn fs_group_io(gid: u32, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::FsGroup {
        gid,
        path: path.to_path_buf(),
        source,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Dir {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the pod's directory, volumes and (unless host network) network namespace.
/// Returns the namespace path to join.
pub fn prepare(
    pod: &Valid<Pod>,
    paths: &PodPaths,
    objects: &Objects,
    netns: Option<(&Path, &str)>,
) -> Result<Option<PathBuf>, SandboxError> {
    std::fs::create_dir_all(&paths.logs).map_err(io(&paths.logs))?;
    let namespace = &pod.metadata.namespace;
    let fs_group = pod.spec.security_context.fs_group;
    for volume in &pod.spec.volumes {
        prepare_volume(volume, paths, namespace, objects, fs_group).map_err(|source| {
            SandboxError::Volume {
                volume: volume.name.clone(),
                source,
            }
        })?;
    }
    match netns {
        Some((dir, name)) => Ok(Some(skiff_cni::create_netns(dir, name)?)),
        None => Ok(None),
    }
}

fn prepare_volume(
    volume: &Volume,
    paths: &PodPaths,
    namespace: &str,
    objects: &Objects,
    fs_group: Option<u32>,
) -> Result<(), VolumeError> {
    let dir = paths.volume(&volume.name);
    let mkdir = |d: &Path| std::fs::create_dir_all(d).map_err(volume_io(d));
    match &volume.source {
        VolumeSource::EmptyDir(e) => {
            mkdir(&dir)?;
            if e.medium == StorageMedium::Memory {
                let size = e
                    .size_limit_bytes()
                    .map(|b| format!(",size={b}"))
                    .unwrap_or_default();
                mount_tmpfs(&dir, &format!("mode=0777{size}"))?;
            }
            // Writable by any user the container runs as, as in Kubernetes.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(volume_io(&dir))?;
            apply_fs_group(&dir, fs_group)
        }
        VolumeSource::ConfigMap(c) => {
            let data = match objects
                .get(&ObjectKey::new(Kind::ConfigMap, namespace, &c.name))
                .map(|o| o.get())
            {
                Some(Object::ConfigMap(cm)) => cm
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                    .chain(cm.binary_data.iter().map(|(k, v)| (k.clone(), v.clone())))
                    .collect(),
                _ if c.optional => Vec::new(),
                _ => return Err(VolumeError::ConfigMapNotFound(c.name.clone())),
            };
            mkdir(&dir)?;
            write_keys(&dir, &data, &c.items, c.default_mode, c.optional)?;
            apply_fs_group(&dir, fs_group)
        }
        VolumeSource::Secret(s) => {
            let data = match objects
                .get(&ObjectKey::new(Kind::Secret, namespace, &s.secret_name))
                .map(|o| o.get())
            {
                Some(Object::Secret(secret)) => secret
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_vec()))
                    .collect(),
                _ if s.optional => Vec::new(),
                _ => return Err(VolumeError::SecretNotFound(s.secret_name.clone())),
            };
            mkdir(&dir)?;
            // Secrets live in memory only, never on the node's disk.
            mount_tmpfs(&dir, "mode=0755,size=4m")?;
            write_keys(&dir, &data, &s.items, s.default_mode, s.optional)?;
            apply_fs_group(&dir, fs_group)
        }
        VolumeSource::HostPath(h) => host_path(Path::new(&h.path), h.type_),
    }
}

/// Kubernetes' fsGroup ownership: every file and directory of the volume belongs to the group
/// `gid`, files are group-readable (and group-writable when the owner may write), directories
/// are group-accessible and setgid, so new files inherit the group. Symlinks are not followed.
fn apply_fs_group(dir: &Path, fs_group: Option<u32>) -> Result<(), VolumeError> {
    use std::os::unix::fs::MetadataExt;
    let Some(gid) = fs_group else {
        return Ok(());
    };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(volume_io(&path))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&path, None, Some(gid)).map_err(fs_group_io(gid, &path))?;
        let mode = meta.mode() & 0o7777;
        let owner_writes = mode & 0o200 != 0;
        let new_mode = if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(volume_io(&path))?;
            pending.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            mode | 0o2050 | if owner_writes { 0o020 } else { 0 }
        } else {
            mode | 0o040 | if owner_writes { 0o020 } else { 0 }
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(new_mode))
            .map_err(fs_group_io(gid, &path))?;
    }
    Ok(())
}

fn write_keys(
    dir: &Path,
    data: &[(String, Vec<u8>)],
    items: &[KeyToPath],
    default_mode: u32,
    optional: bool,
) -> Result<(), VolumeError> {
    let write = |rel: &str, bytes: &[u8], mode: u32| -> Result<(), VolumeError> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(volume_io(parent))?;
        }
        let tmp = path.with_extension("skiff-tmp");
        std::fs::write(&tmp, bytes).map_err(volume_io(&path))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(volume_io(&path))?;
        std::fs::rename(&tmp, &path).map_err(volume_io(&path))
    };
    if items.is_empty() {
        for (k, v) in data {
            write(k, v, default_mode)?;
        }
        return Ok(());
    }
    for item in items {
        match data.iter().find(|(k, _)| *k == item.key) {
            Some((_, v)) => write(&item.path, v, item.mode.unwrap_or(default_mode))?,
            None if optional => {}
            None => return Err(VolumeError::KeyNotFound(item.key.clone())),
        }
    }
    Ok(())
}

fn host_path(path: &Path, kind: HostPathType) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path);
    let io = |source| VolumeError::HostPath {
        path: path.to_path_buf(),
        source,
    };
    match kind {
        HostPathType::Unset => Ok(()),
        HostPathType::DirectoryOrCreate => std::fs::create_dir_all(path).map_err(io),
        HostPathType::FileOrCreate => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io)?;
            }
            Ok(())
        }
        HostPathType::Directory if meta.as_ref().is_ok_and(|m| m.is_dir()) => Ok(()),
        HostPathType::File if meta.as_ref().is_ok_and(|m| m.is_file()) => Ok(()),
        HostPathType::Socket if meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => Ok(()),
        HostPathType::CharDevice if meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()) => {
            Ok(())
        }
        HostPathType::BlockDevice
            if meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()) =>
        {
            Ok(())
        }
        expected => Err(VolumeError::HostPathType {
            path: path.to_path_buf(),
            expected,
        }),
    }
}

fn mount_tmpfs(dir: &Path, options: &str) -> Result<(), VolumeError> {
    if mounts_under(dir).iter().any(|m| m == dir) {
        return Ok(());
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|source| VolumeError::Tmpfs {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// Removes the network namespace, unmounts the pod's tmpfs volumes and deletes its directory.
pub fn teardown(paths: &PodPaths, netns: Option<(&Path, &str)>) -> Result<(), SandboxError> {
    if let Some((dir, name)) = netns {
        skiff_cni::remove_netns(dir, name)?;
    }
    for m in mounts_under(&paths.dir) {
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("unmount {}: {e}", m.display());
        }
    }
    for dir in [&paths.dir, &paths.logs] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SandboxError::Dir {
                    path: dir.clone(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fs_group_owns_the_volume_and_new_files_inherit_it() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: changing a file's group to an arbitrary gid needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::write(vol.join("sub/key"), b"v").unwrap();
        std::fs::set_permissions(vol.join("sub/key"), std::fs::Permissions::from_mode(0o400))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", vol.join("link")).unwrap();
        apply_fs_group(&vol, Some(4242)).unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(vol.join(p)).unwrap();
        for path in ["", "sub", "sub/key"] {
            assert_eq!(meta(path).gid(), 4242, "{path:?}");
        }
        assert_eq!(meta("").mode() & 0o2070, 0o2070);
        assert_eq!(meta("sub/key").mode() & 0o777, 0o440);
        // Symlinks are not followed: /etc/passwd keeps its group.
        assert_eq!(std::fs::metadata("/etc/passwd").unwrap().gid(), 0);
        std::fs::write(vol.join("new"), b"x").unwrap();
        assert_eq!(
            meta("new").gid(),
            4242,
            "setgid dir: new files get the group"
        );
        apply_fs_group(&vol, None).unwrap();
    }
}

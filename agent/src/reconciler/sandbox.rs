//! A pod's sandbox on this node: its directory (volumes, logs), its network namespace, and its
//! volumes made real (emptyDir, ConfigMap, Secret, downwardAPI and projected files, hostPath
//! checks). Idempotent; the teardown removes everything it made, mounts included.

use super::container::{Downward, Objects};
use skiff_manifests::model::pod::{
    DownwardApiFile, DownwardApiSource, HostPathType, KeyToPath, Projection, StorageMedium, Volume,
    VolumeSource,
};
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
    #[error("{0}")]
    Downward(String),
    #[error("path {0:?} is given by two sources")]
    DuplicatePath(String),
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
    downward: &Downward,
    netns: Option<(&Path, &str)>,
) -> Result<Option<PathBuf>, SandboxError> {
    std::fs::create_dir_all(&paths.logs).map_err(io(&paths.logs))?;
    let namespace = &pod.metadata.namespace;
    let fs_group = pod.spec.security_context.fs_group;
    let memory = pod_memory_limit(pod);
    for volume in &pod.spec.volumes {
        let ctx = VolumeContext {
            namespace,
            objects,
            downward,
            fs_group,
            memory,
        };
        prepare_volume(volume, paths, &ctx).map_err(|source| SandboxError::Volume {
            volume: volume.name.clone(),
            source,
        })?;
    }
    match netns {
        Some((dir, name)) => Ok(Some(skiff_cni::create_netns(dir, name)?)),
        None => Ok(None),
    }
}

/// The pod's memory limit: the sum of its containers' limits when every one has a limit.
pub fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let limits: Option<Vec<u64>> = pod
        .spec
        .containers
        .iter()
        .map(|c| c.resources.limits.memory_bytes())
        .collect();
    limits.filter(|l| !l.is_empty()).map(|l| l.iter().sum())
}

/// The size of a Memory emptyDir's tmpfs: its sizeLimit, capped by the pod's memory limit (or
/// that limit alone), as kubelet sizes them; `None`: the kernel's default (half the RAM).
pub fn memory_volume_size(size_limit: Option<u64>, pod_memory: Option<u64>) -> Option<u64> {
    match (size_limit, pod_memory) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a volume is made from besides itself.
struct VolumeContext<'a> {
    namespace: &'a str,
    objects: &'a Objects,
    downward: &'a Downward,
    fs_group: Option<u32>,
    /// The pod's memory limit (sizes Memory emptyDirs).
    memory: Option<u64>,
}

fn prepare_volume(
    volume: &Volume,
    paths: &PodPaths,
    ctx: &VolumeContext,
) -> Result<(), VolumeError> {
    let VolumeContext {
        namespace,
        objects,
        downward,
        fs_group,
        ..
    } = *ctx;
    let dir = paths.volume(&volume.name);
    let mkdir = |d: &Path| std::fs::create_dir_all(d).map_err(volume_io(d));
    match &volume.source {
        VolumeSource::EmptyDir(e) => {
            mkdir(&dir)?;
            if e.medium == StorageMedium::Memory {
                let size = memory_volume_size(e.size_limit_bytes(), ctx.memory)
                    .map(|b| format!(",size={b}"))
                    .unwrap_or_default();
                mount_tmpfs(&dir, &format!("mode=0777{size}"))?;
            }
            // Writable by any user the container runs as, as in Kubernetes.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(volume_io(&dir))?;
            apply_fs_group(&dir, fs_group)
        }
        VolumeSource::Secret(_) => {
            let files = volume_files(&volume.source, namespace, objects, downward)?;
            mkdir(&dir)?;
            // Secrets live in memory only, never on the node's disk.
            mount_tmpfs(&dir, "mode=0755,size=4m")?;
            write_files(&dir, &files)?;
            apply_fs_group(&dir, fs_group)
        }
        VolumeSource::ConfigMap(_) | VolumeSource::DownwardApi(_) | VolumeSource::Projected(_) => {
            let files = volume_files(&volume.source, namespace, objects, downward)?;
            mkdir(&dir)?;
            write_files(&dir, &files)?;
            apply_fs_group(&dir, fs_group)
        }
        VolumeSource::HostPath(h) => host_path(Path::new(&h.path), h.type_),
    }
}

/// Writes again the ConfigMap, Secret, downwardAPI and projected volumes of a pod whose
/// sandbox exists, each in one step (subPath mounts keep the file they were made with, as in
/// Kubernetes). Returns the volumes rewritten and those that failed (they keep their files).
pub fn refresh(
    pod: &Valid<Pod>,
    paths: &PodPaths,
    objects: &Objects,
    downward: &Downward,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut written = Vec::new();
    let mut failed = Vec::new();
    let namespace = &pod.metadata.namespace;
    for volume in pod.spec.volumes.iter().filter(|v| v.source.is_projection()) {
        let dir = paths.volume(&volume.name);
        let result = volume_files(&volume.source, namespace, objects, downward)
            .and_then(|files| write_files(&dir, &files))
            .and_then(|wrote| {
                if wrote {
                    apply_fs_group(&dir, pod.spec.security_context.fs_group)?;
                }
                Ok(wrote)
            });
        match result {
            Ok(true) => written.push(volume.name.clone()),
            Ok(false) => {}
            Err(e) => failed.push((volume.name.clone(), e.to_string())),
        }
    }
    (written, failed)
}

/// What a pod's object volumes are made from: each ConfigMap and Secret they name, with its
/// content hash (`None`: absent). The node loop refreshes the volumes when this changes.
pub fn volume_inputs(
    pod: &Pod,
    hash_of: impl Fn(&ObjectKey) -> Option<String>,
) -> Vec<(ObjectKey, Option<String>)> {
    let namespace = &pod.metadata.namespace;
    let mut keys = Vec::new();
    for volume in &pod.spec.volumes {
        match &volume.source {
            VolumeSource::ConfigMap(c) => {
                keys.push(ObjectKey::new(Kind::ConfigMap, namespace, &c.name))
            }
            VolumeSource::Secret(s) => {
                keys.push(ObjectKey::new(Kind::Secret, namespace, &s.secret_name))
            }
            VolumeSource::Projected(p) => {
                for projection in &p.sources {
                    match projection {
                        Projection::ConfigMap(o) => {
                            keys.push(ObjectKey::new(Kind::ConfigMap, namespace, &o.name))
                        }
                        Projection::Secret(o) => {
                            keys.push(ObjectKey::new(Kind::Secret, namespace, &o.name))
                        }
                        Projection::DownwardApi(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
    keys.into_iter()
        .map(|k| {
            let hash = hash_of(&k);
            (k, hash)
        })
        .collect()
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

/// One file of a volume the agent writes (ConfigMap, Secret, downwardAPI, projected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFile {
    /// Relative to the volume.
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// The files of a ConfigMap, Secret, downwardAPI or projected volume as they are now (none for
/// other sources). A missing object or key is an error unless it is optional.
pub fn volume_files(
    source: &VolumeSource,
    namespace: &str,
    objects: &Objects,
    downward: &Downward,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let mut files = match source {
        VolumeSource::ConfigMap(c) => {
            match object_data(objects, Kind::ConfigMap, namespace, &c.name) {
                Some(data) => select_keys(&data, &c.items, c.default_mode, c.optional)?,
                None if c.optional => Vec::new(),
                None => return Err(VolumeError::ConfigMapNotFound(c.name.clone())),
            }
        }
        VolumeSource::Secret(s) => {
            match object_data(objects, Kind::Secret, namespace, &s.secret_name) {
                Some(data) => select_keys(&data, &s.items, s.default_mode, s.optional)?,
                None if s.optional => Vec::new(),
                None => return Err(VolumeError::SecretNotFound(s.secret_name.clone())),
            }
        }
        VolumeSource::DownwardApi(d) => downward_files(&d.items, d.default_mode, downward)?,
        VolumeSource::Projected(p) => {
            let mut files = Vec::new();
            for projection in &p.sources {
                files.extend(match projection {
                    Projection::ConfigMap(o) | Projection::Secret(o) => {
                        let (kind, missing): (Kind, fn(String) -> VolumeError) =
                            if matches!(projection, Projection::ConfigMap(_)) {
                                (Kind::ConfigMap, VolumeError::ConfigMapNotFound)
                            } else {
                                (Kind::Secret, VolumeError::SecretNotFound)
                            };
                        match object_data(objects, kind, namespace, &o.name) {
                            Some(data) => select_keys(&data, &o.items, p.default_mode, o.optional)?,
                            None if o.optional => Vec::new(),
                            None => return Err(missing(o.name.clone())),
                        }
                    }
                    Projection::DownwardApi(d) => {
                        downward_files(&d.items, p.default_mode, downward)?
                    }
                });
            }
            files
        }
        VolumeSource::EmptyDir(_) | VolumeSource::HostPath(_) => Vec::new(),
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(w) = files.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(VolumeError::DuplicatePath(w[0].path.clone()));
    }
    Ok(files)
}

/// Every key of a ConfigMap (text and binary) or Secret; `None` when it does not exist.
fn object_data(
    objects: &Objects,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Option<Vec<(String, Vec<u8>)>> {
    match objects
        .get(&ObjectKey::new(kind, namespace, name))
        .map(|o| o.get())
    {
        Some(Object::ConfigMap(cm)) => Some(
            cm.data
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .chain(cm.binary_data.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
        ),
        Some(Object::Secret(secret)) => Some(
            secret
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_vec()))
                .collect(),
        ),
        _ => None,
    }
}

/// The files for `items` of `data` (every key under its own name when `items` is empty).
fn select_keys(
    data: &[(String, Vec<u8>)],
    items: &[KeyToPath],
    default_mode: u32,
    optional: bool,
) -> Result<Vec<VolumeFile>, VolumeError> {
    if items.is_empty() {
        return Ok(data
            .iter()
            .map(|(k, v)| VolumeFile {
                path: k.clone(),
                bytes: v.clone(),
                mode: default_mode,
            })
            .collect());
    }
    let mut out = Vec::new();
    for item in items {
        match data.iter().find(|(k, _)| *k == item.key) {
            Some((_, v)) => out.push(VolumeFile {
                path: item.path.clone(),
                bytes: v.clone(),
                mode: item.mode.unwrap_or(default_mode),
            }),
            None if optional => {}
            None => return Err(VolumeError::KeyNotFound(item.key.clone())),
        }
    }
    Ok(out)
}

fn downward_files(
    items: &[DownwardApiFile],
    default_mode: u32,
    downward: &Downward,
) -> Result<Vec<VolumeFile>, VolumeError> {
    items
        .iter()
        .map(|item| {
            let text = match &item.source {
                DownwardApiSource::Field(field) => downward.volume_value(field),
                DownwardApiSource::Resource(r) => downward
                    .resource(r)
                    .map_err(|e| VolumeError::Downward(e.0))?,
            };
            Ok(VolumeFile {
                path: item.path.clone(),
                bytes: text.into_bytes(),
                mode: item.mode.unwrap_or(default_mode),
            })
        })
        .collect()
}

/// The link through which a volume's files are read: `<volume>/..data` points at the
/// directory of the current version, and each top-level name is a link into `..data`.
const DATA_LINK: &str = "..data";

/// Writes `files` into `dir` so that a reader sees the old set or the new one, never a mix:
/// the new version goes into a fresh `..<stamp>` directory, the `..data` link is renamed over
/// in one step, then the top-level links are added or removed and the old version deleted.
/// Nothing is written when the files are what `dir` already holds. Returns whether it wrote.
pub fn write_files(dir: &Path, files: &[VolumeFile]) -> Result<bool, VolumeError> {
    let data_link = dir.join(DATA_LINK);
    let current = std::fs::read_link(&data_link).ok();
    if let Some(current) = &current
        && holds(&dir.join(current), files)
    {
        return Ok(false);
    }
    let stamp = format!(
        "..{}.{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        std::process::id()
    );
    let version = dir.join(&stamp);
    std::fs::create_dir_all(&version).map_err(volume_io(&version))?;
    for f in files {
        let path = version.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(volume_io(parent))?;
        }
        std::fs::write(&path, &f.bytes).map_err(volume_io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(volume_io(&path))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).map_err(volume_io(&tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(volume_io(&data_link))?;
    let wanted: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_string))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        // A file of the first layout (before `..data`) or a stale link.
        if let Ok(meta) = std::fs::symlink_metadata(&link) {
            let removed = if meta.is_dir() {
                std::fs::remove_dir_all(&link)
            } else {
                std::fs::remove_file(&link)
            };
            removed.map_err(volume_io(&link))?;
        }
        std::os::unix::fs::symlink(&target, &link).map_err(volume_io(&link))?;
    }
    let entries = std::fs::read_dir(dir).map_err(volume_io(dir))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let stale = if name.starts_with("..") {
            name != DATA_LINK && name != stamp
        } else {
            !wanted.contains(&name)
                && std::fs::read_link(&path).is_ok_and(|t| t.starts_with(DATA_LINK))
        };
        if stale {
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(volume_io(&path))?;
        }
    }
    Ok(true)
}

/// Whether `version` holds exactly `files` (contents and modes; group bits aside, which
/// fsGroup adds).
fn holds(version: &Path, files: &[VolumeFile]) -> bool {
    let mut found = Vec::new();
    let mut pending = vec![version.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => pending.push(p),
                Ok(_) => found.push(p),
                Err(_) => return false,
            }
        }
    }
    found.len() == files.len()
        && files.iter().all(|f| {
            let p = version.join(&f.path);
            std::fs::symlink_metadata(&p)
                .is_ok_and(|m| m.permissions().mode() & 0o5707 == f.mode & 0o5707)
                && std::fs::read(&p).is_ok_and(|b| b == f.bytes)
        })
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

/// Removes the pod's network namespace, mounts and directory, and its logs unless `keep_logs`
/// (an evicted pod keeps them for `skiff logs` until the pod itself is removed).
pub fn teardown(
    paths: &PodPaths,
    netns: Option<(&Path, &str)>,
    keep_logs: bool,
) -> Result<(), SandboxError> {
    if let Some((dir, name)) = netns {
        skiff_cni::remove_netns(dir, name)?;
    }
    for m in mounts_under(&paths.dir) {
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("unmount {}: {e}", m.display());
        }
    }
    let dirs = if keep_logs && paths.logs.starts_with(&paths.dir) {
        // Logs under the pod's directory: everything else in it goes.
        return remove_all_but(&paths.dir, &paths.logs);
    } else if keep_logs {
        vec![&paths.dir]
    } else {
        vec![&paths.dir, &paths.logs]
    };
    for dir in dirs {
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

/// The disk space the files under `dir` take (allocated blocks, as `du` counts them): symlinks
/// are not followed, a file with several links counts once, and nothing mounted below `dir`
/// (another filesystem) counts. Unreadable entries count as empty.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let device = top.dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = top.blocks() * 512;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != device {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Deletes everything in `dir` but its child `keep`.
fn remove_all_but(dir: &Path, keep: &Path) -> Result<(), SandboxError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SandboxError::Dir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SandboxError::Dir { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod volume_tests;

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

//! Extraction of one layer tar into a directory in overlayfs form: whiteouts become 0:0 character
//! devices, opaque markers become `trusted.overlay.opaque=y`, and nothing is ever written through a
//! symlink or outside the layer directory.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::image::ImageError;

const OPAQUE_MARKER: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Extracts every entry of `archive` under `root` (an empty directory).
pub(crate) fn extract<R: Read>(
    archive: &mut tar::Archive<R>,
    root: &Path,
    layer: &str,
) -> Result<(), ImageError> {
    let mut directories: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive.entries().map_err(|e| ImageError::Layer {
        layer: layer.to_string(),
        reason: format!("read tar: {e}"),
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::Layer {
            layer: layer.to_string(),
            reason: format!("read tar: {e}"),
        })?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let fail = |reason: String| ImageError::LayerEntry {
            layer: layer.to_string(),
            entry: shown.clone(),
            reason,
        };
        let path = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
        if let Some(dir) = extract_entry(&mut entry, &path, root).map_err(fail)? {
            directories.push(dir);
        }
    }
    // Directory mtimes last: creating their children changed them.
    for (dir, mtime) in directories.iter().rev() {
        set_mtime(dir, *mtime).map_err(|e| ImageError::LayerEntry {
            layer: layer.to_string(),
            entry: dir.display().to_string(),
            reason: format!("set mtime: {e}"),
        })?;
    }
    Ok(())
}

/// Turns a tar path into a path relative to the layer root. `None` for the root itself.
pub(crate) fn sanitize(path: &Path) -> Result<Option<PathBuf>, String> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("path contains '..': refusing to unpack".into()),
            Component::Prefix(_) => return Err("path has a prefix".into()),
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

/// Extracts one entry; returns the directory and mtime to stamp at the end for directories.
fn extract_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    root: &Path,
) -> Result<Option<(PathBuf, u64)>, String> {
    let Some(rel) = sanitize(path)? else {
        return Ok(None);
    };
    let name = rel
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .unwrap_or_default();
    let parent = ensure_parent(root, rel.parent().unwrap_or(Path::new("")))?;

    if name == OPAQUE_MARKER {
        xattr::set(&parent, OPAQUE_XATTR, b"y").map_err(|e| format!("set {OPAQUE_XATTR}: {e}"))?;
        return Ok(None);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.starts_with(WHITEOUT_PREFIX) || hidden.is_empty() {
            return Ok(None); // aufs bookkeeping (.wh..wh.plnk and friends): nothing to do
        }
        let target = parent.join(hidden);
        remove_existing(&target)?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| format!("create whiteout device: {e}"))?;
        std::os::unix::fs::lchown(&target, Some(0), Some(0))
            .map_err(|e| format!("chown whiteout: {e}"))?;
        return Ok(None);
    }

    let target = root.join(&rel);
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| format!("mode: {e}"))? & 0o7777;
    let uid = u32::try_from(header.uid().map_err(|e| format!("uid: {e}"))?)
        .map_err(|_| "uid out of range".to_string())?;
    let gid = u32::try_from(header.gid().map_err(|e| format!("gid: {e}"))?)
        .map_err(|_| "gid out of range".to_string())?;
    let mtime = header.mtime().map_err(|e| format!("mtime: {e}"))?;
    let device = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    let xattrs = pax_xattrs(entry)?;

    match kind {
        EntryType::Directory => {
            match fs::symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {}
                _ => {
                    remove_existing(&target)?;
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&target)
                        .map_err(|e| format!("create directory: {e}"))?;
                }
            }
            apply_metadata(&target, uid, gid, Some(mode), None, &xattrs)?;
            return Ok(Some((target, mtime)));
        }
        EntryType::Regular | EntryType::Continuous => {
            remove_existing(&target)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(|e| format!("create file: {e}"))?;
            io::copy(entry, &mut file).map_err(|e| format!("write file: {e}"))?;
            drop(file);
            apply_metadata(&target, uid, gid, Some(mode), Some(mtime), &xattrs)?;
        }
        EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(|e| format!("symlink target: {e}"))?
                .ok_or("symlink without a target")?
                .into_owned();
            remove_existing(&target)?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| format!("create symlink: {e}"))?;
            apply_metadata(&target, uid, gid, None, Some(mtime), &xattrs)?;
        }
        EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(|e| format!("hardlink target: {e}"))?
                .ok_or("hardlink without a target")?
                .into_owned();
            let source_rel = sanitize(&link)
                .map_err(|e| format!("hardlink target {}: {e}", link.display()))?
                .ok_or("hardlink to the layer root")?;
            let source_parent = check_parent(root, source_rel.parent().unwrap_or(Path::new("")))?;
            let source = source_parent.join(source_rel.file_name().unwrap_or_default());
            match fs::symlink_metadata(&source) {
                Ok(meta) if meta.is_dir() => {
                    return Err(format!("hardlink to directory {}", link.display()));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "hardlink target {} is not in this layer",
                        link.display()
                    ));
                }
            }
            if source == target {
                return Ok(None);
            }
            remove_existing(&target)?;
            fs::hard_link(&source, &target).map_err(|e| format!("create hardlink: {e}"))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let flag = match kind {
                EntryType::Char => SFlag::S_IFCHR,
                EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            remove_existing(&target)?;
            let dev = makedev(u64::from(device.0), u64::from(device.1));
            mknod(&target, flag, Mode::from_bits_truncate(0o600), dev)
                .map_err(|e| format!("mknod: {e}"))?;
            apply_metadata(&target, uid, gid, Some(mode), Some(mtime), &xattrs)?;
        }
        EntryType::GNUSparse => return Err("sparse files are not supported".into()),
        other => tracing::debug!(?other, path = %rel.display(), "skipping tar entry type"),
    }
    Ok(None)
}

/// Extended attributes carried in PAX `SCHILY.xattr.*` records.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let Some(extensions) = entry.pax_extensions().map_err(|e| format!("pax: {e}"))? else {
        return Ok(out);
    };
    for extension in extensions {
        let extension = extension.map_err(|e| format!("pax: {e}"))?;
        if let Ok(key) = extension.key()
            && let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
        {
            out.push((name.to_string(), extension.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

/// Owner first (chown clears set-id bits), then mode, xattrs and mtime; never follows symlinks.
fn apply_metadata(
    target: &Path,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    mtime: Option<u64>,
    xattrs: &[(String, Vec<u8>)],
) -> Result<(), String> {
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
    if let Some(mode) = mode {
        fs::set_permissions(target, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod: {e}"))?;
    }
    for (name, value) in xattrs {
        xattr::set(target, name, value).map_err(|e| format!("set xattr {name}: {e}"))?;
    }
    if let Some(mtime) = mtime {
        set_mtime(target, mtime).map_err(|e| format!("set mtime: {e}"))?;
    }
    Ok(())
}

fn set_mtime(target: &Path, mtime: u64) -> nix::Result<()> {
    let seconds = i64::try_from(mtime).unwrap_or(i64::MAX);
    let time = TimeSpec::new(seconds, 0);
    utimensat(None, target, &time, &time, UtimensatFlags::NoFollowSymlink)
}

/// Creates the missing directories of `parent_rel` under `root` (mode 0755) and refuses to go
/// through a symlink or a non-directory.
fn ensure_parent(root: &Path, parent_rel: &Path) -> Result<PathBuf, String> {
    let mut current = root.to_path_buf();
    for part in parent_rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "parent {} is a symlink: refusing to unpack through it",
                    display_rel(root, &current)
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "parent {} is not a directory",
                    display_rel(root, &current)
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&current)
                    .map_err(|e| format!("create parent directory: {e}"))?;
            }
            Err(e) => return Err(format!("inspect {}: {e}", display_rel(root, &current))),
        }
    }
    Ok(current)
}

/// Like `ensure_parent` but only checks (a hardlink source must already exist).
fn check_parent(root: &Path, parent_rel: &Path) -> Result<PathBuf, String> {
    let mut current = root.to_path_buf();
    for part in parent_rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            _ => {
                return Err(format!(
                    "hardlink source directory {} is missing or not a directory in this layer",
                    display_rel(root, &current)
                ));
            }
        }
    }
    Ok(current)
}

fn display_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn remove_existing(target: &Path) -> Result<(), String> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(target),
        Ok(_) => fs::remove_file(target),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| format!("replace existing {}: {e}", target.display()))
}

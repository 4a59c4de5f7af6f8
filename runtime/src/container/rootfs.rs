//! The container's root filesystem: an overlayfs of the image layers with a per-container upper dir.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Overlay mount options must fit in one page.
const MAX_MOUNT_DATA: usize = 4095;

/// What can go wrong mounting or unmounting a container's root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("path {0:?} is not utf-8")]
    NotUtf8(PathBuf),
    #[error("path {0:?} contains ':' or ',' which overlayfs cannot take")]
    Separator(String),
    #[error(
        "overlay options are {0} bytes, over the {MAX_MOUNT_DATA} byte limit: use fewer layers or shorter paths"
    )]
    TooLong(usize),
    #[error("creating {path:?}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting overlay at {target:?}: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("unmounting {target:?}: {source}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Builds the overlayfs option string. `layers` are bottom to top; overlay wants top first.
pub fn overlay_options(layers: &[&Path], upper: &Path, work: &Path) -> Result<String, RootfsError> {
    let mut all: Vec<&Path> = layers.to_vec();
    all.push(upper);
    all.push(work);
    for p in &all {
        let s = p
            .to_str()
            .ok_or_else(|| RootfsError::NotUtf8(p.to_path_buf()))?;
        if s.contains([':', ',']) {
            return Err(RootfsError::Separator(s.to_string()));
        }
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::TooLong(data.len()));
    }
    Ok(data)
}

/// Mounts the overlay at `target`, creating `upper`, `work` and `target` as needed.
pub fn mount_overlay(
    layers: &[&Path],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    let data = overlay_options(layers, upper, work)?;
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir).map_err(|source| RootfsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// Unmounts `target` (lazily if busy); not mounted or missing is fine.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    loop {
        match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
            // Stacked mounts: keep going until nothing is mounted there.
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(RootfsError::Unmount {
                    target: target.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// True when `path` is listed as a mount point in /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == wanted)
}

/// Every mount point of this process's mount namespace, as /proc/self/mountinfo lists them.
pub fn mount_points() -> Vec<std::path::PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| std::path::PathBuf::from(unescape_mountinfo(mp)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_layer_comes_first() {
        let (a, b) = (Path::new("/l/a"), Path::new("/l/b"));
        let opts = overlay_options(&[a, b], Path::new("/c/upper"), Path::new("/c/work")).unwrap();
        assert_eq!(opts, "lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work");
    }

    #[test]
    fn rejects_separators_and_oversize() {
        let bad = Path::new("/l/a:b");
        assert!(overlay_options(&[bad], Path::new("/u"), Path::new("/w")).is_err());
        let long = format!("/{}", "x".repeat(200));
        let many: Vec<&Path> = (0..30).map(|_| Path::new(long.as_str())).collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w")).is_err());
    }
}

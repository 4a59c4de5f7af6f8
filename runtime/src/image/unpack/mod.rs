//! Layer unpacking: one directory per layer under `layers/<diff_id hex>`, written into a temporary
//! directory, checked against the diff_id, synced, and renamed into place, so a crash never leaves
//! a half layer that looks complete. The directories are overlayfs lowerdirs.

mod extract;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::ImageError;
use super::blobs::unique_suffix;
use super::digest::{HashingReader, sha256_hex};

pub(crate) use extract::sanitize;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI or Docker layer media type.
    pub(crate) fn from_media_type(media_type: &str) -> Result<Self, ImageError> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            other => Err(ImageError::Manifest {
                what: "layer".into(),
                reason: format!("unsupported layer media type {other:?}"),
            }),
        }
    }

    /// From the first bytes of a blob (docker archives carry no media types).
    pub(crate) fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type for a layer compressed this way.
    pub(crate) fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// The directory a layer with this diff_id unpacks into.
pub(crate) fn layer_dir(layers_root: &Path, diff_id: &str) -> Result<PathBuf, ImageError> {
    Ok(layers_root.join(sha256_hex(diff_id)?))
}

/// Removes temporary directories left by unpacks that crashed.
pub(crate) fn clear_stale(layers_root: &Path) {
    let Ok(entries) = fs::read_dir(layers_root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Unpacks `blob` (compressed as given) into `layers/<diff_id hex>` unless it is already there.
/// The uncompressed stream must hash to `diff_id`.
pub(crate) fn unpack_layer(
    blob: File,
    compression: Compression,
    diff_id: &str,
    layers_root: &Path,
) -> Result<PathBuf, ImageError> {
    let target = layer_dir(layers_root, diff_id)?;
    if target.is_dir() {
        return Ok(target);
    }
    let hex = sha256_hex(diff_id)?;
    let tmp = layers_root.join(format!(".tmp-{}-{}", &hex[..12], unique_suffix()));
    fs::create_dir(&tmp)
        .map_err(|e| ImageError::io(format!("create directory {}", tmp.display()), e))?;
    let result = unpack_into(blob, compression, diff_id, &tmp).and_then(|()| {
        match fs::rename(&tmp, &target) {
            Ok(()) => Ok(()),
            // Another unpack of the same layer won the race: keep its copy.
            Err(_) if target.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(ImageError::io(
                format!("rename layer into {}", target.display()),
                e,
            )),
        }
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

fn unpack_into(
    blob: File,
    compression: Compression,
    diff_id: &str,
    dir: &Path,
) -> Result<(), ImageError> {
    let buffered = BufReader::with_capacity(256 * 1024, blob);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(
            |e| ImageError::Layer {
                layer: diff_id.to_string(),
                reason: format!("zstd: {e}"),
            },
        )?),
    };
    let mut archive = tar::Archive::new(HashingReader::new(decompressed));
    extract::extract(&mut archive, dir, diff_id)?;
    let (actual, _) = archive
        .into_inner()
        .finish()
        .map_err(|e| ImageError::Layer {
            layer: diff_id.to_string(),
            reason: format!("read layer: {e}"),
        })?;
    if actual != diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("layer {diff_id} (uncompressed)"),
            expected: diff_id.to_string(),
            actual,
        });
    }
    // Make the contents durable before the rename makes the layer visible.
    let handle =
        File::open(dir).map_err(|e| ImageError::io(format!("open {}", dir.display()), e))?;
    nix::unistd::syncfs(handle.as_raw_fd()).map_err(|e| {
        ImageError::io(
            format!("sync {}", dir.display()),
            std::io::Error::from_raw_os_error(e as i32),
        )
    })?;
    Ok(())
}

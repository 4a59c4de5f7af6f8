//! The project's test image: Debian's busybox-static as a one-layer OCI archive
//! (`skiff.local/busybox:latest`), byte-identical for the same busybox binary (fixed mtimes,
//! sorted entries, no host names or ids), plus the small builders it uses, public so tests can
//! make other images (for example one with a large random layer).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::blobs::write_file_atomically;
use super::digest::sha256_digest;
use super::manifest::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
    host_architecture,
};
use super::unpack::Compression;
use super::{ImageConfig, ImageError};

/// Reference of the test image.
pub const TEST_IMAGE_REFERENCE: &str = "skiff.local/busybox:latest";
/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// Every entry of a built layer or archive carries this mtime (2023-11-14).
pub const FIXED_MTIME: u64 = 1_700_000_000;
/// `PATH` in the test image's config.
pub const TEST_IMAGE_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Applets linked to `/bin/busybox` in the test image.
pub const APPLETS: &[&str] = &[
    "[", "awk", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname",
    "du", "echo", "env", "expr", "false", "find", "grep", "head", "hostname", "httpd", "id", "ip",
    "kill", "ln", "ls", "mkdir", "mkfifo", "mount", "mv", "nc", "nslookup", "ping", "printf", "ps",
    "pwd", "readlink", "rm", "rmdir", "sed", "seq", "sh", "sleep", "sort", "stat", "tail", "tee",
    "test", "timeout", "top", "touch", "tr", "true", "umount", "uname", "uniq", "vi", "wc", "wget",
    "which", "whoami", "xargs", "yes",
];

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// Digests of a built image, for tests to compare with what a store recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub reference: String,
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
    pub diff_ids: Vec<String>,
}

/// One entry of a layer built by [`layer_tar`].
#[derive(Debug, Clone)]
pub enum LayerEntry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

impl LayerEntry<'_> {
    fn path(&self) -> &str {
        match self {
            LayerEntry::Dir { path, .. }
            | LayerEntry::File { path, .. }
            | LayerEntry::Symlink { path, .. } => path,
        }
    }
}

/// A deterministic layer tar: entries sorted by path, owned by 0:0, mtime [`FIXED_MTIME`].
pub fn layer_tar(entries: &[LayerEntry<'_>]) -> Result<Vec<u8>, ImageError> {
    let mut sorted: Vec<&LayerEntry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path().cmp(b.path()));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in sorted {
        let fail = |e: std::io::Error| ImageError::io(format!("tar entry {}", entry.path()), e);
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(FIXED_MTIME);
        let data: &[u8] = match entry {
            LayerEntry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header
                    .set_path(format!("{}/", path.trim_end_matches('/')))
                    .map_err(fail)?;
                header.set_mode(*mode);
                b""
            }
            LayerEntry::File { path, mode, data } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_path(path).map_err(fail)?;
                header.set_mode(*mode);
                data
            }
            LayerEntry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_path(path).map_err(fail)?;
                header.set_link_name(target).map_err(fail)?;
                header.set_mode(0o777);
                b""
            }
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).map_err(fail)?;
    }
    builder
        .into_inner()
        .map_err(|e| ImageError::io("finish layer tar", e))
}

/// A layer for [`write_oci_archive`]: the uncompressed tar and whether to gzip it.
#[derive(Debug, Clone)]
pub struct ArchiveLayer {
    pub tar: Vec<u8>,
    pub gzip: bool,
}

/// Writes a single-image OCI archive (OCI layout in a tar) named `reference` to `out`.
pub fn write_oci_archive(
    out: &Path,
    reference: &str,
    layers: &[ArchiveLayer],
    config: &ImageConfig,
) -> Result<BuiltImage, ImageError> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for layer in layers {
        diff_ids.push(sha256_digest(&layer.tar));
        let (bytes, compression) = if layer.gzip {
            let mut encoder = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(&layer.tar)
                .map_err(|e| ImageError::io("gzip layer", e))?;
            let bytes = encoder
                .finish()
                .map_err(|e| ImageError::io("gzip layer", e))?;
            (bytes, Compression::Gzip)
        } else {
            (layer.tar.clone(), Compression::None)
        };
        let digest = sha256_digest(&bytes);
        layer_descriptors.push(json!({
            "mediaType": compression.oci_media_type(),
            "digest": digest,
            "size": bytes.len(),
        }));
        layer_digests.push(digest.clone());
        blobs.push((digest, bytes));
    }
    let config_json = json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": host_architecture(),
        "os": "linux",
        "config": {
            "Entrypoint": config.entrypoint,
            "Cmd": config.cmd,
            "Env": config.env,
            "WorkingDir": config.working_dir.clone().unwrap_or_default(),
            "User": config.user.clone().unwrap_or_default(),
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config_bytes = to_json(&config_json)?;
    let config_digest = sha256_digest(&config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len() },
        "layers": layer_descriptors,
    });
    let manifest_bytes = to_json(&manifest)?;
    let manifest_digest = sha256_digest(&manifest_bytes);
    let manifest_size = manifest_bytes.len() as u64;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": { ANNOTATION_IMAGE_NAME: reference, ANNOTATION_REF_NAME: reference },
        }],
    });
    blobs.push((config_digest.clone(), config_bytes));
    blobs.push((manifest_digest.clone(), manifest_bytes));
    blobs.sort();
    blobs.dedup_by(|a, b| a.0 == b.0);

    let mut files: Vec<(String, Vec<u8>)> = blobs
        .into_iter()
        .map(|(digest, bytes)| (format!("blobs/{}", digest.replacen(':', "/", 1)), bytes))
        .collect();
    files.push(("index.json".into(), to_json(&index)?));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    let mut entries = vec![
        LayerEntry::Dir {
            path: "blobs",
            mode: 0o755,
        },
        LayerEntry::Dir {
            path: "blobs/sha256",
            mode: 0o755,
        },
    ];
    entries.extend(files.iter().map(|(path, data)| LayerEntry::File {
        path,
        mode: 0o644,
        data,
    }));
    write_file_atomically(out, &layer_tar(&entries)?)?;
    Ok(BuiltImage {
        reference: reference.to_string(),
        manifest_digest,
        manifest_size,
        config_digest,
        layer_digests,
        diff_ids,
    })
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| ImageError::json("test image", e))
}

/// The single layer of the test image for this busybox binary.
pub fn busybox_layer_tar(busybox: &[u8]) -> Result<Vec<u8>, ImageError> {
    let applet_paths: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![
        LayerEntry::Dir {
            path: "bin",
            mode: 0o755,
        },
        LayerEntry::File {
            path: "bin/busybox",
            mode: 0o755,
            data: busybox,
        },
        LayerEntry::Dir {
            path: "dev",
            mode: 0o755,
        },
        LayerEntry::Dir {
            path: "etc",
            mode: 0o755,
        },
        LayerEntry::File {
            path: "etc/group",
            mode: 0o644,
            data: GROUP.as_bytes(),
        },
        LayerEntry::File {
            path: "etc/hosts",
            mode: 0o644,
            data: b"",
        },
        LayerEntry::File {
            path: "etc/passwd",
            mode: 0o644,
            data: PASSWD.as_bytes(),
        },
        LayerEntry::File {
            path: "etc/resolv.conf",
            mode: 0o644,
            data: b"",
        },
        LayerEntry::Dir {
            path: "proc",
            mode: 0o555,
        },
        LayerEntry::Dir {
            path: "root",
            mode: 0o700,
        },
        LayerEntry::Dir {
            path: "sys",
            mode: 0o555,
        },
        LayerEntry::Dir {
            path: "tmp",
            mode: 0o1777,
        },
        LayerEntry::Dir {
            path: "usr",
            mode: 0o755,
        },
        LayerEntry::Dir {
            path: "usr/bin",
            mode: 0o755,
        },
        LayerEntry::Symlink {
            path: "usr/bin/env",
            target: "/bin/busybox",
        },
        LayerEntry::Dir {
            path: "var",
            mode: 0o755,
        },
    ];
    entries.extend(applet_paths.iter().map(|path| LayerEntry::Symlink {
        path,
        target: "busybox",
    }));
    layer_tar(&entries)
}

/// The test image's config: `sh`, a standard `PATH`, working dir `/`.
pub fn busybox_config() -> ImageConfig {
    ImageConfig {
        entrypoint: Vec::new(),
        cmd: vec!["sh".into()],
        env: vec![TEST_IMAGE_PATH.into()],
        working_dir: Some("/".into()),
        user: None,
    }
}

/// Builds the test image from `/bin/busybox` (package busybox-static) into `out`.
pub fn build_busybox_oci_archive(out: &Path) -> Result<BuiltImage, ImageError> {
    build_busybox_oci_archive_from(Path::new(BUSYBOX_PATH), out)
}

/// Builds the test image from the given busybox binary (must be statically linked).
pub fn build_busybox_oci_archive_from(
    busybox: &Path,
    out: &Path,
) -> Result<BuiltImage, ImageError> {
    let binary = std::fs::read(busybox).map_err(|e| {
        ImageError::io(
            format!(
                "read {} (install Debian's busybox-static)",
                busybox.display()
            ),
            e,
        )
    })?;
    let layer = ArchiveLayer {
        tar: busybox_layer_tar(&binary)?,
        gzip: true,
    };
    write_oci_archive(out, TEST_IMAGE_REFERENCE, &[layer], &busybox_config())
}

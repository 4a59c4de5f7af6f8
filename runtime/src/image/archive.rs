//! Import of image archives: OCI archives (`skopeo copy ... oci-archive:FILE:NAME`) and docker
//! archives (`podman save`, `skopeo copy ... docker-archive:FILE:NAME`), optionally gzipped.
//! Every file of the archive is streamed into the blob store once, then the archive's own
//! index is read back from the store; digests are verified on the way.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::digest::sha256_hex;
use super::manifest::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, DockerArchiveEntry, ManifestDoc, OCI_CONFIG,
    OCI_MANIFEST,
};
use super::records::ImageRecord;
use super::reference::normalize_reference;
use super::unpack::{Compression, sanitize};
use super::{ImageError, ImageInfo, ImageStore};

/// Archive path -> digest of its content in the blob store.
type ArchiveFiles = BTreeMap<String, String>;

#[derive(Serialize)]
struct SynthesizedDescriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: u64,
}

#[derive(Serialize)]
struct SynthesizedManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: SynthesizedDescriptor<'a>,
    layers: Vec<SynthesizedDescriptor<'a>>,
}

impl ImageStore {
    /// Imports every image an archive names and returns them (one entry per reference).
    /// Blocking: call from a blocking thread.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<ImageInfo>, ImageError> {
        let files = self.ingest_archive(path)?;
        let fail = |reason: String| ImageError::Archive {
            path: path.to_path_buf(),
            reason,
        };
        let images = if files.contains_key("manifest.json") {
            self.docker_images(&files, &fail)?
        } else if files.contains_key("index.json") {
            self.oci_images(&files, &fail)?
        } else {
            return Err(fail(
                "neither index.json (OCI archive) nor manifest.json (docker archive) found".into(),
            ));
        };
        let mut out = Vec::new();
        for (references, record) in images {
            out.extend(self.commit(&references, &record)?);
        }
        Ok(out)
    }

    /// Streams every regular file of the archive into the blob store; resolves links.
    fn ingest_archive(&self, path: &Path) -> Result<ArchiveFiles, ImageError> {
        let fail = |reason: String| ImageError::Archive {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path)
            .map_err(|e| ImageError::io(format!("open archive {}", path.display()), e))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let head = reader
            .fill_buf()
            .map_err(|e| ImageError::io(format!("read archive {}", path.display()), e))?;
        let decompressed: Box<dyn Read> = match Compression::sniff(head) {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(reader)
                    .map_err(|e| fail(format!("zstd: {e}")))?,
            ),
            Compression::None => Box::new(reader),
        };
        let mut archive = tar::Archive::new(decompressed);
        let mut files = ArchiveFiles::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let entries = archive.entries().map_err(|e| fail(tar_failure(0, &e)))?;
        for (before, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| fail(tar_failure(before, &e)))?;
            let raw = entry
                .path()
                .map_err(|_| fail(format!("entry {} has an unreadable name", before + 1)))?
                .into_owned();
            let Some(name) = archive_path(&raw).map_err(&fail)? else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let what = format!("archive {}: {name}", path.display());
                    let (digest, _) = self.inner.blobs.ingest(&mut entry, None, &what)?;
                    files.insert(name, digest);
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = entry
                        .link_name()
                        .map_err(|e| fail(e.to_string()))?
                        .ok_or_else(|| fail(format!("{name}: link without target")))?;
                    let base = if kind == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    let resolved = archive_path(&lexical(&base)).map_err(&fail)?;
                    links.push((name, resolved.unwrap_or_default()));
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(digest) = files.get(&target).cloned() {
                files.insert(name, digest);
            }
        }
        // An OCI layout names blobs by digest: hold it to that.
        for (name, digest) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/")
                && sha256_hex(digest)? != hex
            {
                return Err(ImageError::DigestMismatch {
                    what: format!("archive {}: {name}", path.display()),
                    expected: format!("sha256:{hex}"),
                    actual: digest.clone(),
                });
            }
        }
        Ok(files)
    }

    fn oci_images(
        &self,
        files: &ArchiveFiles,
        fail: &dyn Fn(String) -> ImageError,
    ) -> Result<Vec<(Vec<String>, ImageRecord)>, ImageError> {
        let index_blob = files
            .get("index.json")
            .ok_or_else(|| fail("index.json is missing".into()))?;
        let index = ManifestDoc::parse(&self.inner.blobs.read(index_blob)?, "index.json")?;
        let mut by_manifest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for descriptor in &index.manifests {
            let name = descriptor
                .annotations
                .get(ANNOTATION_IMAGE_NAME)
                .or_else(|| descriptor.annotations.get(ANNOTATION_REF_NAME))
                .ok_or_else(|| {
                    fail(format!(
                        "index.json entry {} has no image name annotation: copy it with \
                         skopeo copy ... oci-archive:FILE:NAME",
                        descriptor.digest
                    ))
                })?;
            let reference = normalize_reference(name)?;
            self.check_stored(&descriptor.digest, descriptor.size, fail)?;
            let what = format!("manifest {}", descriptor.digest);
            let doc = ManifestDoc::parse(&self.inner.blobs.read(&descriptor.digest)?, &what)?;
            let manifest = if doc.is_index() {
                let chosen = doc.pick_platform(&what)?;
                self.check_stored(&chosen.digest, chosen.size, fail)?;
                chosen.digest.clone()
            } else {
                descriptor.digest.clone()
            };
            by_manifest.entry(manifest).or_default().push(reference);
        }
        by_manifest
            .into_iter()
            .map(|(manifest, references)| Ok((references, self.record_from_manifest(&manifest)?)))
            .collect()
    }

    fn docker_images(
        &self,
        files: &ArchiveFiles,
        fail: &dyn Fn(String) -> ImageError,
    ) -> Result<Vec<(Vec<String>, ImageRecord)>, ImageError> {
        let manifest_blob = files
            .get("manifest.json")
            .ok_or_else(|| fail("manifest.json is missing".into()))?;
        let entries: Vec<DockerArchiveEntry> =
            serde_json::from_slice(&self.inner.blobs.read(manifest_blob)?)
                .map_err(|e| ImageError::json("manifest.json", e))?;
        let lookup = |name: &str| {
            files
                .get(name.trim_start_matches("./"))
                .cloned()
                .ok_or_else(|| {
                    fail(format!(
                        "manifest.json names {name:?} but the archive lacks it"
                    ))
                })
        };
        let mut images = Vec::new();
        for entry in entries {
            let references = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|tag| normalize_reference(tag))
                .collect::<Result<Vec<_>, _>>()?;
            if references.is_empty() {
                return Err(fail(format!(
                    "image {} has no RepoTags: save it by name (podman save NAME:TAG)",
                    entry.config
                )));
            }
            let config = lookup(&entry.config)?;
            // Configs are named after their digest (`<hex>.json` or `blobs/sha256/<hex>`).
            let stem = Path::new(&entry.config)
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.trim_end_matches(".json"))
                .unwrap_or_default();
            if stem.len() == 64 && sha256_hex(&config)? != stem {
                return Err(ImageError::DigestMismatch {
                    what: format!("config {}", entry.config),
                    expected: format!("sha256:{stem}"),
                    actual: config,
                });
            }
            let mut layers = Vec::new();
            for name in &entry.layers {
                let digest = lookup(name)?;
                let compression = Compression::sniff(&self.blob_head(&digest)?);
                let size = self.inner.blobs.size(&digest)?;
                layers.push((digest, compression.oci_media_type(), size));
            }
            let manifest = SynthesizedManifest {
                schema_version: 2,
                media_type: OCI_MANIFEST,
                config: SynthesizedDescriptor {
                    media_type: OCI_CONFIG,
                    digest: &config,
                    size: self.inner.blobs.size(&config)?,
                },
                layers: layers
                    .iter()
                    .map(|(digest, media_type, size)| SynthesizedDescriptor {
                        media_type,
                        digest,
                        size: *size,
                    })
                    .collect(),
            };
            let bytes =
                serde_json::to_vec(&manifest).map_err(|e| ImageError::json("manifest", e))?;
            let digest = self
                .inner
                .blobs
                .write_bytes(&bytes, None, "synthesized manifest")?;
            images.push((references, self.record_from_manifest(&digest)?));
        }
        Ok(images)
    }

    fn check_stored(
        &self,
        digest: &str,
        size: u64,
        fail: &dyn Fn(String) -> ImageError,
    ) -> Result<(), ImageError> {
        if !self.inner.blobs.exists(digest)? {
            return Err(fail(format!("blob {digest} is referenced but missing")));
        }
        let actual = self.inner.blobs.size(digest)?;
        if actual != size {
            return Err(ImageError::SizeMismatch {
                what: format!("blob {digest}"),
                expected: size,
                actual,
            });
        }
        Ok(())
    }
}

/// Why reading the tar stream failed, without the tar crate's text: it quotes the header bytes
/// it could not parse, which for a file that is no archive at all (`/etc/shadow`) are that
/// file's contents. Only an operating-system error (EIO...) is passed on.
fn tar_failure(entries_read: usize, error: &std::io::Error) -> String {
    let cause = match error.raw_os_error() {
        Some(_) => format!(" ({error})"),
        None => String::new(),
    };
    if entries_read == 0 {
        format!(
            "not a tar archive (OCI or docker){cause}: save one with \
             skopeo copy ... oci-archive:FILE:NAME or podman save"
        )
    } else {
        format!("the tar archive is damaged after {entries_read} entries{cause}")
    }
}

/// `./blobs/sha256/x` -> `blobs/sha256/x`; refuses `..`.
fn archive_path(path: &Path) -> Result<Option<String>, String> {
    Ok(sanitize(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .map(|p| p.to_string_lossy().into_owned()))
}

/// Resolves `..` lexically (symlink targets inside an archive such as `../blobs/sha256/x`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

//! `ImageStore`: the node's one image store. Resolves, lists and removes images, and hands out
//! unpacked layer directories (bottom to top) for overlayfs.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::blobs::BlobStore;
use super::manifest::{ConfigDoc, ManifestDoc};
use super::records::{ImageRecord, LayerRecord, Records, SharedDb};
use super::reference::normalize_reference;
use super::unpack::{self, Compression};
use super::{ImageError, ImageInfo};

/// The content store. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) blobs: BlobStore,
    pub(crate) layers_root: PathBuf,
    pub(crate) records: Records,
    /// One download at a time per blob digest (in this process).
    pub(crate) blob_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`, with metadata in `db`. Leftovers of
    /// interrupted writes and unpacks are removed, so open each root once per node (the agent);
    /// partial downloads are kept for resuming.
    pub fn open(root: &Path, db: SharedDb) -> Result<Self, ImageError> {
        let layers_root = root.join("layers");
        fs::create_dir_all(&layers_root).map_err(|e| {
            ImageError::io(format!("create directory {}", layers_root.display()), e)
        })?;
        unpack::clear_stale(&layers_root);
        let blobs = BlobStore::open(root.join("blobs"))?;
        let records = Records::open(db, root.join("refs"))?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                blobs,
                layers_root,
                records,
                blob_locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The image stored under `reference` (normalized first), if any.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageInfo>, ImageError> {
        let reference = normalize_reference(reference)?;
        Ok(self
            .inner
            .records
            .get(&reference)?
            .map(|r| r.info(&reference)))
    }

    /// Every stored image, ordered by reference.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        Ok(self
            .inner
            .records
            .all()?
            .into_iter()
            .map(|(reference, record)| record.info(&reference))
            .collect())
    }

    /// Forgets `reference` and deletes the blobs no other image needs. Unpacked layer directories
    /// stay (running containers may use them as lowerdirs). Returns whether it was stored.
    pub fn remove(&self, reference: &str) -> Result<bool, ImageError> {
        let reference = normalize_reference(reference)?;
        let Some(removed) = self.inner.records.remove(&reference)? else {
            return Ok(false);
        };
        let remaining = self.inner.records.all()?;
        let kept: BTreeSet<&str> = remaining.iter().flat_map(|(_, r)| r.blobs()).collect();
        for blob in removed.blobs().filter(|b| !kept.contains(b)) {
            self.inner.blobs.remove(blob)?;
        }
        Ok(true)
    }

    /// The unpacked layer directories of `image`, bottom to top, unpacking any that are missing.
    /// Blocking: call from a blocking thread.
    pub fn layer_dirs(&self, image: &ImageInfo) -> Result<Vec<PathBuf>, ImageError> {
        image
            .layers
            .iter()
            .map(|diff_id| {
                let dir = unpack::layer_dir(&self.inner.layers_root, diff_id)?;
                if dir.is_dir() {
                    return Ok(dir);
                }
                let layer =
                    self.inner
                        .records
                        .layer(diff_id)?
                        .ok_or_else(|| ImageError::Layer {
                            layer: diff_id.clone(),
                            reason: format!(
                                "not recorded in the store: pull or import {} again",
                                image.reference
                            ),
                        })?;
                self.unpack(&layer)
            })
            .collect()
    }

    pub(crate) fn unpack(&self, layer: &LayerRecord) -> Result<PathBuf, ImageError> {
        let compression = Compression::from_media_type(&layer.media_type)?;
        let blob = self
            .inner
            .blobs
            .open_blob(&layer.blob)
            .map_err(|e| ImageError::Layer {
                layer: layer.diff_id.clone(),
                reason: format!(
                    "blob {} is missing ({e}): pull or import the image again",
                    layer.blob
                ),
            })?;
        unpack::unpack_layer(blob, compression, &layer.diff_id, &self.inner.layers_root)
    }

    /// Builds the record of the image whose manifest, config and layer blobs are all stored.
    pub(crate) fn record_from_manifest(
        &self,
        manifest_digest: &str,
    ) -> Result<ImageRecord, ImageError> {
        let what = format!("manifest {manifest_digest}");
        let doc = ManifestDoc::parse(&self.inner.blobs.read(manifest_digest)?, &what)?;
        let (config, layers) = doc.image_parts(&what)?;
        let config_what = format!("config {}", config.digest);
        let config_doc = ConfigDoc::parse(&self.inner.blobs.read(&config.digest)?, &config_what)?;
        let diff_ids = &config_doc.rootfs.diff_ids;
        if diff_ids.len() != layers.len() {
            return Err(ImageError::Manifest {
                what,
                reason: format!(
                    "{} layers but the config lists {} diff_ids",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut records = Vec::with_capacity(layers.len());
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            Compression::from_media_type(&layer.media_type)?;
            let size = self.inner.blobs.size(&layer.digest)?;
            if size != layer.size {
                return Err(ImageError::SizeMismatch {
                    what: format!("layer {}", layer.digest),
                    expected: layer.size,
                    actual: size,
                });
            }
            records.push(LayerRecord {
                diff_id: diff_id.clone(),
                blob: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                size,
            });
        }
        Ok(ImageRecord {
            digest: manifest_digest.to_string(),
            config_digest: config.digest.clone(),
            config: config_doc.image_config(),
            size: config.size + records.iter().map(|l| l.size).sum::<u64>(),
            layers: records,
        })
    }

    /// Unpacks every layer (verifying diff_ids) and records the image under `references`.
    pub(crate) fn commit(
        &self,
        references: &[String],
        record: &ImageRecord,
    ) -> Result<Vec<ImageInfo>, ImageError> {
        for layer in &record.layers {
            self.unpack(layer)?;
        }
        self.inner.records.put(references, record)?;
        for reference in references {
            tracing::info!(%reference, digest = %record.digest, "image stored");
        }
        Ok(references.iter().map(|r| record.info(r)).collect())
    }

    /// First bytes of a stored blob (to sniff compression).
    pub(crate) fn blob_head(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let mut head = Vec::with_capacity(8);
        self.inner
            .blobs
            .open_blob(digest)?
            .take(8)
            .read_to_end(&mut head)
            .map_err(|e| ImageError::io(format!("read blob {digest}"), e))?;
        Ok(head)
    }
}

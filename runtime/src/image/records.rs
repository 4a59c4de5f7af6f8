//! Image metadata in the node's redb database: `image_refs` (reference -> image record) and
//! `image_layers` (diff_id -> the blob it unpacks from), both JSON values.
//!
//! Each reference is also mirrored as a small JSON file under the image root (`refs/`), next
//! to the blobs it names: if the database loses the tables (a store rebuilt after a power cut),
//! opening the image store brings them back from the mirror instead of forgetting every image.

use std::path::PathBuf;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{ImageConfig, ImageError, ImageInfo};

const REFS: TableDefinition<&str, &str> = TableDefinition::new("image_refs");
const LAYERS: TableDefinition<&str, &str> = TableDefinition::new("image_layers");

/// What the store remembers about one image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Digest of the image manifest (for a pulled index: the platform manifest).
    pub digest: String,
    pub config_digest: String,
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    pub size: u64,
}

/// One layer: its uncompressed digest (the unpacked directory's name) and its stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub diff_id: String,
    pub blob: String,
    pub media_type: String,
    pub size: u64,
}

impl ImageRecord {
    pub(crate) fn info(&self, reference: &str) -> ImageInfo {
        ImageInfo {
            reference: reference.to_string(),
            digest: self.digest.clone(),
            id: self.config_digest.clone(),
            config: self.config.clone(),
            layers: self.layers.iter().map(|l| l.diff_id.clone()).collect(),
            size: self.size,
        }
    }

    /// Every blob this image needs: manifest, config, layers.
    pub(crate) fn blobs(&self) -> impl Iterator<Item = &str> {
        [self.digest.as_str(), self.config_digest.as_str()]
            .into_iter()
            .chain(self.layers.iter().map(|l| l.blob.as_str()))
    }
}

#[derive(Clone)]
pub(crate) struct Records {
    db: SharedDb,
    /// `refs/` under the image root: one `<hex of the reference>.json` per reference.
    mirror: PathBuf,
}

/// One mirrored reference.
#[derive(Serialize, Deserialize)]
struct Mirrored {
    reference: String,
    record: ImageRecord,
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, json: &str) -> Result<T, ImageError> {
    serde_json::from_str(json).map_err(|e| ImageError::json(format!("image store record {key}"), e))
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<String, ImageError> {
    serde_json::to_string(value)
        .map_err(|e| ImageError::json(format!("image store record {key}"), e))
}

/// The node's database, shared with the agent. The agent swaps in a reopened database after an
/// I/O error (a full disk); it holds `None` while that happens, and every use then fails with
/// redb's `DatabaseClosed` until the reopened one is there. (The same type as
/// `skiff_cni::ipam::SharedDb`.)
pub type SharedDb = Arc<std::sync::RwLock<Option<Arc<Database>>>>;

/// A [`SharedDb`] holding `db` (tests and tools that never reopen).
pub fn shared(db: Database) -> SharedDb {
    Arc::new(std::sync::RwLock::new(Some(Arc::new(db))))
}

fn current(db: &SharedDb) -> Result<Arc<Database>, ImageError> {
    db.read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| ImageError::db("open", redb::StorageError::DatabaseClosed))
}

impl Records {
    fn database(&self) -> Result<Arc<Database>, ImageError> {
        current(&self.db)
    }

    /// Creates the tables if this database has never held images, then reconciles them with
    /// the mirror: empty tables are reloaded from it (the metadata was lost), otherwise the
    /// mirror is rewritten from the tables.
    pub(crate) fn open(db: SharedDb, mirror: PathBuf) -> Result<Self, ImageError> {
        std::fs::create_dir_all(&mirror)
            .map_err(|e| ImageError::io(format!("create directory {}", mirror.display()), e))?;
        let records = Records::open_tables(db, mirror)?;
        let all = records.all()?;
        if all.is_empty() {
            let mut reloaded = 0;
            for (reference, record) in records.read_mirror() {
                records.put(std::slice::from_ref(&reference), &record)?;
                reloaded += 1;
            }
            if reloaded > 0 {
                tracing::warn!(
                    "image metadata was missing: {reloaded} image reference(s) reloaded from {}",
                    records.mirror.display()
                );
            }
        } else {
            for (reference, record) in &all {
                records.write_mirror(reference, record)?;
            }
            let keep: std::collections::BTreeSet<String> =
                all.iter().map(|(r, _)| mirror_name(r)).collect();
            if let Ok(entries) = std::fs::read_dir(&records.mirror) {
                for entry in entries.flatten() {
                    if !keep.contains(&entry.file_name().to_string_lossy().into_owned()) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        Ok(records)
    }

    fn read_mirror(&self) -> Vec<(String, ImageRecord)> {
        let Ok(entries) = std::fs::read_dir(&self.mirror) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Mirrored>(&b).ok())
            {
                Some(m) => out.push((m.reference, m.record)),
                None => tracing::warn!(
                    "image reference mirror {}: unreadable, skipped",
                    path.display()
                ),
            }
        }
        out
    }

    fn write_mirror(&self, reference: &str, record: &ImageRecord) -> Result<(), ImageError> {
        let body = serde_json::to_vec(&Mirrored {
            reference: reference.to_string(),
            record: record.clone(),
        })
        .map_err(|e| ImageError::json(format!("image store record {reference}"), e))?;
        let path = self.mirror.join(mirror_name(reference));
        let tmp = self.mirror.join(format!(".{}.tmp", mirror_name(reference)));
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| ImageError::io(format!("write {}", path.display()), e))
    }

    fn open_tables(db: SharedDb, mirror: PathBuf) -> Result<Self, ImageError> {
        let txn = current(&db)?
            .begin_write()
            .map_err(|e| ImageError::db("begin write", e))?;
        txn.open_table(REFS)
            .map_err(|e| ImageError::db("open image_refs", e))?;
        txn.open_table(LAYERS)
            .map_err(|e| ImageError::db("open image_layers", e))?;
        txn.commit().map_err(|e| ImageError::db("commit", e))?;
        Ok(Records { db, mirror })
    }

    /// Records `record` under every reference, and its layers, in one transaction.
    pub(crate) fn put(
        &self,
        references: &[String],
        record: &ImageRecord,
    ) -> Result<(), ImageError> {
        let value = encode(&record.digest, record)?;
        let txn = self
            .database()?
            .begin_write()
            .map_err(|e| ImageError::db("begin write", e))?;
        {
            let mut refs = txn
                .open_table(REFS)
                .map_err(|e| ImageError::db("open image_refs", e))?;
            for reference in references {
                refs.insert(reference.as_str(), value.as_str())
                    .map_err(|e| ImageError::db("insert image reference", e))?;
            }
            let mut layers = txn
                .open_table(LAYERS)
                .map_err(|e| ImageError::db("open image_layers", e))?;
            for layer in &record.layers {
                let json = encode(&layer.diff_id, layer)?;
                layers
                    .insert(layer.diff_id.as_str(), json.as_str())
                    .map_err(|e| ImageError::db("insert image layer", e))?;
            }
        }
        txn.commit().map_err(|e| ImageError::db("commit", e))?;
        for reference in references {
            self.write_mirror(reference, record)?;
        }
        Ok(())
    }

    pub(crate) fn get(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let txn = self
            .database()?
            .begin_read()
            .map_err(|e| ImageError::db("begin read", e))?;
        let refs = txn
            .open_table(REFS)
            .map_err(|e| ImageError::db("open image_refs", e))?;
        let value = refs
            .get(reference)
            .map_err(|e| ImageError::db("read image reference", e))?;
        value.map(|v| decode(reference, v.value())).transpose()
    }

    /// Every (reference, record), ordered by reference.
    pub(crate) fn all(&self) -> Result<Vec<(String, ImageRecord)>, ImageError> {
        let txn = self
            .database()?
            .begin_read()
            .map_err(|e| ImageError::db("begin read", e))?;
        let refs = txn
            .open_table(REFS)
            .map_err(|e| ImageError::db("open image_refs", e))?;
        let mut out = Vec::new();
        for item in refs.iter().map_err(|e| ImageError::db("list images", e))? {
            let (key, value) = item.map_err(|e| ImageError::db("list images", e))?;
            out.push((key.value().to_string(), decode(key.value(), value.value())?));
        }
        Ok(out)
    }

    pub(crate) fn remove(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let txn = self
            .database()?
            .begin_write()
            .map_err(|e| ImageError::db("begin write", e))?;
        let removed = {
            let mut refs = txn
                .open_table(REFS)
                .map_err(|e| ImageError::db("open image_refs", e))?;
            let old = refs
                .remove(reference)
                .map_err(|e| ImageError::db("remove image reference", e))?;
            old.map(|v| decode::<ImageRecord>(reference, v.value()))
                .transpose()?
        };
        txn.commit().map_err(|e| ImageError::db("commit", e))?;
        let _ = std::fs::remove_file(self.mirror.join(mirror_name(reference)));
        Ok(removed)
    }

    pub(crate) fn layer(&self, diff_id: &str) -> Result<Option<LayerRecord>, ImageError> {
        let txn = self
            .database()?
            .begin_read()
            .map_err(|e| ImageError::db("begin read", e))?;
        let layers = txn
            .open_table(LAYERS)
            .map_err(|e| ImageError::db("open image_layers", e))?;
        let value = layers
            .get(diff_id)
            .map_err(|e| ImageError::db("read image layer", e))?;
        value.map(|v| decode(diff_id, v.value())).transpose()
    }
}

/// The mirror file of a reference (hex, so any reference is a safe file name).
fn mirror_name(reference: &str) -> String {
    format!("{}.json", hex::encode(reference.as_bytes()))
}

//! The content-addressed blob store: `blobs/sha256/<hex>` for verified blobs, `blobs/partial/<hex>`
//! for interrupted downloads, `blobs/tmp/` for writes in progress (renamed into place when verified).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ImageError;
use super::digest::{HashingWriter, sha256_file, sha256_hex};

#[derive(Debug, Clone)]
pub(crate) struct BlobStore {
    root: PathBuf,
}

/// A name no other writer in this or another process uses at the same time.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn create_dir(path: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(path)
        .map_err(|e| ImageError::io(format!("create directory {}", path.display()), e))
}

impl BlobStore {
    pub(crate) fn open(root: PathBuf) -> Result<Self, ImageError> {
        for sub in ["sha256", "partial", "tmp"] {
            create_dir(&root.join(sub))?;
        }
        let store = BlobStore { root };
        store.clear_tmp();
        Ok(store)
    }

    /// Leftovers of writes that crashed; nobody else writes there while the store opens.
    fn clear_tmp(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("sha256").join(sha256_hex(digest)?))
    }

    pub(crate) fn partial_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("partial").join(sha256_hex(digest)?))
    }

    pub(crate) fn exists(&self, digest: &str) -> Result<bool, ImageError> {
        Ok(self.path(digest)?.is_file())
    }

    pub(crate) fn size(&self, digest: &str) -> Result<u64, ImageError> {
        let path = self.path(digest)?;
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| ImageError::io(format!("blob {digest}"), e))
    }

    pub(crate) fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        let path = self.path(digest)?;
        File::open(&path).map_err(|e| ImageError::io(format!("open blob {digest}"), e))
    }

    /// Reads a small blob (manifest, config, index) into memory.
    pub(crate) fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::io(format!("read blob {digest}"), e))?;
        Ok(bytes)
    }

    /// Streams `reader` into the store. With `expected`, the content must hash to it; without,
    /// the blob is stored under whatever it hashes to. Returns the digest and size.
    pub(crate) fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
        what: &str,
    ) -> Result<(String, u64), ImageError> {
        if let Some(expected) = expected {
            sha256_hex(expected)?;
        }
        let tmp = self.root.join("tmp").join(unique_suffix());
        let result = self.ingest_into(reader, &tmp, expected, what);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn ingest_into(
        &self,
        reader: &mut dyn Read,
        tmp: &Path,
        expected: Option<&str>,
        what: &str,
    ) -> Result<(String, u64), ImageError> {
        let file = File::create(tmp)
            .map_err(|e| ImageError::io(format!("create {}", tmp.display()), e))?;
        let mut writer = HashingWriter::new(io::BufWriter::new(file));
        io::copy(reader, &mut writer).map_err(|e| ImageError::io(format!("write {what}"), e))?;
        let (digest, size, buffered) = writer.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| ImageError::io(format!("write {what}"), e.into_error()))?;
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        file.sync_all()
            .map_err(|e| ImageError::io(format!("sync {what}"), e))?;
        let dest = self.path(&digest)?;
        fs::rename(tmp, &dest)
            .map_err(|e| ImageError::io(format!("rename into {}", dest.display()), e))?;
        Ok((digest, size))
    }

    /// Stores bytes already in memory (manifests, configs).
    pub(crate) fn write_bytes(
        &self,
        bytes: &[u8],
        expected: Option<&str>,
        what: &str,
    ) -> Result<String, ImageError> {
        let mut reader = bytes;
        Ok(self.ingest(&mut reader, expected, what)?.0)
    }

    /// Verifies a finished download in `partial/` and moves it into the store. A blob that does
    /// not match is deleted so the next attempt starts over.
    pub(crate) fn commit_partial(
        &self,
        digest: &str,
        expected_size: Option<u64>,
        what: &str,
    ) -> Result<(), ImageError> {
        let partial = self.partial_path(digest)?;
        let (actual, size) = sha256_file(&partial)
            .map_err(|e| ImageError::io(format!("read downloaded {what}"), e))?;
        if actual != digest {
            let _ = fs::remove_file(&partial);
            return Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        if let Some(expected) = expected_size
            && expected != size
        {
            let _ = fs::remove_file(&partial);
            return Err(ImageError::SizeMismatch {
                what: what.to_string(),
                expected,
                actual: size,
            });
        }
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| ImageError::io(format!("sync downloaded {what}"), e))?;
        let dest = self.path(digest)?;
        fs::rename(&partial, &dest)
            .map_err(|e| ImageError::io(format!("rename into {}", dest.display()), e))
    }

    pub(crate) fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(format!("remove blob {digest}"), e)),
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".tmp-{}", unique_suffix()));
    let result = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ImageError::io(format!("write {}", path.display()), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::sha256_digest;

    #[test]
    fn ingest_verifies_and_stores_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let digest = store.write_bytes(b"abc", None, "test blob").unwrap();
        assert_eq!(digest, sha256_digest(b"abc"));
        assert_eq!(store.read(&digest).unwrap(), b"abc");

        let wrong = sha256_digest(b"xyz");
        let err = store
            .write_bytes(b"abc-other", Some(&wrong), "test blob")
            .unwrap_err();
        assert!(
            err.to_string().contains("digest mismatch"),
            "unexpected error: {err}"
        );
        assert!(!store.exists(&wrong).unwrap());
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(),
            0
        );
    }
}

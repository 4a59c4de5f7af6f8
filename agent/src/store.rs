//! The node's local store (redb under the data dir): last good manifest files, objects applied
//! through the API, and pod records with their container status, so that a restarted agent
//! re-adopts what runs instead of restarting it. Other crates keep their own tables in the same
//! database (images, IPAM).
//!
//! Commits are durable (redb fsyncs on commit): after a power cut the store holds every commit
//! that returned. Pod records are also mirrored as files in the run dir, so that a store lost or
//! emptied while containers run can be rebuilt (`--recover-store`) instead of the node starting
//! as new and killing its containers as orphans.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use skiff_cni::ipam::{SharedDb, shared};

/// The database in `db`, or redb's `DatabaseClosed` while the agent reopens it.
pub fn current(db: &SharedDb) -> Result<Arc<Database>, redb::StorageError> {
    db.read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or(redb::StorageError::DatabaseClosed)
}

/// Last good raw content of each manifest file, by path.
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_files");
/// Files applied through `skiff apply`, by name.
const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_applied");
/// Pod records (JSON), by pod uid.
const PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_pods");

/// The store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error(
        "local store {path} is {state} but {containers} container(s) of this node still run (in {run_dir}): refusing to start as a new node, which would stop them as orphans; start with --recover-store to re-adopt them and rebuild the store from the run dir, the manifests dir and the cluster"
    )]
    LostWithContainers {
        path: PathBuf,
        state: &'static str,
        containers: usize,
        run_dir: PathBuf,
    },
    #[error(
        "local store {path} cannot be opened: {source}; start with --recover-store to move it aside and rebuild the store from the run dir, the manifests dir and the cluster"
    )]
    Unopenable {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("local store {path}: pod record mirror {mirror}: {source}")]
    Mirror {
        path: PathBuf,
        mirror: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local store {path}: record {key:?} in {table} is unreadable: {source}")]
    Decode {
        path: PathBuf,
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The store's page cache (redb keeps the pages a transaction wrote in it: 1,000 objects
/// applied at once would otherwise hold megabytes for good). Small: the agent reads its
/// tables at start and then mostly writes, and the kernel's page cache holds the file anyway
/// (with 1,000 Services the cache was full at 256 KiB, a tenth of their whole cost).
const STORE_CACHE_BYTES: usize = 64 * 1024;

/// Handle on the node's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: SharedDb,
    path: PathBuf,
    /// Where each pod record is mirrored as `<uid>.json` (the run dir), if anywhere.
    mirror: Option<PathBuf>,
}

/// What [`Store::open_checked`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The store was there (or the node is new: no store and no containers).
    Normal,
    /// The store was missing, empty or unopenable and was rebuilt: `moved_aside` names where an
    /// unopenable file went; `pods` is how many pod records came back from the mirror.
    Recovered {
        moved_aside: Option<PathBuf>,
        pods: usize,
    },
}

impl Store {
    fn create(path: &Path) -> Result<Database, redb::DatabaseError> {
        // A small page cache: the agent's tables are small and a device's memory is scarce (the
        // default cache grows with every page written, a large manifest's included).
        redb::Builder::new()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database must be reopened before it takes writes again: redb refuses every
    /// write after one failed with an I/O error (ENOSPC, EIO), or it is closed for a reopen.
    /// Never waits for a writer.
    pub fn needs_reopen(&self) -> bool {
        match current(&self.db) {
            Err(_) => true,
            Ok(db) => matches!(
                db.try_begin_write(),
                Err(redb::TransactionError::Storage(
                    redb::StorageError::PreviousIo
                ))
            ),
        }
    }

    /// Closes the database and opens it again, for every user of the shared handle (redb
    /// rolls the failed commit back; every commit that returned is kept). Fails while an
    /// operation elsewhere still holds the old database or the disk is still full: the
    /// database is then closed (uses fail with `DatabaseClosed`) until a later call succeeds.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        drop(slot.take());
        let db = Self::create(&self.path).map_err(|e| self.err(e))?;
        *slot = Some(Arc::new(db));
        Ok(())
    }
    /// Opens (or creates) the database at `path`, creating every table.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db_err = |e: redb::Error| StoreError::Db {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db_err(redb::Error::Io(e)))?;
        }
        let db = Self::create(path).map_err(|e| db_err(e.into()))?;
        // The store holds manifests with Secrets in them: root only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| db_err(redb::Error::Io(e)))?;
        let store = Store {
            db: shared(db),
            path: path.to_path_buf(),
            mirror: None,
        };
        store.write(|txn| {
            txn.open_table(FILES)?;
            txn.open_table(APPLIED)?;
            txn.open_table(PODS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Opens the agent's store with the safety checks of a node that may have containers
    /// running: a missing, empty or unopenable store while `running` containers exist is
    /// refused unless `recover`, which moves an unopenable file aside, creates a new store and
    /// reloads the pod records mirrored in `mirror` (so the containers are re-adopted).
    pub fn open_checked(
        path: &Path,
        mirror: &Path,
        running: usize,
        run_dir: &Path,
        recover: bool,
    ) -> Result<(Store, Opened), StoreError> {
        let state = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing"),
            Ok(m) if m.len() == 0 => Some("empty"),
            _ => None,
        };
        if let Some(state) = state {
            if running > 0 && !recover {
                return Err(StoreError::LostWithContainers {
                    path: path.to_path_buf(),
                    state,
                    containers: running,
                    run_dir: run_dir.to_path_buf(),
                });
            }
            if state == "empty" {
                // redb cannot open a zero-length file; it holds nothing.
                let _ = std::fs::remove_file(path);
            }
            let store = Store::open(path)?.with_mirror(mirror)?;
            if running == 0 && !recover {
                return Ok((store, Opened::Normal));
            }
            let pods = store.reload_mirror()?;
            return Ok((
                store,
                Opened::Recovered {
                    moved_aside: None,
                    pods,
                },
            ));
        }
        match Store::open(path) {
            Ok(store) => {
                let store = store.with_mirror(mirror)?;
                store.sync_mirror()?;
                Ok((store, Opened::Normal))
            }
            Err(StoreError::Db { source, .. }) if !recover => Err(StoreError::Unopenable {
                path: path.to_path_buf(),
                source,
            }),
            Err(StoreError::Db { .. }) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let aside = path.with_extension(format!("redb.broken-{stamp}"));
                std::fs::rename(path, &aside).map_err(|e| StoreError::Db {
                    path: path.to_path_buf(),
                    source: redb::Error::Io(e),
                })?;
                let store = Store::open(path)?.with_mirror(mirror)?;
                let pods = store.reload_mirror()?;
                Ok((
                    store,
                    Opened::Recovered {
                        moved_aside: Some(aside),
                        pods,
                    },
                ))
            }
            Err(other) => Err(other),
        }
    }

    /// Mirrors pod records into `dir` from now on (created 0700).
    pub fn with_mirror(mut self, dir: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Mirror {
            path: self.path.clone(),
            mirror: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        self.mirror = Some(dir.to_path_buf());
        Ok(self)
    }

    /// Loads every mirrored pod record into the store; returns how many.
    fn reload_mirror(&self) -> Result<usize, StoreError> {
        let Some(dir) = &self.mirror else {
            return Ok(0);
        };
        let err = |source| StoreError::Mirror {
            path: self.path.clone(),
            mirror: dir.clone(),
            source,
        };
        let mut records = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            let Some(uid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(err)?;
            if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
                tracing::warn!("pod record mirror {}: not JSON, skipped", path.display());
                continue;
            }
            records.push((uid.to_string(), bytes));
        }
        self.write(|txn| {
            let mut t = txn.open_table(PODS)?;
            for (uid, bytes) in &records {
                t.insert(uid.as_str(), bytes.as_slice())?;
            }
            Ok(())
        })?;
        Ok(records.len())
    }

    /// Makes the mirror match the store: every pod record written, stray files removed (a
    /// store from before the mirror existed, or a crash between a commit and its mirror).
    pub fn sync_mirror(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.mirror else {
            return Ok(());
        };
        let records = self.all_raw(PODS)?;
        for (uid, bytes) in &records {
            self.mirror_put(uid, bytes)?;
        }
        let keep: std::collections::BTreeSet<String> = records
            .into_iter()
            .map(|(uid, _)| format!("{uid}.json"))
            .collect();
        let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Mirror {
            path: self.path.clone(),
            mirror: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn mirror_put(&self, uid: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(dir) = &self.mirror else {
            return Ok(());
        };
        let err = |source| StoreError::Mirror {
            path: self.path.clone(),
            mirror: dir.clone(),
            source,
        };
        let tmp = dir.join(format!(".{uid}.tmp"));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        std::fs::rename(&tmp, dir.join(format!("{uid}.json"))).map_err(err)
    }

    fn mirror_delete(&self, uid: &str) -> Result<(), StoreError> {
        let Some(dir) = &self.mirror else {
            return Ok(());
        };
        match std::fs::remove_file(dir.join(format!("{uid}.json"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Mirror {
                path: self.path.clone(),
                mirror: dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The shared database, for the other crates' tables.
    pub fn database(&self) -> SharedDb {
        self.db.clone()
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        current(&self.db).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write().map_err(|e| self.err(e))?;
        f(&txn).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    fn all_raw(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(table).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn put_raw(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(table)?.insert(key, value)?;
            Ok(())
        })
    }

    fn delete_raw(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(table)?.remove(key)?;
            Ok(())
        })
    }

    /// Every manifest file's last good content.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.all_raw(FILES)
    }
    pub fn put_file(&self, path: &str, content: &[u8]) -> Result<(), StoreError> {
        self.put_raw(FILES, path, content)
    }
    pub fn delete_file(&self, path: &str) -> Result<(), StoreError> {
        self.delete_raw(FILES, path)
    }

    /// Every file applied through the API.
    pub fn applied(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.all_raw(APPLIED)
    }
    pub fn put_applied(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
        self.put_raw(APPLIED, name, content)
    }
    pub fn delete_applied(&self, name: &str) -> Result<(), StoreError> {
        self.delete_raw(APPLIED, name)
    }

    /// Every pod record.
    pub fn pods<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.all_raw(PODS)?
            .into_iter()
            .map(|(key, bytes)| {
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Decode {
                    path: self.path.clone(),
                    table: "agent_pods",
                    key,
                    source,
                })
            })
            .collect()
    }
    pub fn put_pod<T: Serialize>(&self, uid: &str, pod: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(pod).map_err(|source| StoreError::Decode {
            path: self.path.clone(),
            table: "agent_pods",
            key: uid.to_string(),
            source,
        })?;
        self.put_raw(PODS, uid, &bytes)?;
        self.mirror_put(uid, &bytes)
    }
    /// Writes several pod records in one transaction (one disk sync).
    pub fn put_pods<'a, T: Serialize + 'a>(
        &self,
        pods: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> Result<(), StoreError> {
        let mut encoded = Vec::new();
        for (uid, pod) in pods {
            let bytes = serde_json::to_vec(pod).map_err(|source| StoreError::Decode {
                path: self.path.clone(),
                table: "agent_pods",
                key: uid.to_string(),
                source,
            })?;
            encoded.push((uid, bytes));
        }
        if encoded.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut t = txn.open_table(PODS)?;
            for (uid, bytes) in &encoded {
                t.insert(*uid, bytes.as_slice())?;
            }
            Ok(())
        })?;
        for (uid, bytes) in &encoded {
            self.mirror_put(uid, bytes)?;
        }
        Ok(())
    }

    /// Writes a batch in one transaction (one disk sync): pod records (encoded; `None`
    /// deletes), manifest files and API-applied files by source (`None` deletes).
    pub fn write_batch(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut pods = txn.open_table(PODS)?;
            for (uid, bytes) in &batch.pods {
                match bytes {
                    Some(b) => pods.insert(uid.as_str(), b.as_slice())?,
                    None => pods.remove(uid.as_str())?,
                };
            }
            for (table, entries) in [(FILES, &batch.files), (APPLIED, &batch.applied)] {
                let mut t = txn.open_table(table)?;
                for (key, content) in entries {
                    match content {
                        Some(c) => t.insert(key.as_str(), c.as_slice())?,
                        None => t.remove(key.as_str())?,
                    };
                }
            }
            Ok(())
        })?;
        for (uid, bytes) in &batch.pods {
            match bytes {
                Some(b) => self.mirror_put(uid, b)?,
                None => self.mirror_delete(uid)?,
            }
        }
        Ok(())
    }

    pub fn delete_pod(&self, uid: &str) -> Result<(), StoreError> {
        self.delete_raw(PODS, uid)?;
        self.mirror_delete(uid)
    }
}

/// Writes for one transaction; a later write of a key replaces an earlier one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// Pod uid -> JSON record (`None`: delete).
    pub pods: std::collections::BTreeMap<String, Option<Vec<u8>>>,
    /// Manifest file path -> last good content (`None`: delete).
    pub files: std::collections::BTreeMap<String, Option<Vec<u8>>>,
    /// API-applied source -> content (`None`: delete).
    pub applied: std::collections::BTreeMap<String, Option<Vec<u8>>>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.files.is_empty() && self.applied.is_empty()
    }

    /// Takes `newer`'s writes over these.
    pub fn absorb(&mut self, newer: WriteBatch) {
        self.pods.extend(newer.pods);
        self.files.extend(newer.files);
        self.applied.extend(newer.applied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_writes_and_deletes_in_one_go_and_newer_writes_win() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("skiff.redb")).unwrap();
        s.put_file("/m/old.yaml", b"old").unwrap();
        s.put_pod("gone", &serde_json::json!({"name": "gone"}))
            .unwrap();
        let mut batch = WriteBatch::default();
        batch
            .pods
            .insert("p1".into(), Some(br#"{"name":"first"}"#.to_vec()));
        batch.files.insert("/m/old.yaml".into(), None);
        let mut newer = WriteBatch::default();
        newer
            .pods
            .insert("p1".into(), Some(br#"{"name":"p1"}"#.to_vec()));
        newer.pods.insert("gone".into(), None);
        newer
            .files
            .insert("/m/a.yaml".into(), Some(b"kind: Pod".to_vec()));
        newer.applied.insert("api:x".into(), Some(b"1".to_vec()));
        batch.absorb(newer);
        s.write_batch(&batch).unwrap();
        let pods: Vec<serde_json::Value> = s.pods().unwrap();
        assert_eq!(pods, vec![serde_json::json!({"name": "p1"})]);
        assert_eq!(
            s.files().unwrap(),
            vec![("/m/a.yaml".to_string(), b"kind: Pod".to_vec())]
        );
        assert_eq!(
            s.applied().unwrap(),
            vec![("api:x".to_string(), b"1".to_vec())]
        );
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db").join("skiff.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put_file("/m/a.yaml", b"kind: Pod").unwrap();
            s.put_pod("abc", &serde_json::json!({"name": "p"})).unwrap();
            s.put_applied("x.yaml", b"1").unwrap();
            s.delete_applied("x.yaml").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.files().unwrap(),
            vec![("/m/a.yaml".to_string(), b"kind: Pod".to_vec())]
        );
        let pods: Vec<serde_json::Value> = s.pods().unwrap();
        assert_eq!(pods, vec![serde_json::json!({"name": "p"})]);
        assert!(s.applied().unwrap().is_empty());
    }

    #[test]
    fn a_lost_store_with_containers_is_refused_unless_recovering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skiff.redb");
        let mirror = dir.path().join("run/pod-records");
        let run = dir.path().join("run");
        {
            let (s, opened) = Store::open_checked(&path, &mirror, 0, &run, false).unwrap();
            assert_eq!(opened, Opened::Normal, "a new node");
            s.put_pod("p1", &serde_json::json!({"name": "p1"})).unwrap();
            s.put_pods([("p2", &serde_json::json!({"name": "p2"}))])
                .unwrap();
            s.delete_pod("p2").unwrap();
        }
        assert!(mirror.join("p1.json").exists() && !mirror.join("p2.json").exists());
        std::fs::remove_file(&path).unwrap();
        let err = Store::open_checked(&path, &mirror, 3, &run, false)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("is missing but 3 container(s)"),
            "{err}"
        );
        std::fs::write(&path, b"").unwrap();
        let err = Store::open_checked(&path, &mirror, 3, &run, false)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("is empty"), "{err}");
        let (s, opened) = Store::open_checked(&path, &mirror, 3, &run, true).unwrap();
        assert_eq!(
            opened,
            Opened::Recovered {
                moved_aside: None,
                pods: 1
            }
        );
        let pods: Vec<serde_json::Value> = s.pods().unwrap();
        assert_eq!(pods, vec![serde_json::json!({"name": "p1"})]);
        drop(s);
        std::fs::write(&path, b"garbage header").unwrap();
        let err = Store::open_checked(&path, &mirror, 0, &run, false)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("--recover-store"), "{err}");
        let (s, opened) = Store::open_checked(&path, &mirror, 0, &run, true).unwrap();
        let Opened::Recovered {
            moved_aside: Some(aside),
            pods: 1,
        } = opened
        else {
            panic!("{opened:?}");
        };
        assert_eq!(std::fs::read(&aside).unwrap(), b"garbage header");
        assert_eq!(s.pods::<serde_json::Value>().unwrap().len(), 1);
    }
}

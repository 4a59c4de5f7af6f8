//! The node's local store (redb under the data dir): last good manifest files, objects applied
//! through the API, and pod records with their container status, so that a restarted agent
//! re-adopts what runs instead of restarting it. Other crates keep their own tables in the same
//! database (images, IPAM).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[error("local store {path}: record {key:?} in {table} is unreadable: {source}")]
    Decode {
        path: PathBuf,
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Handle on the node's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database at `path`, creating every table.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db_err = |e: redb::Error| StoreError::Db {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db_err(redb::Error::Io(e)))?;
        }
        let db = Database::create(path).map_err(|e| db_err(e.into()))?;
        let store = Store {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        store.write(|txn| {
            txn.open_table(FILES)?;
            txn.open_table(APPLIED)?;
            txn.open_table(PODS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The shared database, for the other crates' tables.
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
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
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        f(&txn).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    fn all_raw(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
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
        self.put_raw(PODS, uid, &bytes)
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
        })
    }

    pub fn delete_pod(&self, uid: &str) -> Result<(), StoreError> {
        self.delete_raw(PODS, uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

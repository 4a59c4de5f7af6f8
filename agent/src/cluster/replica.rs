//! This node's replica of the cluster's desired objects, persisted in the local store.
//!
//! Every object is a record: its [`Digest`] (HLC stamp, content hash, tombstone flag), its body
//! (the validated object as JSON, none for a tombstone) and where it was declared. Local
//! declarations (manifest files, `skiff apply`) become new versions only when their content
//! changes: the `ingested` table remembers the content hash of each object this node last
//! declared, so a restart with unchanged files creates no version, and an object deleted
//! elsewhere is not resurrected by an old copy of its file here. Removing a declaration writes
//! a tombstone. Records from other nodes replace ours by the merge rule; bodies are checked
//! against their digest before they are stored.

use super::history::{self, Revision, UndoError, Undone};
use super::keys::{object_key, parse_object_key};
use crate::desired::Source;
use crate::store::{SharedDb, current};
use compact_str::CompactString;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use skiff_gossip::{Digest, Hlc};
use skiff_manifests::{Object, ObjectKey, Valid};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Records (JSON [`StoredRecord`]) by `obj/...` key.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_records");
/// Content hash of what this node last declared, by `obj/...` key.
const INGESTED: TableDefinition<&str, &str> = TableDefinition::new("cluster_ingested");

/// The replica could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("local store (cluster records): {0}")]
    Db(#[from] redb::Error),
    #[error("object {key}: the body does not match its digest ({detail})")]
    BadBody { key: String, detail: String },
}

impl From<redb::TransactionError> for ReplicaError {
    fn from(e: redb::TransactionError) -> Self {
        ReplicaError::Db(e.into())
    }
}
impl From<redb::TableError> for ReplicaError {
    fn from(e: redb::TableError) -> Self {
        ReplicaError::Db(e.into())
    }
}
impl From<redb::StorageError> for ReplicaError {
    fn from(e: redb::StorageError) -> Self {
        ReplicaError::Db(e.into())
    }
}
impl From<redb::CommitError> for ReplicaError {
    fn from(e: redb::CommitError) -> Self {
        ReplicaError::Db(e.into())
    }
}

/// One object's version as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The digest in its gossip text form.
    pub digest: String,
    /// `Valid<Object>` as JSON; none for a tombstone.
    pub body: Option<Vec<u8>>,
    /// `<node>:<source>` of the declaration.
    pub origin: String,
    /// The pod template's revisions (Deployments and DaemonSets), the current one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
}

/// One record in memory: the digest parsed, the object instead of its JSON body (made again
/// when the record is written or served, so that a thousand objects are not also held as
/// text).
#[derive(Debug)]
pub struct Entry {
    digest: Digest,
    origin: String,
    history: Vec<Revision>,
    object: Option<Valid<Object>>,
}

/// A record as this node holds and serves it (shared between the replica and what the node
/// serves to others' fetches, not copied).
#[derive(Clone, Debug)]
pub struct ServedRecord(Arc<Entry>);

impl ServedRecord {
    fn new(entry: Entry) -> ServedRecord {
        ServedRecord(Arc::new(entry))
    }

    /// A record as another node sent it, checked like one (the body must match the digest).
    #[cfg(test)]
    pub fn from_record(key: &str, stored: StoredRecord) -> Result<ServedRecord, ReplicaError> {
        Ok(ServedRecord::new(Replica::entry(key, stored)?))
    }

    /// The whole record, body included.
    pub fn full(&self) -> StoredRecord {
        StoredRecord {
            digest: self.0.digest.to_string(),
            body: self.0.object.as_ref().map(Valid::to_json),
            origin: self.0.origin.clone(),
            history: self.0.history.clone(),
        }
    }
}

impl std::ops::Deref for ServedRecord {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.0
    }
}

/// Every record by key, as one shared map: what the node serves is the replica's own map
/// (handed over whole), and the replica copies it only when it changes a record while the
/// served copy is still the same map.
/// Keys are shared with the replica's other map (`ingested`).
pub type Records = BTreeMap<Arc<str>, ServedRecord>;

/// The replica: records, what this node declared, its clock.
pub struct Replica {
    node: String,
    db: SharedDb,
    entries: Arc<Records>,
    /// Keys shared with `entries` where both hold one; the hash is short enough to be held
    /// inline.
    ingested: BTreeMap<Arc<str>, CompactString>,
    hlc: Hlc,
    /// Keys changed in memory but not yet written (the store failed, e.g. on a full disk):
    /// written by the next [`Replica::flush`]. Memory is what the node acts on; the store
    /// catches up.
    unwritten: BTreeSet<String>,
    /// How many entries the maps held when they were last built compactly ([`Replica::compact`]).
    compacted_at: usize,
}

/// New keys since the maps were last built compactly before they are built again.
const COMPACT_AFTER: usize = 64;

/// The source part of the origin of a version that `rollout undo` made.
pub const UNDO_SOURCE: &str = "rollout undo";

/// Where the object was declared, through the versions `rollout undo` made (`<node>:<source>`).
pub fn declared_origin(origin: &str) -> &str {
    origin
        .split_once(&format!(":{UNDO_SOURCE} (declared in "))
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(origin)
}

impl Replica {
    /// Loads the records and moves the clock past every stored stamp.
    pub fn open(db: SharedDb, node: &str) -> Result<Replica, ReplicaError> {
        let txn = current(&db)?.begin_write()?;
        txn.open_table(RECORDS)?;
        txn.open_table(INGESTED)?;
        txn.commit()?;
        let mut replica = Replica {
            node: node.to_string(),
            db,
            entries: Arc::default(),
            ingested: BTreeMap::new(),
            hlc: Hlc::new(node),
            unwritten: BTreeSet::new(),
            compacted_at: 0,
        };
        let txn = current(&replica.db)?.begin_read()?;
        let mut entries = Records::new();
        for item in txn.open_table(RECORDS)?.iter()? {
            let (k, v) = item?;
            let key = k.value().to_string();
            let Ok(stored) = serde_json::from_slice::<StoredRecord>(v.value()) else {
                tracing::warn!("cluster record {key}: unreadable, dropped");
                continue;
            };
            match Self::entry(&key, stored) {
                Ok(entry) => {
                    replica.hlc.observe(&entry.digest.stamp);
                    entries.insert(Arc::from(key), ServedRecord::new(entry));
                }
                Err(e) => tracing::warn!("cluster record {key}: {e}, dropped"),
            }
        }
        replica.entries = Arc::new(entries);
        for item in txn.open_table(INGESTED)?.iter()? {
            let (k, v) = item?;
            let key = replica.shared_key(k.value());
            replica.ingested.insert(key, CompactString::new(v.value()));
        }
        replica.compact();
        Ok(replica)
    }

    /// Builds the maps again in one pass once many keys came since the last time: keys come in
    /// order (a file of a thousand objects, a fetch of another node's records), and a map
    /// filled one key at a time in order keeps its nodes about half full for as long as the
    /// objects exist.
    fn compact_if_grown(&mut self) {
        // Counted from the smallest size since (keys that went and came again are new too).
        self.compacted_at = self.compacted_at.min(self.entries.len());
        if self.entries.len() >= self.compacted_at + COMPACT_AFTER {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.entries = Arc::new(match Arc::try_unwrap(std::mem::take(&mut self.entries)) {
            Ok(entries) => entries.into_iter().collect(),
            // Still served: the new map takes the records over (shared, not copied).
            Err(shared) => shared.iter().map(|(k, r)| (k.clone(), r.clone())).collect(),
        });
        self.ingested = std::mem::take(&mut self.ingested).into_iter().collect();
        self.compacted_at = self.entries.len();
    }

    fn entry(key: &str, stored: StoredRecord) -> Result<Entry, ReplicaError> {
        let bad = |detail: String| ReplicaError::BadBody {
            key: key.to_string(),
            detail,
        };
        let digest: Digest = stored.digest.parse().map_err(|e| bad(format!("{e}")))?;
        let object = match (&stored.body, digest.tombstone) {
            (None, true) => None,
            (Some(body), false) => {
                let object = Valid::<Object>::from_json(body).map_err(|errors| {
                    bad(errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "invalid".into()))
                })?;
                if object.content_hash() != digest.hash {
                    return Err(bad(format!(
                        "content hash {} instead of {}",
                        object.content_hash(),
                        digest.hash
                    )));
                }
                if parse_object_key(key) != Some(object.key()) {
                    return Err(bad(format!("the body is {}", object.key())));
                }
                Some(object)
            }
            _ => return Err(bad("a tombstone with a body or a version without".into())),
        };
        Ok(Entry {
            digest,
            origin: stored.origin,
            history: stored.history,
            object,
        })
    }

    /// Writes every key changed in memory since the last successful flush, in one transaction.
    /// On an error nothing is lost: the keys stay to be written by the next call.
    pub fn flush(&mut self) -> Result<(), ReplicaError> {
        self.compact_if_grown();
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let txn = current(&self.db)?.begin_write()?;
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut ingested = txn.open_table(INGESTED)?;
            for key in &self.unwritten {
                let key = key.as_str();
                match self.entries.get(key) {
                    Some(e) => {
                        let json = serde_json::to_vec(&e.full()).unwrap_or_default();
                        records.insert(key, json.as_slice())?;
                    }
                    None => {
                        records.remove(key)?;
                    }
                }
                match self.ingested.get(key) {
                    Some(hash) => {
                        ingested.insert(key, hash.as_str())?;
                    }
                    None => {
                        ingested.remove(key)?;
                    }
                }
            }
        }
        txn.commit()?;
        self.unwritten.clear();
        Ok(())
    }

    /// Whether changes wait to be written (the store failed).
    pub fn has_unwritten(&self) -> bool {
        !self.unwritten.is_empty()
    }

    /// Folds this node's current declarations in: changed or new content becomes a new version,
    /// a declaration that went away becomes a tombstone. Returns the keys that changed.
    pub fn ingest(&mut self, declared: &crate::desired::Objects, now_ms: u64) -> Vec<String> {
        let mut changed = Vec::new();
        let mut present = std::collections::BTreeSet::new();
        for (key, (source, object)) in declared {
            let k = object_key(key);
            present.insert(k.clone());
            let hash = object.content_hash();
            if self.ingested.get(k.as_str()).map(CompactString::as_str) == Some(hash.as_str()) {
                continue;
            }
            let shared = self.shared_key(&k);
            self.ingested
                .insert(shared.clone(), CompactString::new(&hash));
            let same = self
                .entries
                .get(k.as_str())
                .is_some_and(|e| !e.digest.tombstone && e.digest.hash == hash);
            if !same {
                let digest = Digest {
                    stamp: self.hlc.tick(now_ms),
                    hash,
                    tombstone: false,
                };
                let history = match self.entries.get(k.as_str()) {
                    Some(e) => history::next(&e.history, e.object.as_ref(), object, now_ms),
                    None => history::next(&[], None, object, now_ms),
                };
                let entry = Entry {
                    digest,
                    origin: format!("{}:{source}", self.node),
                    history,
                    object: Some(object.clone()),
                };
                self.put(shared, entry);
            }
            self.unwritten.insert(k.clone());
            changed.push(k);
        }
        let gone: Vec<Arc<str>> = self
            .ingested
            .keys()
            .filter(|k| !present.contains(&***k))
            .cloned()
            .collect();
        for k in gone {
            self.ingested.remove(&k);
            if self.entries.get(&k).is_some_and(|e| !e.digest.tombstone) {
                let digest = Digest {
                    stamp: self.hlc.tick(now_ms),
                    hash: String::new(),
                    tombstone: true,
                };
                let entry = Entry {
                    digest,
                    origin: format!("{}:deleted", self.node),
                    history: Vec::new(),
                    object: None,
                };
                self.put(k.clone(), entry);
            }
            self.unwritten.insert(k.to_string());
            changed.push(k.to_string());
        }
        changed
    }

    /// The revisions of a live object's template, the current one last (empty for other kinds
    /// and unknown keys).
    pub fn history(&self, key: &str) -> Option<(&Valid<Object>, &[Revision], &str)> {
        let e = self.entries.get(key)?;
        Some((e.object.as_ref()?, &e.history, &e.origin))
    }

    /// Brings back an older template of a live Deployment or DaemonSet as a new version made
    /// by this node (`rollout undo`), whoever declared it. What this node last declared of it
    /// (`ingested`) is left alone: the declaration's next change wins again.
    pub fn undo(
        &mut self,
        key: &str,
        what: &str,
        to: Option<u64>,
        cause: Option<String>,
        now_ms: u64,
    ) -> Result<(Undone, String), UndoError> {
        let Some((current, revisions, origin)) = self.history(key) else {
            return Err(UndoError::NoHistory(what.to_string()));
        };
        let undone = history::undo(what, current, revisions, to, cause, now_ms)?;
        let declared = declared_origin(origin).to_string();
        let digest = Digest {
            stamp: self.hlc.tick(now_ms),
            hash: undone.object.content_hash(),
            tombstone: false,
        };
        let entry = Entry {
            digest,
            origin: format!("{}:{UNDO_SOURCE} (declared in {declared})", self.node),
            history: undone.history.clone(),
            object: Some(undone.object.clone()),
        };
        let shared = self.shared_key(key);
        self.put(shared, entry);
        self.unwritten.insert(key.to_string());
        Ok((undone, declared))
    }

    /// Makes an object on the cluster's behalf (a CronJob's run) as a version stamped by this
    /// node, unless the key has ever been known here (live, or deleted: its tombstone). False
    /// when nothing was made.
    pub fn create(
        &mut self,
        key: &str,
        object: &Valid<Object>,
        made_by: &str,
        now_ms: u64,
    ) -> bool {
        if self.entries.contains_key(key) {
            return false;
        }
        let digest = Digest {
            stamp: self.hlc.tick(now_ms),
            hash: object.content_hash(),
            tombstone: false,
        };
        let entry = Entry {
            digest,
            origin: format!("{}:{made_by}", self.node),
            history: history::next(&[], None, object, now_ms),
            object: Some(object.clone()),
        };
        let shared = self.shared_key(key);
        self.put(shared, entry);
        self.unwritten.insert(key.to_string());
        true
    }

    /// The keys of deleted objects (tombstones) this node still holds.
    pub fn tombstones(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.digest.tombstone)
            .map(|(k, _)| &**k)
    }

    /// Deletes a live object on the cluster's behalf (a finished Job past its TTL): a
    /// tombstone stamped by this node. What its declaring node ingested is left alone, so the
    /// object comes back only when its declaration changes. False when it is not live.
    pub fn expire(&mut self, key: &str, now_ms: u64) -> bool {
        if self.entries.get(key).is_none_or(|e| e.digest.tombstone) {
            return false;
        }
        let digest = Digest {
            stamp: self.hlc.tick(now_ms),
            hash: String::new(),
            tombstone: true,
        };
        let entry = Entry {
            digest,
            origin: format!("{}:expired", self.node),
            history: Vec::new(),
            object: None,
        };
        let shared = self.shared_key(key);
        self.put(shared, entry);
        self.unwritten.insert(key.to_string());
        true
    }

    /// Stores a version fetched from another node if it wins by the merge rule; returns whether
    /// it was stored. The body must match the digest.
    pub fn apply_remote(&mut self, key: &str, stored: StoredRecord) -> Result<bool, ReplicaError> {
        let entry = Self::entry(key, stored)?;
        if self
            .entries
            .get(key)
            .is_some_and(|mine| !entry.digest.supersedes(&mine.digest))
        {
            return Ok(false);
        }
        self.hlc.observe(&entry.digest.stamp);
        let shared = self.shared_key(key);
        self.put(shared, entry);
        self.unwritten.insert(key.to_string());
        Ok(true)
    }

    /// Forgets tombstones older than `grace`; returns the keys forgotten.
    pub fn collect_garbage(&mut self, now_ms: u64, grace: Duration) -> Vec<String> {
        let old: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.digest.expired(now_ms, grace))
            .map(|(k, _)| k.to_string())
            .collect();
        if !old.is_empty() {
            let entries = Arc::make_mut(&mut self.entries);
            for k in &old {
                entries.remove(k.as_str());
                self.unwritten.insert(k.clone());
            }
        }
        old
    }

    /// One record's digest.
    pub fn digest_ref(&self, key: &str) -> Option<&Digest> {
        self.entries.get(key).map(|e| &e.digest)
    }

    /// One record's digest (owned).
    pub fn digest(&self, key: &str) -> Option<Digest> {
        self.digest_ref(key).cloned()
    }

    /// Every record's digest, by key.
    pub fn digests(&self) -> BTreeMap<String, Digest> {
        self.entries
            .iter()
            .map(|(k, e)| (k.to_string(), e.digest.clone()))
            .collect()
    }

    /// Every stored record, by key (what this node serves to others' fetches): the replica's
    /// own map, shared.
    pub fn records(&self) -> Arc<Records> {
        self.entries.clone()
    }

    /// A stored record, body included (to answer another node's fetch).
    pub fn record(&self, key: &str) -> Option<StoredRecord> {
        self.entries.get(key).map(ServedRecord::full)
    }

    /// `key` as the maps hold it: the copy one of them has, or a new one.
    fn shared_key(&self, key: &str) -> Arc<str> {
        self.entries
            .get_key_value(key)
            .map(|(k, _)| k)
            .or_else(|| self.ingested.get_key_value(key).map(|(k, _)| k))
            .cloned()
            .unwrap_or_else(|| Arc::from(key))
    }

    /// Stores `entry` under `key` (copying the map first while it is served as it was).
    fn put(&mut self, key: Arc<str>, entry: Entry) {
        Arc::make_mut(&mut self.entries).insert(key, ServedRecord::new(entry));
    }

    /// The live desired objects of the whole cluster, with where each was declared.
    pub fn objects(&self) -> BTreeMap<ObjectKey, (Source, Valid<Object>)> {
        self.entries
            .values()
            .filter_map(|e| {
                let object = e.object.clone()?;
                Some((object.key(), (e.origin.clone(), object)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, image: &str) -> Valid<Object> {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
        );
        skiff_manifests::parse_file("t.yaml", yaml.as_bytes())
            .objects()
            .into_iter()
            .next()
            .cloned()
            .expect("valid pod")
    }

    fn declared(objects: &[Valid<Object>]) -> BTreeMap<ObjectKey, (Source, Valid<Object>)> {
        objects
            .iter()
            .map(|o| (o.key(), ("/m/a.yaml".to_string(), o.clone())))
            .collect()
    }

    fn db(dir: &tempfile::TempDir) -> SharedDb {
        skiff_cni::ipam::shared(redb::Database::create(dir.path().join("db")).expect("db"))
    }

    #[test]
    fn changes_made_while_the_store_is_closed_are_written_once_it_is_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let shared = db(&dir);
        let mut r = Replica::open(shared.clone(), "n1").expect("open");
        let web = object("web", "busybox");
        r.ingest(&declared(std::slice::from_ref(&web)), 1_000);
        r.flush().expect("flush");
        // The store goes away (a full disk, being reopened): the node keeps acting on memory.
        let closed = shared.write().expect("lock").take().expect("open db");
        assert_eq!(r.ingest(&declared(&[]), 2_000).len(), 1);
        assert!(r.objects().is_empty(), "the deletion waited for the store");
        assert!(r.flush().is_err());
        assert!(r.has_unwritten());
        // It comes back: the deletion is written, and a restart does not resurrect web.
        *shared.write().expect("lock") = Some(closed);
        r.flush().expect("flush");
        assert!(!r.has_unwritten());
        drop(r);
        let again = Replica::open(shared, "n1").expect("reopen");
        assert!(again.objects().is_empty());
        assert!(again.digests().values().all(|d| d.tombstone));
    }

    #[test]
    fn what_is_served_is_the_replicas_own_map_until_a_change_copies_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut r = Replica::open(db(&dir), "n1").expect("open");
        let (web, api) = (object("web", "busybox"), object("api", "busybox"));
        r.ingest(&declared(std::slice::from_ref(&web)), 1_000);
        let served = r.records();
        assert!(
            Arc::ptr_eq(&served, &r.records()),
            "handed over, not copied"
        );
        // Both maps hold the one key.
        let (key, _) = served.first_key_value().expect("web");
        let (ingested_key, _) = r.ingested.first_key_value().expect("web");
        assert!(Arc::ptr_eq(key, ingested_key));
        // A change while the old map is served: the served one stays as it was.
        r.ingest(&declared(&[web.clone(), api]), 2_000);
        assert_eq!(served.len(), 1);
        assert_eq!(r.records().len(), 2);
        let web_key = "obj/Pod/default/web";
        assert!(
            Arc::ptr_eq(&served[web_key].0, &r.records()[web_key].0),
            "the records themselves are shared by both maps"
        );
        // The served record reads as the stored one, body made from the object.
        let full = served[web_key].full();
        assert_eq!(full.body, Some(web.to_json()));
        assert_eq!(full.digest, r.digest(web_key).expect("digest").to_string());
        assert_eq!(full.origin, "n1:/m/a.yaml");
    }

    #[test]
    fn unchanged_declarations_make_no_version_even_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let web = object("web", "busybox");
        let changed = {
            let mut r = Replica::open(db(&dir), "n1").expect("open");
            let first = r.ingest(&declared(std::slice::from_ref(&web)), 1_000);
            assert_eq!(first, vec!["obj/Pod/default/web".to_string()]);
            assert!(
                r.ingest(&declared(std::slice::from_ref(&web)), 2_000)
                    .is_empty()
            );
            r.flush().expect("flush");
            r.digests()
        };
        let mut again = Replica::open(db(&dir), "n1").expect("reopen");
        assert_eq!(again.digests(), changed);
        assert!(again.ingest(&declared(&[web]), 3_000).is_empty());
        assert_eq!(again.objects().len(), 1);
    }

    #[test]
    fn a_deleted_object_is_not_resurrected_by_an_old_copy_of_its_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let web = object("web", "busybox");
        let mut mine = Replica::open(db(&dir), "n1").expect("open");
        mine.ingest(&declared(std::slice::from_ref(&web)), 1_000);
        // Another node deletes it later; the tombstone reaches us.
        let tombstone = StoredRecord {
            digest: "5000.0@n2::T".into(),
            body: None,
            origin: "n2:deleted".into(),
            history: Vec::new(),
        };
        assert!(
            mine.apply_remote("obj/Pod/default/web", tombstone)
                .expect("apply")
        );
        assert!(mine.objects().is_empty());
        // Our file is unchanged: no new version, the object stays deleted.
        assert!(mine.ingest(&declared(&[web]), 6_000).is_empty());
        assert!(mine.objects().is_empty());
        // A changed file is a new version, newer than the tombstone.
        let edited = object("web", "busybox:2");
        assert_eq!(mine.ingest(&declared(&[edited]), 7_000).len(), 1);
        assert_eq!(mine.objects().len(), 1);
    }

    #[test]
    fn removing_a_declaration_writes_a_tombstone_that_wins_elsewhere() {
        let dir = tempfile::tempdir().expect("tmp");
        let other = tempfile::tempdir().expect("tmp");
        let web = object("web", "busybox");
        let mut a = Replica::open(db(&dir), "a").expect("open");
        let mut b = Replica::open(db(&other), "b").expect("open");
        a.ingest(&declared(&[web]), 1_000);
        let key = "obj/Pod/default/web";
        assert!(
            b.apply_remote(key, a.record(key).expect("rec"))
                .expect("apply")
        );
        assert_eq!(b.objects().len(), 1);
        assert_eq!(a.ingest(&declared(&[]), 2_000).len(), 1);
        assert!(a.digests()[key].tombstone);
        assert!(
            b.apply_remote(key, a.record(key).expect("rec"))
                .expect("apply")
        );
        assert!(b.objects().is_empty());
        // Tombstones are forgotten after the grace period.
        let gone = b.collect_garbage(2_000 + 61_000, Duration::from_secs(60));
        assert_eq!(gone, vec![key.to_string()]);
    }

    #[test]
    fn concurrent_edits_resolve_to_the_newest_version_on_both_nodes() {
        let (d1, d2) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let mut a = Replica::open(db(&d1), "a").expect("open");
        let mut b = Replica::open(db(&d2), "b").expect("open");
        a.ingest(&declared(&[object("web", "one")]), 1_000);
        b.ingest(&declared(&[object("web", "two")]), 1_000);
        let key = "obj/Pod/default/web";
        let (ra, rb) = (a.record(key).expect("a"), b.record(key).expect("b"));
        // Same millisecond: node "b" wins the tie on both sides, whatever the arrival order.
        assert!(!a.apply_remote(key, ra.clone()).expect("same"));
        assert!(a.apply_remote(key, rb.clone()).expect("apply"));
        assert!(!b.apply_remote(key, ra).expect("apply"));
        assert_eq!(a.digests(), b.digests());
        assert_eq!(a.objects(), b.objects());
    }

    #[test]
    fn a_body_that_does_not_match_its_digest_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut r = Replica::open(db(&dir), "n1").expect("open");
        let body = object("web", "busybox").to_json();
        let cases = [
            (
                "obj/Pod/default/web",
                "9.0@n2:0000000000000000:L",
                Some(body.clone()),
            ),
            ("obj/Pod/default/other", "9.0@n2:x:L", Some(body.clone())),
            ("obj/Pod/default/web", "9.0@n2::T", Some(body)),
            ("obj/Pod/default/web", "garbage", None),
            (
                "obj/Pod/default/web",
                "9.0@n2:ab:L",
                Some(b"{not json".to_vec()),
            ),
        ];
        for (key, digest, body) in cases {
            let stored = StoredRecord {
                digest: digest.into(),
                body,
                origin: "n2:x".into(),
                history: Vec::new(),
            };
            assert!(r.apply_remote(key, stored).is_err(), "{key} {digest}");
        }
        assert!(r.digests().is_empty());
    }
}

//! The assignment this node follows, persisted so a node rebooted without network starts the
//! pods it was last assigned; and which tables count as the previous placement.
//!
//! A table is accepted only from the node this node sees as leader and only if its
//! (term, generation) is newer than the last one accepted (stale leaders are ignored). The
//! names of peers ever seen are kept too: a node that knows it has peers does not lead alone
//! right after a start.

use super::keys::{AssignedPod, Assignment};
use crate::store::{SharedDb, current};
use redb::{ReadableDatabase, TableDefinition};
use skiff_gossip::{NodeCondition, NodeStatus, accepts};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// `assignment` -> JSON [`Assignment`]; `peers` -> JSON list of names.
const FOLLOW: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_follow");

/// What this node follows.
pub struct Followed {
    db: SharedDb,
    /// Values not written yet, by key: written by [`Followed::write_unwritten`], which the
    /// cluster task calls at the end of each step (and again while the store fails).
    unwritten: Mutex<BTreeMap<String, Vec<u8>>>,
    pub accepted: Option<Assignment>,
    pub known_peers: BTreeSet<String>,
    /// Gossip addresses of peers last seen Ready: seeds when the agent starts again.
    pub peer_addrs: BTreeMap<String, std::net::SocketAddr>,
}

impl Followed {
    pub fn open(db: SharedDb) -> Result<Followed, redb::Error> {
        let txn = current(&db)?.begin_write()?;
        txn.open_table(FOLLOW)?;
        txn.commit()?;
        let txn = current(&db)?.begin_read()?;
        let table = txn.open_table(FOLLOW)?;
        let read = |key: &str| -> Result<Option<Vec<u8>>, redb::Error> {
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        };
        let accepted = read("assignment")?.and_then(|v| serde_json::from_slice(&v).ok());
        let known_peers = read("peers")?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        let peer_addrs = read("peer_addrs")?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        drop(table);
        drop(txn);
        Ok(Followed {
            db,
            unwritten: Mutex::new(BTreeMap::new()),
            accepted,
            known_peers,
            peer_addrs,
        })
    }

    fn save(&self, key: &str, value: &[u8]) {
        self.unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), value.to_vec());
    }

    /// Writes what was saved since the last write; returns whether nothing waits any more.
    pub fn write_unwritten(&self) -> bool {
        let mut unwritten = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        self.write(&mut unwritten).is_ok()
    }

    fn write(&self, unwritten: &mut BTreeMap<String, Vec<u8>>) -> Result<(), redb::Error> {
        if unwritten.is_empty() {
            return Ok(());
        }
        let txn = current(&self.db)?.begin_write()?;
        {
            let mut table = txn.open_table(FOLLOW)?;
            for (key, value) in unwritten.iter() {
                table.insert(key.as_str(), value.as_slice())?;
            }
        }
        txn.commit()?;
        unwritten.clear();
        Ok(())
    }

    /// The Service address book last followed (or made, as leader), as stored: addresses
    /// survive a restart of the whole cluster, and a node that starts cut off keeps serving.
    pub fn book(&self) -> crate::services::Book {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = current(&self.db)?.begin_read()?;
            let table = txn.open_table(FOLLOW)?;
            Ok(table.get("book")?.map(|v| v.value().to_vec()))
        };
        read()
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    /// Stores the Service address book (written with the step's other values).
    pub fn set_book(&self, book: &crate::services::Book) {
        self.save("book", &serde_json::to_vec(book).unwrap_or_default());
    }

    /// This node's pod subnet, as last stored.
    pub fn subnet(&self) -> Option<ipnet::Ipv4Net> {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = current(&self.db)?.begin_read()?;
            let table = txn.open_table(FOLLOW)?;
            Ok(table.get("subnet")?.map(|v| v.value().to_vec()))
        };
        read()
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
    }

    /// Stores this node's pod subnet (kept across restarts).
    pub fn set_subnet(&self, subnet: ipnet::Ipv4Net) {
        self.save("subnet", subnet.to_string().as_bytes());
    }

    /// Takes `doc` if it is newer than what was accepted; returns whether the pods changed.
    pub fn accept(&mut self, doc: &Assignment) -> bool {
        let last = self.accepted.as_ref().map(|a| (a.term, a.generation));
        if !accepts(last, doc.term, doc.generation) {
            return false;
        }
        let changed = self.accepted.as_ref().map(|a| &a.pods) != Some(&doc.pods);
        self.accepted = Some(doc.clone());
        self.save(
            "assignment",
            &serde_json::to_vec(doc).unwrap_or_else(|_| b"null".to_vec()),
        );
        changed
    }

    /// Forgets peers that `skiff node remove` took out of the cluster (they no longer count
    /// toward the majority a side needs to place pods).
    pub fn forget_peers(&mut self, removed: &std::collections::BTreeSet<String>) {
        let addrs: BTreeMap<String, std::net::SocketAddr> = self
            .peer_addrs
            .iter()
            .filter(|(name, _)| !removed.contains(*name))
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        if addrs != self.peer_addrs {
            self.save(
                "peer_addrs",
                &serde_json::to_vec(&addrs).unwrap_or_default(),
            );
            self.peer_addrs = addrs;
        }
    }

    /// Remembers peers that were ever Ready.
    pub fn note_peers(&mut self, nodes: &[NodeStatus], me: &str) {
        let before = self.known_peers.len();
        self.known_peers.extend(
            nodes
                .iter()
                .filter(|n| n.name != me && n.condition == NodeCondition::Ready)
                .map(|n| n.name.clone()),
        );
        if self.known_peers.len() != before {
            self.save(
                "peers",
                &serde_json::to_vec(&self.known_peers).unwrap_or_default(),
            );
        }
        let mut addrs = self.peer_addrs.clone();
        for n in nodes {
            if n.name != me && n.condition == NodeCondition::Ready {
                addrs.insert(n.name.clone(), n.address);
            } else if n.condition == NodeCondition::Left {
                addrs.remove(&n.name);
            }
        }
        if addrs != self.peer_addrs {
            self.save(
                "peer_addrs",
                &serde_json::to_vec(&addrs).unwrap_or_default(),
            );
            self.peer_addrs = addrs;
        }
    }
}

/// The placement a new leader starts from: for each target node, the newest table any node
/// published for it (the previous leader's, while it is still gossiped).
pub fn previous_table(tables: &[(String, String, Assignment)]) -> Vec<AssignedPod> {
    let mut newest: BTreeMap<&str, &Assignment> = BTreeMap::new();
    for (_, target, doc) in tables {
        match newest.get(target.as_str()) {
            Some(kept) if (kept.term, kept.generation) >= (doc.term, doc.generation) => {}
            _ => {
                newest.insert(target, doc);
            }
        }
    }
    newest
        .into_values()
        .flat_map(|doc| doc.pods.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Owner;
    use skiff_gossip::{Generation, Term};

    fn pod(name: &str, node: &str) -> AssignedPod {
        AssignedPod {
            namespace: "default".into(),
            name: name.into(),
            owner: Owner {
                kind: skiff_manifests::Kind::Deployment,
                name: "web".into(),
            },
            template_hash: "h".into(),
            node: node.into(),
            job: None,
        }
    }

    fn doc(term: u64, generation: u64, pods: Vec<AssignedPod>) -> Assignment {
        Assignment {
            term: Term(term),
            generation: Generation(generation),
            pods,
            parts: 1,
        }
    }

    #[test]
    fn accepted_tables_survive_a_restart_and_stale_ones_are_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = crate::store::shared(redb::Database::create(dir.path().join("db")).expect("db"));
        let mut f = Followed::open(db.clone()).expect("open");
        assert!(f.accept(&doc(2, 5, vec![pod("a", "n1")])));
        assert!(!f.accept(&doc(2, 5, vec![])), "same generation again");
        assert!(!f.accept(&doc(1, 9, vec![])), "older term");
        assert!(
            !f.accept(&doc(2, 6, vec![pod("a", "n1")])),
            "newer, same pods"
        );
        assert!(f.write_unwritten());
        drop(f);
        let f = Followed::open(db).expect("reopen");
        let kept = f.accepted.expect("kept");
        assert_eq!((kept.term, kept.generation), (Term(2), Generation(6)));
        assert_eq!(kept.pods, vec![pod("a", "n1")]);
    }

    #[test]
    fn peers_seen_ready_are_remembered_as_seeds_and_forgotten_when_they_leave() {
        use skiff_gossip::NodeMetadata;
        let node = |name: &str, port: u16, condition: NodeCondition| NodeStatus {
            name: name.into(),
            condition,
            generation: 1,
            started_at_unix_ms: 1,
            address: format!("198.18.1.1:{port}").parse().expect("addr"),
            metadata: NodeMetadata::default(),
            is_self: false,
        };
        let dir = tempfile::tempdir().expect("tmp");
        let db = crate::store::shared(redb::Database::create(dir.path().join("db")).expect("db"));
        let mut f = Followed::open(db.clone()).expect("open");
        f.note_peers(
            &[
                node("me", 1, NodeCondition::Ready),
                node("b", 2, NodeCondition::Ready),
                node("c", 3, NodeCondition::NotReady),
            ],
            "me",
        );
        assert!(f.write_unwritten());
        drop(f);
        let mut f = Followed::open(db.clone()).expect("reopen");
        assert_eq!(f.peer_addrs.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(f.known_peers.contains("b"));
        f.note_peers(&[node("b", 2, NodeCondition::Left)], "me");
        assert!(f.write_unwritten());
        drop(f);
        assert!(Followed::open(db).expect("reopen").peer_addrs.is_empty());
    }

    #[test]
    fn the_previous_table_is_the_newest_per_node() {
        let tables = vec![
            (
                "n1".to_string(),
                "n2".to_string(),
                doc(1, 3, vec![pod("old", "n2")]),
            ),
            (
                "n3".to_string(),
                "n2".to_string(),
                doc(2, 1, vec![pod("new", "n2")]),
            ),
            (
                "n1".to_string(),
                "n1".to_string(),
                doc(1, 3, vec![pod("a", "n1")]),
            ),
        ];
        let mut names: Vec<String> = previous_table(&tables)
            .into_iter()
            .map(|p| p.name)
            .collect();
        names.sort();
        assert_eq!(names, vec!["a".to_string(), "new".to_string()]);
    }
}

//! Services in the cluster task: the scheduling leader keeps the address book (ClusterIPs and
//! node ports) and publishes it; every node follows the leader's book and joins it with the
//! objects and every node's pod reports into the table its proxy programs.

use super::*;
use crate::services::{self, Book, ServiceTable};

/// What the last table was computed from (pointers: the inputs are shared and replaced, never
/// changed in place).
pub(super) struct TableInputs {
    objects: Arc<crate::desired::Objects>,
    pods: Arc<PodReports>,
    book: Arc<Book>,
    gone: BTreeSet<String>,
}

impl ClusterService {
    /// As the scheduling leader: allocates for the Services that exist, keeping what the book
    /// this node followed gave, and publishes the book when it changed.
    pub(super) async fn allocate_services(&mut self) {
        let allocated = self
            .allocated_for
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, &self.objects));
        if !allocated {
            let services = services::services_of(&self.objects);
            let book = services::alloc::allocate(
                &services,
                &self.book,
                self.service_cidr,
                self.node_port_range,
            );
            if book != *self.book {
                self.followed.set_book(&book);
                self.book = Arc::new(book);
            }
            self.allocated_for = Some(self.objects.clone());
        }
        if self
            .published_book_of
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(b, &self.book))
        {
            return;
        }
        let version = book_version(&self.book);
        if self.published_book == Some(version) {
            self.published_book_of = Some(self.book.clone());
            return;
        }
        match split_book(&self.book, skiff_gossip::MAX_VALUE_BYTES) {
            Ok(values) => {
                let parts = values.len() as u32;
                for (index, value) in values.iter().enumerate().rev() {
                    if let Err(e) = self.gossip.set_key(&book_key(index as u32), value).await {
                        tracing::error!("cannot publish the Service address book: {e}");
                        return;
                    }
                }
                for index in parts..self.published_book_parts {
                    let _ = self.gossip.delete_key(&book_key(index)).await;
                }
                self.published_book_parts = parts;
                self.published_book = Some(version);
                self.published_book_of = Some(self.book.clone());
            }
            Err(size) => tracing::error!(
                "cannot publish the Service address book: one entry is {size} bytes, more than a gossip value holds"
            ),
        }
    }

    /// Warning events for what the book newly refused since the last look, as `Service` events
    /// of this node (every node tells them, so `describe service` shows them anywhere).
    pub(super) fn note_book(&mut self, outputs: &ClusterOutputs) {
        if Arc::ptr_eq(&self.noted_book, &self.book) {
            return;
        }
        for e in services::alloc::book_events(&self.noted_book, &self.book) {
            let (namespace, name) = e.service.split_once('/').unwrap_or(("", &e.service));
            super::rollback::note(
                outputs,
                crate::events::Note {
                    warning: true,
                    reason: e.reason.into(),
                    object_kind: "Service".into(),
                    namespace: namespace.into(),
                    object_name: name.into(),
                    message: e.message,
                },
            );
        }
        self.noted_book = self.book.clone();
    }

    /// Off the scheduling pass: the book of the leader this node follows, once whole.
    pub(super) fn follow_book(&mut self, leader: Option<&str>) {
        if let Some(leader) = leader
            && leader != self.me
            && let Some(book) = self.view.node(leader).and_then(|k| k.book.as_ref())
            && **book != *self.book
        {
            self.followed.set_book(book);
            self.book = book.clone();
            self.allocated_for = None;
        }
    }

    /// The Service table, computed again when one of its inputs changed.
    pub(super) fn service_table(&mut self, now: u64) -> Arc<ServiceTable> {
        let eviction = self.timings.eviction_delay.as_millis() as u64;
        let gone: BTreeSet<String> = self
            .not_ready_since
            .iter()
            .filter(|(_, (since, _))| now.saturating_sub(*since) >= eviction)
            .map(|(n, _)| n.clone())
            .collect();
        let same = self.service_inputs.as_ref().is_some_and(|i| {
            Arc::ptr_eq(&i.objects, &self.objects)
                && Arc::ptr_eq(&i.pods, &self.pods)
                && Arc::ptr_eq(&i.book, &self.book)
                && i.gone == gone
        });
        if !same {
            let table = services::table(&self.objects, &self.book, &self.pods, &gone);
            if table != *self.services {
                self.services = Arc::new(table);
            }
            self.service_inputs = Some(TableInputs {
                objects: self.objects.clone(),
                pods: self.pods.clone(),
                book: self.book.clone(),
                gone,
            });
        }
        self.services.clone()
    }
}

/// Key of part `index` of the book.
pub(crate) fn book_key(index: u32) -> String {
    if index == 0 {
        BOOK_KEY.to_string()
    } else {
        format!("{BOOK_PART_PREFIX}{index}")
    }
}

/// The leader's Service address book (part 0).
pub const BOOK_KEY: &str = "sched/svc-ips";
/// Later parts of the book: `sched/svc-ips-part/<i>`.
pub const BOOK_PART_PREFIX: &str = "sched/svc-ips-part/";

/// One part of the book as gossiped: every part names the whole book's version, so a reader
/// assembles only parts of one book.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct BookPart {
    version: u64,
    parts: u32,
    entries: Book,
}

fn book_version(book: &Book) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(book).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// The book as JSON values of at most `limit` bytes each (part 0 first).
pub(crate) fn split_book(book: &Book, limit: usize) -> Result<Vec<String>, usize> {
    let version = book_version(book);
    let header = serde_json::to_string(&BookPart {
        version: u64::MAX,
        parts: u32::MAX,
        entries: Book::new(),
    })
    .unwrap_or_default()
    .len();
    let mut groups: Vec<Book> = vec![Book::new()];
    let mut used = header;
    for (name, allocation) in book {
        let size = serde_json::to_string(&(name, allocation))
            .unwrap_or_default()
            .len()
            + 1;
        if header + size > limit {
            return Err(header + size);
        }
        if used + size > limit {
            groups.push(Book::new());
            used = header;
        }
        used += size;
        groups
            .last_mut()
            .expect("one group")
            .insert(name.clone(), allocation.clone());
    }
    let parts = groups.len() as u32;
    Ok(groups
        .into_iter()
        .map(|entries| {
            serde_json::to_string(&BookPart {
                version,
                parts,
                entries,
            })
            .unwrap_or_default()
        })
        .collect())
}

/// The whole book from its parts (index -> part), when all are there and of one version.
pub(crate) fn assemble_book(parts: &BTreeMap<u32, BookPart>) -> Option<Book> {
    let first = parts.get(&0)?;
    let mut book = Book::new();
    for index in 0..first.parts {
        let part = parts.get(&index)?;
        if (part.version, part.parts) != (first.version, first.parts) {
            return None;
        }
        book.extend(part.entries.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Some(book)
}

/// (part index) of a book key.
pub(crate) fn parse_book_key(key: &str) -> Option<u32> {
    if key == BOOK_KEY {
        return Some(0);
    }
    let index: u32 = key.strip_prefix(BOOK_PART_PREFIX)?.parse().ok()?;
    (index > 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Allocation;

    #[test]
    fn a_large_book_goes_in_parts_of_one_version() {
        let book: Book = (0..2000)
            .map(|i| {
                (
                    format!("default/service-{i:04}").into(),
                    Allocation {
                        cluster_ip: Some(std::net::Ipv4Addr::new(
                            10,
                            43,
                            (i / 250) as u8,
                            (i % 250) as u8 + 1,
                        )),
                        ..Allocation::default()
                    },
                )
            })
            .collect();
        let values = split_book(&book, 16 * 1024).expect("split");
        assert!(values.len() > 1);
        assert!(values.iter().all(|v| v.len() <= 16 * 1024));
        let parts: BTreeMap<u32, BookPart> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32, serde_json::from_str(v).expect("json")))
            .collect();
        assert_eq!(assemble_book(&parts), Some(book.clone()));
        let mut missing = parts;
        missing.remove(&1);
        assert_eq!(assemble_book(&missing), None);
        assert_eq!(parse_book_key("sched/svc-ips"), Some(0));
        assert_eq!(parse_book_key("sched/svc-ips-part/3"), Some(3));
        assert_eq!(parse_book_key("sched/svc-ips-part/0"), None);
        assert_eq!(book_key(2), "sched/svc-ips-part/2");
    }
}

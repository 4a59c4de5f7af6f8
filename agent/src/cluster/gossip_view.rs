//! The cluster's gossip keys as this node last read them, parsed once per change: each step
//! asks gossip only for the nodes whose keys changed since the last read, so a quiet cluster of
//! hundreds of nodes costs a version comparison per node, not a parse of every key.

use super::keys::{
    ASSIGN_PART_PREFIX, ASSIGN_PREFIX, Assignment, PENDING_KEY, POD_PREFIX, PendingWorkload,
    PodReport, assemble_assignment, parse_assignment_key,
};
use super::subnets;
use ipnet::Ipv4Net;
use skiff_gossip::{Digest, KeyReader, KeysVersion, RECORD_PREFIX, TERM_KEY, Term};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every prefix the cluster layer reads.
const PREFIXES: [&str; 4] = [RECORD_PREFIX, POD_PREFIX, "sched/", "net/"];
/// What it reads of this node's own keys: not the object adverts, which it wrote from its own
/// replica, nor the Service address book, which it made as the leader (a thousand objects or
/// Services would be copied out and parsed again on each change of its keys).
const OWN_PREFIXES: [&str; 7] = [
    POD_PREFIX,
    TERM_KEY,
    PENDING_KEY,
    ASSIGN_PREFIX,
    ASSIGN_PART_PREFIX,
    subnets::TABLE_KEY,
    "net/",
];

/// What one node publishes, parsed. Values that do not parse are left out.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// `obj/...` key -> the digest of the version it holds (none in this node's own view).
    pub adverts: Vec<(String, Digest)>,
    /// Target node -> the table this node published for it.
    pub tables: Vec<(String, Assignment)>,
    /// The highest leader term it has seen.
    pub term: Option<Term>,
    pub pending: Option<Vec<PendingWorkload>>,
    /// (namespace, name) -> what it reports about a pod it runs.
    pub pods: Vec<((String, String), Arc<PodReport>)>,
    /// The pod subnet it claims.
    pub claim: Option<Ipv4Net>,
    /// The subnet table it published when it led.
    pub subnet_table: Option<BTreeMap<String, Ipv4Net>>,
    /// A hash of each pod report's text, so the next parse reuses the reports whose text did
    /// not change (a node that publishes one report change does not cost a parse of all).
    report_hashes: BTreeMap<(String, String), u64>,
    /// The Service address book it published when it led (whole, or none; a node's own keys
    /// are read without it).
    pub book: Option<Arc<crate::services::Book>>,
    /// A hash of the book's parts as text, so an unchanged book is not parsed again each time
    /// another key of its node changes.
    book_hash: Option<u64>,
}

impl NodeView {
    /// The table this node published for `target`.
    pub fn table_for(&self, target: &str) -> Option<&Assignment> {
        self.tables
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, doc)| doc)
    }

    fn parse(keys: &[(String, String)], previous: Option<&NodeView>) -> NodeView {
        let mut out = NodeView::default();
        let reusable: BTreeMap<&(String, String), (u64, &Arc<PodReport>)> = previous
            .map(|p| {
                p.pods
                    .iter()
                    .filter_map(|(k, r)| Some((k, (*p.report_hashes.get(k)?, r))))
                    .collect()
            })
            .unwrap_or_default();
        // Target node -> its table's parts as read (a table is used only when whole).
        let mut parts: BTreeMap<String, BTreeMap<u32, Assignment>> = BTreeMap::new();
        let mut book_texts: Vec<(u32, &str)> = Vec::new();
        for (key, value) in keys {
            if key.starts_with(RECORD_PREFIX) {
                if super::keys::parse_object_key(key).is_some()
                    && let Ok(d) = value.parse()
                {
                    out.adverts.push((key.clone(), d));
                }
            } else if let Some(rest) = key.strip_prefix(POD_PREFIX) {
                if let Some((ns, name)) = rest.split_once('/') {
                    let key = (ns.to_string(), name.to_string());
                    let hash = text_hash(value);
                    let report = match reusable.get(&key) {
                        Some((h, report)) if *h == hash => Some(Arc::clone(report)),
                        _ => serde_json::from_str(value).ok(),
                    };
                    if let Some(report) = report {
                        out.report_hashes.insert(key.clone(), hash);
                        out.pods.push((key, report));
                    }
                }
            } else if let Some((target, index)) = parse_assignment_key(key) {
                if let Ok(doc) = serde_json::from_str::<Assignment>(value) {
                    parts
                        .entry(target.to_string())
                        .or_default()
                        .insert(index, doc);
                }
            } else if let Some(index) = super::service::parse_book_key(key) {
                book_texts.push((index, value));
            } else if key == TERM_KEY {
                out.term = value.parse().ok();
            } else if key == PENDING_KEY {
                out.pending = serde_json::from_str(value).ok();
            } else if key == subnets::CLAIM_KEY {
                out.claim = value.parse().ok();
            } else if key == subnets::TABLE_KEY {
                out.subnet_table = serde_json::from_str(value).ok();
            }
        }
        if !book_texts.is_empty() {
            let hash = text_hash(&book_texts);
            out.book_hash = Some(hash);
            out.book = match previous {
                Some(p) if p.book_hash == Some(hash) => p.book.clone(),
                _ => {
                    let parts: BTreeMap<u32, _> = book_texts
                        .iter()
                        .filter_map(|(i, v)| Some((*i, serde_json::from_str(v).ok()?)))
                        .collect();
                    super::service::assemble_book(&parts).map(Arc::new)
                }
            };
        }
        out.tables = parts
            .into_iter()
            .filter_map(|(target, parts)| Some((target, assemble_assignment(&parts)?)))
            .collect();
        out
    }
}

fn text_hash<T: std::hash::Hash + ?Sized>(text: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Every node's parsed keys, refreshed from gossip by change.
#[derive(Default)]
pub struct GossipView {
    /// This node (its view holds no adverts).
    me: String,
    versions: BTreeMap<String, KeysVersion>,
    nodes: BTreeMap<String, Arc<NodeView>>,
}

impl GossipView {
    /// The view of node `me`.
    pub fn of(me: &str) -> GossipView {
        GossipView {
            me: me.to_string(),
            ..GossipView::default()
        }
    }

    /// Reads what changed since the last refresh; true when anything did.
    pub async fn refresh(&mut self, reader: &KeyReader) -> bool {
        let own = (!self.me.is_empty()).then_some((self.me.as_str(), &OWN_PREFIXES[..]));
        let changes = reader
            .changes_since_except(&self.versions, &PREFIXES, own)
            .await;
        if changes.is_empty() {
            return false;
        }
        for gone in changes.gone {
            self.versions.remove(&gone);
            self.nodes.remove(&gone);
        }
        for node in changes.changed {
            let parsed = NodeView::parse(&node.keys, self.nodes.get(&node.node).map(Arc::as_ref));
            self.nodes.insert(node.node.clone(), Arc::new(parsed));
            self.versions.insert(node.node, node.version);
        }
        true
    }

    /// Every node's keys, by node name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeView)> {
        self.nodes.iter().map(|(n, k)| (n.as_str(), k.as_ref()))
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes.get(name).map(Arc::as_ref)
    }

    /// (publisher, target, table) for every table any node published.
    pub fn tables(&self) -> Vec<(String, String, Assignment)> {
        self.nodes()
            .flat_map(|(from, keys)| {
                keys.tables
                    .iter()
                    .map(move |(target, doc)| (from.to_string(), target.clone(), doc.clone()))
            })
            .collect()
    }

    /// The pod subnet each node claims.
    pub fn claims(&self) -> BTreeMap<String, Ipv4Net> {
        self.nodes()
            .filter_map(|(n, k)| Some((n.to_string(), k.claim?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_gossip::Generation;

    #[test]
    fn keys_are_sorted_into_their_kinds_and_bad_values_left_out() {
        let keys: Vec<(String, String)> = [
            ("net/subnet", "10.42.3.0/24"),
            ("obj/ConfigMap/default/a", "1700000000000.0@n1:abc:L"),
            ("obj/ConfigMap/default/bad", "not a digest"),
            ("obj/NoSuchKind/default/x", "1700000000000.0@n1:abc:L"),
            ("pod/default/web-1", "{not json"),
            ("sched/assign/n2", r#"{"term":2,"generation":5,"pods":[]}"#),
            ("sched/assign/n3", "{}"),
            (
                "sched/assign/n4",
                r#"{"term":2,"generation":5,"pods":[],"parts":2}"#,
            ),
            (
                "sched/assign-part/1/n4",
                r#"{"term":2,"generation":5,"pods":[],"parts":2}"#,
            ),
            (
                "sched/assign/n5",
                r#"{"term":2,"generation":5,"pods":[],"parts":2}"#,
            ),
            ("sched/pending", "[]"),
            ("sched/subnets", r#"{"n1":"10.42.1.0/24"}"#),
            ("sched/term", "7"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let parsed = NodeView::parse(&keys, None);
        assert_eq!(parsed.claim, Some("10.42.3.0/24".parse().expect("net")));
        assert_eq!(parsed.adverts.len(), 1);
        assert_eq!(parsed.adverts[0].0, "obj/ConfigMap/default/a");
        assert!(parsed.pods.is_empty());
        assert_eq!(parsed.pending, Some(Vec::new()));
        assert_eq!(parsed.term, Some(Term(7)));
        assert_eq!(
            parsed.table_for("n2").map(|d| (d.term, d.generation)),
            Some((Term(2), Generation(5)))
        );
        assert!(
            parsed.table_for("n3").is_none(),
            "a table that does not parse"
        );
        assert_eq!(
            parsed.table_for("n4").map(|d| (d.term, d.parts)),
            Some((Term(2), 1)),
            "both parts: the whole table"
        );
        assert!(
            parsed.table_for("n5").is_none(),
            "a table with a part missing"
        );
        assert_eq!(
            parsed.subnet_table.and_then(|t| t.get("n1").copied()),
            Some("10.42.1.0/24".parse().expect("net"))
        );
    }

    #[test]
    fn a_second_parse_reuses_the_reports_whose_text_did_not_change() {
        let report = |uid: &str, running: bool| {
            serde_json::to_string(&PodReport {
                uid: uid.into(),
                owner: None,
                template_hash: "h".into(),
                created_ms: 1,
                deleting: false,
                running,
                ready: running,
                labels: Default::default(),
                status: serde_json::Value::Null,
                ports: Vec::new(),
                hostname: None,
                subdomain: None,
            })
            .expect("json")
        };
        let keys = |b_running: bool| {
            vec![
                ("pod/default/a".to_string(), report("ua", true)),
                ("pod/default/b".to_string(), report("ub", b_running)),
            ]
        };
        let first = NodeView::parse(&keys(false), None);
        let second = NodeView::parse(&keys(true), Some(&first));
        let find = |view: &NodeView, name: &str| {
            view.pods
                .iter()
                .find(|((_, n), _)| n == name)
                .map(|(_, r)| Arc::clone(r))
                .expect("report")
        };
        assert!(
            Arc::ptr_eq(&find(&first, "a"), &find(&second, "a")),
            "unchanged: reused"
        );
        assert!(
            !Arc::ptr_eq(&find(&first, "b"), &find(&second, "b")),
            "changed: parsed again"
        );
        assert!(find(&second, "b").running);
        assert!(!find(&first, "b").running);
    }

    #[test]
    fn a_book_is_parsed_once_and_never_read_from_the_own_keys() {
        let book: crate::services::Book = [(
            "default/web".into(),
            crate::services::Allocation {
                cluster_ip: Some("10.43.0.10".parse().expect("ip")),
                ..Default::default()
            },
        )]
        .into();
        let values = crate::cluster::service::split_book(&book, 10_000).expect("one part");
        let keys = |other: &str| {
            vec![
                (
                    crate::cluster::service::BOOK_KEY.to_string(),
                    values[0].clone(),
                ),
                ("sched/term".to_string(), other.to_string()),
            ]
        };
        let first = NodeView::parse(&keys("1"), None);
        assert_eq!(first.book.as_deref(), Some(&book));
        let second = NodeView::parse(&keys("2"), Some(&first));
        assert!(
            Arc::ptr_eq(
                first.book.as_ref().expect("book"),
                second.book.as_ref().expect("book")
            ),
            "an unchanged book is reused"
        );
        // A node's own keys are read by prefix: none of them reaches a part of the book, and
        // every other key this view parses still does.
        let own = |key: &str| OWN_PREFIXES.iter().any(|p| key.starts_with(p));
        for key in [
            crate::cluster::service::BOOK_KEY.to_string(),
            format!("{}1", crate::cluster::service::BOOK_PART_PREFIX),
        ] {
            assert!(!own(&key), "{key} is read from the own keys");
        }
        for key in [
            "pod/default/a",
            TERM_KEY,
            PENDING_KEY,
            "sched/assign/n1",
            "sched/assign-part/1/n1",
            subnets::TABLE_KEY,
            subnets::CLAIM_KEY,
        ] {
            assert!(own(key), "{key} is not read from the own keys");
        }
    }
}

//! Replicated desired objects (DESIGN decision 3): the digest every node advertises per object
//! it holds, the merge rule, and the pure sync decision.
//!
//! Every node advertises `obj/<Kind>/<ns>/<name>` = [`Digest`] (`<stamp>:<hash>:<L|T>`) for every
//! object in its local store, so an object outlives the node it was declared on. Bodies never
//! travel in gossip: a node that sees a newer digest fetches the body over rpc from a node that
//! advertises it. Merge rule: the greater stamp wins (hybrid logical clock, node name breaks
//! ties); a tombstone is a version like any other.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hlc::Stamp;

/// Key prefix of record digests.
pub const RECORD_PREFIX: &str = "obj/";

/// The advertised version of one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    pub stamp: Stamp,
    /// Content hash of the body (empty for a tombstone).
    pub hash: String,
    pub tombstone: bool,
}

impl Digest {
    /// The merge rule: does `self` replace `other`? Stamps decide; equal stamps (one write seen
    /// twice) never replace.
    pub fn supersedes(&self, other: &Digest) -> bool {
        (&self.stamp, &self.hash, self.tombstone) > (&other.stamp, &other.hash, other.tombstone)
    }

    /// A tombstone older than `grace` at `now_ms` can be forgotten.
    pub fn expired(&self, now_ms: u64, grace: Duration) -> bool {
        self.tombstone && now_ms.saturating_sub(self.stamp.wall_ms) > grace.as_millis() as u64
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = if self.tombstone { 'T' } else { 'L' };
        write!(f, "{}:{}:{flag}", self.stamp, self.hash)
    }
}

/// A digest that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid record digest {0:?}: expected <stamp>:<hash>:<L|T>")]
pub struct InvalidDigest(pub String);

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Digest, InvalidDigest> {
        let bad = || InvalidDigest(s.chars().take(96).collect());
        let mut parts = s.rsplitn(3, ':');
        let flag = parts.next().ok_or_else(bad)?;
        let hash = parts.next().ok_or_else(bad)?;
        let stamp: Stamp = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let tombstone = match flag {
            "L" => false,
            "T" => true,
            _ => return Err(bad()),
        };
        if !hash.chars().all(|c| c.is_ascii_alphanumeric()) || (hash.is_empty() && !tombstone) {
            return Err(bad());
        }
        Ok(Digest {
            stamp,
            hash: hash.to_string(),
            tombstone,
        })
    }
}

/// One step to bring the local store up to the newest version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// A newer live version exists: fetch its body from one of `from` (nodes advertising it).
    Fetch {
        key: String,
        digest: Digest,
        from: Vec<String>,
    },
    /// A newer tombstone exists: apply it (no body needed).
    Delete { key: String, digest: Digest },
}

/// What the local store (`local`: key -> its digest) lacks, given every node's advertised
/// digests (node, key, digest). Pure; sorted by key. Unparsable adverts are the caller's to
/// drop.
pub fn plan_sync<'a, 'l>(
    local: impl Fn(&str) -> Option<&'l Digest>,
    adverts: impl IntoIterator<Item = (&'a str, &'a str, &'a Digest)>,
) -> Vec<SyncStep> {
    let mut best: BTreeMap<&str, (&Digest, Vec<String>)> = BTreeMap::new();
    for (node, key, digest) in adverts {
        match best.get_mut(key) {
            Some((kept, from)) if *kept == digest => from.push(node.to_string()),
            Some((kept, _)) if !digest.supersedes(kept) => {}
            _ => {
                best.insert(key, (digest, vec![node.to_string()]));
            }
        }
    }
    best.into_iter()
        .filter(|(key, (digest, _))| local(key).is_none_or(|mine| digest.supersedes(mine)))
        .map(|(key, (digest, mut from))| {
            if digest.tombstone {
                SyncStep::Delete {
                    key: key.to_string(),
                    digest: digest.clone(),
                }
            } else {
                from.sort();
                SyncStep::Fetch {
                    key: key.to_string(),
                    digest: digest.clone(),
                    from,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(wall_ms: u64, node: &str, hash: &str, tombstone: bool) -> Digest {
        Digest {
            stamp: Stamp {
                wall_ms,
                counter: 0,
                node: node.into(),
            },
            hash: hash.into(),
            tombstone,
        }
    }

    #[test]
    fn digest_text_round_trips() {
        let live = digest(17, "edge-a", "ab12", false);
        assert_eq!(live.to_string(), "17.0@edge-a:ab12:L");
        assert_eq!("17.0@edge-a:ab12:L".parse::<Digest>(), Ok(live));
        let dead = digest(18, "b", "", true);
        assert_eq!("18.0@b::T".parse::<Digest>(), Ok(dead));
        for bad in [
            "",
            "17.0@a:ab",
            "17.0@a:ab:X",
            "17.0@a::L",
            "x@a:ab:L",
            "17.0@a:a/b:L",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn merge_rule_table() {
        let cases = [
            // newer wall clock wins, whatever the node
            (digest(2, "a", "x", false), digest(1, "z", "y", false), true),
            (
                digest(1, "z", "y", false),
                digest(2, "a", "x", false),
                false,
            ),
            // same time: the node name breaks the tie, the same way on every node
            (digest(1, "b", "x", false), digest(1, "a", "y", false), true),
            (
                digest(1, "a", "y", false),
                digest(1, "b", "x", false),
                false,
            ),
            // a newer tombstone replaces a live version and the reverse
            (digest(3, "a", "", true), digest(2, "a", "x", false), true),
            (digest(4, "a", "x", false), digest(3, "a", "", true), true),
            // the same version seen twice replaces nothing
            (
                digest(1, "a", "x", false),
                digest(1, "a", "x", false),
                false,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.supersedes(&b), expected, "{a} over {b}");
        }
    }

    #[test]
    fn tombstones_expire_after_the_grace_period_and_live_versions_never() {
        let grace = Duration::from_secs(60);
        assert!(!digest(1_000, "a", "", true).expired(60_000, grace));
        assert!(digest(1_000, "a", "", true).expired(61_001, grace));
        assert!(!digest(1_000, "a", "x", false).expired(u64::MAX, grace));
    }

    #[test]
    fn sync_fetches_the_newest_version_from_every_node_that_has_it() {
        let local = BTreeMap::from([
            ("obj/a".to_string(), digest(5, "n1", "aa", false)),
            ("obj/b".to_string(), digest(5, "n1", "bb", false)),
            ("obj/c".to_string(), digest(9, "n1", "cc", false)),
        ]);
        let newer_a = digest(6, "n2", "a2", false);
        let old_a = digest(4, "n3", "a0", false);
        let same_b = digest(5, "n1", "bb", false);
        let older_c = digest(8, "n2", "", true);
        let newer_c = digest(10, "n3", "", true);
        let new_d = digest(1, "n3", "dd", false);
        let adverts = [
            ("n3", "obj/a", &old_a),
            ("n2", "obj/a", &newer_a),
            ("n4", "obj/a", &newer_a),
            ("n2", "obj/b", &same_b),
            ("n2", "obj/c", &older_c),
            ("n3", "obj/c", &newer_c),
            ("n3", "obj/d", &new_d),
        ];
        let steps = plan_sync(
            |k| local.get(k),
            adverts.iter().map(|(n, k, d)| (*n, *k, *d)),
        );
        assert_eq!(
            steps,
            vec![
                SyncStep::Fetch {
                    key: "obj/a".into(),
                    digest: newer_a.clone(),
                    from: vec!["n2".into(), "n4".into()],
                },
                SyncStep::Delete {
                    key: "obj/c".into(),
                    digest: newer_c.clone(),
                },
                SyncStep::Fetch {
                    key: "obj/d".into(),
                    digest: new_d.clone(),
                    from: vec!["n3".into()],
                },
            ]
        );
        // Once applied, nothing is left to do.
        let mut after = local.clone();
        after.insert("obj/a".into(), newer_a.clone());
        after.insert("obj/c".into(), newer_c.clone());
        after.insert("obj/d".into(), new_d.clone());
        assert!(
            plan_sync(
                |k| after.get(k),
                adverts.iter().map(|(n, k, d)| (*n, *k, *d))
            )
            .is_empty()
        );
    }
}

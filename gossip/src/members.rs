//! Who holds which node name. The issuing node keeps a registry of the names it certified
//! (`tls/members.json`: SHA-256 of each name's public key, issue time) and of the removed
//! incarnations; every node hides removed incarnations through the issuer's `node/removed/<name>`
//! gossip keys. The pure rules here decide a join's name ([`admit_name`]) and a
//! `skiff node remove` ([`check_removal`]). A removed node's key is revoked: the issuer publishes
//! it under `node/revoked/` and every node refuses connections with a certificate for that key.
//!
//! A name is bound to a key: a join for a name already certified is accepted only with the same
//! public key (a joiner whose answer was lost retries with the key it kept), otherwise refused
//! until `skiff node remove NAME`. A graceful stop marks a node Left on every restart, so Left
//! does not free a certified name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chitchat::Chitchat;
use serde::{Deserialize, Serialize};

use crate::error::RemoveError;
use crate::identity;
use crate::join::JoinRefusal;
use crate::keyspace::{KEY_ISSUER, REMOVED_PREFIX, REVOKED_PREFIX};
use crate::view::{NodeCondition, ObservedNode};

const MEMBERS_FILE: &str = "members.json";
/// At most this many removed generations are kept per name (the newest).
const MAX_REMOVED_GENERATIONS: usize = 64;

/// Serialises read-modify-write of the registry within this process.
static MEMBERS_FILE_LOCK: Mutex<()> = Mutex::new(());

/// One certified name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// SHA-256 (hex) of the certified public key (SubjectPublicKeyInfo DER).
    pub key_sha256: String,
    pub issued_at_unix_ms: u64,
}

/// The issuer's registry of names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRegistry {
    pub members: BTreeMap<String, MemberRecord>,
    /// Generations of each name that `skiff node remove` hid (published as gossip markers).
    #[serde(default)]
    pub removed: BTreeMap<String, BTreeSet<u64>>,
    /// Keys (SHA-256 hex) of removed nodes, with the name they had: refused everywhere.
    #[serde(default)]
    pub revoked_keys: BTreeMap<String, String>,
}

/// How a join's name was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A name nobody holds.
    NewName,
    /// The name's holder again (same key): a retry after a lost answer.
    SameKey,
}

/// The join rule for names, pure. `listed` is the name's condition in the issuer's node list
/// (removed incarnations already hidden); `issuer_name` is the issuing node's own name.
pub fn admit_name(
    name: &str,
    key_sha256: &str,
    registry: &MemberRegistry,
    listed: Option<NodeCondition>,
    issuer_name: &str,
) -> Result<Admission, JoinRefusal> {
    if registry.revoked_keys.contains_key(key_sha256) {
        return Err(JoinRefusal::KeyRevoked);
    }
    if let Some(record) = registry.members.get(name) {
        return if record.key_sha256 == key_sha256 {
            Ok(Admission::SameKey)
        } else {
            Err(JoinRefusal::NameTaken)
        };
    }
    if name == issuer_name {
        return Err(JoinRefusal::NameTaken);
    }
    match listed {
        Some(NodeCondition::Ready | NodeCondition::NotReady) => Err(JoinRefusal::NameTaken),
        Some(NodeCondition::Left) | None => Ok(Admission::NewName),
    }
}

/// The removal rule, pure: may `name` be forgotten? `listed` is its condition in the node list;
/// `registered` says whether the issuer certified it.
pub fn check_removal(
    name: &str,
    force: bool,
    issuer_name: &str,
    listed: Option<NodeCondition>,
    registered: bool,
) -> Result<(), RemoveError> {
    if name == issuer_name {
        return Err(RemoveError::Issuer {
            name: name.to_string(),
        });
    }
    match listed {
        None if !registered => Err(RemoveError::NotFound {
            name: name.to_string(),
        }),
        Some(NodeCondition::Ready) if !force => Err(RemoveError::StillReady {
            name: name.to_string(),
        }),
        _ => Ok(()),
    }
}

fn members_path(data_dir: &Path) -> PathBuf {
    identity::tls_dir(data_dir).join(MEMBERS_FILE)
}

/// Reads the registry (empty if the file does not exist yet).
pub(crate) fn load_registry(data_dir: &Path) -> Result<MemberRegistry, RemoveError> {
    let path = members_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RemoveError::Registry {
            path,
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MemberRegistry::default()),
        Err(e) => Err(RemoveError::Registry {
            path,
            detail: e.to_string(),
        }),
    }
}

/// Reads, changes and writes the registry under the process-wide lock.
pub(crate) fn update_registry<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut MemberRegistry) -> Result<T, RemoveError>,
) -> Result<T, RemoveError> {
    let _guard = MEMBERS_FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut registry = load_registry(data_dir)?;
    let out = change(&mut registry)?;
    let path = members_path(data_dir);
    let bytes = serde_json::to_vec_pretty(&registry).map_err(|e| RemoveError::Registry {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    identity::write_file(&path, &bytes, 0o600).map_err(|e| RemoveError::Registry {
        path,
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Adds `generations` to the removed set of `name`, keeping the newest ones.
pub(crate) fn add_removed(set: &mut BTreeSet<u64>, generations: impl IntoIterator<Item = u64>) {
    set.extend(generations);
    while set.len() > MAX_REMOVED_GENERATIONS {
        set.pop_first();
    }
}

/// The gossip value of a removal marker: generations, comma-separated.
pub(crate) fn encode_marker(generations: &BTreeSet<u64>) -> String {
    generations
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_marker(value: &str) -> impl Iterator<Item = u64> + '_ {
    value.split(',').filter_map(|g| g.trim().parse().ok())
}

/// Removed incarnations by name, from the `node/removed/` keys of the issuing node (a node
/// state that carries the issuer marker); such keys on any other node are ignored.
pub(crate) fn removed_incarnations(chitchat: &Chitchat) -> BTreeMap<String, BTreeSet<u64>> {
    let mut removed: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for state in chitchat.node_states().values() {
        if state.get(KEY_ISSUER).is_none() {
            continue;
        }
        for (key, value) in state.iter_prefix(REMOVED_PREFIX) {
            let name = &key[REMOVED_PREFIX.len()..];
            removed
                .entry(name.to_string())
                .or_default()
                .extend(decode_marker(&value.value));
        }
    }
    removed
}

/// Keys of removed nodes, from the `node/revoked/` keys of the issuing node.
pub(crate) fn revoked_keys(chitchat: &Chitchat) -> BTreeSet<String> {
    chitchat
        .node_states()
        .values()
        .filter(|state| state.get(KEY_ISSUER).is_some())
        .flat_map(|state| {
            state
                .iter_prefix(REVOKED_PREFIX)
                .map(|(key, _)| key[REVOKED_PREFIX.len()..].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// True if this incarnation of a node was removed.
pub(crate) fn is_removed(
    removed: &BTreeMap<String, BTreeSet<u64>>,
    name: &str,
    generation: u64,
) -> bool {
    removed
        .get(name)
        .is_some_and(|generations| generations.contains(&generation))
}

/// Drops removed incarnations from observed nodes.
pub(crate) fn hide_removed(
    observed: Vec<ObservedNode>,
    removed: &BTreeMap<String, BTreeSet<u64>>,
) -> Vec<ObservedNode> {
    observed
        .into_iter()
        .filter(|node| !is_removed(removed, &node.name, node.generation))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(entries: &[(&str, &str)]) -> MemberRegistry {
        MemberRegistry {
            members: entries
                .iter()
                .map(|(name, key)| {
                    (
                        name.to_string(),
                        MemberRecord {
                            key_sha256: key.to_string(),
                            issued_at_unix_ms: 1,
                        },
                    )
                })
                .collect(),
            removed: BTreeMap::new(),
            revoked_keys: BTreeMap::new(),
        }
    }

    #[test]
    fn admission_table() {
        use Admission::*;
        use NodeCondition::*;
        let reg = registry(&[("n1", "k1")]);
        let empty = MemberRegistry::default();
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a MemberRegistry,
            Option<NodeCondition>,
            Result<Admission, JoinRefusal>,
        );
        let taken = Err(JoinRefusal::NameTaken);
        let cases: Vec<Case> = vec![
            // A certified name: only its own key gets in, whatever gossip says.
            ("n1", "k1", &reg, Some(Ready), Ok(SameKey)),
            ("n1", "k1", &reg, None, Ok(SameKey)),
            ("n1", "evil", &reg, Some(Ready), taken),
            ("n1", "evil", &reg, Some(NotReady), taken),
            ("n1", "evil", &reg, Some(Left), taken),
            ("n1", "evil", &reg, None, taken),
            // The issuer's own name is never handed out.
            ("n0", "k", &empty, None, taken),
            ("n0", "k", &empty, Some(Ready), taken),
            // Names gossip knows but the registry does not (certified before it existed).
            ("n2", "k", &empty, Some(Ready), taken),
            ("n2", "k", &empty, Some(NotReady), taken),
            ("n2", "k", &empty, Some(Left), Ok(NewName)),
            ("n3", "k", &empty, None, Ok(NewName)),
        ];
        let mut revoked = MemberRegistry::default();
        revoked.revoked_keys.insert("old".into(), "n1".into());
        let cases: Vec<Case> = cases
            .into_iter()
            .chain([
                // A removed device's key never comes back, whatever name it asks for.
                ("n1", "old", &revoked, None, Err(JoinRefusal::KeyRevoked)),
                ("n9", "old", &revoked, None, Err(JoinRefusal::KeyRevoked)),
                ("n1", "fresh", &revoked, None, Ok(NewName)),
            ])
            .collect();
        for (name, key, reg, listed, expected) in cases {
            assert_eq!(
                admit_name(name, key, reg, listed, "n0"),
                expected,
                "{name} key={key} listed={listed:?}"
            );
        }
    }

    #[test]
    fn removal_table() {
        use NodeCondition::*;
        type Case = (
            &'static str,
            bool,
            Option<NodeCondition>,
            bool,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("n1", false, Some(NotReady), true, None),
            ("n1", false, Some(Left), true, None),
            ("n1", false, None, true, None),
            ("n1", false, Some(NotReady), false, None),
            ("n1", false, Some(Ready), true, Some("is Ready")),
            ("n1", true, Some(Ready), true, None),
            ("nx", false, None, false, Some("not found")),
            ("n0", true, Some(Ready), true, Some("issues certificates")),
        ];
        for (name, force, listed, registered, expected) in cases {
            let got = check_removal(name, force, "n0", listed, registered);
            match (expected, got) {
                (None, Ok(())) => {}
                (Some(text), Err(e)) => assert!(e.to_string().contains(text), "{name}: {e}"),
                (expected, got) => {
                    panic!("{name} force={force} {listed:?}: {got:?}, wanted {expected:?}")
                }
            }
        }
    }

    #[test]
    fn removed_generations_are_capped_and_encoded() {
        let mut set = BTreeSet::new();
        add_removed(&mut set, 0..100);
        assert_eq!(set.len(), MAX_REMOVED_GENERATIONS);
        assert_eq!(set.first(), Some(&36), "the oldest are dropped");
        let text = encode_marker(&BTreeSet::from([3, 10]));
        assert_eq!(text, "3,10");
        assert_eq!(decode_marker(&text).collect::<Vec<_>>(), vec![3, 10]);
        assert_eq!(decode_marker("x,5").collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn registry_round_trips_in_the_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            load_registry(dir.path()).expect("empty"),
            MemberRegistry::default()
        );
        std::fs::create_dir_all(identity::tls_dir(dir.path())).expect("tls dir");
        update_registry(dir.path(), |r| {
            r.members.insert(
                "n1".into(),
                MemberRecord {
                    key_sha256: "k".into(),
                    issued_at_unix_ms: 5,
                },
            );
            Ok(())
        })
        .expect("update");
        let loaded = load_registry(dir.path()).expect("load");
        assert_eq!(loaded.members["n1"].key_sha256, "k");
    }
}

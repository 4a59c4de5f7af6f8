//! The keyspace of a node's chitchat state and the one place values are written.
//!
//! Every write to this node's chitchat keys goes through [`set_checked`], which enforces the size
//! rule of DESIGN decision 3: a value larger than [`MAX_VALUE_BYTES`] would stall the node's
//! later keys in chitchat (a key is never split across messages), so it is refused up front.
//! Keys under `node/` belong to this crate (metadata, start time, leave marker).

use chitchat::NodeState;

use crate::error::GossipError;

/// Largest gossip value accepted (bytes).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Largest gossip key accepted (bytes).
pub const MAX_KEY_BYTES: usize = 256;

pub(crate) const RESERVED_PREFIX: &str = "node/";
/// JSON [`crate::NodeMetadata`].
pub(crate) const KEY_META: &str = "node/meta";
/// Unix milliseconds at which this generation of the node started.
pub(crate) const KEY_STARTED: &str = "node/started";
/// Present once the node has left gracefully.
pub(crate) const KEY_LEFT: &str = "node/left";
/// Present on the node holding the CA key (others relay join requests to it).
pub(crate) const KEY_ISSUER: &str = "node/issuer";
/// `node/suspect/<name>`: this node, an observer of `<name>`, suspects it
/// (`<generation>:<incarnation>`; empty once withdrawn).
pub(crate) const SUSPECT_PREFIX: &str = "node/suspect/";
/// The incarnation this node announces (raised to refute a suspicion of itself).
pub(crate) const KEY_INCARNATION: &str = "node/incarnation";
/// `node/removed/<name>` on the issuing node: generations of `<name>` that `skiff node remove`
/// hid (comma-separated); every node leaves them out of its node list and key scans.
pub(crate) const REMOVED_PREFIX: &str = "node/removed/";
/// `node/revoked/<key sha256>` on the issuing node: the key of a removed node (value: its name);
/// every node refuses connections from and to a peer whose certificate carries that key.
pub(crate) const REVOKED_PREFIX: &str = "node/revoked/";

/// The size rule, as a pure check.
pub fn check_entry(key: &str, value: &str) -> Result<(), GossipError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(GossipError::KeyTooLong {
            key: key.chars().take(32).collect(),
            len: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(GossipError::ValueTooLarge {
            key: key.to_string(),
            len: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Refuses keys in the crate's reserved namespace (used for caller-supplied keys).
pub(crate) fn check_user_key(key: &str) -> Result<(), GossipError> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err(GossipError::ReservedKey {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// The only writer of this node's keys: checks the size rule, then sets the value.
pub(crate) fn set_checked(
    state: &mut NodeState,
    key: &str,
    value: &str,
) -> Result<(), GossipError> {
    check_entry(key, value)?;
    if state.get(key) != Some(value) {
        state.set(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rule_table() {
        let ok = "v".repeat(MAX_VALUE_BYTES);
        let big = "v".repeat(20_480);
        assert!(check_entry("x", &ok).is_ok());
        let err = check_entry("x", &big).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gossip value for key \"x\" is 20480 bytes, limit 16384"
        );
        assert!(check_entry(&"k".repeat(MAX_KEY_BYTES + 1), "v").is_err());
        assert!(check_user_key("node/meta").is_err());
        assert!(check_user_key("pods/web").is_ok());
    }
}

//! Cluster administration through the local API: join tokens (`token create|list|revoke`, on
//! the node that holds the cluster CA) and `node remove` (carried out by that node: this node
//! asks it over rpc when it is another one).

use super::{Shared, err, ok};
use crate::api::Response;
use crate::api::server::Reply;
use crate::pod::rfc3339;
use serde_json::{Value, json};
use skiff_gossip::{NodeRemover, RemoveError, TokenRecord};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `token create --ttl D`.
pub(super) fn token_create(data_dir: &Path, ttl_secs: u64) -> Reply {
    match skiff_gossip::create_token(data_dir, Duration::from_secs(ttl_secs)) {
        Ok(token) => ok(json!({ "token": token.to_string(), "id": token.id() })),
        Err(e) => err(format!("token create: {e}")),
    }
}

/// `token list`: every token record, newest first; never a secret or its hash.
pub(super) fn token_list(data_dir: &Path) -> Reply {
    match skiff_gossip::list_issued_tokens(data_dir) {
        Ok(records) => ok(tokens_json(&records, SystemTime::now())),
        Err(e) => err(format!("token list: {e}")),
    }
}

/// `token revoke ID`.
pub(super) fn token_revoke(data_dir: &Path, id: &str) -> Reply {
    match skiff_gossip::revoke_token(data_dir, id.trim()) {
        Ok(()) => ok(json!({ "id": id.trim(), "revoked": true })),
        Err(e) => err(format!("token revoke: {e}")),
    }
}

/// The answer of `token list` at `now`: id, created, expires, state (valid|expired|revoked).
fn tokens_json(records: &[TokenRecord], now: SystemTime) -> Value {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut records: Vec<&TokenRecord> = records.iter().collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.created_at_unix_ms));
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            let state = if r.revoked {
                "revoked"
            } else if now_ms >= r.expires_at_unix_ms {
                "expired"
            } else {
                "valid"
            };
            json!({
                "id": r.id,
                "created": rfc3339(r.created_at_unix_ms),
                "expires": time_or_never(r.expires_at_unix_ms),
                "state": state,
            })
        })
        .collect();
    json!({ "items": items })
}

/// A time as RFC 3339, or `never` past year 9999 (tokens made before the ttl was capped).
fn time_or_never(ms: u64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        "never".to_string()
    } else {
        rfc3339(ms)
    }
}

/// `node remove NAME [--force]` asked of this node's API.
pub(super) async fn remove_node(shared: &Shared, name: &str, force: bool) -> Reply {
    let Some(remover) = &shared.remover else {
        return err("node remove: this agent runs without cluster networking");
    };
    if name == shared.node_meta.node_name() && !remover.is_issuer() {
        return err(format!(
            "node remove: {name:?} is this node; run the command on another node"
        ));
    }
    if remover.is_issuer() {
        return Reply::One(remove_here(remover, name, force, None).await);
    }
    let Some(issuer) = remover.issuer_addr() else {
        return err(format!("node remove: {}", RemoveError::NoIssuer));
    };
    match &shared.remote {
        Some(remote) => remote.remove_node(issuer, name, force).await,
        None => err("node remove: this agent cannot reach other nodes"),
    }
}

/// Removes `name` on this node, which must be the issuer; `asked_by` names the node that
/// forwarded the request.
pub(crate) async fn remove_here(
    remover: &NodeRemover,
    name: &str,
    force: bool,
    asked_by: Option<&str>,
) -> Response {
    match remover.remove(name, force).await {
        Ok(removed) => {
            if let Some(peer) = asked_by {
                tracing::warn!("node {name} removed at the request of node {peer}");
            } else {
                tracing::warn!("node {name} removed");
            }
            Response::Ok {
                value: json!({
                    "name": removed.name,
                    "hiddenGenerations": removed.hidden_generations,
                    "keyRevoked": removed.key_revoked,
                }),
            }
        }
        Err(e) => Response::Error {
            message: format!("node remove: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, created: u64, expires: u64, revoked: bool) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            secret_sha256: "feedface".into(),
            created_at_unix_ms: created,
            expires_at_unix_ms: expires,
            revoked,
        }
    }

    #[test]
    fn token_list_shows_state_newest_first_and_no_secret() {
        let now = UNIX_EPOCH + Duration::from_millis(5_000);
        let value = tokens_json(
            &[
                record("aa", 1_000, 9_000, false),
                record("bb", 2_000, 4_000, false),
                record("cc", 3_000, 9_000, true),
                record("old", 500, u64::MAX, false),
            ],
            now,
        );
        let items = value["items"].as_array().expect("items");
        let rows: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i["id"].as_str().unwrap(), i["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("cc", "revoked"),
                ("bb", "expired"),
                ("aa", "valid"),
                ("old", "valid")
            ]
        );
        let text = value.to_string();
        assert!(
            !text.contains("feedface"),
            "the secret's hash leaked: {text}"
        );
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(items[2]["created"], "1970-01-01T00:00:01Z");
        assert_eq!(items[3]["expires"], "never");
    }
}

//! Join tokens: the printable token (`skiff1.<base64>`: id, secret, pinned CA fingerprint), the
//! token records kept by the issuing node (`tls/tokens.json`: id, SHA-256 of the secret, expiry,
//! revoked flag), and the pure check a join request goes through.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::TokenError;
use crate::identity::{self, NodeIdentity};
use crate::join::JoinRefusal;

const PREFIX: &str = "skiff1.";
const TOKENS_FILE: &str = "tokens.json";
/// The longest a join token may stay valid: a leaked token must not be good forever.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Records this long past their expiry are pruned when a new token is created.
const PRUNE_AFTER_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Serialises read-modify-write of the token file within this process.
static TOKEN_FILE_LOCK: Mutex<()> = Mutex::new(());

/// A join token. `Display` gives the single printable string; `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: [u8; 8],
    secret: [u8; 32],
    ca_fingerprint: [u8; 32],
}

impl Token {
    /// Public id of the token (hex), usable for revocation and listing.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// The CA fingerprint the joiner must see on the node it joins.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        self.ca_fingerprint
    }

    pub(crate) fn id_bytes(&self) -> [u8; 8] {
        self.id
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(72);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(&self.ca_fingerprint);
        write!(f, "{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id())
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.trim().strip_prefix(PREFIX).ok_or(TokenError::Malformed {
            reason: "it does not start with skiff1.",
        })?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed {
                reason: "it is not valid base64",
            })?;
        if raw.len() != 72 {
            return Err(TokenError::Malformed {
                reason: "it has the wrong length",
            });
        }
        let mut token = Token {
            id: [0; 8],
            secret: [0; 32],
            ca_fingerprint: [0; 32],
        };
        token.id.copy_from_slice(&raw[..8]);
        token.secret.copy_from_slice(&raw[8..40]);
        token.ca_fingerprint.copy_from_slice(&raw[40..]);
        Ok(token)
    }
}

/// What the issuing node stores about a token (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub secret_sha256: String,
    pub created_at_unix_ms: u64,
    pub expires_at_unix_ms: u64,
    pub revoked: bool,
}

/// Pure check of a presented token against the records at time `now_unix_ms`.
pub fn check_token(
    records: &[TokenRecord],
    id: [u8; 8],
    secret: &[u8; 32],
    now_unix_ms: u64,
) -> Result<(), JoinRefusal> {
    let id = hex::encode(id);
    let record = records
        .iter()
        .find(|r| r.id == id)
        .ok_or(JoinRefusal::InvalidToken)?;
    let presented = hex::encode(Sha256::digest(secret));
    if !constant_time_eq(presented.as_bytes(), record.secret_sha256.as_bytes()) {
        return Err(JoinRefusal::InvalidToken);
    }
    if record.revoked {
        return Err(JoinRefusal::TokenRevoked);
    }
    if now_unix_ms >= record.expires_at_unix_ms {
        return Err(JoinRefusal::TokenExpired);
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tokens_path(data_dir: &Path) -> PathBuf {
    identity::tls_dir(data_dir).join(TOKENS_FILE)
}

/// Reads the token records of the node whose data dir this is (empty if none were created).
pub fn list_tokens(data_dir: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    let path = tokens_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(TokenError::Read { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|source| TokenError::Corrupt { path, source })
}

fn store_tokens(data_dir: &Path, records: &[TokenRecord]) -> Result<(), TokenError> {
    let path = tokens_path(data_dir);
    let bytes = serde_json::to_vec_pretty(records).map_err(|source| TokenError::Corrupt {
        path: path.clone(),
        source,
    })?;
    identity::write_file(&path, &bytes, 0o600).map_err(|e| match e {
        crate::error::IdentityError::Write { path, source } => TokenError::Write { path, source },
        other => TokenError::Identity(other),
    })
}

/// Creates a join token valid for `ttl`, on the node that created the cluster.
pub fn create_token(data_dir: &Path, ttl: Duration) -> Result<Token, TokenError> {
    create_token_at(data_dir, ttl, SystemTime::now())
}

/// [`create_token`] with an explicit creation time (tests make already-expired tokens with it).
pub fn create_token_at(
    data_dir: &Path,
    ttl: Duration,
    now: SystemTime,
) -> Result<Token, TokenError> {
    check_ttl(ttl)?;
    let identity = issuer_identity(data_dir)?;
    let token = Token {
        id: rand::random(),
        secret: rand::random(),
        ca_fingerprint: identity.ca_fingerprint(),
    };
    let now_ms = unix_ms(now);
    let _guard = TOKEN_FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut records = list_tokens(data_dir)?;
    let prune_before = now_ms.saturating_sub(PRUNE_AFTER_EXPIRY.as_millis() as u64);
    records.retain(|r| r.expires_at_unix_ms >= prune_before);
    records.push(TokenRecord {
        id: token.id(),
        secret_sha256: hex::encode(Sha256::digest(token.secret)),
        created_at_unix_ms: now_ms,
        expires_at_unix_ms: now_ms.saturating_add(ttl.as_millis() as u64),
        revoked: false,
    });
    store_tokens(data_dir, &records)?;
    Ok(token)
}

/// Checks a requested token lifetime: more than zero, at most [`MAX_TOKEN_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), TokenError> {
    if ttl.is_zero() {
        return Err(TokenError::BadTtl {
            reason: "it must be longer than zero".to_string(),
        });
    }
    if ttl > MAX_TOKEN_TTL {
        return Err(TokenError::BadTtl {
            reason: format!(
                "{}s is longer than the maximum of 365 days; create a shorter-lived token \
                 and a new one when it runs out",
                ttl.as_secs()
            ),
        });
    }
    Ok(())
}

fn issuer_identity(data_dir: &Path) -> Result<NodeIdentity, TokenError> {
    let identity = NodeIdentity::load(data_dir)?.ok_or(TokenError::NotIssuer)?;
    if !identity.can_issue() {
        return Err(TokenError::NotIssuer);
    }
    Ok(identity)
}

/// The token records of the issuing node, for `skiff token list` (refused on other nodes,
/// which hold no tokens).
pub fn list_issued_tokens(data_dir: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    issuer_identity(data_dir)?;
    list_tokens(data_dir)
}

/// Revokes the token with this id (hex, as printed by [`Token::id`]).
pub fn revoke_token(data_dir: &Path, id: &str) -> Result<(), TokenError> {
    issuer_identity(data_dir)?;
    let _guard = TOKEN_FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut records = list_tokens(data_dir)?;
    let record = records
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| TokenError::UnknownToken { id: id.to_string() })?;
    record.revoked = true;
    store_tokens(data_dir, &records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: &Token, expires: u64, revoked: bool) -> TokenRecord {
        TokenRecord {
            id: token.id(),
            secret_sha256: hex::encode(Sha256::digest(token.secret)),
            created_at_unix_ms: 0,
            expires_at_unix_ms: expires,
            revoked,
        }
    }

    #[test]
    fn token_round_trips_through_its_string() {
        let token = Token {
            id: [1; 8],
            secret: [2; 32],
            ca_fingerprint: [3; 32],
        };
        let text = token.to_string();
        assert!(text.starts_with("skiff1."));
        assert_eq!(text.parse::<Token>().expect("parse"), token);
        assert!(!format!("{token:?}").contains("0202"));
        assert!("skiff1.@@".parse::<Token>().is_err());
        assert!("k8s.abc".parse::<Token>().is_err());
        assert!("skiff1.AAAA".parse::<Token>().is_err());
    }

    #[test]
    fn ttl_is_bounded() {
        assert!(check_ttl(Duration::from_secs(3600)).is_ok());
        assert!(check_ttl(MAX_TOKEN_TTL).is_ok());
        for bad in [
            Duration::ZERO,
            MAX_TOKEN_TTL + Duration::from_secs(1),
            Duration::from_secs(u64::MAX),
        ] {
            let err = check_ttl(bad).expect_err("refused");
            assert!(err.to_string().starts_with("token ttl "), "{err}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        NodeIdentity::load_or_create_cluster(dir.path(), "n0").expect("cluster");
        let err = create_token(dir.path(), Duration::from_secs(u64::MAX)).unwrap_err();
        assert!(err.to_string().contains("365 days"), "{err}");
        assert!(
            list_tokens(dir.path()).expect("list").is_empty(),
            "nothing stored"
        );
    }

    #[test]
    fn list_and_revoke_on_the_issuer_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        NodeIdentity::load_or_create_cluster(dir.path(), "n0").expect("cluster");
        let token = create_token(dir.path(), Duration::from_secs(60)).expect("token");
        let listed = list_issued_tokens(dir.path()).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, token.id());
        assert!(!listed[0].revoked);
        revoke_token(dir.path(), &token.id()).expect("revoke");
        assert!(list_issued_tokens(dir.path()).expect("list")[0].revoked);
        let unknown = revoke_token(dir.path(), "0011223344556677").unwrap_err();
        assert!(unknown.to_string().contains("no join token"), "{unknown}");
        let other = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            list_issued_tokens(other.path()),
            Err(TokenError::NotIssuer)
        ));
    }

    #[test]
    fn check_table() {
        let token = Token {
            id: [7; 8],
            secret: [9; 32],
            ca_fingerprint: [0; 32],
        };
        type Case = (Vec<TokenRecord>, [u8; 32], u64, Result<(), JoinRefusal>);
        let cases: Vec<Case> = vec![
            (vec![record(&token, 100, false)], [9; 32], 50, Ok(())),
            (
                vec![record(&token, 100, false)],
                [9; 32],
                100,
                Err(JoinRefusal::TokenExpired),
            ),
            (
                vec![record(&token, 100, true)],
                [9; 32],
                50,
                Err(JoinRefusal::TokenRevoked),
            ),
            (
                vec![record(&token, 100, false)],
                [8; 32],
                50,
                Err(JoinRefusal::InvalidToken),
            ),
            (vec![], [9; 32], 50, Err(JoinRefusal::InvalidToken)),
        ];
        for (records, secret, now, expected) in cases {
            assert_eq!(check_token(&records, token.id, &secret, now), expected);
        }
    }
}

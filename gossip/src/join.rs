//! Joining a cluster: the wire messages (postcard on one bidirectional stream of a
//! `skiff-join/1` connection; the issuing node's handler is in `join_serve.rs`) and
//! [`join_cluster`] for the joiner.
//!
//! A refused joiner receives only the refusal reason: no certificate, no cluster state.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::JoinError;
use crate::identity::{self, NodeIdentity};
use crate::pki::{self, CLUSTER_SERVER_NAME};
use crate::tls::{self, QuicTimings, ServerDistrust};
use crate::token::Token;

pub(crate) use crate::join_serve::{JoinForwarder, JoinServer, serve_join};

pub(crate) const MAX_REQUEST_BYTES: usize = 16 * 1024;
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a join was refused (sent to the joiner, printed as `join refused: <reason>`). New
/// variants go at the end: the wire encoding is the variant's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinRefusal {
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    /// The contacted node does not hold the CA key.
    NotIssuer,
    BadRequest,
    /// Another node holds the requested name (`skiff node remove NAME` frees it).
    NameTaken,
    /// Too many failed joins from this address; retry in a few seconds.
    RateLimited,
    /// The issuer could not record the new member (see its log).
    IssuerFailed,
    /// The joiner's key belonged to a node that was removed (`skiff node remove`).
    KeyRevoked,
}

impl fmt::Display for JoinRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinRefusal::InvalidToken => "invalid token",
            JoinRefusal::TokenExpired => "token expired",
            JoinRefusal::TokenRevoked => "token revoked",
            JoinRefusal::NotIssuer => {
                "this node cannot sign certificates; join through the node that created the cluster"
            }
            JoinRefusal::BadRequest => "malformed join request",
            JoinRefusal::NameTaken => {
                "the node name is already a member of this cluster (a replaced device needs \
                 'skiff node remove NAME' first)"
            }
            JoinRefusal::RateLimited => {
                "too many failed join attempts from this address; wait a few seconds and retry"
            }
            JoinRefusal::IssuerFailed => {
                "the issuing node could not record the new member; see its log"
            }
            JoinRefusal::KeyRevoked => {
                "this device's key belongs to a node that was removed from the cluster; delete \
                 the tls directory in the data dir and join again"
            }
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub token_id: [u8; 8],
    pub secret: [u8; 32],
    pub node_name: String,
    pub csr_der: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum JoinResponse {
    Accepted {
        ca_cert_der: Vec<u8>,
        node_cert_der: Vec<u8>,
    },
    Refused(JoinRefusal),
}

/// Joins the cluster reachable at `addr` with `token`: obtains a node certificate and stores the
/// identity in `data_dir`. An identity already in `data_dir` (a restart) is returned without
/// contacting anyone, provided it belongs to `node_name`.
///
/// The node's key is made and kept in `data_dir` before the request goes out, and reused by a
/// later attempt: the issuer binds the name to that key, so a joiner whose answer was lost
/// gets its certificate on the retry while any other key is refused the name.
pub async fn join_cluster(
    addr: SocketAddr,
    token: &Token,
    node_name: &str,
    data_dir: &Path,
) -> Result<NodeIdentity, JoinError> {
    pki::validate_node_name(node_name)?;
    if let Some(existing) = NodeIdentity::load(data_dir)? {
        return Ok(existing.expect_name(node_name)?);
    }
    let key_pem = identity::load_or_create_pending_key(data_dir)?;
    let timings = QuicTimings {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
    };
    let (client_config, distrust) = tls::bootstrap_client_config(token.ca_fingerprint(), timings)?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(JoinError::Bind)?;
    let result = exchange(&endpoint, client_config, addr, token, node_name, &key_pem).await;
    endpoint.close(0u32.into(), b"joined");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    let why = distrust.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (ca_cert_der, node_cert_der) = match (result, why) {
        (Ok(parts), _) => parts,
        (Err(_), Some(why)) => return Err(distrust_error(addr, why)),
        (Err(e), None) => return Err(e),
    };
    if pki::fingerprint(&ca_cert_der) != token.ca_fingerprint() {
        return Err(JoinError::ServerNotTrusted { addr });
    }
    Ok(NodeIdentity::store_joined(
        data_dir,
        node_name,
        &ca_cert_der,
        &node_cert_der,
        &key_pem,
    )?)
}

/// The error for a server the joiner did not trust: a clock outside the certificate's validity
/// is said as such, not as a wrong CA.
fn distrust_error(addr: SocketAddr, why: ServerDistrust) -> JoinError {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let unknown = || "(not given)".to_string();
    match why {
        ServerDistrust::NotPinnedCa => JoinError::ServerNotTrusted { addr },
        ServerDistrust::NotValidYet {
            node_clock,
            not_before,
        } => JoinError::CertificateNotValidYet {
            addr,
            node_clock: time(node_clock),
            not_before: not_before.map_or_else(unknown, time),
        },
        ServerDistrust::Expired {
            node_clock,
            not_after,
        } => JoinError::CertificateExpired {
            addr,
            node_clock: time(node_clock),
            not_after: not_after.map_or_else(unknown, time),
        },
    }
}

async fn exchange(
    endpoint: &quinn::Endpoint,
    client_config: quinn::ClientConfig,
    addr: SocketAddr,
    token: &Token,
    node_name: &str,
    key_pem: &str,
) -> Result<(Vec<u8>, Vec<u8>), JoinError> {
    let connect_err =
        |e: Box<dyn std::error::Error + Send + Sync>| JoinError::Connect { addr, source: e };
    let protocol = |detail: String| JoinError::Protocol { addr, detail };
    let csr_der = pki::csr_for_key(key_pem, node_name)?;
    let request = JoinRequest {
        token_id: token.id_bytes(),
        secret: *token.secret(),
        node_name: node_name.to_string(),
        csr_der,
    };
    let encoded = postcard::to_allocvec(&request).map_err(|e| protocol(e.to_string()))?;
    let exchange = async {
        let conn = endpoint
            .connect_with(client_config, addr, CLUSTER_SERVER_NAME)
            .map_err(|e| connect_err(Box::new(e)))?
            .await
            .map_err(|e| connect_err(Box::new(e)))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| connect_err(Box::new(e)))?;
        send.write_all(&encoded)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        send.finish().map_err(|e| protocol(e.to_string()))?;
        let bytes = recv
            .read_to_end(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        conn.close(0u32.into(), b"thanks");
        Ok::<_, JoinError>(bytes)
    };
    let bytes = tokio::time::timeout(JOIN_TIMEOUT, exchange)
        .await
        .map_err(|_| protocol("no answer within 15 s".to_string()))??;
    match postcard::from_bytes::<JoinResponse>(&bytes) {
        Ok(JoinResponse::Accepted {
            ca_cert_der,
            node_cert_der,
        }) => Ok((ca_cert_der, node_cert_der)),
        Ok(JoinResponse::Refused(JoinRefusal::NameTaken)) => Err(JoinError::NameTaken {
            name: node_name.to_string(),
        }),
        Ok(JoinResponse::Refused(reason)) => Err(JoinError::Refused { reason }),
        Err(e) => Err(protocol(format!("unreadable answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_problems_read_as_clock_problems() {
        let addr: SocketAddr = "198.18.0.1:7946".parse().expect("addr");
        let t = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let early = distrust_error(
            addr,
            ServerDistrust::NotValidYet {
                node_clock: t(1_600_000_000),
                not_before: Some(t(1_704_067_200)),
            },
        )
        .to_string();
        assert!(
            early.starts_with("certificate not valid yet (node clock 2020-09-13T12:26:40Z"),
            "{early}"
        );
        assert!(early.contains("2024-01-01T00:00:00Z"), "{early}");
        assert!(!early.contains("pinned"), "{early}");
        let late = distrust_error(
            addr,
            ServerDistrust::Expired {
                node_clock: t(7_258_118_400),
                not_after: None,
            },
        )
        .to_string();
        assert!(
            late.starts_with("certificate expired (node clock 2200-"),
            "{late}"
        );
        let wrong = distrust_error(addr, ServerDistrust::NotPinnedCa).to_string();
        assert!(
            wrong.contains("does not present the cluster CA pinned"),
            "{wrong}"
        );
    }

    #[test]
    fn name_taken_says_how_to_free_the_name() {
        let text = JoinError::NameTaken { name: "n1".into() }.to_string();
        assert_eq!(
            text,
            "join refused: node name \"n1\" is already a member of this cluster (a replaced \
             device needs 'skiff node remove n1' first)"
        );
    }
}

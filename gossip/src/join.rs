//! Joining a cluster: the wire messages (postcard on one bidirectional stream of a
//! `skiff-join/1` connection), the issuing node's handler, and [`join_cluster`] for the joiner.
//!
//! A refused joiner receives only the refusal reason: no certificate, no cluster state.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::JoinError;
use crate::identity::NodeIdentity;
use crate::pki::{self, CLUSTER_SERVER_NAME};
use crate::tls::{self, QuicTimings};
use crate::token::{self, Token};

const MAX_REQUEST_BYTES: usize = 16 * 1024;
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a join was refused (sent to the joiner, printed as `join refused: <reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinRefusal {
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    /// The contacted node does not hold the CA key.
    NotIssuer,
    BadRequest,
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
        })
    }
}

#[derive(Serialize, Deserialize)]
struct JoinRequest {
    token_id: [u8; 8],
    secret: [u8; 32],
    node_name: String,
    csr_der: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum JoinResponse {
    Accepted {
        ca_cert_der: Vec<u8>,
        node_cert_der: Vec<u8>,
    },
    Refused(JoinRefusal),
}

/// Where a node without the CA key relays join requests: the issuer's address and a
/// mutual-TLS client config on the join ALPN.
pub(crate) struct JoinForwarder<'a> {
    pub endpoint: &'a quinn::Endpoint,
    pub client: quinn::ClientConfig,
    pub issuer: Option<SocketAddr>,
}

/// Serves one join connection: the issuer decides; any other node relays the request to the
/// issuer it knows from gossip (or refuses with `NotIssuer`). Errors are logged, never returned.
pub(crate) async fn serve_join(
    conn: quinn::Connection,
    identity: &NodeIdentity,
    forwarder: JoinForwarder<'_>,
) {
    let peer = conn.remote_address();
    let result = tokio::time::timeout(JOIN_TIMEOUT, async {
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let bytes = recv.read_to_end(MAX_REQUEST_BYTES).await.ok()?;
        let encoded = if identity.can_issue() {
            postcard::to_allocvec(&decide(identity, &bytes, SystemTime::now())).ok()?
        } else {
            match forward(&forwarder, &bytes).await {
                Some(answer) => answer,
                None => {
                    postcard::to_allocvec(&JoinResponse::Refused(JoinRefusal::NotIssuer)).ok()?
                }
            }
        };
        send.write_all(&encoded).await.ok()?;
        send.finish().ok()?;
        // Wait until the joiner has read the answer (it closes the connection).
        let _ = send.stopped().await;
        Some(())
    })
    .await;
    if !matches!(result, Ok(Some(()))) {
        warn!(%peer, "join connection ended without a complete exchange");
    }
    conn.close(0u32.into(), b"done");
}

/// Relays a raw join request to the issuer and returns its raw answer.
async fn forward(forwarder: &JoinForwarder<'_>, request: &[u8]) -> Option<Vec<u8>> {
    let issuer = forwarder.issuer?;
    let conn = forwarder
        .endpoint
        .connect_with(forwarder.client.clone(), issuer, CLUSTER_SERVER_NAME)
        .ok()?
        .await
        .ok()?;
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    send.write_all(request).await.ok()?;
    send.finish().ok()?;
    let answer = recv.read_to_end(MAX_RESPONSE_BYTES).await.ok();
    conn.close(0u32.into(), b"relayed");
    info!(%issuer, "relayed a join request to the issuing node");
    answer
}

fn decide(identity: &NodeIdentity, request: &[u8], now: SystemTime) -> JoinResponse {
    let Ok(request) = postcard::from_bytes::<JoinRequest>(request) else {
        return JoinResponse::Refused(JoinRefusal::BadRequest);
    };
    let Some((ca_pem, ca_key_pem)) = identity.ca_pems() else {
        return JoinResponse::Refused(JoinRefusal::NotIssuer);
    };
    let records = match token::list_tokens(identity.data_dir()) {
        Ok(records) => records,
        Err(error) => {
            warn!(%error, "cannot read token records; refusing join");
            return JoinResponse::Refused(JoinRefusal::InvalidToken);
        }
    };
    if let Err(refusal) = token::check_token(
        &records,
        request.token_id,
        &request.secret,
        token::unix_ms(now),
    ) {
        info!(node = %request.node_name, token_id = %hex::encode(request.token_id), %refusal, "join refused");
        return JoinResponse::Refused(refusal);
    }
    if pki::validate_node_name(&request.node_name).is_err() {
        return JoinResponse::Refused(JoinRefusal::BadRequest);
    }
    match pki::sign_csr(&ca_pem, ca_key_pem, &request.csr_der, &request.node_name) {
        Ok(cert) => {
            info!(node = %request.node_name, "join accepted, node certificate issued");
            JoinResponse::Accepted {
                ca_cert_der: identity.ca_cert().to_vec(),
                node_cert_der: cert.to_vec(),
            }
        }
        Err(error) => {
            warn!(%error, "cannot sign join request");
            JoinResponse::Refused(JoinRefusal::BadRequest)
        }
    }
}

/// Joins the cluster reachable at `addr` with `token`: obtains a node certificate and stores the
/// identity in `data_dir`. An identity already in `data_dir` (a restart) is returned without
/// contacting anyone, provided it belongs to `node_name`.
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
    let timings = QuicTimings {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
    };
    let (client_config, mismatch) = tls::bootstrap_client_config(token.ca_fingerprint(), timings)?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(JoinError::Bind)?;
    let result = exchange(&endpoint, client_config, addr, token, node_name).await;
    endpoint.close(0u32.into(), b"joined");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    let (key_pem, ca_cert_der, node_cert_der) = match result {
        Ok(parts) => parts,
        Err(_) if mismatch.load(Ordering::SeqCst) => {
            return Err(JoinError::ServerNotTrusted { addr });
        }
        Err(e) => return Err(e),
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

async fn exchange(
    endpoint: &quinn::Endpoint,
    client_config: quinn::ClientConfig,
    addr: SocketAddr,
    token: &Token,
    node_name: &str,
) -> Result<(String, Vec<u8>, Vec<u8>), JoinError> {
    let connect_err =
        |e: Box<dyn std::error::Error + Send + Sync>| JoinError::Connect { addr, source: e };
    let protocol = |detail: String| JoinError::Protocol { addr, detail };
    let (key, csr_der) = pki::new_key_and_csr(node_name)?;
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
        }) => Ok((key.serialize_pem(), ca_cert_der, node_cert_der)),
        Ok(JoinResponse::Refused(reason)) => Err(JoinError::Refused { reason }),
        Err(e) => Err(protocol(format!("unreadable answer: {e}"))),
    }
}

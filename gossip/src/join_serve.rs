//! The issuing side of a join (`skiff-join/1`): [`serve_join`] answers one join connection.
//! The issuer decides (token, then the name bound to the CSR's key, then the certificate);
//! any other node relays the request to the issuer it knows from gossip. Failed joins are
//! rate-limited per source address before any of that.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use crate::identity::NodeIdentity;
use crate::join::{
    JOIN_TIMEOUT, JoinRefusal, JoinRequest, JoinResponse, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};
use crate::join_limit::JoinLimiter;
use crate::members::{self, Admission, MemberRecord};
use crate::pki::{self, CLUSTER_SERVER_NAME};
use crate::tls;
use crate::token;
use crate::view::NodeCondition;

/// Where a node without the CA key relays join requests: the issuer's address and a
/// mutual-TLS client config on the join ALPN.
pub(crate) struct JoinForwarder<'a> {
    pub endpoint: &'a quinn::Endpoint,
    pub client: quinn::ClientConfig,
    pub issuer: Option<SocketAddr>,
}

/// What the join handler needs besides the connection.
pub(crate) struct JoinServer<'a> {
    pub identity: &'a NodeIdentity,
    pub forwarder: JoinForwarder<'a>,
    /// Failed joins per source address.
    pub limiter: &'a Mutex<JoinLimiter>,
    /// Names in this node's node list (removed incarnations hidden) and their condition.
    pub members: &'a Mutex<BTreeMap<String, NodeCondition>>,
}

/// What one join request came to, for the log.
struct Outcome {
    answer: Vec<u8>,
    refusal: Option<JoinRefusal>,
    node: String,
}

/// Serves one join connection: the issuer decides; any other node relays the request to the
/// issuer it knows from gossip (or refuses with `NotIssuer`). A source whose failed joins
/// emptied its bucket is refused before any of that. Errors are logged, never returned.
pub(crate) async fn serve_join(conn: quinn::Connection, server: JoinServer<'_>) {
    let peer = conn.remote_address();
    // A relaying cluster node presents its certificate; its joiners were limited where they
    // connected, so it is not limited here (it would throttle every joiner behind it).
    let relayed = tls::peer_is_authenticated(&conn);
    let limiter = || server.limiter.lock().unwrap_or_else(|p| p.into_inner());
    let result = tokio::time::timeout(JOIN_TIMEOUT, async {
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let bytes = recv.read_to_end(MAX_REQUEST_BYTES).await.ok()?;
        let admitted = relayed || limiter().admit(peer.ip(), Instant::now());
        let outcome = if !admitted {
            refused(JoinRefusal::RateLimited, String::new())
        } else if server.identity.can_issue() {
            let members = server
                .members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (response, node) = decide(server.identity, &members, &bytes, SystemTime::now());
            let refusal = match &response {
                JoinResponse::Refused(reason) => Some(*reason),
                JoinResponse::Accepted { .. } => None,
            };
            Outcome {
                answer: postcard::to_allocvec(&response).ok()?,
                refusal,
                node,
            }
        } else {
            match forward(&server.forwarder, &bytes).await {
                Some(answer) => {
                    let refusal = match postcard::from_bytes::<JoinResponse>(&answer) {
                        Ok(JoinResponse::Accepted { .. }) => None,
                        Ok(JoinResponse::Refused(reason)) => Some(reason),
                        Err(_) => Some(JoinRefusal::BadRequest),
                    };
                    Outcome {
                        answer,
                        refusal,
                        node: requested_name(&bytes),
                    }
                }
                None => refused(JoinRefusal::NotIssuer, requested_name(&bytes)),
            }
        };
        let now = Instant::now();
        match outcome.refusal {
            None => info!(%peer, node = %outcome.node, "join accepted, node certificate issued"),
            Some(refusal) => {
                if admitted && !relayed {
                    limiter().failed(peer.ip(), now);
                }
                if let Some(suppressed) = limiter().log_now(peer.ip(), now) {
                    log_refusal(peer, &outcome.node, refusal, suppressed);
                }
            }
        }
        send.write_all(&outcome.answer).await.ok()?;
        send.finish().ok()?;
        // Wait until the joiner has read the answer (it closes the connection).
        let _ = send.stopped().await;
        Some(())
    })
    .await;
    if !matches!(result, Ok(Some(())))
        && let Some(suppressed) = limiter().log_now(peer.ip(), Instant::now())
    {
        warn!(%peer, suppressed, "join connection ended without a complete exchange");
    }
    conn.close(0u32.into(), b"done");
}

fn refused(reason: JoinRefusal, node: String) -> Outcome {
    Outcome {
        answer: postcard::to_allocvec(&JoinResponse::Refused(reason)).unwrap_or_default(),
        refusal: Some(reason),
        node,
    }
}

/// The name a raw request asks for (empty if unreadable), for the log.
fn requested_name(request: &[u8]) -> String {
    postcard::from_bytes::<JoinRequest>(request)
        .map(|r| r.node_name)
        .unwrap_or_default()
}

fn log_refusal(peer: SocketAddr, node: &str, refusal: JoinRefusal, suppressed: u64) {
    match refusal {
        JoinRefusal::NameTaken => warn!(
            %peer,
            suppressed,
            "join refused: node name {node:?} is already a member of this cluster \
             (a replaced device needs 'skiff node remove {node}' first)"
        ),
        JoinRefusal::RateLimited => warn!(
            %peer,
            suppressed,
            "join refused: too many failed join attempts from this address"
        ),
        other => info!(%peer, node, suppressed, refusal = %other, "join refused"),
    }
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

/// The issuer's decision on one request: token, then name (bound to the CSR's key), then the
/// certificate; an accepted name is recorded before the answer goes out. Returns the answer and
/// the requested name.
fn decide(
    identity: &NodeIdentity,
    members: &BTreeMap<String, NodeCondition>,
    request: &[u8],
    now: SystemTime,
) -> (JoinResponse, String) {
    let Ok(request) = postcard::from_bytes::<JoinRequest>(request) else {
        return (
            JoinResponse::Refused(JoinRefusal::BadRequest),
            String::new(),
        );
    };
    let name = request.node_name.clone();
    let refuse = |reason| (JoinResponse::Refused(reason), name.clone());
    let Some((ca_pem, ca_key_pem)) = identity.ca_pems() else {
        return refuse(JoinRefusal::NotIssuer);
    };
    let records = match token::list_tokens(identity.data_dir()) {
        Ok(records) => records,
        Err(error) => {
            warn!(%error, "cannot read token records; refusing join");
            return refuse(JoinRefusal::InvalidToken);
        }
    };
    if let Err(refusal) = token::check_token(
        &records,
        request.token_id,
        &request.secret,
        token::unix_ms(now),
    ) {
        return refuse(refusal);
    }
    if pki::validate_node_name(&name).is_err() {
        return refuse(JoinRefusal::BadRequest);
    }
    let Ok(key_sha256) = pki::csr_key_sha256(&request.csr_der) else {
        return refuse(JoinRefusal::BadRequest);
    };
    let registry = match members::load_registry(identity.data_dir()) {
        Ok(registry) => registry,
        Err(error) => {
            warn!(%error, "cannot read the member registry; refusing join");
            return refuse(JoinRefusal::IssuerFailed);
        }
    };
    let listed = members.get(&name).copied();
    let admission =
        match members::admit_name(&name, &key_sha256, &registry, listed, identity.node_name()) {
            Ok(admission) => admission,
            Err(refusal) => return refuse(refusal),
        };
    let cert = match pki::sign_csr(&ca_pem, ca_key_pem, &request.csr_der, &name) {
        Ok(cert) => cert,
        Err(error) => {
            warn!(%error, "cannot sign join request");
            return refuse(JoinRefusal::BadRequest);
        }
    };
    if admission == Admission::NewName {
        let recorded = members::update_registry(identity.data_dir(), |registry| {
            registry.members.insert(
                name.clone(),
                MemberRecord {
                    key_sha256,
                    issued_at_unix_ms: token::unix_ms(now),
                },
            );
            Ok(())
        });
        if let Err(error) = recorded {
            warn!(%error, node = %name, "cannot record the new member; refusing join");
            return refuse(JoinRefusal::IssuerFailed);
        }
    } else {
        info!(node = %name, "a certificate for the same key again (the joiner retried)");
    }
    (
        JoinResponse::Accepted {
            ca_cert_der: identity.ca_cert().to_vec(),
            node_cert_der: cert.to_vec(),
        },
        name,
    )
}

//! TLS and QUIC configuration: ALPN values, the one server config of a node's endpoint, the
//! mutual-TLS client config for gossip/rpc, and the bootstrap client config that trusts a server
//! only by the CA fingerprint pinned in a join token. Always the ring provider, never a default.
//!
//! Why one server config with optional client auth: quinn picks the server config before the
//! TLS ClientHello (and its ALPN) is visible, so ALPN-specific client-auth policy cannot be chosen
//! per connection at the TLS layer. The server therefore *offers* client auth and verifies any
//! presented certificate against the cluster CA during the handshake (a certificate from another
//! CA fails the handshake), but lets certificate-less clients finish; after the handshake the
//! accept loop enforces per ALPN that gossip and rpc connections presented a client certificate
//! (see [`peer_is_authenticated`]). Only the join ALPN is served to a bootstrap client.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use std::time::SystemTime;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::IdentityError;
use crate::identity::NodeIdentity;
use crate::pki;

pub const ALPN_JOIN: &[u8] = b"skiff-join/1";
pub const ALPN_GOSSIP: &[u8] = b"skiff-gossip/1";
pub const ALPN_RPC: &[u8] = b"skiff-rpc/1";

/// QUIC connection timing (keep-alive and idle timeout) shared by every config of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuicTimings {
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn transport_config(timings: QuicTimings) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(Some(timings.keep_alive));
    config.max_idle_timeout(quinn::IdleTimeout::try_from(timings.idle_timeout).ok());
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(256));
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(64));
    Arc::new(config)
}

/// Gossip connections (and the server side of every connection): no keep-alive (the prober's
/// heartbeats keep the connections that matter busy; an idle one costs nothing until its idle
/// timeout), no path-MTU probing (gossip frames are small; each search costs kilobytes), a
/// long idle timeout so that the slow anti-entropy rounds find their connections still open.
/// rpc clients keep their own keep-alive, so their connections live as they did.
fn gossip_transport_config(idle_timeout: Duration) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(None);
    config.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
    config.mtu_discovery_config(None);
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(256));
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(64));
    Arc::new(config)
}

fn ca_roots(identity: &NodeIdentity) -> Result<Arc<RootCertStore>, IdentityError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(identity.ca_cert().clone())
        .map_err(IdentityError::Tls)?;
    Ok(Arc::new(roots))
}

/// The server side of a node's endpoint: serves join, gossip and rpc ALPNs.
pub(crate) fn server_config(
    identity: &NodeIdentity,
    idle_timeout: Duration,
) -> Result<quinn::ServerConfig, IdentityError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(ca_roots(identity)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| IdentityError::Tls(rustls::Error::General(e.to_string())))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(IdentityError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.node_chain(), identity.node_key())
        .map_err(IdentityError::Tls)?;
    tls.alpn_protocols = vec![ALPN_GOSSIP.to_vec(), ALPN_RPC.to_vec(), ALPN_JOIN.to_vec()];
    let quic = QuicServerConfig::try_from(tls)
        .map_err(|e| IdentityError::Tls(rustls::Error::General(e.to_string())))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(gossip_transport_config(idle_timeout));
    Ok(config)
}

/// Client config for gossip or rpc: presents this node's certificate, trusts only the CA.
pub(crate) fn mutual_client_config(
    identity: &NodeIdentity,
    alpn: &[u8],
    timings: QuicTimings,
) -> Result<quinn::ClientConfig, IdentityError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(IdentityError::Tls)?
        .with_root_certificates(ca_roots(identity)?)
        .with_client_auth_cert(identity.node_chain(), identity.node_key())
        .map_err(IdentityError::Tls)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    finish_client(tls, timings)
}

/// Client config for gossip: [`mutual_client_config`] with the gossip transport settings.
pub(crate) fn gossip_client_config(
    identity: &NodeIdentity,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, IdentityError> {
    let mut config = mutual_client_config(
        identity,
        ALPN_GOSSIP,
        QuicTimings {
            keep_alive: idle_timeout,
            idle_timeout,
        },
    )?;
    config.transport_config(gossip_transport_config(idle_timeout));
    Ok(config)
}

fn finish_client(
    tls: rustls::ClientConfig,
    timings: QuicTimings,
) -> Result<quinn::ClientConfig, IdentityError> {
    let quic = QuicClientConfig::try_from(tls)
        .map_err(|e| IdentityError::Tls(rustls::Error::General(e.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport_config(timings));
    Ok(config)
}

/// Why a joiner did not trust the node it dialled (kept by the verifier for the error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerDistrust {
    /// The server's chain does not contain the CA pinned by the token, or the CA did not sign it.
    NotPinnedCa,
    /// By this node's clock the server's certificate is not valid yet.
    NotValidYet {
        node_clock: SystemTime,
        not_before: Option<SystemTime>,
    },
    /// By this node's clock the server's certificate has expired.
    Expired {
        node_clock: SystemTime,
        not_after: Option<SystemTime>,
    },
}

/// Where the bootstrap verifier notes why it refused a server.
pub(crate) type DistrustSlot = Arc<Mutex<Option<ServerDistrust>>>;

/// Client config for joining: no client certificate; the server must present a chain containing
/// the CA whose fingerprint is pinned. The returned slot says why a server was not trusted.
pub(crate) fn bootstrap_client_config(
    pinned_ca: [u8; 32],
    timings: QuicTimings,
) -> Result<(quinn::ClientConfig, DistrustSlot), IdentityError> {
    let distrust: DistrustSlot = Arc::new(Mutex::new(None));
    let verifier = Arc::new(PinnedCaVerifier {
        pinned_ca,
        distrust: distrust.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(IdentityError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    Ok((finish_client(tls, timings)?, distrust))
}

fn system_time(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// Sorts a verification error: clock problems apart from an untrusted chain.
pub(crate) fn classify_distrust(error: &rustls::Error, now: UnixTime) -> ServerDistrust {
    use rustls::CertificateError as E;
    let node_clock = system_time(now);
    match error {
        rustls::Error::InvalidCertificate(E::NotValidYetContext { time, not_before }) => {
            ServerDistrust::NotValidYet {
                node_clock: system_time(*time),
                not_before: Some(system_time(*not_before)),
            }
        }
        rustls::Error::InvalidCertificate(E::NotValidYet) => ServerDistrust::NotValidYet {
            node_clock,
            not_before: None,
        },
        rustls::Error::InvalidCertificate(E::ExpiredContext { time, not_after }) => {
            ServerDistrust::Expired {
                node_clock: system_time(*time),
                not_after: Some(system_time(*not_after)),
            }
        }
        rustls::Error::InvalidCertificate(E::Expired) => ServerDistrust::Expired {
            node_clock,
            not_after: None,
        },
        _ => ServerDistrust::NotPinnedCa,
    }
}

/// Trusts a server whose chain includes the pinned CA and whose leaf that CA signed.
#[derive(Debug)]
struct PinnedCaVerifier {
    pinned_ca: [u8; 32],
    distrust: DistrustSlot,
}

impl PinnedCaVerifier {
    fn note(&self, why: ServerDistrust) {
        *self.distrust.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| pki::fingerprint(c) == self.pinned_ca)
        else {
            self.note(ServerDistrust::NotPinnedCa);
            return Err(rustls::Error::General(
                "server does not present the pinned cluster CA".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let result = inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now);
        if let Err(error) = &result {
            self.note(classify_distrust(error, now));
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The ALPN a connection negotiated.
pub(crate) fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// SHA-256 (hex) of the key in the peer's certificate, if it presented one.
pub(crate) fn peer_key_sha256(conn: &quinn::Connection) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    pki::cert_key_sha256(chain.first()?)
}

/// True if the peer presented a client certificate. The server's client verifier already checked
/// during the handshake that any presented chain leads to the cluster CA (a foreign CA fails the
/// handshake), so presence is the remaining per-ALPN requirement.
pub(crate) fn peer_is_authenticated(conn: &quinn::Connection) -> bool {
    conn.peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .is_some_and(|chain| !chain.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("one certificate")
            .expect("parse")
    }

    /// The bootstrap verifier, fed a node's chain at chosen clock readings.
    #[test]
    fn a_clock_outside_the_validity_is_told_apart_from_a_wrong_ca() {
        let ca = pki::new_ca().expect("ca");
        let node = pki::issue_node_cert(&ca.cert_pem, &ca.key_pem, "n0").expect("node");
        let (ca_der, node_der) = (der(&ca.cert_pem), der(&node.cert_pem));
        let verifier = PinnedCaVerifier {
            pinned_ca: pki::fingerprint(&ca_der),
            distrust: Arc::new(Mutex::new(None)),
        };
        let name = ServerName::try_from(pki::CLUSTER_SERVER_NAME).expect("name");
        let at = |year_secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(year_secs));
        let verify = |now| {
            *verifier.distrust.lock().expect("lock") = None;
            let result = verifier.verify_server_cert(
                &node_der,
                std::slice::from_ref(&ca_der),
                &name,
                &[],
                now,
            );
            (
                result.is_ok(),
                verifier.distrust.lock().expect("lock").clone(),
            )
        };
        // 2026: fine.
        assert_eq!(verify(at(1_796_000_000)), (true, None));
        // 2020 (a device without RTC before NTP): not valid yet, with both times.
        let (ok, why) = verify(at(1_600_000_000));
        assert!(!ok);
        match why {
            Some(ServerDistrust::NotValidYet {
                node_clock,
                not_before: Some(not_before),
            }) => {
                assert_eq!(
                    node_clock,
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
                );
                assert_eq!(
                    humantime::format_rfc3339_seconds(not_before).to_string(),
                    "2024-01-01T00:00:00Z"
                );
            }
            other => panic!("wanted NotValidYet with times, got {other:?}"),
        }
        // 2200: expired.
        let (ok, why) = verify(at(7_258_118_400));
        assert!(!ok);
        assert!(
            matches!(
                why,
                Some(ServerDistrust::Expired {
                    not_after: Some(_),
                    ..
                })
            ),
            "{why:?}"
        );
        // Another cluster's CA: not pinned, whatever the clock.
        let other = pki::new_ca().expect("other ca");
        let foreign = PinnedCaVerifier {
            pinned_ca: pki::fingerprint(&der(&other.cert_pem)),
            distrust: Arc::new(Mutex::new(None)),
        };
        assert!(
            foreign
                .verify_server_cert(
                    &node_der,
                    std::slice::from_ref(&ca_der),
                    &name,
                    &[],
                    at(1_600_000_000)
                )
                .is_err()
        );
        assert_eq!(
            *foreign.distrust.lock().expect("lock"),
            Some(ServerDistrust::NotPinnedCa)
        );
    }
}

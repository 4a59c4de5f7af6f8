//! The QUIC endpoint under hostile or broken peers: another cluster's certificate, no client
//! certificate, malformed and oversized frames; and the gossip value size rule.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use skiff_gossip::{
    ALPN_GOSSIP, CLUSTER_SERVER_NAME, GossipHandle, NodeCondition, create_token, join_cluster,
};

use common::{new_cluster, sees_all, spawn_quic, wait_until};

/// Accepts any server certificate: these tests probe the *server's* checks.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A raw QUIC client on the gossip ALPN, presenting the node certificate stored in `data_dir`
/// (or none).
fn raw_client(data_dir: Option<&Path>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)));
    let mut tls = match data_dir {
        Some(dir) => {
            let tls_dir = dir.join("tls");
            let read = |f: &str| std::fs::read(tls_dir.join(f)).expect("read pem");
            let mut chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut &read("node.pem")[..])
                    .collect::<Result<_, _>>()
                    .expect("certs");
            chain.extend(
                rustls_pemfile::certs(&mut &read("ca.pem")[..])
                    .collect::<Result<Vec<_>, _>>()
                    .expect("ca"),
            );
            let key = rustls_pemfile::private_key(&mut &read("node-key.pem")[..])
                .expect("key")
                .expect("key present");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN_GOSSIP.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic config");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

async fn send_stream(conn: &quinn::Connection, bytes: &[u8]) {
    let mut stream = conn.open_uni().await.expect("open uni");
    stream.write_all(bytes).await.expect("write");
    stream.finish().expect("finish");
}

/// A valid chitchat Syn in its wire format (magic, protocol 0, Syn, empty digest, cluster id).
fn syn_bytes(cluster_id: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(45_139u16.to_le_bytes());
    bytes.extend([0u8, 0u8]);
    bytes.extend(0u16.to_le_bytes());
    bytes.extend((cluster_id.len() as u16).to_le_bytes());
    bytes.extend(cluster_id.as_bytes());
    bytes
}

fn counters(handle: &GossipHandle) -> skiff_gossip::TransportCounters {
    handle.transport_counters().expect("quic node")
}

#[tokio::test]
async fn a_node_from_another_cluster_cannot_gossip() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let dir_x = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let token = create_token(dir_a.path(), Duration::from_secs(600)).expect("token");
    let b_id = join_cluster(a.advertise_addr(), &token, "bravo", dir_b.path())
        .await
        .expect("join");
    let b = spawn_quic(&b_id, vec![a.advertise_addr()]).await;

    // A full node of another cluster, told to gossip with alpha.
    let x_id = new_cluster(dir_x.path(), "xray");
    let x = spawn_quic(&x_id, vec![a.advertise_addr()]).await;
    // And a raw client that skips server checks but presents the foreign certificate, so the
    // refusal demonstrably comes from alpha's side.
    let raw = raw_client(Some(dir_x.path()));
    let attempt = async {
        let conn = raw
            .connect(a.advertise_addr(), CLUSTER_SERVER_NAME)?
            .await?;
        let mut s = conn.open_uni().await?;
        s.write_all(&syn_bytes(&x_id.cluster_id())).await?;
        s.finish()?;
        Ok::<_, Box<dyn std::error::Error>>(conn.closed().await)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), attempt).await;
    match outcome {
        // Refused by alpha's client-certificate check (TLS 1.3 lets the client finish first).
        Ok(Ok(quinn::ConnectionError::ConnectionClosed(close))) => {
            let reason = String::from_utf8_lossy(&close.reason).to_string();
            assert!(reason.contains("invalid peer certificate"), "{reason}");
        }
        Ok(Err(_)) => {} // refused during the handshake
        other => panic!("foreign client was not refused: {other:?}"),
    }

    wait_until(
        "alpha counts failed handshakes",
        Duration::from_secs(10),
        || std::future::ready(counters(&a).failed_handshakes >= 2),
    )
    .await;
    let names = vec!["alpha".to_string(), "bravo".to_string()];
    wait_until("honest nodes Ready", Duration::from_secs(15), || {
        std::future::ready(
            sees_all(&a, &names, NodeCondition::Ready)
                && sees_all(&b, &names, NodeCondition::Ready),
        )
    })
    .await;
    for honest in [&a, &b] {
        let list = honest.nodes().borrow().clone();
        assert!(
            list.iter().all(|n| n.name != "xray"),
            "xray leaked into {list:?}"
        );
    }
    let x_list = x.nodes().borrow().clone();
    assert!(
        x_list.iter().all(|n| n.name == "xray"),
        "xray learned {x_list:?}"
    );
    x.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_client_without_certificate_is_closed_on_the_gossip_alpn() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let raw = raw_client(None);
    let conn = raw
        .connect(a.advertise_addr(), CLUSTER_SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake completes: client auth is optional at the tls layer");
    // Whatever it sends is never read.
    let _ = async {
        let mut s = conn.open_uni().await?;
        s.write_all(&syn_bytes(&a_id.cluster_id())).await?;
        s.finish()?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("server closes the connection");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(0x10));
        }
        other => panic!("unexpected close: {other}"),
    }
    let c = counters(&a);
    assert_eq!(c.rejected_connections, 1);
    assert_eq!(c.frames_received, 0);
    a.shutdown().await;
}

#[tokio::test]
async fn malformed_and_oversized_frames_are_counted_and_dropped() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let token = create_token(dir_a.path(), Duration::from_secs(600)).expect("token");
    let b_id = join_cluster(a.advertise_addr(), &token, "bravo", dir_b.path())
        .await
        .expect("join");

    // An authenticated peer (bravo's certificate) sending garbage.
    let raw = raw_client(Some(dir_b.path()));
    let conn = raw
        .connect(a.advertise_addr(), CLUSTER_SERVER_NAME)
        .expect("connect")
        .await
        .expect("authenticated handshake");
    send_stream(&conn, b"\xde\xad\xbe\xef not chitchat").await;
    let mut trailing = syn_bytes(&a_id.cluster_id());
    trailing.extend(b"trailing junk");
    send_stream(&conn, &trailing).await;
    let oversized = vec![0u8; 70_000];
    let mut s = conn.open_uni().await.expect("open");
    let _ = s.write_all(&oversized).await; // alpha may stop the stream midway
    let _ = s.finish();
    send_stream(&conn, &syn_bytes(&a_id.cluster_id())).await;

    wait_until("frames counted", Duration::from_secs(10), || {
        let c = counters(&a);
        std::future::ready(
            c.malformed_frames == 2 && c.oversized_frames == 1 && c.frames_received >= 1,
        )
    })
    .await;
    assert!(
        conn.close_reason().is_none(),
        "garbage frames are not fatal to the connection"
    );

    // Alpha keeps working: a real node joins the gossip afterwards.
    let b = spawn_quic(&b_id, vec![a.advertise_addr()]).await;
    let names = vec!["alpha".to_string(), "bravo".to_string()];
    wait_until(
        "both Ready after the garbage",
        Duration::from_secs(15),
        || {
            std::future::ready(
                sees_all(&a, &names, NodeCondition::Ready)
                    && sees_all(&b, &names, NodeCondition::Ready),
            )
        },
    )
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn oversized_values_are_refused_by_the_setter() {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let err = a
        .set_key("x", &"v".repeat(20_480))
        .await
        .expect_err("too large");
    assert_eq!(
        err.to_string(),
        "gossip value for key \"x\" is 20480 bytes, limit 16384"
    );
    a.set_key("x", &"v".repeat(16_384))
        .await
        .expect("at the limit");
    assert!(a.set_key("node/meta", "{}").await.is_err(), "reserved key");
    let mut meta = common::ready_metadata();
    meta.labels.insert("big".into(), "l".repeat(20_000));
    assert!(
        a.set_metadata(&meta).await.is_err(),
        "metadata goes through the same rule"
    );
    let keys = a.keys_with_prefix("x").await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].2.len(), 16_384);
    let _: SocketAddr = a.advertise_addr();
    a.shutdown().await;
}

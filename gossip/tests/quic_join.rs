//! Joining over real QUIC on 127.0.0.1: valid tokens work; wrong, expired, revoked or foreign
//! tokens are refused with a printable reason, the joiner learns nothing, the issuer keeps working.

mod common;

use std::time::{Duration, SystemTime};

use skiff_gossip::{
    JoinError, NodeCondition, NodeIdentity, Token, create_token, create_token_at, join_cluster,
    revoke_token,
};

use common::{new_cluster, sees_all, spawn_quic, wait_until};

#[tokio::test]
async fn join_with_valid_token_then_gossip_with_mutual_tls() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let token = create_token(dir_a.path(), Duration::from_secs(600)).expect("token");
    let printed = token.to_string();
    let parsed: Token = printed.parse().expect("printed token parses");

    let b_id = join_cluster(a.advertise_addr(), &parsed, "bravo", dir_b.path())
        .await
        .expect("join");
    assert_eq!(b_id.cluster_id(), a_id.cluster_id());
    assert!(!b_id.can_issue(), "a joined node must not hold the CA key");
    assert!(
        NodeIdentity::load(dir_b.path()).expect("load").is_some(),
        "identity persisted"
    );

    // A restart with the same flags reuses the stored identity without contacting anyone.
    let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let again = join_cluster(nowhere, &parsed, "bravo", dir_b.path())
        .await
        .expect("restart reuses the identity");
    assert_eq!(again.ca_fingerprint(), b_id.ca_fingerprint());
    let err = join_cluster(nowhere, &parsed, "other", dir_b.path())
        .await
        .expect_err("another name on the same data dir");
    assert!(
        err.to_string().contains("already holds the identity"),
        "{err}"
    );

    let b = spawn_quic(&b_id, vec![a.advertise_addr()]).await;
    let names = vec!["alpha".to_string(), "bravo".to_string()];
    wait_until("both nodes Ready on both", Duration::from_secs(15), || {
        std::future::ready(
            sees_all(&a, &names, NodeCondition::Ready)
                && sees_all(&b, &names, NodeCondition::Ready),
        )
    })
    .await;
    let row = b
        .nodes()
        .borrow()
        .iter()
        .find(|n| n.name == "alpha")
        .cloned()
        .expect("alpha row");
    assert_eq!(row.address, a.advertise_addr());
    assert_eq!(row.version(), "test-0.1.0");
    assert!(row.started_at_unix_ms > 0);
    b.shutdown().await;
    a.shutdown().await;
}

async fn refused(addr: std::net::SocketAddr, token: &Token) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = join_cluster(addr, token, "intruder", dir.path())
        .await
        .expect_err("join must be refused");
    assert!(
        NodeIdentity::load(dir.path()).expect("load").is_none(),
        "a refused joiner must not store an identity"
    );
    (err.to_string(), dir)
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason_and_the_issuer_keeps_working() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let addr = a.advertise_addr();

    // Wrong secret: a valid token with its secret bytes changed.
    let good = create_token(dir_a.path(), Duration::from_secs(600)).expect("token");
    let mut text = good.to_string();
    let flip = text.len() - 50; // inside the secret part of the base64
    let replacement = if &text[flip..=flip] == "A" { "B" } else { "A" };
    text.replace_range(flip..=flip, replacement);
    let wrong: Token = text.parse().expect("still well-formed");
    assert_eq!(refused(addr, &wrong).await.0, "join refused: invalid token");

    let hour = Duration::from_secs(3600);
    let expired = create_token_at(dir_a.path(), hour, SystemTime::now() - 2 * hour).expect("token");
    assert_eq!(
        refused(addr, &expired).await.0,
        "join refused: token expired"
    );

    let revoked = create_token(dir_a.path(), hour).expect("token");
    revoke_token(dir_a.path(), &revoked.id()).expect("revoke");
    assert_eq!(
        refused(addr, &revoked).await.0,
        "join refused: token revoked"
    );

    // A token of another cluster pins another CA: the joiner refuses to talk to this node.
    let dir_x = tempfile::tempdir().expect("tempdir");
    new_cluster(dir_x.path(), "xray");
    let foreign = create_token(dir_x.path(), hour).expect("token");
    let dir = tempfile::tempdir().expect("tempdir");
    let err = join_cluster(addr, &foreign, "intruder", dir.path())
        .await
        .expect_err("pin mismatch");
    assert!(matches!(err, JoinError::ServerNotTrusted { .. }), "{err}");

    // The issuer still works: the good token still joins.
    let dir_b = tempfile::tempdir().expect("tempdir");
    let b_id = join_cluster(addr, &good, "bravo", dir_b.path())
        .await
        .expect("join after refusals");
    assert_eq!(b_id.cluster_id(), a_id.cluster_id());
    let me = vec!["alpha".to_string()];
    assert!(sees_all(&a, &me, NodeCondition::Ready));
    a.shutdown().await;
}

#[tokio::test]
async fn a_joined_node_relays_joins_to_the_issuer_and_refuses_when_it_is_gone() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let hour = Duration::from_secs(3600);
    let token = create_token(dir_a.path(), hour).expect("token");
    let b_id = join_cluster(a.advertise_addr(), &token, "bravo", dir_b.path())
        .await
        .expect("join");
    assert!(
        create_token(dir_b.path(), hour).is_err(),
        "no CA key, no tokens"
    );
    let b = spawn_quic(&b_id, vec![a.advertise_addr()]).await;
    let names = vec!["alpha".to_string(), "bravo".to_string()];
    wait_until("both Ready", Duration::from_secs(15), || {
        std::future::ready(sees_all(&b, &names, NodeCondition::Ready))
    })
    .await;

    // Joining through bravo: relayed to alpha, which checks the token and signs.
    let dir_c = tempfile::tempdir().expect("tempdir");
    let token_c = create_token(dir_a.path(), hour).expect("token");
    let c_id = wait_for_join(b.advertise_addr(), &token_c, "charlie", dir_c.path()).await;
    assert_eq!(c_id.cluster_id(), a_id.cluster_id());
    // Refusals are relayed too.
    let expired = create_token_at(dir_a.path(), hour, SystemTime::now() - 2 * hour).expect("token");
    assert_eq!(
        refused(b.advertise_addr(), &expired).await.0,
        "join refused: token expired"
    );

    // With the issuer gone, bravo refuses and says why.
    a.abort();
    let alpha = vec!["alpha".to_string()];
    wait_until("alpha NotReady on bravo", Duration::from_secs(15), || {
        std::future::ready(sees_all(&b, &alpha, NodeCondition::NotReady))
    })
    .await;
    let token2 = create_token(dir_a.path(), hour).expect("token");
    let (msg, _dir) = refused(b.advertise_addr(), &token2).await;
    assert!(
        msg.starts_with("join refused: this node cannot sign"),
        "{msg}"
    );
    b.shutdown().await;
}

/// Joins, retrying only while the relay does not know the issuer yet (learned from gossip).
async fn wait_for_join(
    addr: std::net::SocketAddr,
    token: &Token,
    name: &str,
    dir: &std::path::Path,
) -> NodeIdentity {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match join_cluster(addr, token, name, dir).await {
            Ok(id) => return id,
            Err(JoinError::Refused {
                reason: skiff_gossip::JoinRefusal::NotIssuer,
            }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("join through relay failed: {other}"),
        }
    }
}

/// Writes a cluster identity whose certificates start in 2100 (as a node whose clock is far
/// behind would see any cluster) into `dir`.
fn write_future_cluster(dir: &std::path::Path, name: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    let start = rcgen::date_time_ymd(2100, 1, 1);
    let end = rcgen::date_time_ymd(2110, 1, 1);
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "future cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    (ca.not_before, ca.not_after) = (start, end);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let node_key = KeyPair::generate().expect("node key");
    let mut node = CertificateParams::default();
    node.distinguished_name.push(DnType::CommonName, name);
    node.subject_alt_names = vec![SanType::DnsName(
        skiff_gossip::CLUSTER_SERVER_NAME.try_into().expect("dns"),
    )];
    node.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    (node.not_before, node.not_after) = (start, end);
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).expect("issuer");
    let node_cert = node.signed_by(&node_key, &issuer).expect("node cert");
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    for (file, text) in [
        ("ca.pem", ca_cert.pem()),
        ("ca-key.pem", ca_key_pem),
        ("node-key.pem", node_key.serialize_pem()),
        ("node-name", name.to_string()),
        ("node.pem", node_cert.pem()),
    ] {
        std::fs::write(tls.join(file), text).expect("write");
    }
}

#[tokio::test]
async fn a_joiner_whose_clock_is_before_the_certificates_is_told_so() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    write_future_cluster(dir_a.path(), "alpha");
    let a_id = NodeIdentity::load(dir_a.path())
        .expect("load")
        .expect("identity");
    let a = spawn_quic(&a_id, vec![]).await;
    let token = create_token(dir_a.path(), Duration::from_secs(600)).expect("token");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let err = join_cluster(a.advertise_addr(), &token, "bravo", dir_b.path())
        .await
        .expect_err("certificates from 2100 are not valid yet");
    let text = err.to_string();
    assert!(
        matches!(err, JoinError::CertificateNotValidYet { .. }),
        "{text}"
    );
    assert!(
        text.starts_with("certificate not valid yet (node clock 20")
            && text.contains("valid from 2100-01-01T00:00:00Z"),
        "{text}"
    );
    assert!(!text.contains("pinned"), "{text}");
    a.shutdown().await;
}

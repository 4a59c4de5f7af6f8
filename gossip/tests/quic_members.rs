//! Node names over real QUIC on 127.0.0.1: a member's name is refused to any other key (the
//! issuer's included), the holder of the key gets it again after a lost answer, `node remove`
//! frees the name, every node forgets the old incarnation and refuses the removed key; failed
//! joins are rate-limited per source address.

mod common;

use std::time::Duration;

use skiff_gossip::{
    JoinError, JoinRefusal, NodeCondition, NodeIdentity, RemoveError, create_token, join_cluster,
};

use common::{condition_of, new_cluster, sees_all, spawn_quic, wait_until};

const CONVERGE: Duration = Duration::from_secs(15);

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn a_member_name_needs_its_key_and_node_remove_frees_it() {
    common::init_tracing();
    let hour = Duration::from_secs(3600);
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let addr = a.advertise_addr();
    let token = create_token(dir_a.path(), hour).expect("token");
    let b_id = join_cluster(addr, &token, "bravo", dir_b.path())
        .await
        .expect("join bravo");
    let c_id = join_cluster(addr, &token, "charlie", dir_c.path())
        .await
        .expect("join charlie");
    let b = spawn_quic(&b_id, vec![addr]).await;
    let c = spawn_quic(&c_id, vec![addr]).await;
    let all = names(&["alpha", "bravo", "charlie"]);
    wait_until("three Ready on all", CONVERGE, || {
        std::future::ready(
            [&a, &b, &c]
                .iter()
                .all(|h| sees_all(h, &all, NodeCondition::Ready)),
        )
    })
    .await;
    let old_generation = b.generation();

    // An impostor with a valid token and a member's name, the issuer's too: refused, and
    // nothing about the real nodes changes.
    for name in ["bravo", "alpha"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = join_cluster(addr, &token, name, dir.path())
            .await
            .expect_err("a member's name must be refused");
        assert!(
            matches!(&err, JoinError::NameTaken { name: n } if n == name),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("needs 'skiff node remove {name}' first")),
            "{err}"
        );
        assert!(NodeIdentity::load(dir.path()).expect("load").is_none());
    }
    // Through a relay (charlie) the refusal is the same.
    let dir = tempfile::tempdir().expect("tempdir");
    let relayed = join_cluster(c.advertise_addr(), &token, "bravo", dir.path())
        .await
        .expect_err("refused through the relay too");
    assert!(matches!(relayed, JoinError::NameTaken { .. }), "{relayed}");
    assert!(sees_all(&a, &all, NodeCondition::Ready));
    assert_eq!(b.generation(), old_generation);

    // A joiner whose answer was lost (certificate never stored) retries with the key it kept.
    let dir_d = tempfile::tempdir().expect("tempdir");
    join_cluster(addr, &token, "delta", dir_d.path())
        .await
        .expect("join delta");
    std::fs::remove_file(dir_d.path().join("tls/node.pem")).expect("lose the certificate");
    let again = join_cluster(addr, &token, "delta", dir_d.path())
        .await
        .expect("same key, same name: accepted again");
    assert_eq!(again.node_name(), "delta");

    // Removal: only from the issuer; never the issuer; a Ready node only with force.
    let remover = a.node_remover();
    assert!(remover.is_issuer());
    assert!(matches!(
        b.node_remover().remove("charlie", false).await,
        Err(RemoveError::NoIssuer)
    ));
    assert_eq!(b.node_remover().issuer_addr(), Some(addr));
    let err = remover
        .remove("bravo", false)
        .await
        .expect_err("bravo is Ready");
    assert!(matches!(err, RemoveError::StillReady { .. }), "{err}");
    assert!(matches!(
        remover.remove("alpha", true).await,
        Err(RemoveError::Issuer { .. })
    ));
    assert!(matches!(
        remover.remove("nobody", false).await,
        Err(RemoveError::NotFound { .. })
    ));

    // The device dies; once it is NotReady it can be removed, and every node forgets it.
    b.abort();
    wait_until("bravo NotReady on alpha and charlie", CONVERGE, || {
        std::future::ready(
            sees_all(&a, &names(&["bravo"]), NodeCondition::NotReady)
                && sees_all(&c, &names(&["bravo"]), NodeCondition::NotReady),
        )
    })
    .await;
    let removed = remover.remove("bravo", false).await.expect("remove bravo");
    assert_eq!(removed.hidden_generations, 1);
    assert!(
        removed.key_revoked,
        "bravo joined with a token: its key is known"
    );
    wait_until("bravo forgotten on alpha and charlie", CONVERGE, || {
        std::future::ready(
            [&a, &c]
                .iter()
                .all(|h| condition_of(&h.nodes().borrow(), "bravo").is_none()),
        )
    })
    .await;
    assert!(
        c.key_reader()
            .keys_with_prefix("node/")
            .await
            .iter()
            .all(|(node, _, _)| node != "bravo"),
        "charlie's key scans still read the removed bravo"
    );

    // A replacement device takes the name with a new key and is listed everywhere.
    let dir_new = tempfile::tempdir().expect("tempdir");
    let new_id = join_cluster(addr, &token, "bravo", dir_new.path())
        .await
        .expect("the freed name joins");
    let new_b = spawn_quic(&new_id, vec![addr]).await;
    wait_until("the new bravo Ready on alpha and charlie", CONVERGE, || {
        std::future::ready(
            sees_all(&a, &all, NodeCondition::Ready) && sees_all(&c, &all, NodeCondition::Ready),
        )
    })
    .await;
    let listed = a
        .nodes()
        .borrow()
        .iter()
        .find(|n| n.name == "bravo")
        .map(|n| n.generation);
    assert_eq!(listed, Some(new_b.generation()));
    // And the name is bound to the new key now.
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        join_cluster(addr, &token, "bravo", dir.path()).await,
        Err(JoinError::NameTaken { .. })
    ));

    // The removed device comes back (stolen, or never wiped): its key is refused by every
    // node, so its newer generation never replaces the new bravo.
    let old_b = spawn_quic(&b_id, vec![addr, c.advertise_addr()]).await;
    let revoked =
        |h: &skiff_gossip::GossipHandle| h.transport_counters().map_or(0, |c| c.revoked_peers);
    wait_until("alpha and charlie refuse the removed key", CONVERGE, || {
        std::future::ready(revoked(&a) > 0 && revoked(&c) > 0)
    })
    .await;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < watch_until {
        for h in [&a, &c] {
            let listed = h
                .nodes()
                .borrow()
                .iter()
                .find(|n| n.name == "bravo")
                .map(|n| (n.generation, n.condition));
            assert_eq!(
                listed,
                Some((new_b.generation(), NodeCondition::Ready)),
                "the removed device took bravo back on {}",
                h.node_name()
            );
        }
        assert!(
            condition_of(&old_b.nodes().borrow(), "alpha") != Some(NodeCondition::Ready),
            "the removed device gossips with alpha"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    old_b.abort();
    // Its key cannot join again either, under any name.
    std::fs::remove_file(dir_b.path().join("tls/node.pem")).expect("drop the old certificate");
    let err = join_cluster(addr, &token, "echo", dir_b.path())
        .await
        .expect_err("a revoked key must not join");
    assert!(
        matches!(
            err,
            JoinError::Refused {
                reason: JoinRefusal::KeyRevoked
            }
        ),
        "{err}"
    );

    // The issuer keeps the removal across a restart (its markers are republished).
    a.shutdown().await;
    let a2 = spawn_quic(&a_id, vec![c.advertise_addr()]).await;
    let marker = a2
        .key_reader()
        .keys_with_prefix("node/removed/")
        .await
        .into_iter()
        .find(|(node, key, _)| node == "alpha" && key == "node/removed/bravo")
        .map(|(_, _, value)| value);
    assert_eq!(marker, Some(old_generation.to_string()));
    new_b.shutdown().await;
    c.shutdown().await;
    a2.shutdown().await;
}

#[tokio::test]
async fn failed_joins_are_rate_limited_per_source() {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let a_id = new_cluster(dir_a.path(), "alpha");
    let a = spawn_quic(&a_id, vec![]).await;
    let addr = a.advertise_addr();
    let hour = Duration::from_secs(3600);
    let good = create_token(dir_a.path(), hour).expect("token");
    let wrong = {
        let mut text = good.to_string();
        let flip = text.len() - 50;
        let replacement = if &text[flip..=flip] == "A" { "B" } else { "A" };
        text.replace_range(flip..=flip, replacement);
        text.parse().expect("well-formed")
    };

    // Twenty wrong tokens at once from one address: a burst is checked, the rest are refused
    // before any token work.
    let attempts = (0..20).map(|i| {
        let wrong = &wrong;
        async move {
            let dir = tempfile::tempdir().expect("tempdir");
            join_cluster(addr, wrong, &format!("guess{i}"), dir.path()).await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let count = |reason| {
        results
            .iter()
            .filter(|r| matches!(r, Err(JoinError::Refused { reason: got }) if *got == reason))
            .count()
    };
    let (invalid, limited) = (
        count(JoinRefusal::InvalidToken),
        count(JoinRefusal::RateLimited),
    );
    eprintln!("20 wrong tokens: {invalid} invalid, {limited} rate-limited");
    assert_eq!(invalid + limited, 20, "{results:?}");
    assert!(invalid >= 5, "the burst is checked normally: {invalid}");
    assert!(
        limited >= 5,
        "most of a burst of 20 is rate-limited: {limited}"
    );
    let msg = JoinError::Refused {
        reason: JoinRefusal::RateLimited,
    }
    .to_string();
    assert!(msg.contains("too many failed join attempts"), "{msg}");

    // The bucket refills: a good token from the same address gets in within seconds.
    let dir_b = tempfile::tempdir().expect("tempdir");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match join_cluster(addr, &good, "bravo", dir_b.path()).await {
            Ok(id) => {
                assert_eq!(id.cluster_id(), a_id.cluster_id());
                break;
            }
            Err(JoinError::Refused {
                reason: JoinRefusal::RateLimited,
            }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("good token after the burst: {other}"),
        }
    }
    a.shutdown().await;
}

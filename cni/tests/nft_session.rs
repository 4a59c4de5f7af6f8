//! Privileged tests (root) for the long-lived `nft -i` session: transactions land in the node
//! namespace, a bad script fails whole with nft's message and leaves the table as it was, and
//! the session keeps working afterwards.

mod common;

use common::{TestNode, run_ok};
use skiff_cni::CniError;

fn chain(node: &TestNode, table: &str, chain: &str) -> String {
    run_ok(&node.node_ns, &["nft", "list", "chain", "ip", table, chain])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_transactions_apply_whole_or_not_at_all() {
    let node = TestNode::new("ns", "198.18.22.0/24");
    let net = node.network(node.open_db());
    let t = "skt_ns_svc";
    net.run_nft(
        "base",
        format!("add table ip {t}\nadd chain ip {t} a\nadd rule ip {t} a meta l4proto tcp dnat to 198.18.22.5:80\n"),
    )
    .await
    .expect("base table");

    // Several changes, each one transaction through the same process.
    for last in 6..9 {
        net.apply_nft(
            "change",
            format!("flush chain ip {t} a\nadd rule ip {t} a meta l4proto tcp dnat to 198.18.22.{last}:80\n"),
        )
        .await
        .expect("change");
        let text = chain(&node, t, "a");
        assert!(text.contains(&format!("198.18.22.{last}:80")), "{text}");
        assert_eq!(text.matches("dnat").count(), 1, "{text}");
    }

    // A script whose second command fails: nothing of it lands, and the error is nft's.
    let err = net
        .apply_nft(
            "broken",
            format!("flush chain ip {t} a\nadd rule ip {t} missing accept\n"),
        )
        .await
        .expect_err("a rule in a missing chain");
    match &err {
        CniError::Nft { action, stderr } => {
            assert_eq!(action, "broken");
            assert!(stderr.contains("missing"), "{stderr}");
            assert!(
                !stderr.contains("skiff-done"),
                "the marker leaked: {stderr}"
            );
        }
        other => panic!("expected an nft error, got {other}"),
    }
    assert!(chain(&node, t, "a").contains("198.18.22.8:80"));

    // The session still works.
    net.apply_nft("after", format!("add chain ip {t} b\n"))
        .await
        .expect("after the error");
    assert!(chain(&node, t, "b").contains("chain b"));
    // An empty script is no transaction.
    net.apply_nft("empty", "\n\n".into()).await.expect("empty");
}

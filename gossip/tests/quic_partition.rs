//! Partition and heal over real QUIC: an nftables table (created by the test, removed by a drop
//! guard even on failure) drops every UDP packet to or from one node's port on loopback for
//! longer than the gossip connections' idle timeout, so its connections die; after the heal the
//! prober's re-probes must re-dial and the cluster must converge again. Needs root and `nft` (package nftables).

mod common;

use std::process::Command;
use std::time::Duration;

use skiff_gossip::{GossipProfile, NodeCondition, NodeIdentity, create_token, join_cluster};

use common::{condition_of, new_cluster, sees_all, spawn_quic_with, wait_until};

/// LAN timings with gossip connections that die after 4 idle seconds, so that the partition
/// outlives them and the heal needs new dials.
fn short_idle() -> GossipProfile {
    let mut timings = GossipProfile::Lan.timings();
    timings.transport.gossip_idle_timeout = Duration::from_secs(4);
    GossipProfile::Custom(Box::new(timings))
}

async fn spawn(
    identity: &NodeIdentity,
    seeds: Vec<std::net::SocketAddr>,
) -> skiff_gossip::GossipHandle {
    let listen = "127.0.0.1:0".parse().expect("addr");
    spawn_quic_with(identity, seeds, listen, None, short_idle()).await
}

/// An nftables table that drops UDP to/from one port; deleted on drop.
struct Partition {
    table: String,
}

impl Partition {
    fn isolate_port(port: u16) -> Self {
        let table = format!("skiff_gossip_test_{}_{port}", std::process::id());
        let script = format!(
            "add table inet {table}\n\
             add chain inet {table} input {{ type filter hook input priority -10 ; }}\n\
             add rule inet {table} input udp dport {port} drop\n\
             add rule inet {table} input udp sport {port} drop\n"
        );
        let status = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(script.as_bytes())?;
                child.wait()
            })
            .expect("run nft (needs root and the nftables package)");
        assert!(status.success(), "nft refused the partition rules");
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_node_is_not_ready_then_rejoins_after_heal() {
    common::init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let names: Vec<String> = ["pa", "pb", "pc"].iter().map(|s| s.to_string()).collect();
    let first = new_cluster(dirs[0].path(), &names[0]);
    let a = spawn(&first, vec![]).await;
    let seed = a.advertise_addr();
    let mut nodes = vec![a];
    for i in 1..3 {
        let token = create_token(dirs[0].path(), Duration::from_secs(600)).expect("token");
        let id = join_cluster(seed, &token, &names[i], dirs[i].path())
            .await
            .expect("join");
        nodes.push(spawn(&id, vec![seed]).await);
    }
    wait_until("3 nodes Ready", Duration::from_secs(15), || {
        std::future::ready(
            nodes
                .iter()
                .all(|h| sees_all(h, &names, NodeCondition::Ready)),
        )
    })
    .await;

    let isolated_port = nodes[2].advertise_addr().port();
    let partition = Partition::isolate_port(isolated_port);
    wait_until(
        "both sides see the other NotReady",
        Duration::from_secs(15),
        || {
            let majority_sees = nodes[..2]
                .iter()
                .all(|h| condition_of(&h.nodes().borrow(), "pc") == Some(NodeCondition::NotReady));
            let minority_sees = ["pa", "pb"].iter().all(|n| {
                condition_of(&nodes[2].nodes().borrow(), n) == Some(NodeCondition::NotReady)
            });
            std::future::ready(majority_sees && minority_sees)
        },
    )
    .await;
    // Hold the partition until the isolated node's connections hit the idle timeout: its
    // re-probes of the cut-off peers then find no connection (and start dials that fail).
    let idle = nodes[2].timings().transport.gossip_idle_timeout;
    let dropped = nodes[2]
        .transport_counters()
        .expect("quic")
        .datagrams_dropped;
    wait_until("the cut-off connections are gone", idle * 4, || {
        let c = nodes[2].transport_counters().expect("quic");
        std::future::ready(c.datagrams_dropped > dropped)
    })
    .await;
    // Connections are shared per node pair, so after the heal either side may dial first: count
    // the dials of the whole cluster, not only the isolated node's.
    let dials = |nodes: &[skiff_gossip::GossipHandle]| -> u64 {
        nodes
            .iter()
            .map(|h| h.transport_counters().expect("quic").dials)
            .sum()
    };
    let before_heal = dials(&nodes);
    drop(partition);

    let took = wait_until(
        "healed: all Ready everywhere",
        Duration::from_secs(20),
        || {
            std::future::ready(
                nodes
                    .iter()
                    .all(|h| sees_all(h, &names, NodeCondition::Ready)),
            )
        },
    )
    .await;
    eprintln!("healed after {took:?}");
    assert!(
        dials(&nodes) > before_heal,
        "a connection across the healed cut was dialled again"
    );
    for h in nodes {
        h.shutdown().await;
    }
}

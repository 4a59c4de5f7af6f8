//! Privileged leak test (root): many setup/teardown cycles in a private node namespace leave no
//! address, link, namespace, mount, file or nftables element behind.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, link_names};
use skiff_cni::{HostPortMapping, PodNetwork, Protocol};

/// Cycles to run, unless the time budget runs out first (the count done is printed).
const CYCLES: usize = 1000;
const BUDGET: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_create_delete_cycles_leak_nothing() {
    let node = TestNode::new("lk", "198.18.15.0/29");
    let net = node.network(node.open_db());
    net.ensure_bridge().await.expect("bridge");
    let baseline_links = link_names(&node.node_ns).len();
    let start = Instant::now();
    let mut done = 0;
    let mut previous: Option<String> = None;
    while done < CYCLES && start.elapsed() < BUDGET {
        // One pod created and one deleted per cycle, two alive at a time in a /29 (5 usable
        // addresses): freed addresses must come back or this runs out.
        let mut req = node.request(&format!("p{done}"));
        if done % 10 == 0 {
            req.ports = vec![HostPortMapping {
                protocol: Protocol::Tcp,
                host_port: 18000,
                container_port: 80,
            }];
        }
        net.setup_pod(&req).await.expect("setup");
        if let Some(old) = previous.replace(req.id.clone()) {
            net.teardown_pod(&old).await.expect("teardown");
        }
        done += 1;
    }
    if let Some(last) = previous {
        net.teardown_pod(&last).await.expect("teardown");
    }
    let elapsed = start.elapsed();
    eprintln!(
        "leak check: {done} create/delete cycles in {:.1}s ({:.1} ms per cycle)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / done.max(1) as f64
    );
    assert!(done >= 200, "only {done} cycles fit in {BUDGET:?}");
    let inv = net.inventory().await.expect("inventory");
    assert!(inv.is_empty(), "leaked: {inv:?}");
    assert_eq!(
        link_names(&node.node_ns).len(),
        baseline_links,
        "links leaked in the node namespace"
    );
    let pods_dir = node.tmp.path().join("pods");
    let leftover_files = walk_files(&pods_dir);
    assert!(
        leftover_files.is_empty(),
        "files leaked: {leftover_files:?}"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

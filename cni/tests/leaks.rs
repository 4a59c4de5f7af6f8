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
    while done < CYCLES && start.elapsed() < BUDGET {
        // Two pods at a time in a /29 (5 addresses): addresses must come back or this fails.
        let mut a = node.request(&format!("a{done}"));
        if done % 10 == 0 {
            a.ports = vec![HostPortMapping {
                protocol: Protocol::Tcp,
                host_port: 18000,
                container_port: 80,
            }];
        }
        let b = node.request(&format!("b{done}"));
        let sa = net.setup_pod(&a).await.expect("setup a");
        let sb = net.setup_pod(&b).await.expect("setup b");
        assert_ne!(sa.ip, sb.ip);
        net.teardown_pod(&a.id).await.expect("teardown a");
        net.teardown_pod(&b.id).await.expect("teardown b");
        done += 1;
    }
    let elapsed = start.elapsed();
    eprintln!(
        "leak check: {done} cycles (2 pods each) in {:.1}s, {:.1} ms per pod setup+teardown",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / (2 * done) as f64
    );
    assert!(done >= 100, "only {done} cycles fit in {BUDGET:?}");
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

//! Benchmark (root): setup and teardown time of N pods through NetlinkNetwork, p50/p95, in a
//! private node namespace under a temporary netns directory (nothing on the host is touched).
//!
//! `cargo run --release -p skiff-cni --example pod_bench -- [PODS] [--json]`

#![allow(clippy::print_stdout)] // a command-line tool: its output is the result

use std::time::{Duration, Instant};

use skiff_cni::netns::{list_netns_files, unmount_netns_dir};
use skiff_cni::{
    NetlinkNetwork, NetworkConfig, PodNetRequest, PodNetwork, create_netns, remove_netns,
};

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in list_netns_files(&self.0, "").unwrap_or_default() {
            let _ = remove_netns(&self.0, &name);
        }
        let _ = unmount_netns_dir(&self.0);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pods: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100);
    let json = args.iter().any(|a| a == "--json");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("netns");
    let _cleanup = Cleanup(dir.clone());
    let node = create_netns(&dir, "node")?;
    let mut cfg = NetworkConfig::for_subnet("198.18.16.0/22".parse()?);
    cfg.bridge = "skbench0".into();
    cfg.nft_table = "skiff_bench".into();
    cfg.netns_dir = dir.clone();
    cfg.netns_prefix = "pod-".into();
    cfg.node_netns = Some(node);
    let db = skiff_cni::ipam::shared(redb::Database::create(tmp.path().join("state.redb"))?);
    let net = NetlinkNetwork::new(cfg, db)?;
    net.ensure_bridge().await?;
    let t = Instant::now();
    net.ensure_bridge().await?;
    let ensure_bridge = t.elapsed();
    let (mut setup, mut teardown) = (Vec::new(), Vec::new());
    for i in 0..pods {
        let req = PodNetRequest {
            id: format!("bench-{i}"),
            netns_name: format!("pod-{i}"),
            hostname: format!("bench-{i}"),
            files_dir: tmp.path().join("pods").join(i.to_string()),
            ports: Vec::new(),
            cluster_dns: None,
            hosts: Default::default(),
        };
        let t = Instant::now();
        net.setup_pod(&req).await?;
        setup.push(t.elapsed());
    }
    for i in 0..pods {
        let t = Instant::now();
        net.teardown_pod(&format!("bench-{i}")).await?;
        teardown.push(t.elapsed());
    }
    setup.sort();
    teardown.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (s50, s95) = (ms(percentile(&setup, 0.5)), ms(percentile(&setup, 0.95)));
    let eb = ms(ensure_bridge);
    let (t50, t95) = (
        ms(percentile(&teardown, 0.5)),
        ms(percentile(&teardown, 0.95)),
    );
    if json {
        println!(
            "{{\"pods\":{pods},\"setup_ms\":{{\"p50\":{s50:.2},\"p95\":{s95:.2}}},\"teardown_ms\":{{\"p50\":{t50:.2},\"p95\":{t95:.2}}},\"ensure_bridge_ms\":{eb:.2}}}"
        );
    } else {
        println!(
            "{pods} pods: setup p50 {s50:.1} ms p95 {s95:.1} ms; teardown p50 {t50:.1} ms p95 {t95:.1} ms; ensure_bridge {eb:.1} ms"
        );
    }
    net.remove_node_network().await?;
    Ok(())
}

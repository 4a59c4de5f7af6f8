//! FakeNetwork tier (no root): the same contract as the privileged tests, in memory.

use std::collections::BTreeSet;

use skiff_cni::fake::FakeNetwork;
use skiff_cni::{Action, HostPortMapping, NetworkConfig, PodNetRequest, PodNetwork, Protocol};

fn cfg(subnet: &str) -> NetworkConfig {
    let mut cfg = NetworkConfig::for_subnet(subnet.parse().expect("subnet"));
    cfg.netns_prefix = "pod-".into();
    cfg
}

fn req(id: &str) -> PodNetRequest {
    PodNetRequest {
        id: id.into(),
        netns_name: format!("pod-{id}"),
        hostname: id.into(),
        files_dir: format!("/nonexistent/{id}").into(),
        ports: Vec::new(),
        cluster_dns: None,
        hosts: Default::default(),
    }
}

#[tokio::test]
async fn setup_teardown_and_idempotence() {
    let net = FakeNetwork::new(cfg("198.18.5.0/24")).expect("fake");
    net.ensure_bridge().await.expect("bridge");
    let mut a = req("a");
    a.ports = vec![HostPortMapping {
        protocol: Protocol::Tcp,
        host_port: 80,
        container_port: 8080,
    }];
    let sa = net.setup_pod(&a).await.expect("a");
    assert_eq!(sa.ip.to_string(), "198.18.5.2");
    assert_eq!(net.setup_pod(&a).await.expect("again"), sa);
    let sb = net.setup_pod(&req("b")).await.expect("b");
    assert_ne!(sa.ip, sb.ip);
    let mut clash = req("c");
    clash.ports = a.ports.clone();
    let err = net.setup_pod(&clash).await.expect_err("port clash");
    assert!(
        err.to_string()
            .contains("host port tcp/80 is already published by pod a"),
        "{err}"
    );
    assert_eq!(net.inventory().await.expect("inv").published.len(), 1);
    for id in ["a", "b", "c"] {
        net.teardown_pod(id).await.expect("teardown");
    }
    let inv = net.inventory().await.expect("inv");
    assert!(inv.is_empty(), "{inv:?}");
}

#[tokio::test]
async fn exhaustion_leaves_nothing_half_made() {
    let net = FakeNetwork::new(cfg("198.18.5.0/30")).expect("fake");
    net.ensure_bridge().await.expect("bridge");
    net.setup_pod(&req("one")).await.expect("one");
    let before = net.state();
    let err = net.setup_pod(&req("two")).await.expect_err("full");
    assert_eq!(err.to_string(), "no free address in 198.18.5.0/30");
    assert_eq!(net.state(), before);
}

#[tokio::test]
async fn crash_at_every_step_is_repaired_by_setup_or_gc() {
    let net = FakeNetwork::new(cfg("198.18.5.0/24")).expect("fake");
    net.ensure_bridge().await.expect("bridge");
    for step in [
        Action::Allocate,
        Action::CreateNetns,
        Action::CreateVeth,
        Action::AttachHostLink,
        Action::ConfigurePodIface,
        Action::WriteFiles,
    ] {
        net.inject_failure_after(Some(step));
        net.setup_pod(&req("x")).await.expect_err("injected");
        net.setup_pod(&req("x")).await.expect("completed");
        net.inject_failure_after(Some(step));
        net.setup_pod(&req("y")).await.expect_err("injected");
        let report = net
            .gc(&BTreeSet::from(["x".to_string()]))
            .await
            .expect("gc");
        assert!(report.errors.is_empty());
        let inv = net.inventory().await.expect("inv");
        assert_eq!(inv.records, vec!["x".to_string()], "after {step:?}");
        net.teardown_pod("x").await.expect("teardown");
        assert!(
            net.inventory().await.expect("inv").is_empty(),
            "after {step:?}"
        );
    }
}

#[tokio::test]
async fn addresses_survive_a_restart() {
    let db = skiff_cni::ipam::shared(
        redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("db"),
    );
    let first = FakeNetwork::with_db(cfg("198.18.5.0/24"), db.clone()).expect("fake");
    first.ensure_bridge().await.expect("bridge");
    let kept = first.setup_pod(&req("kept")).await.expect("kept");
    drop(first);
    let second = FakeNetwork::with_db(cfg("198.18.5.0/24"), db).expect("fake");
    assert_eq!(
        second.pod_status("kept").expect("status").map(|s| s.ip),
        Some(kept.ip)
    );
    second.ensure_bridge().await.expect("bridge");
    let new = second.setup_pod(&req("new")).await.expect("new");
    assert_ne!(new.ip, kept.ip);
}

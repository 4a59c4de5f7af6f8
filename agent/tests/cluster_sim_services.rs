//! In-process clusters (issue 11): the Service address book. ClusterIPs are allocated by the
//! leader and never change while the Service exists, across a restart of every node (the
//! book is kept in each node's store), and every node sees the same addresses.

mod sim;

use sim::{Sim, SimOptions, wait_until};
use skiff_agent::services::Book;
use skiff_agent::services::alloc::allocate;
use skiff_manifests::{Object, Service, Valid};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

fn service(name: &str) -> Valid<Object> {
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - {{port: 80}}\n"
    );
    skiff_manifests::parse_file("svc.yaml", yaml.as_bytes())
        .objects()
        .into_iter()
        .next()
        .cloned()
        .expect("a valid Service")
}

/// ClusterIPs node `i` sees, by `namespace/name`.
fn addresses(sim: &Sim, i: usize) -> BTreeMap<String, Option<Ipv4Addr>> {
    sim.state(i)
        .services
        .iter()
        .map(|(k, v)| (k.to_string(), v.allocation.cluster_ip))
        .collect()
}

fn fresh(names: &[&str], cidr: ipnet::Ipv4Net, previous: &Book) -> Book {
    let objects: Vec<Valid<Object>> = names.iter().map(|n| service(n)).collect();
    let services: BTreeMap<String, Service> = objects
        .iter()
        .map(|o| match o.get() {
            Object::Service(s) => (format!("default/{}", o.key().name), s.clone()),
            _ => unreachable!(),
        })
        .collect();
    let refs = services
        .iter()
        .map(|(k, s)| (k.as_str().into(), s))
        .collect();
    allocate(
        &refs,
        previous,
        cidr,
        skiff_manifests::NodePortRange::DEFAULT,
    )
}

#[tokio::test(start_paused = true)]
async fn cluster_ips_survive_a_restart_of_every_node() {
    // A small range makes addresses collide: the one allocated first keeps its address, and
    // an allocation from scratch of the same set would give another. Pick names for which
    // that is so, so the test fails without the stored book.
    let cidr: ipnet::Ipv4Net = "10.43.0.0/29".parse().unwrap();
    let candidates = ["zz", "a", "b", "c", "d", "e", "f", "g"];
    let (first, rest) = (0..candidates.len())
        .map(|i| {
            (
                candidates[i],
                candidates
                    .iter()
                    .filter(|c| **c != candidates[i])
                    .take(4)
                    .copied()
                    .collect::<Vec<_>>(),
            )
        })
        .find(|(first, rest)| {
            let alone = fresh(&[first], cidr, &Book::new());
            let mut all = rest.clone();
            all.push(first);
            fresh(&all, cidr, &alone) != fresh(&all, cidr, &Book::new())
        })
        .expect("a set whose allocation depends on its history");
    let options = SimOptions {
        service_cidr: Some(cidr),
        ..SimOptions::default()
    };
    let mut sim = Sim::start(3, options).await;
    sim.settle().await;
    sim.declare(1, &[service(first)]);
    let everyone = sim.alive();
    wait_until(
        "the first Service's address everywhere",
        Duration::from_secs(10),
        || {
            std::future::ready(everyone.iter().all(|i| {
                addresses(&sim, *i)
                    .get(&format!("default/{first}"))
                    .is_some_and(|ip| ip.is_some())
            }))
        },
    )
    .await;
    let mut all: Vec<Valid<Object>> = rest.iter().map(|n| service(n)).collect();
    all.push(service(first));
    sim.declare(1, &all);
    let complete = |sim: &Sim, i: usize| {
        let seen = addresses(sim, i);
        seen.len() == 5 && seen.values().all(Option::is_some)
    };
    wait_until("five addresses everywhere", Duration::from_secs(10), || {
        std::future::ready(everyone.iter().all(|i| complete(&sim, *i)))
    })
    .await;
    let before = addresses(&sim, 0);
    for i in &everyone {
        assert_eq!(addresses(&sim, *i), before, "node {i} sees other addresses");
    }
    // Every node stops, then every node starts again on its store.
    for i in everyone.iter().rev() {
        sim.kill_agent(*i).await;
    }
    for i in &everyone {
        sim.restart(*i).await;
    }
    wait_until(
        "five addresses everywhere again",
        Duration::from_secs(30),
        || std::future::ready(everyone.iter().all(|i| complete(&sim, *i))),
    )
    .await;
    // A leader is elected and publishes its book (past the startup grace), which every node
    // follows: still the same addresses.
    sim.settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in &everyone {
        assert_eq!(addresses(&sim, *i), before, "node {i} after the restart");
    }
    sim.stop().await;
}

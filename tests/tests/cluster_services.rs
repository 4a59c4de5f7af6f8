//! A Service on a cluster of five real agents with real pods (issue 11): every node programs
//! the same ClusterIP with every ready pod behind it, a pod on any node spreads its requests
//! over pods on several nodes, and when a node is cut off its pods leave every other node's
//! rules after the eviction delay, so requests keep succeeding; the cut-off node itself keeps
//! resolving the name and serving it with its own pod. A NodePort answers a client outside the
//! cluster on every node's address.
//!
//! Needs root, iproute2, nftables and busybox-static; see `cluster_deploy.rs` for the harness.

use anyhow::{Context, Result, ensure};
use skiff_tests::cluster::Cluster;
use skiff_tests::poll::{wait_for, wait_until};
use skiff_tests::web::*;
use std::collections::BTreeSet;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
";

const NODE_PORT: &str = "apiVersion: v1
kind: Service
metadata:
  name: web-np
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
";

/// (ClusterIP, ready endpoint addresses) of `web` as node `i` sees it.
fn service_of(c: &Cluster, i: usize) -> Result<Option<(String, BTreeSet<String>)>> {
    let agent = &c.agents[i];
    let svc = agent.api(&serde_json::json!({
        "op": "get", "kind": "services", "name": "web", "namespace": "default", "all_namespaces": false,
    }));
    let eps = agent.api(&serde_json::json!({
        "op": "get", "kind": "endpoints", "name": "web", "namespace": "default", "all_namespaces": false,
    }));
    let (Ok(svc), Ok(eps)) = (svc, eps) else {
        return Ok(None);
    };
    let Some(ip) = svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| *ip != "<pending>")
    else {
        return Ok(None);
    };
    let ready = eps["subsets"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    Ok(Some((ip.to_string(), ready)))
}

/// `count` requests to `url` from `netns`: the bodies of those that succeeded.
fn requests(netns: &str, url: &str, count: usize) -> Vec<String> {
    (0..count)
        .filter_map(|_| wget_in(netns, url))
        .map(|b| b.trim().to_string())
        .collect()
}

#[test]
fn a_service_spreads_over_every_node_and_drops_a_cut_off_node() -> Result<()> {
    deployed(5, |c, _| {
        c.agents[3].write_manifest("svc.yaml", SERVICE)?;
        let pods = web_pods(&c.agents[0])?;
        let pod_ips: BTreeSet<String> = pods.iter().filter_map(|p| p.ip.clone()).collect();
        // Every node: one ClusterIP, all five pods behind it.
        let (ip, took) = wait_for(
            "web's ClusterIP and 5 endpoints on every node",
            WAIT,
            POLL,
            || {
                let seen: Vec<Option<(String, BTreeSet<String>)>> = all()
                    .into_iter()
                    .map(|i| service_of(c, i))
                    .collect::<Result<_>>()?;
                let ips: BTreeSet<&String> = seen.iter().flatten().map(|(ip, _)| ip).collect();
                let complete = seen
                    .iter()
                    .all(|s| s.as_ref().is_some_and(|(_, r)| *r == pod_ips));
                Ok((complete && ips.len() == 1)
                    .then(|| ips.into_iter().next().cloned())
                    .flatten())
            },
        )?;
        eprintln!("web's ClusterIP {ip} with 5 endpoints on every node after {took:?}");
        // Every node with a pod answers web's name, asked by a real client (busybox nslookup)
        // from that pod's namespace at its gateway, with the one ClusterIP.
        let mut asked = BTreeSet::new();
        for p in &pods {
            if !asked.insert(p.node.clone()) {
                continue;
            }
            let ns = pod_netns(c, p.node[1..].parse()?, p.ip.as_deref().context("ip")?)?;
            let gateway = pod_gateway(&ns)?;
            wait_for(
                &format!("{} to answer web's name", p.node),
                WAIT,
                POLL,
                || {
                    let out = std::process::Command::new("ip")
                        .args(["netns", "exec", &ns, "busybox", "nslookup"])
                        .args(["web.default.svc.cluster.local", &gateway])
                        .output()?;
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    Ok(text.contains(&format!("Address: {ip}")).then_some(()))
                },
            )?;
        }
        ensure!(asked.len() >= 2, "pods on several nodes: {asked:?}");
        // From a pod on n0 and one on n4: requests spread over pods on several nodes.
        let url = format!("http://{ip}/index.html");
        for node in ["n0", "n4"] {
            let from = pods
                .iter()
                .find(|p| p.node == node)
                .context("a pod there")?;
            let ns = pod_netns(c, node[1..].parse()?, from.ip.as_deref().context("ip")?)?;
            let bodies = requests(&ns, &url, 30);
            let backends: BTreeSet<&String> = bodies.iter().collect();
            let nodes: BTreeSet<&str> = pods
                .iter()
                .filter(|p| backends.contains(&format!("served-by-{}", p.name)))
                .map(|p| p.node.as_str())
                .collect();
            eprintln!(
                "from {} on {node}: {} of 30 answered, by pods on {nodes:?}",
                from.name,
                bodies.len()
            );
            ensure!(bodies.len() == 30, "every request answered: {bodies:?}");
            ensure!(
                nodes.len() >= 2,
                "requests spread over pods on several nodes: {nodes:?}"
            );
        }
        // NodePort: a client outside the cluster (the hub, on the nodes' LAN) reaches the
        // Service on every node's address; replies come back through the node it asked.
        c.agents[1].write_manifest("np.yaml", NODE_PORT)?;
        skiff_test_support::net::ip(&[
            "-n",
            &c.bed.hub,
            "addr",
            "add",
            "198.18.1.250/24",
            "dev",
            "br0",
        ])?;
        for node in &c.bed.nodes {
            let url = format!("http://{}:30080/index.html", node.ip);
            let (body, took) = wait_for(
                &format!("the NodePort on n{}", node.index),
                WAIT,
                POLL,
                || Ok(wget_in(&c.bed.hub, &url)),
            )?;
            ensure!(body.trim().starts_with("served-by-"), "{url}: {body}");
            eprintln!(
                "NodePort on n{} answered after {took:?}: {}",
                node.index,
                body.trim()
            );
        }
        // Cut n4 off: its pod leaves every other node's endpoints; requests keep succeeding.
        let gone = pods
            .iter()
            .find(|p| p.node == "n4")
            .context("a pod on n4")?;
        let gone_ip = gone.ip.clone().context("ip")?;
        c.bed.set_node_link(4, false)?;
        let (_, took) = wait_for(
            "n4's pod out of the endpoints on n0..n3",
            WAIT,
            POLL,
            || {
                for i in 0..4 {
                    match service_of(c, i)? {
                        Some((_, ready)) if !ready.contains(&gone_ip) => {}
                        _ => return Ok(None),
                    }
                }
                Ok(Some(()))
            },
        )?;
        eprintln!("n4's pod left the endpoints after {took:?}");
        let from = pods
            .iter()
            .find(|p| p.node == "n0")
            .context("a pod on n0")?;
        let ns = pod_netns(c, 0, from.ip.as_deref().context("ip")?)?;
        wait_until("20 requests in a row answered from n0", WAIT, POLL, || {
            Ok(requests(&ns, &url, 20).len() == 20)
        })?;
        // The cut-off node keeps resolving the name and serving it with its own pod.
        let ns4 = pod_netns(c, 4, &gone_ip)?;
        let gateway = pod_gateway(&ns4)?;
        let (answer, _) = wait_for("n4 to answer web's name while cut off", WAIT, POLL, || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &ns4, "busybox", "nslookup"])
                .args(["web.default.svc.cluster.local", &gateway])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(text.contains(&format!("Address: {ip}")).then_some(text))
        })?;
        eprintln!("n4 resolves web while cut off: {}", answer.lines().count());
        let (_, took) = wait_for(
            "20 requests in a row from n4, all to its own pod",
            WAIT,
            POLL,
            || {
                let bodies = requests(&ns4, &url, 20);
                Ok((bodies.len() == 20
                    && bodies
                        .iter()
                        .all(|b| *b == format!("served-by-{}", gone.name)))
                .then_some(()))
            },
        )?;
        eprintln!("n4 serves web with its own pod after {took:?}");
        c.bed.set_node_link(4, true)?;
        Ok(())
    })
}

/// The default gateway of the pod namespace `ns` (its node's DNS server).
fn pod_gateway(ns: &str) -> Result<String> {
    let route = skiff_test_support::net::ip(&["-n", ns, "-4", "route", "show", "default"])?;
    Ok(route
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .context("the pod's default gateway")?
        .to_string())
}

//! A Service on a cluster of five real agents with real pods (issue 11): every node programs
//! the same ClusterIP with every ready pod behind it, a client pod on every node fetches
//! `http://web.default.svc.cluster.local/` by name (its own resolv.conf and node DNS) and its
//! requests spread over pods on several nodes, and when a node is cut off its pods leave every
//! other node's rules after the eviction delay, so requests keep succeeding; the cut-off node
//! itself keeps resolving the name and serving it with its own pod. A NodePort answers a
//! client outside the cluster on every node's address; a headless Service gives a pod on any
//! node every pod's address (A) and port (SRV); deleting the Services leaves nothing of theirs in
//! any node's nftables.
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

const HEADLESS: &str = "apiVersion: v1
kind: Service
metadata:
  name: web-h
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
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
        // A client pod on every node (one of web's own pods, through `skiff exec` on n0, so
        // with the pod's own resolv.conf and DNS server) looks web up by name and fetches it
        // by name 20 times: the one ClusterIP, every request answered, by pods on several
        // nodes.
        let mut clients = BTreeSet::new();
        for p in &pods {
            if !clients.insert(p.node.clone()) {
                continue;
            }
            let (lines, took) = wait_for(
                &format!("{} on {} to fetch web by name", p.name, p.node),
                WAIT,
                POLL,
                || {
                    let lines = fetch_by_name(c, 0, &p.name, 20);
                    Ok(lines.filter(|l| l.iter().all(|b| b.starts_with("served-by-"))))
                },
            )?;
            let answered: BTreeSet<&str> = lines
                .iter()
                .filter_map(|b| b.strip_prefix("served-by-"))
                .collect();
            let nodes: BTreeSet<&str> = pods
                .iter()
                .filter(|q| answered.contains(q.name.as_str()))
                .map(|q| q.node.as_str())
                .collect();
            eprintln!(
                "{} on {}: {} requests by name after {took:?}, answered by pods on {nodes:?}",
                p.name,
                p.node,
                lines.len()
            );
            ensure!(
                nodes.len() >= 2,
                "{} on {}: requests spread over pods on several nodes: {lines:?}",
                p.name,
                p.node
            );
            let resolved = c.agents[0].cli(&[
                "exec",
                &p.name,
                "--",
                "nslookup",
                "web.default.svc.cluster.local",
            ])?;
            ensure!(
                resolved.contains(&format!("Address: {ip}"))
                    && resolved.matches("Address:").count() == 2,
                "{} resolves web to the one ClusterIP {ip} (and names its server): {resolved}",
                p.name
            );
        }
        ensure!(
            clients.len() == 5,
            "a client pod on every node: {clients:?}"
        );
        // Headless, asked from a pod on every node: one A record per pod on any node, and one
        // SRV record per pod for the named port.
        c.agents[1].write_manifest("svc-h.yaml", HEADLESS)?;
        let mut asked = BTreeSet::new();
        for p in pods.iter().filter(|p| asked.insert(p.node.clone())) {
            let (_, took) = wait_for(
                &format!("{} on {} to resolve web-h to every pod", p.name, p.node),
                WAIT,
                POLL,
                || {
                    let Ok(a) = c.agents[0].cli(&[
                        "exec",
                        &p.name,
                        "--",
                        "nslookup",
                        "web-h.default.svc.cluster.local",
                    ]) else {
                        return Ok(None);
                    };
                    let Ok(srv) = c.agents[0].cli(&[
                        "exec",
                        &p.name,
                        "--",
                        "nslookup",
                        "-type=srv",
                        "_http._tcp.web-h.default.svc.cluster.local",
                    ]) else {
                        return Ok(None);
                    };
                    let all = pod_ips
                        .iter()
                        .all(|ip| a.contains(&format!("Address: {ip}\n")));
                    let srvs = srv.matches(" 8080 ").count();
                    Ok((all
                        && a.matches("Address: ").count() == pod_ips.len()
                        && srvs == pod_ips.len())
                    .then_some(()))
                },
            )?;
            eprintln!(
                "{} on {}: web-h gives all 5 pods (A and SRV) after {took:?}",
                p.name, p.node
            );
        }
        let url = format!("http://{ip}/index.html");
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
        // The cut-off node keeps resolving the name and serving it with its own pod: its pod
        // fetches web by name, through n4's own agent.
        let (_, took) = wait_for(
            "20 requests by name in a row from n4's pod, all to itself",
            WAIT,
            POLL,
            || {
                let own = format!("served-by-{}", gone.name);
                Ok(fetch_by_name(c, 4, &gone.name, 20)
                    .filter(|l| l.len() == 20 && l.iter().all(|b| *b == own)))
            },
        )?;
        eprintln!("n4 resolves web and serves it with its own pod after {took:?}");
        c.bed.set_node_link(4, true)?;
        // Deleting the Services leaves no chain, map element or address of theirs on any node.
        for (i, file) in [(3, "svc.yaml"), (1, "np.yaml"), (1, "svc-h.yaml")] {
            c.agents[i].remove_manifest(file)?;
        }
        let (_, took) = wait_for("every node's Service rules gone", WAIT, POLL, || {
            for node in &c.bed.nodes {
                let out = std::process::Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &node.netns,
                        "nft",
                        "list",
                        "table",
                        "ip",
                        "skiff-svc",
                    ])
                    .output()?;
                let table = String::from_utf8_lossy(&out.stdout);
                let left = [
                    "chain svc-",
                    "chain sep-",
                    "chain snp-",
                    "elements",
                    ip.as_str(),
                    "30080",
                ]
                .iter()
                .any(|needle| table.contains(needle));
                if !out.status.success() || left {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
        eprintln!("the Services' rules left all 5 nodes after {took:?}");
        Ok(())
    })
}

/// `count` fetches of `http://web.default.svc.cluster.local/index.html` inside pod `pod`, run
/// with `skiff exec` on node `via`: one line per request (the body, or wget's complaint and
/// `failed`); None when the exec itself failed. (`timeout`, not wget's `-T`: the image's static
/// busybox wget crashes with `-T`.)
fn fetch_by_name(c: &Cluster, via: usize, pod: &str, count: usize) -> Option<Vec<String>> {
    let script = format!(
        "for i in $(seq {count}); do timeout 5 wget -q -O- http://web.default.svc.cluster.local/index.html 2>&1 || echo failed; done"
    );
    let out = c.agents[via]
        .cli(&["exec", pod, "--", "sh", "-c", &script])
        .map_err(|e| eprintln!("exec in {pod}: {e:#}"))
        .ok()?;
    Some(out.lines().map(|l| l.trim().to_string()).collect())
}

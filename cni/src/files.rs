//! Per-pod /etc/hosts and /etc/resolv.conf, generated into a directory the agent bind-mounts.
//! Files are rewritten in place (not renamed) so existing bind mounts keep seeing them.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::ClusterDns;
use crate::error::CniError;

pub const HOSTS: &str = "hosts";
pub const RESOLV: &str = "resolv.conf";

/// The pod's /etc/hosts: localhost lines and its own name.
pub fn hosts_content(hostname: &str, ip: Ipv4Addr) -> String {
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n")
}

/// The pod's resolv.conf: the node's, minus loopback resolvers a pod cannot reach.
pub fn resolv_content(node_resolv: &str) -> String {
    node_resolv
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            !(words.next() == Some("nameserver")
                && words
                    .next()
                    .is_some_and(|a| a.starts_with("127.") || a == "::1"))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Paths of the two files.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(HOSTS), dir.join(RESOLV))
}

/// A cluster-DNS pod's resolv.conf: the node's DNS server on the gateway, the cluster search
/// domains and then the node's, and `ndots:5` (as kubelet writes it for ClusterFirst).
pub fn cluster_resolv_content(node_resolv: &str, gateway: Ipv4Addr, dns: &ClusterDns) -> String {
    let mut searches = dns.searches.clone();
    for line in node_resolv.lines() {
        let mut words = line.split_whitespace();
        if matches!(words.next(), Some("search" | "domain")) {
            searches.extend(
                words
                    .map(str::to_string)
                    .filter(|w| !dns.searches.contains(w)),
            );
        }
    }
    format!(
        "search {}\nnameserver {gateway}\noptions ndots:5\n",
        searches.join(" ")
    )
}

/// The wanted contents, reading the node's resolv.conf (missing = empty).
pub fn wanted(
    hostname: &str,
    ip: Ipv4Addr,
    resolv_source: &Path,
    dns: Option<(&ClusterDns, Ipv4Addr)>,
) -> (String, String) {
    let node = fs::read_to_string(resolv_source).unwrap_or_default();
    let resolv = match dns {
        Some((dns, gateway)) => cluster_resolv_content(&node, gateway, dns),
        None => resolv_content(&node),
    };
    (hosts_content(hostname, ip), resolv)
}

/// True when both files hold the wanted contents.
pub fn current(dir: &Path, wanted: &(String, String)) -> bool {
    let (hosts, resolv) = paths(dir);
    fs::read_to_string(hosts).ok().as_deref() == Some(wanted.0.as_str())
        && fs::read_to_string(resolv).ok().as_deref() == Some(wanted.1.as_str())
}

/// True when either file exists.
pub fn exist(dir: &Path) -> bool {
    let (hosts, resolv) = paths(dir);
    hosts.exists() || resolv.exists()
}

/// Writes both files (in place).
pub fn write(dir: &Path, wanted: &(String, String)) -> Result<(), CniError> {
    fs::create_dir_all(dir).map_err(|e| CniError::io("create pod files directory", dir, e))?;
    let (hosts, resolv) = paths(dir);
    fs::write(&hosts, &wanted.0).map_err(|e| CniError::io("write", &hosts, e))?;
    fs::write(&resolv, &wanted.1).map_err(|e| CniError::io("write", &resolv, e))
}

/// Removes both files; missing ones are fine. The directory belongs to the agent.
pub fn remove(dir: &Path) -> Result<(), CniError> {
    let (hosts, resolv) = paths(dir);
    for path in [hosts, resolv] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CniError::io("remove", &path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_and_own_name() {
        let h = hosts_content("web-1", Ipv4Addr::new(198, 18, 5, 2));
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("198.18.5.2\tweb-1\n"));
    }

    #[test]
    fn cluster_resolv_points_at_the_gateway_with_the_cluster_searches_first() {
        let node = "search example.org\nnameserver 192.0.2.1\noptions ndots:1\n";
        let dns = ClusterDns {
            searches: vec![
                "prod.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
        };
        assert_eq!(
            cluster_resolv_content(node, Ipv4Addr::new(10, 42, 0, 1), &dns),
            "search prod.svc.cluster.local svc.cluster.local cluster.local example.org\nnameserver 10.42.0.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn resolv_drops_loopback_resolvers() {
        let node =
            "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions ndots:1\n";
        assert_eq!(
            resolv_content(node),
            "search example.org\nnameserver 192.0.2.1\noptions ndots:1\n"
        );
    }
}

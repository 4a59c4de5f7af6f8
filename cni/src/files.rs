//! Per-pod /etc/hosts and /etc/resolv.conf, generated into a directory the agent bind-mounts.
//! Files are rewritten in place (not renamed) so existing bind mounts keep seeing them.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::{ClusterDns, DnsBase, PodHosts};
use crate::error::CniError;

pub const HOSTS: &str = "hosts";
pub const RESOLV: &str = "resolv.conf";

/// The pod's /etc/hosts: localhost lines, its own address and names, then its host aliases.
pub fn hosts_content(hostname: &str, ip: Ipv4Addr, extra: &PodHosts) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match &extra.domain {
        Some(domain) => out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n")),
        None => out.push_str(&format!("{ip}\t{hostname}\n")),
    }
    if !extra.aliases.is_empty() {
        out.push_str("# Entries added by HostAliases.\n");
        for (address, names) in &extra.aliases {
            out.push_str(&format!("{address}\t{}\n", names.join("\t")));
        }
    }
    out
}

/// The pod's resolv.conf: the node's, minus loopback resolvers a pod cannot reach.
pub fn resolv_content(node_resolv: &str) -> String {
    node_resolv
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            !(words.next() == Some("nameserver") && words.next().is_some_and(is_loopback))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

fn is_loopback(address: &str) -> bool {
    address.starts_with("127.") || address == "::1"
}

/// Paths of the two files.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(HOSTS), dir.join(RESOLV))
}

/// Most nameservers a resolver reads, and most search domains kubelet writes.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// A pod's resolv.conf as kubelet composes it: the base (the node's DNS server on the
/// gateway with the cluster search domains, the node's search domains and `ndots:5`; or the
/// node's file; or nothing), then `dnsConfig`'s nameservers and searches appended without
/// duplicates and its options replacing the base's of the same name.
pub fn cluster_resolv_content(node_resolv: &str, gateway: Ipv4Addr, dns: &ClusterDns) -> String {
    let mut nameservers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = dns.searches.clone();
    let mut options: Vec<String> = Vec::new();
    let node_searches = || {
        node_resolv.lines().flat_map(|line| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("search" | "domain") => words.map(str::to_string).collect(),
                _ => Vec::new(),
            }
        })
    };
    match dns.base {
        DnsBase::Cluster => {
            nameservers.push(gateway.to_string());
            searches.extend(node_searches());
            options.push("ndots:5".into());
        }
        DnsBase::Node => {
            let mut loopback = false;
            for line in node_resolv.lines() {
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("nameserver") => match words.next() {
                        Some(a) if is_loopback(a) => loopback = true,
                        Some(a) => nameservers.push(a.to_string()),
                        None => {}
                    },
                    Some("options") => options.extend(words.map(str::to_string)),
                    _ => {}
                }
            }
            // Only a local stub (systemd-resolved's 127.0.0.53, a dnsmasq on 127.0.0.1), which
            // the pod cannot reach from its namespace: the node's DNS on the gateway relays to
            // it (and answers the cluster's names too) instead of leaving the pod with none.
            if nameservers.is_empty() && loopback {
                nameservers.push(gateway.to_string());
            }
            searches.extend(node_searches());
        }
        DnsBase::Empty => {}
    }
    nameservers.extend(dns.nameservers.iter().cloned());
    searches.extend(dns.extra_searches.iter().cloned());
    for option in &dns.options {
        let name = option.split(':').next().unwrap_or_default();
        options.retain(|o| o.split(':').next() != Some(name));
        options.push(option.clone());
    }
    let mut seen = std::collections::BTreeSet::new();
    nameservers.retain(|n| seen.insert(n.clone()));
    nameservers.truncate(MAX_NAMESERVERS);
    let mut seen = std::collections::BTreeSet::new();
    searches.retain(|s| seen.insert(s.trim_end_matches('.').to_string()));
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The wanted contents, reading the node's resolv.conf (missing = empty).
pub fn wanted(
    hostname: &str,
    extra: &PodHosts,
    ip: Ipv4Addr,
    resolv_source: &Path,
    dns: Option<(&ClusterDns, Ipv4Addr)>,
) -> (String, String) {
    let node = fs::read_to_string(resolv_source).unwrap_or_default();
    let resolv = match dns {
        Some((dns, gateway)) => cluster_resolv_content(&node, gateway, dns),
        None => resolv_content(&node),
    };
    (hosts_content(hostname, ip, extra), resolv)
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
        let h = hosts_content("web-1", Ipv4Addr::new(198, 18, 5, 2), &PodHosts::default());
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("198.18.5.2\tweb-1\n"));
    }

    #[test]
    fn cluster_resolv_points_at_the_gateway_with_the_cluster_searches_first() {
        let node = "search example.org\nnameserver 192.0.2.1\noptions ndots:1\n";
        let dns = ClusterDns::cluster(vec![
            "prod.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ]);
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

    #[test]
    fn hosts_has_the_pod_domain_and_aliases() {
        let extra = PodHosts {
            domain: Some("db.default.svc.cluster.local".into()),
            aliases: vec![(
                "192.0.2.10".into(),
                vec!["foo.local".into(), "bar.local".into()],
            )],
        };
        let h = hosts_content("db-0", Ipv4Addr::new(198, 18, 5, 2), &extra);
        assert!(
            h.ends_with("198.18.5.2\tdb-0.db.default.svc.cluster.local\tdb-0\n# Entries added by HostAliases.\n192.0.2.10\tfoo.local\tbar.local\n"),
            "{h}"
        );
    }

    /// kubelet's composition, one row per policy: (base, dnsConfig, wanted file).
    #[test]
    fn dns_config_merges_into_each_base() {
        let node = "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions ndots:1 edns0\n";
        let gw = Ipv4Addr::new(10, 42, 0, 1);
        let config = |base, ns: &[&str], searches: &[&str], options: &[&str]| ClusterDns {
            searches: if base == DnsBase::Cluster {
                vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                ]
            } else {
                Vec::new()
            },
            base,
            nameservers: ns.iter().map(|s| s.to_string()).collect(),
            extra_searches: searches.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        let rows = [
            (
                config(
                    DnsBase::Cluster,
                    &["192.0.2.53"],
                    &["corp.example"],
                    &["ndots:2", "timeout:1"],
                ),
                "search default.svc.cluster.local svc.cluster.local example.org corp.example\nnameserver 10.42.0.1\nnameserver 192.0.2.53\noptions ndots:2 timeout:1\n",
            ),
            (
                config(DnsBase::Node, &[], &[], &[]),
                "search example.org\nnameserver 192.0.2.1\noptions ndots:1 edns0\n",
            ),
            (
                config(
                    DnsBase::Node,
                    &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
                    &["example.org."],
                    &["edns0"],
                ),
                "search example.org\nnameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\noptions ndots:1 edns0\n",
            ),
            (
                config(
                    DnsBase::Empty,
                    &["192.0.2.53"],
                    &["corp.example"],
                    &["ndots:1"],
                ),
                "search corp.example\nnameserver 192.0.2.53\noptions ndots:1\n",
            ),
            (
                config(DnsBase::Empty, &["192.0.2.53"], &[], &[]),
                "nameserver 192.0.2.53\n",
            ),
        ];
        for (dns, want) in rows {
            assert_eq!(cluster_resolv_content(node, gw, &dns), want, "{dns:?}");
        }
        // dnsPolicy Default on a node with only a local stub: the node's DNS on the gateway
        // (which relays to the stub), not a file without a nameserver.
        let stub_only = "nameserver 127.0.0.53
options edns0 trust-ad
search lan
";
        assert_eq!(
            cluster_resolv_content(stub_only, gw, &config(DnsBase::Node, &[], &[], &[])),
            "search lan\nnameserver 10.42.0.1\noptions edns0 trust-ad\n"
        );
        // No nameserver at all in the node's file: none added (the pod gets what the node has).
        assert_eq!(
            cluster_resolv_content("search lan\n", gw, &config(DnsBase::Node, &[], &[], &[])),
            "search lan\n"
        );
    }
}

//! Configuration and request/response types of pod networking, and the names derived from them.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::CniError;

/// Longest prefix for host link names: prefix + 10 hex digits + 1 suffix char must fit in 15.
pub const MAX_LINK_PREFIX: usize = 4;

/// How one node wires its pods. Tests use their own bridge, table, prefixes and subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The node bridge (default `skiff0`); at most 15 characters.
    pub bridge: String,
    /// The node's pod subnet (default 10.42.0.0/24).
    pub subnet: Ipv4Net,
    /// The bridge address and the pods' default gateway (default: the first host of `subnet`).
    pub gateway: Ipv4Addr,
    /// Where pod network namespaces are bind-mounted (default `/run/netns`).
    pub netns_dir: PathBuf,
    /// Namespace files starting with this prefix and owned by no pod are removed by gc.
    /// Empty disables that sweep.
    pub netns_prefix: String,
    /// Masquerade pod traffic leaving `cluster_cidr` (or `subnet` when unset).
    pub masquerade: bool,
    /// Destinations that are not masqueraded (other nodes' pods); defaults to `subnet`.
    pub cluster_cidr: Option<Ipv4Net>,
    /// Our own nftables table (family `ip`), removed as a whole by `remove_node_network`.
    pub nft_table: String,
    /// Prefix of host-side veth names (at most 4 characters, default `vsk`).
    pub link_prefix: String,
    /// Node resolvers copied into each pod's resolv.conf (default `/etc/resolv.conf`).
    pub resolv_conf_source: PathBuf,
    /// Run the node side (bridge, host veths, nftables, sysctls) inside this network namespace
    /// instead of the caller's. Tests use it to keep away from the host's real interfaces.
    pub node_netns: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        let subnet = Ipv4Net::new(Ipv4Addr::new(10, 42, 0, 0), 24).unwrap_or_default();
        NetworkConfig {
            bridge: "skiff0".into(),
            gateway: first_host(subnet),
            subnet,
            netns_dir: PathBuf::from("/run/netns"),
            netns_prefix: "skiff-".into(),
            masquerade: true,
            cluster_cidr: None,
            nft_table: "skiff".into(),
            link_prefix: "vsk".into(),
            resolv_conf_source: PathBuf::from("/etc/resolv.conf"),
            node_netns: None,
        }
    }
}

impl NetworkConfig {
    /// The Services' table beside ours (`<nft_table>-svc`), programmed by the agent's proxy and
    /// removed with ours.
    pub fn service_table(&self) -> String {
        format!("{}-svc", self.nft_table)
    }

    /// A config for `subnet` with the gateway at its first host and every other field default.
    pub fn for_subnet(subnet: Ipv4Net) -> Self {
        NetworkConfig {
            subnet: subnet.trunc(),
            gateway: first_host(subnet),
            ..NetworkConfig::default()
        }
    }

    /// Checks names and addresses before anything touches the system.
    pub fn validate(&self) -> Result<(), CniError> {
        let bad = |msg: String| Err(CniError::InvalidConfig(msg));
        if self.bridge.is_empty() || self.bridge.len() > 15 {
            return bad(format!(
                "bridge name {:?} must be 1-15 characters",
                self.bridge
            ));
        }
        if self.link_prefix.is_empty() || self.link_prefix.len() > MAX_LINK_PREFIX {
            return bad(format!(
                "link_prefix {:?} must be 1-{MAX_LINK_PREFIX} characters",
                self.link_prefix
            ));
        }
        if self.bridge.starts_with(&self.link_prefix) {
            return bad(format!(
                "bridge {:?} must not start with link_prefix {:?} (gc would delete it)",
                self.bridge, self.link_prefix
            ));
        }
        if self.subnet.prefix_len() > 30 {
            return bad(format!(
                "subnet {} is too small: use /30 or larger",
                self.subnet
            ));
        }
        if !self.subnet.contains(&self.gateway)
            || self.gateway == self.subnet.network()
            || self.gateway == self.subnet.broadcast()
        {
            return bad(format!(
                "gateway {} is not a host of {}",
                self.gateway, self.subnet
            ));
        }
        let table_ok = !self.nft_table.is_empty()
            && self
                .nft_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !table_ok {
            return bad(format!(
                "nft_table {:?} must be [A-Za-z0-9_-]+",
                self.nft_table
            ));
        }
        Ok(())
    }

    /// Destinations that keep the pod's source address.
    pub fn no_masquerade_to(&self) -> Ipv4Net {
        self.cluster_cidr.unwrap_or(self.subnet)
    }
}

/// The first usable host address of a subnet (network address + 1).
pub fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The nftables keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A containerPort published on every node address as hostPort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostPortMapping {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
}

/// What the agent asks for one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetRequest {
    /// Stable pod id (e.g. the pod UID); ASCII letters, digits, `-`, `_`, `.`, at most 253.
    pub id: String,
    /// File name of the pod's network namespace under `netns_dir`.
    pub netns_name: String,
    /// The pod's hostname (written to its /etc/hosts).
    pub hostname: String,
    /// Directory where `hosts` and `resolv.conf` are written for the agent to bind-mount.
    pub files_dir: PathBuf,
    /// Published ports.
    pub ports: Vec<HostPortMapping>,
    /// The pod's resolver settings; `None`: the node's own resolvers (its resolv.conf
    /// without loopback ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_dns: Option<ClusterDns>,
    /// The pod's domain and host aliases for its /etc/hosts.
    #[serde(default, skip_serializing_if = "PodHosts::is_empty")]
    pub hosts: PodHosts,
}

/// A pod's resolver settings (kubelet's `dnsPolicy` with `dnsConfig` merged in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDns {
    /// Search domains the base puts first (`<ns>.svc.cluster.local svc.cluster.local ...` for
    /// the cluster DNS; none otherwise).
    pub searches: Vec<String>,
    /// What the file starts from (records written before this field: the cluster DNS).
    #[serde(default, skip_serializing_if = "DnsBase::is_cluster")]
    pub base: DnsBase,
    /// `dnsConfig.nameservers`, after the base's (at most 3 in all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// `dnsConfig.searches`, after the base's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_searches: Vec<String>,
    /// `dnsConfig.options` as `name` or `name:value`; they replace the base's of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl ClusterDns {
    /// The cluster DNS with these search domains first and nothing added.
    pub fn cluster(searches: Vec<String>) -> ClusterDns {
        ClusterDns {
            searches,
            base: DnsBase::Cluster,
            nameservers: Vec::new(),
            extra_searches: Vec::new(),
            options: Vec::new(),
        }
    }
}

/// Where a pod's resolv.conf starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsBase {
    /// The node's cluster DNS on the gateway, the node's search domains, `ndots:5`.
    #[default]
    Cluster,
    /// The node's resolv.conf (without loopback resolvers a pod cannot reach).
    Node,
    /// Nothing (`dnsPolicy: None`): only the `dnsConfig` lines.
    Empty,
}

impl DnsBase {
    fn is_cluster(&self) -> bool {
        *self == DnsBase::Cluster
    }
}

/// What a pod's /etc/hosts says beyond localhost and its own address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodHosts {
    /// The pod's domain (`<subdomain>.<ns>.svc.<cluster domain>`): its own line reads
    /// `<ip> <hostname>.<domain> <hostname>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `hostAliases`: an address and its names, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<(String, Vec<String>)>,
}

impl PodHosts {
    pub fn is_empty(&self) -> bool {
        self.domain.is_none() && self.aliases.is_empty()
    }
}

/// What a pod got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetStatus {
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub netns_path: PathBuf,
    pub host_link: String,
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
}

/// Checks a pod id.
pub fn validate_pod_id(id: &str) -> Result<(), CniError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let reason = if id.is_empty() {
        Some("must not be empty")
    } else if id.len() > 253 {
        Some("must be at most 253 characters")
    } else if !id.chars().all(ok_char) {
        Some("may only hold ASCII letters, digits, '-', '_' and '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CniError::InvalidName {
            what: "pod id",
            value: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// 64-bit FNV-1a: stable across processes and releases (names must survive restarts).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Host-side veth name of a pod: `<prefix><10 hex digits>`, at most 14 characters.
pub fn host_link_name(prefix: &str, pod_id: &str) -> String {
    format!("{prefix}{:010x}", fnv1a(pod_id.as_bytes()) >> 24)
}

/// Temporary name of the pod end while it is still in the node namespace (host name + `p`).
pub fn temp_peer_name(prefix: &str, pod_id: &str) -> String {
    format!("{}p", host_link_name(prefix, pod_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_are_stable_short_and_distinct() {
        let a = host_link_name("sk", "default_web-1");
        assert_eq!(a, host_link_name("sk", "default_web-1"));
        assert!(a.len() <= 15 && a.starts_with("sk"));
        assert_eq!(temp_peer_name("abcd", "x").len(), 15);
        assert_ne!(a, host_link_name("sk", "default_web-2"));
    }

    #[test]
    fn config_validation_table() {
        let ok = NetworkConfig::for_subnet("198.18.5.0/24".parse().expect("net"));
        assert_eq!(ok.gateway, Ipv4Addr::new(198, 18, 5, 1));
        assert!(ok.validate().is_ok());
        let cases: Vec<(&str, NetworkConfig)> = vec![
            (
                "long bridge",
                NetworkConfig {
                    bridge: "x".repeat(16),
                    ..ok.clone()
                },
            ),
            (
                "long prefix",
                NetworkConfig {
                    link_prefix: "abcde".into(),
                    ..ok.clone()
                },
            ),
            (
                "bridge under prefix",
                NetworkConfig {
                    bridge: "vsk0".into(),
                    ..ok.clone()
                },
            ),
            (
                "tiny subnet",
                NetworkConfig::for_subnet("198.18.5.0/31".parse().expect("net")),
            ),
            (
                "gateway outside",
                NetworkConfig {
                    gateway: Ipv4Addr::new(10, 0, 0, 1),
                    ..ok.clone()
                },
            ),
            (
                "bad table",
                NetworkConfig {
                    nft_table: "a b".into(),
                    ..ok.clone()
                },
            ),
        ];
        for (name, cfg) in cases {
            assert!(cfg.validate().is_err(), "{name} accepted");
        }
    }

    #[test]
    fn pod_id_validation() {
        assert!(validate_pod_id("ns_web-1.abc").is_ok());
        for bad in ["", "a/b", "a b", "é"] {
            assert!(validate_pod_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}

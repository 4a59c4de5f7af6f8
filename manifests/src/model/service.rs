//! A validated Service: how pods matching a selector are reached under one stable address
//! (ClusterIP), on every node's address (NodePort), by name only (headless), or as another
//! DNS name (ExternalName).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::object::ObjectMeta;
use super::pod::Protocol;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// `spec.clusterIP` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterIp {
    /// Absent or empty: the leader allocates one from the service CIDR.
    Auto,
    /// `None`: a headless Service (DNS names the endpoints themselves).
    Headless,
    /// A pinned address (the leader honours it or refuses it with a reason).
    Pinned(Ipv4Addr),
}

impl Serialize for ClusterIp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ClusterIp::Auto => serializer.serialize_str(""),
            ClusterIp::Headless => serializer.serialize_str("None"),
            ClusterIp::Pinned(ip) => serializer.serialize_str(&ip.to_string()),
        }
    }
}

/// Where a Service port sends its traffic in the pod: a number, or the name of a container
/// port (resolved per pod, so pods may differ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Empty only when the Service has one port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: TargetPort,
    /// NodePort Services: pinned, or `None` to have one allocated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAffinity {
    None,
    /// Connections from one client address go to the same endpoint for this many seconds
    /// after its last connection.
    ClientIp {
        timeout_seconds: u32,
    },
}

/// Kubernetes' default for `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub type_: ServiceType,
    pub cluster_ip: ClusterIp,
    /// Empty: no selector (endpoints are not computed; the Service only has its address).
    /// Sorted by key, no key twice: a selector has a label or two, and a map would take a
    /// whole tree node for them in every Service a node holds.
    pub selector: Vec<(String, String)>,
    pub ports: Vec<ServicePort>,
    /// ExternalName Services: the DNS name they alias.
    pub external_name: Option<String>,
    pub publish_not_ready_addresses: bool,
    pub session_affinity: SessionAffinity,
}

impl ServiceSpec {
    pub fn is_headless(&self) -> bool {
        self.cluster_ip == ClusterIp::Headless
    }

    /// True when pods matching the selector are this Service's endpoints.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }
}

/// Pairs written as a JSON object.
struct PairsAsMap<'a>(&'a [(String, String)]);

impl Serialize for PairsAsMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Serialized as Kubernetes writes it (`type`, `clusterIP`, `sessionAffinityConfig`...).
impl Serialize for ServiceSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &self.type_)?;
        if self.type_ != ServiceType::ExternalName {
            map.serialize_entry("clusterIP", &self.cluster_ip)?;
        }
        if !self.selector.is_empty() {
            map.serialize_entry("selector", &PairsAsMap(&self.selector))?;
        }
        if !self.ports.is_empty() {
            map.serialize_entry("ports", &self.ports)?;
        }
        if let Some(name) = &self.external_name {
            map.serialize_entry("externalName", name)?;
        }
        if self.publish_not_ready_addresses {
            map.serialize_entry("publishNotReadyAddresses", &true)?;
        }
        match self.session_affinity {
            SessionAffinity::None => map.serialize_entry("sessionAffinity", "None")?,
            SessionAffinity::ClientIp { timeout_seconds } => {
                map.serialize_entry("sessionAffinity", "ClientIP")?;
                map.serialize_entry(
                    "sessionAffinityConfig",
                    &serde_json::json!({"clientIP": {"timeoutSeconds": timeout_seconds}}),
                )?;
            }
        }
        map.end()
    }
}

/// The node ports a cluster hands out and accepts, `FIRST-LAST` inclusive (the agent's
/// `--service-node-port-range`; Kubernetes' default 30000-32767). Never empty: made only by
/// [`NodePortRange::new`] or parsing, which refuse a first port above the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    first: u16,
    last: u16,
}

impl NodePortRange {
    pub const DEFAULT: NodePortRange = NodePortRange {
        first: 30000,
        last: 32767,
    };

    /// `first..=last`; None when `first` is 0 or above `last`.
    pub fn new(first: u16, last: u16) -> Option<NodePortRange> {
        (first != 0 && first <= last).then_some(NodePortRange { first, last })
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// How many ports it holds (at least 1).
    pub fn size(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }
}

impl Default for NodePortRange {
    fn default() -> Self {
        NodePortRange::DEFAULT
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl std::str::FromStr for NodePortRange {
    type Err = String;

    /// `FIRST-LAST` (both 1-65535, FIRST <= LAST), or one port.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a port range FIRST-LAST like 30000-32767");
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(bad)
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!(
                "{text:?}: the first port is above the last (FIRST-LAST like 30000-32767)"
            ));
        }
        Ok(NodePortRange { first, last })
    }
}

impl<'de> serde::Deserialize<'de> for NodePortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

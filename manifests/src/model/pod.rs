//! Validated pod specification: containers, environment, ports, resources, volumes, security
//! contexts. Serializes
//! in Kubernetes shape (camelCase, defaults filled in).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::quantity::Quantity;

pub use super::probe::{
    Hook, HttpGetAction, HttpHeader, HttpScheme, Lifecycle, Probe, ProbeHandler, ProbePort,
};
pub use super::scheduling::{
    Affinity, HOSTNAME_LABEL, NodeAffinity, NodeSelectorTerm, Operator, PodAffinity,
    PodAffinityTerm, PodSelector, PreferredTerm, Requirement, Taint, TaintEffect, Toleration,
    TolerationOperator, TopologySpreadConstraint, WeightedPodAffinityTerm, WhenUnsatisfiable,
    ZONE_LABEL,
};
pub use super::security::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

// Volume types live in `model::volume`; they are re-exported here because a pod spec owns them.
pub use super::volume::{
    ConfigMapVolume, DEFAULT_VOLUME_MODE, DownwardApiFile, DownwardApiProjection,
    DownwardApiSource, DownwardApiVolume, EmptyDirVolume, HostPathType, HostPathVolume, KeyToPath,
    ObjectProjection, ProjectedVolume, Projection, SecretVolume, StorageMedium, Volume,
    VolumeField, VolumeSource,
};

pub(crate) fn is_true(value: &bool) -> bool {
    *value
}

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// The part of a pod that runs: the same for a bare Pod and a Deployment's template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    pub restart_policy: RestartPolicy,
    pub termination_grace_period_seconds: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "is_false")]
    pub host_network: bool,
    /// The containers get the service environment variables (default true).
    #[serde(skip_serializing_if = "is_true")]
    pub enable_service_links: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "PodSecurityContext::is_empty")]
    pub security_context: PodSecurityContext,
    /// The pod's hostname (default: its name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// With `hostname`, the pod is `<hostname>.<subdomain>.<ns>.svc.<domain>` when a headless
    /// Service of that name selects it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(skip_serializing_if = "DnsPolicy::is_default")]
    pub dns_policy: DnsPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDnsConfig>,
    /// Extra lines of the pod's /etc/hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias>,
    #[serde(skip_serializing_if = "Affinity::is_empty")]
    pub affinity: Affinity,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// How long the pod may be active on its node (from its start) before the node stops it
    /// for good (phase Failed, reason DeadlineExceeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    /// The node the pod must run on (the scheduler places it there only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// How the pod's resolv.conf is made (`dnsPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum DnsPolicy {
    /// The cluster DNS with the cluster search domains (host-network pods: `Default`).
    #[default]
    ClusterFirst,
    /// The cluster DNS also for host-network pods.
    ClusterFirstWithHostNet,
    /// The node's resolvers.
    Default,
    /// Only what `dnsConfig` says.
    None,
}

impl DnsPolicy {
    pub fn is_default(&self) -> bool {
        *self == DnsPolicy::ClusterFirst
    }

    /// Whether a pod with this policy resolves through the cluster DNS.
    pub fn uses_cluster_dns(self, host_network: bool) -> bool {
        match self {
            DnsPolicy::ClusterFirst => !host_network,
            DnsPolicy::ClusterFirstWithHostNet => true,
            DnsPolicy::Default | DnsPolicy::None => false,
        }
    }
}

/// `dnsConfig`: merged into what the policy gives (the whole resolv.conf for `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PodDnsConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<DnsOption>,
}

/// One resolver option (`ndots` = `5`, `edns0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsOption {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One `hostAliases` entry: an address and the names /etc/hosts gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

impl PodSpec {
    pub fn termination_grace_period(&self) -> Duration {
        Duration::from_secs(self.termination_grace_period_seconds)
    }

    /// Finds a volume by name (every volume mount names an existing volume).
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|volume| volume.name == name)
    }

    /// Sum of the containers' requests (cpu millicores, memory bytes), the figure a scheduler
    /// places by. Init containers run one at a time, so the largest of them counts if larger.
    pub fn total_requests(&self) -> ResourceTotals {
        let sum = |containers: &[Container], pick: fn(&ResourceList) -> Option<u64>| {
            containers
                .iter()
                .map(|c| pick(&c.resources.requests).unwrap_or(0))
                .fold(0u64, u64::saturating_add)
        };
        let max = |containers: &[Container], pick: fn(&ResourceList) -> Option<u64>| {
            containers
                .iter()
                .map(|c| pick(&c.resources.requests).unwrap_or(0))
                .max()
                .unwrap_or(0)
        };
        ResourceTotals {
            cpu_millis: sum(&self.containers, ResourceList::cpu_millis)
                .max(max(&self.init_containers, ResourceList::cpu_millis)),
            memory_bytes: sum(&self.containers, ResourceList::memory_bytes)
                .max(max(&self.init_containers, ResourceList::memory_bytes)),
        }
    }
}

/// Resource figures added up over a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceTotals {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    /// Defaulted like Kubernetes: `Always` for `:latest` or untagged images, else `IfNotPresent`.
    pub image_pull_policy: PullPolicy,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "ResourceRequirements::is_empty")]
    pub resources: ResourceRequirements,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(skip_serializing_if = "SecurityContext::is_empty")]
    pub security_context: SecurityContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Lifecycle::is_empty")]
    pub lifecycle: Lifecycle,
    /// `restartPolicy: Always` on an init container: a native sidecar (started before the next
    /// init container, kept running beside the main containers, stopped after them).
    #[serde(
        rename = "restartPolicy",
        serialize_with = "always",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub sidecar: bool,
}

fn always<S: serde::Serializer>(_: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("Always")
}

/// One environment variable: a literal value or a reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(flatten)]
    pub value: EnvValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EnvValue {
    /// `value: "..."` (an absent value is the empty string, as in Kubernetes).
    Value(String),
    /// `valueFrom: {...}`.
    ValueFrom(EnvVarSource),
}

/// Written as `{configMapKeyRef: {...}}` or `{secretKeyRef: {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvVarSource {
    ConfigMapKeyRef(KeySelector),
    SecretKeyRef(KeySelector),
    /// `fieldRef`: a field of the pod (the downward API).
    FieldRef(PodField),
    /// `resourceFieldRef`: a container's cpu or memory request or limit, divided by `divisor`
    /// and rounded up.
    ResourceFieldRef(ResourceFieldRef),
}

/// A container's resource as an environment value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFieldRef {
    /// Default: the container the variable is set in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// `limits.cpu`, `limits.memory`, `requests.cpu` or `requests.memory`.
    pub resource: String,
    pub divisor: crate::quantity::Quantity,
}

/// A pod field an environment variable can hold (`fieldRef.fieldPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodField {
    Name,
    Namespace,
    Uid,
    Label(String),
    Annotation(String),
    NodeName,
    PodIp,
    PodIps,
    HostIp,
    HostIps,
}

impl PodField {
    /// The field path as a manifest writes it.
    pub fn path(&self) -> String {
        match self {
            PodField::Name => "metadata.name".into(),
            PodField::Namespace => "metadata.namespace".into(),
            PodField::Uid => "metadata.uid".into(),
            PodField::Label(k) => format!("metadata.labels['{k}']"),
            PodField::Annotation(k) => format!("metadata.annotations['{k}']"),
            PodField::NodeName => "spec.nodeName".into(),
            PodField::PodIp => "status.podIP".into(),
            PodField::PodIps => "status.podIPs".into(),
            PodField::HostIp => "status.hostIP".into(),
            PodField::HostIps => "status.hostIPs".into(),
        }
    }

    /// The fields Kubernetes allows in a container's environment.
    pub fn parse(path: &str) -> Option<PodField> {
        let keyed = |prefix: &str| {
            path.strip_prefix(prefix)?
                .strip_suffix("']")
                .filter(|k| !k.is_empty())
                .map(str::to_string)
        };
        Some(match path {
            "metadata.name" => PodField::Name,
            "metadata.namespace" => PodField::Namespace,
            "metadata.uid" => PodField::Uid,
            "spec.nodeName" => PodField::NodeName,
            "status.podIP" => PodField::PodIp,
            "status.podIPs" => PodField::PodIps,
            "status.hostIP" => PodField::HostIp,
            "status.hostIPs" => PodField::HostIps,
            _ => {
                if let Some(k) = keyed("metadata.labels['") {
                    PodField::Label(k)
                } else {
                    PodField::Annotation(keyed("metadata.annotations['")?)
                }
            }
        })
    }
}

// By hand: a derived externally tagged enum becomes a YAML tag (`!secretKeyRef`) in YAML output.
impl Serialize for EnvVarSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            EnvVarSource::ConfigMapKeyRef(selector) => {
                map.serialize_entry("configMapKeyRef", selector)?
            }
            EnvVarSource::SecretKeyRef(selector) => {
                map.serialize_entry("secretKeyRef", selector)?
            }
            EnvVarSource::FieldRef(field) => map.serialize_entry(
                "fieldRef",
                &std::collections::BTreeMap::from([("fieldPath", field.path())]),
            )?,
            EnvVarSource::ResourceFieldRef(r) => map.serialize_entry("resourceFieldRef", r)?,
        }
        map.end()
    }
}

/// A key of a named ConfigMap or Secret; `optional` references may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySelector {
    pub name: String,
    pub key: String,
    #[serde(skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// All keys of a ConfigMap or Secret as environment variables, with an optional name prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvFromSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(flatten)]
    pub source: EnvFromRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EnvFromRef {
    ConfigMapRef(NameRef),
    SecretRef(NameRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameRef {
    pub name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ResourceRequirements {
    #[serde(skip_serializing_if = "ResourceList::is_empty")]
    pub requests: ResourceList,
    #[serde(skip_serializing_if = "ResourceList::is_empty")]
    pub limits: ResourceList,
}

impl ResourceRequirements {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

/// Resource name -> quantity. Validation guarantees that `cpu` converts to millicores and
/// `memory` / `ephemeral-storage` to bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct ResourceList(pub(crate) BTreeMap<String, Quantity>);

impl ResourceList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, resource: &str) -> Option<&Quantity> {
        self.0.get(resource)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Quantity)> {
        self.0
            .iter()
            .map(|(name, quantity)| (name.as_str(), quantity))
    }

    /// `cpu` in millicores (`"500m"` -> 500, `"1"` -> 1000).
    pub fn cpu_millis(&self) -> Option<u64> {
        self.0.get("cpu").and_then(|q| q.to_millis().ok())
    }

    /// `memory` in bytes (`"64Mi"` -> 67108864).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.0.get("memory").and_then(|q| q.to_units().ok())
    }

    /// `ephemeral-storage` in bytes.
    pub fn ephemeral_storage_bytes(&self) -> Option<u64> {
        self.0
            .get("ephemeral-storage")
            .and_then(|q| q.to_units().ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

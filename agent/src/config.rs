//! Agent configuration: embedded defaults, an optional TOML file, and command-line flags on top.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Basic auth for one registry host, from the agent config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuthConfig {
    pub username: String,
    pub password: String,
}

/// Everything the agent needs to run. `AgentConfig::default()` is a working single-node cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub manifests_dir: PathBuf,
    pub api_socket: PathBuf,
    /// Volatile state (container state, shims): cleared by a reboot, like /run.
    pub run_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<SocketAddr>,
    pub join: Vec<String>,
    pub token: Option<String>,
    pub cgroup_parent: String,
    pub netns_dir: PathBuf,
    pub netns_prefix: String,
    pub crash_backoff_base: Duration,
    pub crash_backoff_max: Duration,
    pub crash_backoff_reset: Duration,
    pub image_pull_backoff_base: Duration,
    /// First delay before a pod's sandbox (volumes, network) is made again after it could not
    /// be, doubled up to `crash_backoff_max`.
    pub sandbox_backoff_base: Duration,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// Pod logs here instead of under each pod's directory in the data dir.
    pub log_dir: Option<PathBuf>,
    /// Containers stop writing logs while their filesystem has less free space than this
    /// (set at start: 5% of the filesystem, at most 50 MiB).
    pub log_min_free_bytes: u64,
    pub insecure_registries: Vec<String>,
    pub registry_auth: BTreeMap<String, RegistryAuthConfig>,
    pub labels: BTreeMap<String, String>,
    /// How long the manifests directory must be quiet before a changed file is read.
    pub manifest_debounce: Duration,
    /// How long a manifest file that is broken, or declares fewer objects than before, must be
    /// quiet before it is acted on (a half-written file is not a deletion).
    pub manifest_settle: Duration,
    /// Periodic reconcile, on top of the event-driven one.
    pub resync_interval: Duration,
    /// How often the disk emptyDir volumes with a sizeLimit are measured (a pod whose volume
    /// outgrew its limit is evicted); kubelet's housekeeping period by default.
    pub volume_check_interval: Duration,
    /// This node's pod subnet (a lone node's default; later handed out by the leader).
    pub pod_subnet: ipnet::Ipv4Net,
    /// The whole cluster's pod range (not masqueraded between nodes).
    pub cluster_cidr: ipnet::Ipv4Net,
    /// Where Services' ClusterIPs come from (routed to the bridge on every node).
    pub service_cidr: ipnet::Ipv4Net,
    /// Where node ports come from (and what a pinned `nodePort` must be in).
    pub service_node_port_range: skiff_manifests::NodePortRange,
    /// The cluster DNS domain (`<svc>.<ns>.svc.<domain>`).
    pub cluster_domain: String,
    /// The node's resolvers (kubelet's `--resolv-conf`): where the node's DNS relays names
    /// outside the cluster domain, and what pods with `dnsPolicy: Default` get.
    pub resolv_conf: PathBuf,
    /// The node bridge pods attach to.
    pub bridge: String,
    /// Masquerade pod traffic leaving the cluster range.
    pub masquerade: bool,
    /// Run the node side of pod networking inside this network namespace (test beds).
    pub node_netns: Option<PathBuf>,
    /// Pod networking (bridge, veth, IPAM); off gives pods a loopback-only namespace.
    pub pod_network: bool,
    /// How long a node may be NotReady before the leader places its pods elsewhere.
    pub eviction_delay: Duration,
    /// `pod_subnet` was given (flag or file); otherwise the leader hands one out.
    pub pod_subnet_set: bool,
    /// Rebuild a missing, empty or unopenable store and re-adopt the running containers.
    pub recover_store: bool,
    /// Extra gossip seeds: peers this node saw Ready before (from its store, not a flag).
    pub seeds: Vec<String>,
    /// Most processes a pod may run (its cgroup's pids.max, and each container's); 0 means
    /// no limit.
    pub pod_pids_limit: u64,
    /// Most pods the scheduler places on this node (its advertised pod capacity, kubelet's
    /// `--max-pods`).
    pub max_pods: u32,
    /// Gossip timings: `lan` (fast failure detection) or `wan` (slow or lossy links).
    pub gossip_profile: GossipProfileName,
}

/// The gossip timing presets a user can pick (`--gossip-profile`, `gossip-profile:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GossipProfileName {
    /// 1.3 s heartbeats: a dead node is NotReady everywhere within about 2.6 s.
    #[default]
    Lan,
    /// 2 s heartbeats and gentler verdicts, for LTE and other lossy or slow links.
    Wan,
}

impl GossipProfileName {
    pub fn profile(self) -> skiff_gossip::GossipProfile {
        match self {
            GossipProfileName::Lan => skiff_gossip::GossipProfile::Lan,
            GossipProfileName::Wan => skiff_gossip::GossipProfile::Wan,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: default_node_name(),
            data_dir: PathBuf::from("/var/lib/skiff"),
            manifests_dir: PathBuf::from("/etc/skiff/manifests"),
            api_socket: PathBuf::from(DEFAULT_API_SOCKET),
            run_dir: PathBuf::from("/run/skiff"),
            listen: SocketAddr::from(([0, 0, 0, 0], 7946)),
            advertise: None,
            join: Vec::new(),
            token: None,
            cgroup_parent: "/skiff".to_string(),
            netns_dir: PathBuf::from("/run/netns"),
            netns_prefix: "skiff-".to_string(),
            crash_backoff_base: Duration::from_secs(10),
            crash_backoff_max: Duration::from_secs(300),
            crash_backoff_reset: Duration::from_secs(600),
            image_pull_backoff_base: Duration::from_secs(10),
            sandbox_backoff_base: Duration::from_secs(1),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 3,
            log_dir: None,
            log_min_free_bytes: 0,
            insecure_registries: Vec::new(),
            registry_auth: BTreeMap::new(),
            labels: BTreeMap::new(),
            manifest_debounce: Duration::from_millis(30),
            manifest_settle: Duration::from_secs(2),
            resync_interval: Duration::from_millis(500),
            volume_check_interval: Duration::from_secs(10),
            pod_subnet: "10.42.0.0/24".parse().unwrap_or_default(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap_or_default(),
            service_cidr: crate::cluster::service::DEFAULT_SERVICE_CIDR
                .parse()
                .unwrap_or_default(),
            service_node_port_range: skiff_manifests::NodePortRange::DEFAULT,
            cluster_domain: crate::services::dns::DEFAULT_DOMAIN.to_string(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            bridge: "skiff0".to_string(),
            masquerade: true,
            node_netns: None,
            pod_network: true,
            eviction_delay: Duration::from_secs(1),
            pod_subnet_set: false,
            recover_store: false,
            seeds: Vec::new(),
            pod_pids_limit: DEFAULT_POD_PIDS_LIMIT,
            max_pods: DEFAULT_MAX_PODS,
            gossip_profile: GossipProfileName::Lan,
        }
    }
}

/// Default most processes per pod: bounds a fork bomb on a small device.
pub const DEFAULT_POD_PIDS_LIMIT: u64 = 4096;

/// Default pod capacity of a node (kubelet's).
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Where the CLI looks for the agent when neither `--socket` nor `SKIFF_SOCKET` says otherwise.
pub const DEFAULT_API_SOCKET: &str = "/run/skiff/skiff.sock";

fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".to_string())
}

/// The TOML config file; every field optional, unknown fields are an error naming the field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    pub node_name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub manifests_dir: Option<PathBuf>,
    pub api_socket: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub join: Option<Vec<String>>,
    pub token: Option<String>,
    pub cgroup_parent: Option<String>,
    pub netns_dir: Option<PathBuf>,
    pub netns_prefix: Option<String>,
    pub crash_backoff_base_ms: Option<u64>,
    pub crash_backoff_max_ms: Option<u64>,
    pub crash_backoff_reset_ms: Option<u64>,
    pub image_pull_backoff_base_ms: Option<u64>,
    pub sandbox_backoff_base_ms: Option<u64>,
    pub log_max_bytes: Option<u64>,
    pub log_max_files: Option<u32>,
    pub log_dir: Option<PathBuf>,
    pub insecure_registries: Option<Vec<String>>,
    pub registry_auth: Option<BTreeMap<String, RegistryAuthConfig>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub manifest_debounce_ms: Option<u64>,
    pub manifest_settle_ms: Option<u64>,
    pub eviction_delay_ms: Option<u64>,
    pub volume_check_interval_ms: Option<u64>,
    pub pod_subnet: Option<ipnet::Ipv4Net>,
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    pub service_cidr: Option<ipnet::Ipv4Net>,
    pub service_node_port_range: Option<skiff_manifests::NodePortRange>,
    pub cluster_domain: Option<String>,
    pub resolv_conf: Option<PathBuf>,
    pub bridge: Option<String>,
    pub masquerade: Option<bool>,
    pub node_netns: Option<PathBuf>,
    pub pod_network: Option<bool>,
    pub pod_pids_limit: Option<u64>,
    pub max_pods: Option<u32>,
    pub gossip_profile: Option<GossipProfileName>,
}

/// A config file that cannot be used, with the file named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a join token from `path` (`--token-file`, `token-file`): surrounding whitespace is
/// dropped; an unreadable or empty file is an error naming it.
pub fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "token file {} is empty; put the output of `skiff token create` in it",
            path.display()
        )));
    }
    Ok(token.to_string())
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Applies the file's settings over `config`.
    pub fn apply(self, config: &mut AgentConfig) {
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = self.$field {
                    config.$field = v;
                }
            };
        }
        set!(node_name);
        set!(data_dir);
        set!(manifests_dir);
        set!(api_socket);
        set!(run_dir);
        set!(listen);
        set!(join);
        set!(cgroup_parent);
        set!(netns_dir);
        set!(netns_prefix);
        set!(log_max_bytes);
        set!(log_max_files);
        if self.log_dir.is_some() {
            config.log_dir = self.log_dir;
        }
        set!(insecure_registries);
        set!(registry_auth);
        set!(labels);
        if self.pod_subnet.is_some() {
            config.pod_subnet_set = true;
        }
        set!(pod_subnet);
        set!(cluster_cidr);
        set!(service_cidr);
        set!(service_node_port_range);
        set!(cluster_domain);
        set!(resolv_conf);
        set!(bridge);
        set!(masquerade);
        set!(pod_network);
        set!(pod_pids_limit);
        set!(max_pods);
        set!(gossip_profile);
        if self.node_netns.is_some() {
            config.node_netns = self.node_netns;
        }
        if self.advertise.is_some() {
            config.advertise = self.advertise;
        }
        if self.token.is_some() {
            config.token = self.token;
        }
        let ms = Duration::from_millis;
        if let Some(v) = self.crash_backoff_base_ms {
            config.crash_backoff_base = ms(v);
        }
        if let Some(v) = self.crash_backoff_max_ms {
            config.crash_backoff_max = ms(v);
        }
        if let Some(v) = self.crash_backoff_reset_ms {
            config.crash_backoff_reset = ms(v);
        }
        if let Some(v) = self.image_pull_backoff_base_ms {
            config.image_pull_backoff_base = ms(v);
        }
        if let Some(v) = self.sandbox_backoff_base_ms {
            config.sandbox_backoff_base = ms(v);
        }
        if let Some(v) = self.eviction_delay_ms {
            config.eviction_delay = Duration::from_millis(v);
        }
        if let Some(v) = self.volume_check_interval_ms {
            config.volume_check_interval = ms(v);
        }
        if let Some(v) = self.manifest_debounce_ms {
            config.manifest_debounce = ms(v);
        }
        if let Some(v) = self.manifest_settle_ms {
            config.manifest_settle = ms(v);
        }
    }
}

impl AgentConfig {
    /// Checks values that would only fail later and less clearly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.cgroup_parent.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "cgroup-parent: must be an absolute path like /skiff (got {:?})",
                self.cgroup_parent
            )));
        }
        if self.node_name.is_empty() {
            return Err(ConfigError::Invalid("node-name: must not be empty".into()));
        }
        if self.service_cidr.contains(&self.cluster_cidr.network())
            || self.cluster_cidr.contains(&self.service_cidr.network())
        {
            return Err(ConfigError::Invalid(format!(
                "service-cidr: {} overlaps the cluster CIDR {} (pods and Services need separate ranges)",
                self.service_cidr, self.cluster_cidr
            )));
        }
        if let Err(e) = skiff_manifests::names::check_dns1123_subdomain(&self.cluster_domain) {
            return Err(ConfigError::Invalid(format!("cluster-domain: {e}")));
        }
        if self.service_node_port_range.contains(self.listen.port()) {
            return Err(ConfigError::Invalid(format!(
                "service-node-port-range: {} holds this node's gossip port {} (a NodePort Service given it would take the node's cluster traffic)",
                self.service_node_port_range,
                self.listen.port()
            )));
        }
        if self.service_cidr.prefix_len() > 30 {
            return Err(ConfigError::Invalid(format!(
                "service-cidr: {} is too small (at most /30)",
                self.service_cidr
            )));
        }
        if self.crash_backoff_base.is_zero() || self.crash_backoff_base > self.crash_backoff_max {
            return Err(ConfigError::Invalid(
                "crash-backoff-base-ms: must be > 0 and <= crash-backoff-max-ms".into(),
            ));
        }
        if self.volume_check_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "volume-check-interval-ms: must be > 0".into(),
            ));
        }
        if self.sandbox_backoff_base.is_zero() {
            return Err(ConfigError::Invalid(
                "sandbox-backoff-base-ms: must be > 0".into(),
            ));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 {
            return Err(ConfigError::Invalid(format!(
                "bridge: must be 1 to 15 characters (got {:?})",
                self.bridge
            )));
        }
        if self.pod_subnet.prefix_len() > 30 {
            return Err(ConfigError::Invalid(format!(
                "pod-subnet: {} has no room for pods (use /30 or larger)",
                self.pod_subnet
            )));
        }
        if let Some(ns) = &self.node_netns
            && ns.parent() == Some(self.netns_dir.as_path())
            && ns
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&self.netns_prefix))
        {
            return Err(ConfigError::Invalid(format!(
                "node-netns: {} starts with the pods' netns prefix {:?}: pod networking would remove it as a leftover; rename it",
                ns.display(),
                self.netns_prefix
            )));
        }
        if i64::try_from(self.pod_pids_limit).is_err() {
            return Err(ConfigError::Invalid(format!(
                "pod-pids-limit: too large (got {}); use 0 for no limit",
                self.pod_pids_limit
            )));
        }
        if self.max_pods == 0 {
            return Err(ConfigError::Invalid(
                "max-pods: must be >= 1 (cordon the node to place nothing on it)".into(),
            ));
        }
        if self.log_max_files == 0 {
            return Err(ConfigError::Invalid("log-max-files: must be >= 1".into()));
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("skiff.redb")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
    /// Where a pod's directory, volumes and logs are.
    pub fn pod_paths(&self, uid: &str) -> crate::reconciler::sandbox::PodPaths {
        crate::reconciler::sandbox::PodPaths::new(&self.pods_dir(), uid)
            .with_logs_root(self.log_dir.as_deref(), uid)
    }
    pub fn containers_state_dir(&self) -> PathBuf {
        self.run_dir.join("c")
    }
    /// Pod records mirrored beside the containers (what `--recover-store` reloads).
    pub fn pod_records_mirror_dir(&self) -> PathBuf {
        self.run_dir.join("pod-records")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design() {
        let c = AgentConfig::default();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/skiff"));
        assert_eq!(c.manifests_dir, PathBuf::from("/etc/skiff/manifests"));
        assert_eq!(c.api_socket, PathBuf::from("/run/skiff/skiff.sock"));
        assert_eq!(c.listen.port(), 7946);
        assert_eq!(c.crash_backoff_base, Duration::from_secs(10));
        assert_eq!(c.crash_backoff_max, Duration::from_secs(300));
        assert_eq!(c.sandbox_backoff_base, Duration::from_secs(1));
        assert_eq!(c.pod_subnet.to_string(), "10.42.0.0/24");
        assert_eq!(c.bridge, "skiff0");
        assert_eq!(c.pod_pids_limit, 4096);
        assert_eq!(c.max_pods, 110);
        c.validate().unwrap();
    }

    #[test]
    fn max_pods_from_the_file_and_zero_refused() {
        let f: ConfigFile = toml::from_str("max-pods = 250\n").unwrap();
        let mut c = AgentConfig::default();
        f.apply(&mut c);
        assert_eq!(c.max_pods, 250);
        c.validate().unwrap();
        c.max_pods = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("max-pods"), "{err}");
    }

    #[test]
    fn resolv_conf_from_the_file() {
        let mut c = AgentConfig::default();
        assert_eq!(c.resolv_conf, PathBuf::from("/etc/resolv.conf"));
        let f: ConfigFile =
            toml::from_str("resolv-conf = \"/run/systemd/resolve/resolv.conf\"\n").unwrap();
        f.apply(&mut c);
        assert_eq!(
            c.resolv_conf,
            PathBuf::from("/run/systemd/resolve/resolv.conf")
        );
    }

    #[test]
    fn node_port_range_from_the_file_and_nonsense_refused_with_the_key() {
        let mut c = AgentConfig::default();
        assert_eq!(c.service_node_port_range.to_string(), "30000-32767");
        let f: ConfigFile = toml::from_str("service-node-port-range = \"8000-8999\"\n").unwrap();
        f.apply(&mut c);
        assert_eq!(c.service_node_port_range.to_string(), "8000-8999");
        let err = toml::from_str::<ConfigFile>("service-node-port-range = \"9000-8000\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("service-node-port-range") && err.contains("first port is above"),
            "{err}"
        );
        c.validate().unwrap();
        c.service_node_port_range = "7000-8000".parse().unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("gossip port 7946"), "{err}");
    }

    #[test]
    fn pod_pids_limit_from_the_file_and_its_bounds() {
        let f: ConfigFile = toml::from_str("pod-pids-limit = 0\n").unwrap();
        let mut c = AgentConfig::default();
        f.apply(&mut c);
        assert_eq!(c.pod_pids_limit, 0);
        c.validate().unwrap();
        c.pod_pids_limit = u64::MAX;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("pod-pids-limit"), "{err}");
    }

    #[test]
    fn file_overrides_and_rejects_unknown_fields() {
        let f: ConfigFile =
            toml::from_str("data-dir = \"/tmp/x\"\ncrash-backoff-base-ms = 100\n").unwrap();
        let mut c = AgentConfig::default();
        f.apply(&mut c);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.crash_backoff_base, Duration::from_millis(100));
        let err = toml::from_str::<ConfigFile>("dataa-dir = 1").unwrap_err();
        assert!(err.to_string().contains("dataa-dir"), "{err}");
    }

    #[test]
    fn sandbox_backoff_from_the_file_and_never_zero() {
        let f: ConfigFile = toml::from_str("sandbox-backoff-base-ms = 250\n").unwrap();
        let mut c = AgentConfig::default();
        f.apply(&mut c);
        assert_eq!(c.sandbox_backoff_base, Duration::from_millis(250));
        assert_eq!(c.image_pull_backoff_base, Duration::from_secs(10));
        c.validate().unwrap();
        c.sandbox_backoff_base = Duration::ZERO;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("sandbox-backoff-base-ms"), "{err}");
    }

    #[test]
    fn node_netns_under_the_pod_prefix_is_refused() {
        let c = AgentConfig {
            node_netns: Some(PathBuf::from("/run/netns/skiff-node")),
            ..AgentConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("node-netns"));
        let ok = AgentConfig {
            node_netns: Some(PathBuf::from("/run/netns/testnode")),
            ..AgentConfig::default()
        };
        ok.validate().unwrap();
    }

    #[test]
    fn token_file_is_trimmed_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  skiff1.abc\n\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "skiff1.abc");
        std::fs::write(&path, " \n").unwrap();
        let empty = read_token_file(&path).unwrap_err().to_string();
        assert!(
            empty.contains("is empty") && empty.contains("token"),
            "{empty}"
        );
        let missing = dir.path().join("missing");
        let err = read_token_file(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn relative_cgroup_parent_is_refused() {
        let c = AgentConfig {
            cgroup_parent: "skiff".into(),
            ..AgentConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("cgroup-parent")
        );
    }
}

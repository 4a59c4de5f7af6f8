//! Cluster membership for the agent: the node's identity (a new cluster's CA, or a certificate
//! obtained with a join token), the gossip node that publishes this node's metadata and lists
//! every node, and runtime label changes (`skiff label node`), persisted in the data dir.

use crate::config::AgentConfig;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use skiff_gossip::{
    Capacity, GossipConfig, GossipDeps, GossipError, GossipHandle, GossipNode, MetadataWriter,
    NodeIdentity, NodeMetadata, NodeTaint, Token, join_cluster,
};
use skiff_manifests::names::NameError;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The node's identity: the one in the data dir, else a certificate obtained with `--token`
/// from a `--join` peer, else a new cluster (this node holds its CA).
pub async fn identity(config: &AgentConfig) -> anyhow::Result<NodeIdentity> {
    if let Some(identity) = NodeIdentity::load(&config.data_dir)? {
        if identity.node_name() != config.node_name {
            bail!(
                "data dir {} belongs to node {:?}, not {:?}: use --node-name {} or another --data-dir",
                config.data_dir.display(),
                identity.node_name(),
                config.node_name,
                identity.node_name()
            );
        }
        return Ok(identity);
    }
    if config.join.is_empty() {
        tracing::info!("no --join given: starting a new cluster");
        return Ok(NodeIdentity::load_or_create_cluster(
            &config.data_dir,
            &config.node_name,
        )?);
    }
    let token: Token = config
        .token
        .as_deref()
        .context("--join needs --token (run `skiff token create` on a cluster node)")?
        .parse()
        .context("--token")?;
    let mut last_error = None;
    for peer in &config.join {
        let Some(addr) = resolve(peer) else {
            last_error = Some(anyhow::anyhow!("cannot resolve {peer}"));
            continue;
        };
        match join_cluster(addr, &token, &config.node_name, &config.data_dir).await {
            Ok(identity) => {
                tracing::info!("joined the cluster through {peer}");
                return Ok(identity);
            }
            Err(e) => {
                tracing::warn!("join through {peer}: {e}");
                last_error = Some(e.into());
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no --join peer answered")))
}

fn resolve(peer: &str) -> Option<SocketAddr> {
    peer.to_socket_addrs().ok()?.next()
}

/// The address other nodes dial: `--advertise`, else the listen address, else (listening on
/// every address) the first non-loopback IPv4 address of an interface that is up.
pub fn advertise_addr(config: &AgentConfig) -> SocketAddr {
    if let Some(a) = config.advertise {
        return a;
    }
    if !config.listen.ip().is_unspecified() {
        return config.listen;
    }
    let ip = nix::ifaddrs::getifaddrs()
        .ok()
        .and_then(|addrs| {
            addrs
                .filter(|a| {
                    a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                        && !a
                            .flags
                            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
                })
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .next()
        })
        .unwrap_or(Ipv4Addr::LOCALHOST);
    SocketAddr::new(IpAddr::V4(ip), config.listen.port())
}

/// What this node publishes: capacity, labels, version, readiness.
pub fn metadata(config: &AgentConfig) -> NodeMetadata {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let scheduling = load_scheduling(&config.data_dir);
    NodeMetadata {
        capacity: Capacity {
            cpu_millis: cpus * 1000,
            memory_bytes: memory,
            pods: config.max_pods,
        },
        labels: with_well_known(
            load_overrides(&config.data_dir).apply(&config.labels),
            &config.node_name,
        ),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        ready: true,
        cordoned: scheduling.0,
        draining: scheduling.1,
        taints: load_taints(&config.data_dir),
    }
}

/// Kubernetes' well-known node labels: `kubernetes.io/hostname` (the node's name),
/// `kubernetes.io/os` and `kubernetes.io/arch` (as Go names them), unless the node's labels
/// set them already.
pub fn with_well_known(
    mut labels: BTreeMap<String, String>,
    node_name: &str,
) -> BTreeMap<String, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    for (key, value) in [
        (skiff_manifests::model::pod::HOSTNAME_LABEL, node_name),
        ("kubernetes.io/os", std::env::consts::OS),
        ("kubernetes.io/arch", arch),
    ] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }
    labels
}

/// This node's taints (`skiff taint node`), kept across restarts.
const TAINTS_FILE: &str = "node-taints.json";

fn load_taints(data_dir: &Path) -> Vec<NodeTaint> {
    match std::fs::read(data_dir.join(TAINTS_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "ignoring {}: {e} (the next `skiff taint node` rewrites it)",
                data_dir.join(TAINTS_FILE).display()
            );
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Applies `skiff taint node` changes (pure): `KEY[=VALUE]:EFFECT` sets a taint (one per key
/// and effect; a new value replaces the old and restarts its clock), `KEY:EFFECT-` removes
/// that one and `KEY-` every taint of the key. Effects: NoSchedule, PreferNoSchedule,
/// NoExecute.
pub fn apply_taint_changes(
    current: &[NodeTaint],
    changes: &[String],
    now_ms: u64,
) -> Result<Vec<NodeTaint>, NodeMetaError> {
    let bad = |change: &str, why: &str| NodeMetaError::Taint(format!("{change:?}: {why}"));
    let effect_of = |change: &str, text: &str| {
        skiff_manifests::model::pod::TaintEffect::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(name, _)| name.to_string())
            .ok_or_else(|| {
                bad(
                    change,
                    "the effect must be NoSchedule, PreferNoSchedule or NoExecute",
                )
            })
    };
    let mut taints = current.to_vec();
    for change in changes {
        if let Some(target) = change.strip_suffix('-') {
            let (key, effect) = match target.split_once(':') {
                Some((key, effect)) => (key, Some(effect_of(change, effect)?)),
                None => (target, None),
            };
            let before = taints.len();
            taints.retain(|t| !(t.key == key && effect.as_ref().is_none_or(|e| *e == t.effect)));
            if taints.len() == before {
                return Err(bad(change, "no such taint on this node"));
            }
            continue;
        }
        let (pair, effect) = change
            .rsplit_once(':')
            .ok_or_else(|| bad(change, "must be KEY[=VALUE]:EFFECT, KEY:EFFECT- or KEY-"))?;
        let effect = effect_of(change, effect)?;
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        skiff_manifests::names::check_label_key(key).map_err(|e| bad(change, &e.to_string()))?;
        if !value.is_empty() {
            skiff_manifests::names::check_label_value(value)
                .map_err(|e| bad(change, &e.to_string()))?;
        }
        match taints
            .iter_mut()
            .find(|t| t.key == key && t.effect == effect)
        {
            Some(t) if t.value == value => {}
            Some(t) => {
                t.value = value.to_string();
                t.added_ms = now_ms;
            }
            None => taints.push(NodeTaint {
                key: key.to_string(),
                value: value.to_string(),
                effect,
                added_ms: now_ms,
            }),
        }
    }
    Ok(taints)
}

/// File in the data dir that keeps `cordoned` or `draining` across restarts.
const SCHEDULING_FILE: &str = "scheduling";

/// (cordoned, draining) as last set with `skiff cordon|drain|uncordon`.
pub fn load_scheduling(data_dir: &std::path::Path) -> (bool, bool) {
    match std::fs::read_to_string(data_dir.join(SCHEDULING_FILE)).as_deref() {
        Ok("cordoned") => (true, false),
        Ok("draining") => (true, true),
        _ => (false, false),
    }
}

/// Starts gossip with the node's identity; the `--join` peers are the seeds. Authenticated rpc
/// connections from other nodes go to `rpc_sink`.
pub async fn start(
    config: &AgentConfig,
    rpc_sink: Option<skiff_gossip::RpcSink>,
) -> anyhow::Result<GossipHandle> {
    let identity = identity(config).await?;
    let mut gossip = GossipConfig::new(config.node_name.clone(), config.listen);
    // A specific listen address (port 0 included) is advertised as bound.
    gossip.advertise_addr = (config.advertise.is_some() || config.listen.ip().is_unspecified())
        .then(|| advertise_addr(config));
    gossip.seeds = config.join.iter().chain(&config.seeds).cloned().collect();
    gossip.metadata = metadata(config);
    gossip.profile = config.gossip_profile.profile();
    let handle = GossipNode::spawn(gossip, GossipDeps { identity, rpc_sink })
        .await
        .with_context(|| format!("cannot start gossip on {}", config.listen))?;
    tracing::info!(
        "gossip on {} (advertised {})",
        config.listen,
        handle.advertise_addr()
    );
    Ok(handle)
}

/// Runtime label changes over the config's labels, in `<data_dir>/node-labels.json`.
const LABELS_FILE: &str = "node-labels.json";

/// Labels set or removed at runtime; applied over the config's labels at every start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOverrides {
    pub set: BTreeMap<String, String>,
    pub removed: BTreeSet<String>,
}

impl LabelOverrides {
    /// The effective labels: `base` (from the config) with these changes applied.
    pub fn apply(&self, base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = base.clone();
        labels.retain(|k, _| !self.removed.contains(k));
        labels.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels
    }
}

/// One `skiff label node` invocation: `KEY=VALUE` to set, `KEY-` to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelChange {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
    /// Allow changing the value of a label that already exists (as kubectl's `--overwrite`).
    pub overwrite: bool,
}

/// Why this node's labels or scheduling state were not changed; the message is for the user.
#[derive(Debug, thiserror::Error)]
pub enum NodeMetaError {
    #[error("label {key:?}: {source}")]
    LabelKey { key: String, source: NameError },
    #[error("label {key}={value:?}: {source}")]
    LabelValue {
        key: String,
        value: String,
        source: NameError,
    },
    #[error("label {0:?} is both set and removed")]
    SetAndRemoved(String),
    #[error("label {key:?} already has the value {old:?}: use --overwrite to change it")]
    WouldOverwrite { key: String, old: String },
    #[error(
        "node {node:?} is not this node ({this:?}): a node's labels are written by that node itself; run `skiff label node` against {node:?}'s own socket (labelling other nodes through this one is not supported yet)"
    )]
    OtherNode { node: String, this: String },
    #[error("labels too large: {0}")]
    TooLarge(#[source] GossipError),
    #[error("taint {0}")]
    Taint(String),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error("cannot save labels in {}: {source}", path.display())]
    SaveLabels {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save {}: {source}", path.display())]
    SaveScheduling {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot publish {what}: {source}")]
    Publish {
        what: &'static str,
        source: GossipError,
    },
}

/// Applies `change` to the current labels and overrides (pure); the message is for the user.
pub fn apply_label_change(
    labels: &BTreeMap<String, String>,
    overrides: &LabelOverrides,
    change: &LabelChange,
) -> Result<(BTreeMap<String, String>, LabelOverrides), NodeMetaError> {
    let mut labels = labels.clone();
    let mut overrides = overrides.clone();
    for (key, value) in &change.set {
        skiff_manifests::names::check_label_key(key).map_err(|source| NodeMetaError::LabelKey {
            key: key.clone(),
            source,
        })?;
        skiff_manifests::names::check_label_value(value).map_err(|source| {
            NodeMetaError::LabelValue {
                key: key.clone(),
                value: value.clone(),
                source,
            }
        })?;
        if change.remove.contains(key) {
            return Err(NodeMetaError::SetAndRemoved(key.clone()));
        }
        if let Some(old) = labels.get(key)
            && old != value
            && !change.overwrite
        {
            return Err(NodeMetaError::WouldOverwrite {
                key: key.clone(),
                old: old.clone(),
            });
        }
        labels.insert(key.clone(), value.clone());
        overrides.removed.remove(key);
        overrides.set.insert(key.clone(), value.clone());
    }
    for key in &change.remove {
        labels.remove(key);
        overrides.set.remove(key);
        overrides.removed.insert(key.clone());
    }
    Ok((labels, overrides))
}

fn load_overrides(data_dir: &Path) -> LabelOverrides {
    let path = data_dir.join(LABELS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "ignoring {}: {e} (the next `skiff label node` rewrites it)",
                path.display()
            );
            LabelOverrides::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => LabelOverrides::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            LabelOverrides::default()
        }
    }
}

fn save_overrides(data_dir: &Path, overrides: &LabelOverrides) -> std::io::Result<()> {
    let path = data_dir.join(LABELS_FILE);
    let tmp = data_dir.join(format!("{LABELS_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(overrides).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// This node's published metadata and its one writer in the agent (label changes go here).
#[derive(Clone)]
pub struct NodeMeta {
    node_name: String,
    data_dir: PathBuf,
    writer: MetadataWriter,
    state: Arc<tokio::sync::Mutex<(NodeMetadata, LabelOverrides)>>,
}

impl NodeMeta {
    /// Starts from what [`start`] published (config labels plus persisted changes).
    pub fn new(config: &AgentConfig, writer: MetadataWriter) -> Self {
        Self {
            node_name: config.node_name.clone(),
            data_dir: config.data_dir.clone(),
            writer,
            state: Arc::new(tokio::sync::Mutex::new((
                metadata(config),
                load_overrides(&config.data_dir),
            ))),
        }
    }

    /// Changes this node's labels: checked, persisted, then published. Only the local node's
    /// own name is accepted (a node is the only writer of its metadata). Returns the labels.
    pub async fn label(
        &self,
        node: &str,
        change: &LabelChange,
    ) -> Result<BTreeMap<String, String>, NodeMetaError> {
        if node != self.node_name {
            return Err(NodeMetaError::OtherNode {
                node: node.to_string(),
                this: self.node_name.clone(),
            });
        }
        let mut state = self.state.lock().await;
        let (labels, overrides) = apply_label_change(&state.0.labels, &state.1, change)?;
        let mut metadata = state.0.clone();
        metadata.labels = labels.clone();
        skiff_gossip::check_entry("node/meta", &serde_json::to_string(&metadata)?)
            .map_err(NodeMetaError::TooLarge)?;
        save_overrides(&self.data_dir, &overrides).map_err(|source| NodeMetaError::SaveLabels {
            path: self.data_dir.join(LABELS_FILE),
            source,
        })?;
        self.writer
            .set(&metadata)
            .await
            .map_err(|source| NodeMetaError::Publish {
                what: "labels",
                source,
            })?;
        *state = (metadata, overrides);
        Ok(labels)
    }

    /// Sets or removes this node's taints: checked, persisted, then published. Only the local
    /// node's own name is accepted. Returns the taints.
    pub async fn taint(
        &self,
        node: &str,
        changes: &[String],
    ) -> Result<Vec<NodeTaint>, NodeMetaError> {
        if node != self.node_name {
            return Err(NodeMetaError::OtherNode {
                node: node.to_string(),
                this: self.node_name.clone(),
            });
        }
        let mut state = self.state.lock().await;
        let now = crate::pod::now_millis();
        let taints = apply_taint_changes(&state.0.taints, changes, now)?;
        let mut metadata = state.0.clone();
        metadata.taints = taints.clone();
        skiff_gossip::check_entry("node/meta", &serde_json::to_string(&metadata)?)
            .map_err(NodeMetaError::TooLarge)?;
        let path = self.data_dir.join(TAINTS_FILE);
        std::fs::write(&path, serde_json::to_vec(&taints)?)
            .map_err(|source| NodeMetaError::SaveScheduling { path, source })?;
        self.writer
            .set(&metadata)
            .await
            .map_err(|source| NodeMetaError::Publish {
                what: "taints",
                source,
            })?;
        state.0 = metadata;
        Ok(taints)
    }

    /// Cordons (no new pods), drains (cordoned, pods move elsewhere) or uncordons this node;
    /// persisted, then published.
    pub async fn set_scheduling(
        &self,
        cordoned: bool,
        draining: bool,
    ) -> Result<(), NodeMetaError> {
        let mut state = self.state.lock().await;
        let file = self.data_dir.join(SCHEDULING_FILE);
        let written = match (cordoned, draining) {
            (_, true) => std::fs::write(&file, "draining"),
            (true, false) => std::fs::write(&file, "cordoned"),
            (false, false) => match std::fs::remove_file(&file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        written.map_err(|source| NodeMetaError::SaveScheduling { path: file, source })?;
        let mut metadata = state.0.clone();
        metadata.cordoned = cordoned || draining;
        metadata.draining = draining;
        self.writer
            .set(&metadata)
            .await
            .map_err(|source| NodeMetaError::Publish {
                what: "the node's state",
                source,
            })?;
        state.0 = metadata;
        Ok(())
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_changes_table() {
        let t = |key: &str, value: &str, effect: &str, at: u64| NodeTaint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
            added_ms: at,
        };
        let changes = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let start = vec![
            t("gpu", "yes", "NoSchedule", 1),
            t("gpu", "", "NoExecute", 1),
        ];
        let ok: Vec<(&[&str], Vec<NodeTaint>)> = vec![
            (&["edge=true:PreferNoSchedule"], {
                let mut v = start.clone();
                v.push(t("edge", "true", "PreferNoSchedule", 9));
                v
            }),
            // The same taint again keeps its time; a new value restarts it.
            (&["gpu=yes:NoSchedule"], start.clone()),
            (
                &["gpu=no:NoSchedule"],
                vec![
                    t("gpu", "no", "NoSchedule", 9),
                    t("gpu", "", "NoExecute", 1),
                ],
            ),
            (&["gpu:NoExecute-"], vec![t("gpu", "yes", "NoSchedule", 1)]),
            (&["gpu-"], vec![]),
            (&["dedicated:NoSchedule"], {
                let mut v = start.clone();
                v.push(t("dedicated", "", "NoSchedule", 9));
                v
            }),
        ];
        for (c, want) in ok {
            assert_eq!(
                apply_taint_changes(&start, &changes(c), 9).unwrap(),
                want,
                "{c:?}"
            );
        }
        for (c, why) in [
            ("gpu=yes", "must be KEY[=VALUE]:EFFECT"),
            ("gpu=yes:NoRun", "the effect must be"),
            ("bad key:NoSchedule", "\"bad key:NoSchedule\""),
            ("other-", "no such taint"),
            ("gpu:PreferNoSchedule-", "no such taint"),
        ] {
            let e = apply_taint_changes(&start, &changes(&[c]), 9)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{c}: {e}");
        }
    }

    #[test]
    fn well_known_labels_are_there_to_match() {
        let labels = with_well_known(std::collections::BTreeMap::new(), "edge-1");
        assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert!(!labels["kubernetes.io/arch"].is_empty());
        // A label the node sets itself wins.
        let own = std::collections::BTreeMap::from([(
            "kubernetes.io/hostname".to_string(),
            "custom".to_string(),
        )]);
        let labels = with_well_known(own, "edge-1");
        assert_eq!(labels["kubernetes.io/hostname"], "custom");
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_changes_set_remove_and_need_overwrite() {
        let base = map(&[("zone", "a"), ("disk", "ssd")]);
        let change = LabelChange {
            set: map(&[("gpu", "yes")]),
            remove: vec!["disk".into()],
            overwrite: false,
        };
        let (labels, overrides) =
            apply_label_change(&base, &LabelOverrides::default(), &change).unwrap();
        assert_eq!(labels, map(&[("zone", "a"), ("gpu", "yes")]));
        // Persisted overrides rebuild the same labels from the config's at the next start.
        assert_eq!(overrides.apply(&base), labels);

        let clash = LabelChange {
            set: map(&[("zone", "b")]),
            ..LabelChange::default()
        };
        let e = apply_label_change(&labels, &overrides, &clash).unwrap_err();
        assert!(e.to_string().contains("--overwrite"), "{e}");
        let same = LabelChange {
            set: map(&[("zone", "a")]),
            ..LabelChange::default()
        };
        assert!(apply_label_change(&labels, &overrides, &same).is_ok());
        let (labels, overrides) = apply_label_change(
            &labels,
            &overrides,
            &LabelChange {
                overwrite: true,
                ..clash
            },
        )
        .unwrap();
        assert_eq!(labels["zone"], "b");
        assert_eq!(overrides.apply(&base), labels);
    }

    #[test]
    fn label_changes_reject_bad_keys_and_values() {
        let none = LabelOverrides::default();
        for (k, v) in [("bad key", "x"), ("ok", "bad value!"), ("", "x")] {
            let change = LabelChange {
                set: map(&[(k, v)]),
                ..LabelChange::default()
            };
            assert!(
                apply_label_change(&BTreeMap::new(), &none, &change).is_err(),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn overrides_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_overrides(dir.path()), LabelOverrides::default());
        let overrides = LabelOverrides {
            set: map(&[("a", "1")]),
            removed: ["b".to_string()].into(),
        };
        save_overrides(dir.path(), &overrides).unwrap();
        assert_eq!(load_overrides(dir.path()), overrides);
    }
}

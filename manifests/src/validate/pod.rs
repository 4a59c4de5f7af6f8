//! Validation of a pod spec: container lists and unique names, restart policy, grace period,
//! host network, node selector, security context and volumes. Each container is checked in
//! `validate::container`.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FieldPath, Problems};
use crate::model::object::Kind;
use crate::model::pod::{
    ConfigMapVolume, Container, DEFAULT_VOLUME_MODE, EmptyDirVolume, HostPathType, HostPathVolume,
    KeyToPath, PodSpec, RestartPolicy, SecretVolume, StorageMedium, Volume, VolumeSource,
};
use crate::names;
use crate::quantity::Quantity;
use crate::raw::{List, RawKeyToPath, RawPodSpec, RawVolume};

use super::container::container;
use super::security::pod_security_context;
use super::workloads::check_template_restart_policy;
use super::{check, elements, file_mode, labels, one_of, required_string};

/// Default grace period between SIGTERM and SIGKILL, as in Kubernetes.
const DEFAULT_GRACE_SECONDS: u64 = 30;

/// Where the pod spec sits: a bare Pod or the template of a Deployment or DaemonSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodContext {
    Pod,
    Template(Kind),
}

pub(crate) fn pod_spec(
    raw: RawPodSpec,
    path: &FieldPath,
    context: PodContext,
    problems: &mut Problems,
) -> Option<PodSpec> {
    let (volumes, volume_names) = volumes(raw.volumes, &path.child("volumes"), problems);
    let host_network = raw.host_network.unwrap_or(false);
    let enable_service_links = raw.enable_service_links.unwrap_or(true);

    let containers_path = path.child("containers");
    let init_path = path.child("initContainers");
    if raw.containers.as_ref().is_none_or(|list| list.is_empty()) {
        problems.error(&containers_path, "must have at least one container");
    }
    let mut seen_names: BTreeMap<String, String> = BTreeMap::new();
    let init_containers = containers(
        raw.init_containers,
        &init_path,
        &volume_names,
        host_network,
        &mut seen_names,
        problems,
    );
    let containers = containers(
        raw.containers,
        &containers_path,
        &volume_names,
        host_network,
        &mut seen_names,
        problems,
    );
    for (item_path, c) in &init_containers {
        if !c.lifecycle.is_empty() {
            problems.error(
                &item_path.child("lifecycle"),
                if c.sidecar {
                    "not supported yet on a sidecar (restartPolicy: Always)"
                } else {
                    "may not be set for init containers"
                },
            );
        }
    }
    for (item_path, c) in &containers {
        if c.sidecar {
            problems.error(
                &item_path.child("restartPolicy"),
                "only init containers may set restartPolicy (a native sidecar); the pod's restartPolicy applies here",
            );
        }
    }
    check_host_ports(&containers, problems);
    let init_containers = init_containers.into_iter().map(|(_, c)| c).collect();
    let containers = containers.into_iter().map(|(_, c)| c).collect();

    let policy_path = path.child("restartPolicy");
    let restart_policy = match raw.restart_policy {
        None => Some(RestartPolicy::Always),
        Some(text) => one_of(
            &text,
            &[
                ("Always", RestartPolicy::Always),
                ("OnFailure", RestartPolicy::OnFailure),
                ("Never", RestartPolicy::Never),
            ],
            &policy_path,
            problems,
        ),
    };
    if let (Some(policy), PodContext::Template(kind)) = (restart_policy, context) {
        check_template_restart_policy(policy, kind, &policy_path, problems);
    }

    let grace_path = path.child("terminationGracePeriodSeconds");
    let grace = match raw.termination_grace_period_seconds {
        None => Some(DEFAULT_GRACE_SECONDS),
        Some(seconds) => match u64::try_from(seconds) {
            Ok(seconds) => Some(seconds),
            Err(_) => {
                problems.error(&grace_path, format!("must be >= 0 (got {seconds})"));
                None
            }
        },
    };

    let node_selector = labels(raw.node_selector, &path.child("nodeSelector"), problems);
    let security_context = pod_security_context(
        raw.security_context,
        &path.child("securityContext"),
        problems,
    );
    let hostname = super::dns::label(raw.hostname, &path.child("hostname"), problems);
    let subdomain = super::dns::label(raw.subdomain, &path.child("subdomain"), problems);
    let (dns_policy, dns_config) = super::dns::dns(raw.dns_policy, raw.dns_config, path, problems);
    let host_aliases =
        super::dns::host_aliases(raw.host_aliases, &path.child("hostAliases"), problems);
    Some(PodSpec {
        init_containers,
        containers,
        restart_policy: restart_policy?,
        termination_grace_period_seconds: grace?,
        volumes,
        host_network,
        enable_service_links,
        node_selector,
        security_context,
        hostname,
        subdomain,
        dns_policy,
        dns_config,
        host_aliases,
    })
}

fn containers(
    list: Option<List<crate::raw::RawContainer>>,
    path: &FieldPath,
    volume_names: &BTreeSet<String>,
    host_network: bool,
    seen_names: &mut BTreeMap<String, String>,
    problems: &mut Problems,
) -> Vec<(FieldPath, Container)> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        if let Some(name) = raw.name.clone().filter(|name| !name.is_empty()) {
            if let Some(first) = seen_names.get(&name) {
                problems.error(
                    &item_path.child("name"),
                    format!("duplicate container name {name:?} (also used by {first})"),
                );
            } else {
                seen_names.insert(name, item_path.as_str().to_string());
            }
        }
        if let Some(checked) = container(raw, &item_path, volume_names, host_network, problems) {
            out.push((item_path, checked));
        }
    }
    out
}

/// No two containers of a pod may claim the same host port and protocol.
fn check_host_ports(containers: &[(FieldPath, Container)], problems: &mut Problems) {
    let mut seen = BTreeSet::new();
    for (container_path, container) in containers {
        for (port_index, port) in container.ports.iter().enumerate() {
            let Some(host_port) = port.host_port else {
                continue;
            };
            if !seen.insert((host_port, port.protocol as u8)) {
                let port_path = container_path.child("ports").index(port_index);
                problems.error(
                    &port_path.child("hostPort"),
                    format!(
                        "host port {host_port}/{} is already used by another container",
                        port.protocol.as_str()
                    ),
                );
            }
        }
    }
}

/// The valid volumes, and the names of all volumes (valid or not) for checking mounts.
fn volumes(
    list: Option<List<RawVolume>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> (Vec<Volume>, BTreeSet<String>) {
    let mut out: Vec<Volume> = Vec::new();
    let mut all_names = BTreeSet::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let name_path = item_path.child("name");
        let name = required_string(raw.name, &name_path, problems);
        if let Some(name) = &name
            && check(names::check_dns1123_label(name), &name_path, problems)
            && !all_names.insert(name.clone())
        {
            problems.error(&name_path, format!("duplicate volume name {name:?}"));
        }
        let mut sources = Vec::new();
        if let Some(empty_dir) = raw.empty_dir {
            let source_path = item_path.child("emptyDir");
            let medium = match empty_dir.medium.as_deref() {
                None => Some(StorageMedium::Default),
                Some(text) => one_of(
                    text,
                    &[
                        ("", StorageMedium::Default),
                        ("Memory", StorageMedium::Memory),
                    ],
                    &source_path.child("medium"),
                    problems,
                ),
            };
            let size_limit = empty_dir
                .size_limit
                .and_then(|text| {
                    byte_quantity(&text.0, &source_path.child("sizeLimit"), problems).map(Some)
                })
                .unwrap_or(None);
            sources.push((
                "emptyDir",
                medium.map(|medium| VolumeSource::EmptyDir(EmptyDirVolume { medium, size_limit })),
            ));
        }
        if let Some(host_path) = raw.host_path {
            let source_path = item_path.child("hostPath");
            let path_path = source_path.child("path");
            let host = required_string(host_path.path, &path_path, problems);
            if let Some(host) = &host
                && !host.starts_with('/')
            {
                problems.error(
                    &path_path,
                    format!("must be an absolute path (got {host:?})"),
                );
            }
            let type_ = match host_path.type_.as_deref() {
                None => Some(HostPathType::Unset),
                Some(text) => one_of(
                    text,
                    &HostPathType::ALL,
                    &source_path.child("type"),
                    problems,
                ),
            };
            let source = host
                .zip(type_)
                .map(|(path, type_)| VolumeSource::HostPath(HostPathVolume { path, type_ }));
            sources.push(("hostPath", source));
        }
        if let Some(config_map) = raw.config_map {
            let source_path = item_path.child("configMap");
            let name = referenced_name(config_map.name, &source_path.child("name"), problems);
            let items = key_to_paths(config_map.items, &source_path.child("items"), problems);
            let mode = default_mode(
                config_map.default_mode,
                &source_path.child("defaultMode"),
                problems,
            );
            let source = name.zip(mode).map(|(name, default_mode)| {
                VolumeSource::ConfigMap(ConfigMapVolume {
                    name,
                    items,
                    default_mode,
                    optional: config_map.optional.unwrap_or(false),
                })
            });
            sources.push(("configMap", source));
        }
        if let Some(secret) = raw.secret {
            let source_path = item_path.child("secret");
            let name = referenced_name(
                secret.secret_name,
                &source_path.child("secretName"),
                problems,
            );
            let items = key_to_paths(secret.items, &source_path.child("items"), problems);
            let mode = default_mode(
                secret.default_mode,
                &source_path.child("defaultMode"),
                problems,
            );
            let source = name.zip(mode).map(|(secret_name, default_mode)| {
                VolumeSource::Secret(SecretVolume {
                    secret_name,
                    items,
                    default_mode,
                    optional: secret.optional.unwrap_or(false),
                })
            });
            sources.push(("secret", source));
        }
        match sources.len() {
            0 => problems.error(
                &item_path,
                "must set one volume source: emptyDir, hostPath, configMap or secret (others are not supported)",
            ),
            1 => {}
            _ => {
                let kinds: Vec<&str> = sources.iter().map(|(kind, _)| *kind).collect();
                problems.error(&item_path, format!("must set only one volume source (got {})", kinds.join(", ")));
            }
        }
        if let (Some(name), Some((_, Some(source)))) = (name, sources.pop()) {
            out.push(Volume { name, source });
        }
    }
    (out, all_names)
}

/// The name of a ConfigMap or Secret that something refers to.
pub(crate) fn referenced_name(
    name: Option<String>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<String> {
    let name = required_string(name, path, problems)?;
    check(names::check_dns1123_subdomain(&name), path, problems).then_some(name)
}

fn default_mode(
    mode: Option<crate::raw::FileMode>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<u32> {
    match mode {
        None => Some(DEFAULT_VOLUME_MODE),
        Some(mode) => file_mode(mode.0, path, problems),
    }
}

fn key_to_paths(
    list: Option<List<RawKeyToPath>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<KeyToPath> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let key_path = item_path.child("key");
        let key = required_string(raw.key, &key_path, problems)
            .filter(|key| check(names::check_config_key(key), &key_path, problems));
        let file_path = item_path.child("path");
        let file = required_string(raw.path, &file_path, problems)
            .filter(|file| check(names::check_relative_path(file), &file_path, problems));
        let mode = match raw.mode {
            None => Some(None),
            Some(mode) => file_mode(mode.0, &item_path.child("mode"), problems).map(Some),
        };
        if let (Some(key), Some(path), Some(mode)) = (key, file, mode) {
            out.push(KeyToPath { key, path, mode });
        }
    }
    out
}

/// A quantity of bytes (`sizeLimit`, memory): parsed, not negative, fits in u64.
pub(crate) fn byte_quantity(
    text: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Quantity> {
    let quantity = match Quantity::parse(text) {
        Ok(quantity) => quantity,
        Err(error) => {
            problems.error(path, error.to_string());
            return None;
        }
    };
    match quantity.to_units() {
        Ok(_) => Some(quantity),
        Err(error) => {
            problems.error(path, error.to_string());
            None
        }
    }
}

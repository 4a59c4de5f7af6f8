//! Validation of one container: name, image and pull policy, command, environment, ports,
//! resources (quantities, requests <= limits), volume mounts and security context.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FieldPath, Problems};
use crate::model::pod::{
    Container, ContainerPort, Protocol, PullPolicy, ResourceList, ResourceRequirements, VolumeMount,
};
use crate::names;
use crate::quantity::{Quantity, QuantityText};
use crate::raw::{List, RawContainer, RawPort, RawResources, RawVolumeMount};

use super::env::{env, env_from};
use super::probe::{ProbeKind, lifecycle, probe};
use super::security::container_security_context;
use super::{check, elements, one_of, port_number, required_string};

pub(crate) fn container(
    mut raw: RawContainer,
    path: &FieldPath,
    volume_names: &BTreeSet<String>,
    host_network: bool,
    problems: &mut Problems,
) -> Option<Container> {
    decide_container_fields(&mut raw, path, problems);
    let name_path = path.child("name");
    let name = required_string(raw.name, &name_path, problems)
        .filter(|name| check(names::check_dns1123_label(name), &name_path, problems));

    let image_path = path.child("image");
    let image = required_string(raw.image, &image_path, problems).filter(|image| {
        let ok = !image.chars().any(char::is_whitespace);
        if !ok {
            problems.error(
                &image_path,
                format!("must not contain whitespace (got {image:?})"),
            );
        }
        ok
    });
    let pull_policy = match (raw.image_pull_policy, &image) {
        (Some(text), _) => one_of(
            &text,
            &[
                ("Always", PullPolicy::Always),
                ("IfNotPresent", PullPolicy::IfNotPresent),
                ("Never", PullPolicy::Never),
            ],
            &path.child("imagePullPolicy"),
            problems,
        ),
        (None, Some(image)) => Some(default_pull_policy(image)),
        (None, None) => None,
    };

    let command = strings(raw.command, &path.child("command"), problems);
    let args = strings(raw.args, &path.child("args"), problems);
    let env = env(raw.env, &path.child("env"), problems);
    let env_from = env_from(raw.env_from, &path.child("envFrom"), problems);
    let ports = ports(raw.ports, &path.child("ports"), host_network, problems);
    let resources = resources(
        raw.resources.unwrap_or_default(),
        &path.child("resources"),
        problems,
    );
    let security_context = container_security_context(
        raw.security_context,
        &path.child("securityContext"),
        problems,
    );
    let volume_mounts = volume_mounts(
        raw.volume_mounts,
        &path.child("volumeMounts"),
        volume_names,
        problems,
    );
    let liveness_probe = probe(
        raw.liveness_probe,
        ProbeKind::Liveness,
        &ports,
        &path.child("livenessProbe"),
        problems,
    );
    let readiness_probe = probe(
        raw.readiness_probe,
        ProbeKind::Readiness,
        &ports,
        &path.child("readinessProbe"),
        problems,
    );
    let startup_probe = probe(
        raw.startup_probe,
        ProbeKind::Startup,
        &ports,
        &path.child("startupProbe"),
        problems,
    );
    let lifecycle = lifecycle(raw.lifecycle, &ports, &path.child("lifecycle"), problems);
    let sidecar = match raw.restart_policy.as_deref() {
        None => Some(false),
        Some("Always") => Some(true),
        Some(other) => {
            problems.error(
                &path.child("restartPolicy"),
                format!("must be \"Always\" (a native sidecar), the only container restart policy (got {other:?})"),
            );
            None
        }
    };
    Some(Container {
        name: name?,
        image: image?,
        image_pull_policy: pull_policy?,
        command,
        args,
        env,
        env_from,
        working_dir: raw.working_dir.filter(|dir| !dir.is_empty()),
        ports,
        resources,
        volume_mounts,
        security_context,
        liveness_probe,
        readiness_probe,
        startup_probe,
        lifecycle: lifecycle?,
        sidecar: sidecar?,
    })
}

/// Kubernetes' default: `Always` for `:latest` or untagged images, `IfNotPresent` otherwise.
pub(crate) fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
        _ => PullPolicy::Always,
    }
}

fn strings(list: Option<List<String>>, path: &FieldPath, problems: &mut Problems) -> Vec<String> {
    elements(list, path, problems)
        .into_iter()
        .map(|(_, _, text)| text)
        .collect()
}

fn ports(
    list: Option<List<RawPort>>,
    path: &FieldPath,
    host_network: bool,
    problems: &mut Problems,
) -> Vec<ContainerPort> {
    let mut out: Vec<ContainerPort> = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let host_ip = item_path.child("hostIP");
        super::fields::decide(raw.host_ip, &host_ip, super::fields::HOST_IP, problems);
        let name_path = item_path.child("name");
        let name = raw.name.filter(|name| !name.is_empty());
        if let Some(name) = &name
            && check(names::check_port_name(name), &name_path, problems)
            && out.iter().any(|p| p.name.as_ref() == Some(name))
        {
            problems.error(&name_path, format!("duplicate port name {name:?}"));
        }
        let container_path = item_path.child("containerPort");
        let container_port = match raw.container_port {
            None => {
                problems.error(&container_path, "required");
                None
            }
            Some(port) => port_number(port, &container_path, problems),
        };
        let host_path = item_path.child("hostPort");
        let host_port = match raw.host_port {
            None | Some(0) => Some(None),
            Some(port) => port_number(port, &host_path, problems).map(Some),
        };
        let protocol = match raw.protocol.as_deref() {
            None => Some(Protocol::Tcp),
            Some(text) => one_of(
                text,
                &[("TCP", Protocol::Tcp), ("UDP", Protocol::Udp)],
                &item_path.child("protocol"),
                problems,
            ),
        };
        let (Some(container_port), Some(mut host_port), Some(protocol)) =
            (container_port, host_port, protocol)
        else {
            continue;
        };
        if host_network {
            match host_port {
                None => host_port = Some(container_port),
                Some(host) if host != container_port => {
                    problems.error(
                        &host_path,
                        format!("must equal containerPort ({container_port}) when hostNetwork is true (got {host})"),
                    );
                }
                Some(_) => {}
            }
        }
        out.push(ContainerPort {
            name,
            container_port,
            host_port,
            protocol,
        });
    }
    out
}

/// Names a resource list may use.
fn check_resource_name(name: &str, path: &FieldPath, problems: &mut Problems) -> bool {
    let ok = matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || (name.contains('/') && names::check_label_key(name).is_ok());
    if !ok {
        problems.error(
            path,
            format!(
                "unknown resource {name:?} (use cpu, memory, ephemeral-storage or a domain-qualified \
                 extended resource such as example.com/gpu)"
            ),
        );
    }
    ok
}

fn resource_list(
    raw: Option<BTreeMap<String, QuantityText>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> ResourceList {
    let mut out = BTreeMap::new();
    for (name, QuantityText(text)) in raw.unwrap_or_default() {
        let entry_path = path.child(&name);
        if !check_resource_name(&name, &entry_path, problems) {
            continue;
        }
        let quantity = match Quantity::parse(&text) {
            Ok(quantity) => quantity,
            Err(error) => {
                problems.error(&entry_path, error.to_string());
                continue;
            }
        };
        let converted = if name == "cpu" {
            quantity.to_millis()
        } else {
            quantity.to_units()
        };
        if let Err(error) = converted {
            problems.error(&entry_path, error.to_string());
            continue;
        }
        out.insert(name, quantity);
    }
    ResourceList(out)
}

fn resources(raw: RawResources, path: &FieldPath, problems: &mut Problems) -> ResourceRequirements {
    let claims = path.child("claims");
    super::fields::decide(
        raw.claims,
        &claims,
        super::fields::RESOURCE_CLAIM_REFS,
        problems,
    );
    let requests_path = path.child("requests");
    let requests = resource_list(raw.requests, &requests_path, problems);
    let limits = resource_list(raw.limits, &path.child("limits"), problems);
    for (name, request) in requests.iter() {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        if request.millis_cmp(limit) == Some(std::cmp::Ordering::Greater) {
            problems.error(
                &requests_path.child(name),
                format!("must be less than or equal to the {name} limit ({request} > {limit})"),
            );
        }
    }
    ResourceRequirements { requests, limits }
}

fn volume_mounts(
    list: Option<List<RawVolumeMount>>,
    path: &FieldPath,
    volume_names: &BTreeSet<String>,
    problems: &mut Problems,
) -> Vec<VolumeMount> {
    let mut out: Vec<VolumeMount> = Vec::new();
    for (_, item_path, mut raw) in elements(list, path, problems) {
        use super::fields::{self as f, decide};
        let rules = [
            (
                raw.mount_propagation.take(),
                "mountPropagation",
                f::MOUNT_PROPAGATION,
            ),
            (
                raw.recursive_read_only.take(),
                "recursiveReadOnly",
                f::RECURSIVE_READ_ONLY,
            ),
            (raw.sub_path_expr.take(), "subPathExpr", f::SUB_PATH_EXPR),
        ];
        for (value, name, rule) in rules {
            decide(value, &item_path.child(name), rule, problems);
        }
        let name_path = item_path.child("name");
        let name = required_string(raw.name, &name_path, problems).filter(|name| {
            let known = volume_names.contains(name);
            if !known {
                let listed: Vec<&str> = volume_names.iter().map(String::as_str).collect();
                let listed = if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                };
                problems.error(
                    &name_path,
                    format!("unknown volume {name:?} (volumes: {listed})"),
                );
            }
            known
        });
        let mount_path_path = item_path.child("mountPath");
        let mount_path =
            required_string(raw.mount_path, &mount_path_path, problems).filter(|mount| {
                if !mount.starts_with('/') {
                    problems.error(
                        &mount_path_path,
                        format!("must be an absolute path (got {mount:?})"),
                    );
                    return false;
                }
                if out.iter().any(|m| &m.mount_path == mount) {
                    problems.error(&mount_path_path, format!("duplicate mount path {mount:?}"));
                    return false;
                }
                true
            });
        let sub_path_path = item_path.child("subPath");
        let sub_path = raw.sub_path.filter(|sub| !sub.is_empty());
        if let Some(sub) = &sub_path {
            check(names::check_relative_path(sub), &sub_path_path, problems);
        }
        if let (Some(name), Some(mount_path)) = (name, mount_path) {
            out.push(VolumeMount {
                name,
                mount_path,
                read_only: raw.read_only.unwrap_or(false),
                sub_path,
            });
        }
    }
    out
}

/// The Container fields skiff does not model, each decided by its rule (`validate::fields`).
fn decide_container_fields(raw: &mut RawContainer, path: &FieldPath, problems: &mut Problems) {
    use super::fields::{self as f, decide};
    let rules = [
        (raw.resize_policy.take(), "resizePolicy", f::RESIZE_POLICY),
        (
            raw.restart_policy_rules.take(),
            "restartPolicyRules",
            f::RESTART_POLICY_RULES,
        ),
        (raw.stdin.take(), "stdin", f::STDIN),
        (raw.stdin_once.take(), "stdinOnce", f::STDIN),
        (raw.tty.take(), "tty", f::STDIN),
        (
            raw.termination_message_path.take(),
            "terminationMessagePath",
            f::TERMINATION_MESSAGE_PATH,
        ),
        (
            raw.termination_message_policy.take(),
            "terminationMessagePolicy",
            f::TERMINATION_MESSAGE_POLICY,
        ),
        (
            raw.volume_devices.take(),
            "volumeDevices",
            f::VOLUME_DEVICES,
        ),
    ];
    for (value, name, rule) in rules {
        decide(value, &path.child(name), rule, problems);
    }
    if let Some(lifecycle) = raw.lifecycle.as_mut() {
        let field = path.child("lifecycle").child("stopSignal");
        decide(
            lifecycle.stop_signal.take(),
            &field,
            f::STOP_SIGNAL,
            problems,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_like_kubernetes() {
        let table = [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("skiff.local/busybox:latest", PullPolicy::Always),
            ("busybox:1.36", PullPolicy::IfNotPresent),
            ("localhost:5000/busybox", PullPolicy::Always),
            ("localhost:5000/busybox:1.0", PullPolicy::IfNotPresent),
            ("busybox@sha256:0123abcd", PullPolicy::IfNotPresent),
        ];
        for (image, policy) in table {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }
}

//! Validation of a pod spec: container lists and unique names, restart policy, grace period,
//! host network, node selector, security context and volumes. Each container is checked in
//! `validate::container`.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FieldPath, Problems};
use crate::model::object::Kind;
use crate::model::pod::{Container, PodSpec, RestartPolicy};
use crate::names;
use crate::quantity::Quantity;
use crate::raw::{List, RawPodSpec};

use super::container::container;
use super::security::pod_security_context;
use super::workloads::check_template_restart_policy;
use super::{check, elements, labels, one_of, required_string};

/// Default grace period between SIGTERM and SIGKILL, as in Kubernetes.
const DEFAULT_GRACE_SECONDS: u64 = 30;

/// Where the pod spec sits: a bare Pod or the template of a Deployment, DaemonSet or Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodContext {
    Pod,
    Template(Kind),
}

pub(crate) fn pod_spec(
    mut raw: RawPodSpec,
    path: &FieldPath,
    context: PodContext,
    problems: &mut Problems,
) -> Option<PodSpec> {
    decide_pod_fields(&mut raw, path, problems);
    let (volumes, volume_names) =
        super::volume::volumes(raw.volumes, &path.child("volumes"), problems);
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
    let affinity = super::scheduling::affinity(raw.affinity, &path.child("affinity"), problems);
    let tolerations =
        super::scheduling::tolerations(raw.tolerations, &path.child("tolerations"), problems);
    let topology_spread_constraints = super::scheduling::spread_constraints(
        raw.topology_spread_constraints,
        &path.child("topologySpreadConstraints"),
        problems,
    );
    let deadline_path = path.child("activeDeadlineSeconds");
    let active_deadline_seconds = match (raw.active_deadline_seconds, context) {
        (None, _) => None,
        (Some(_), PodContext::Template(kind)) if kind != Kind::Job => {
            problems.error(
                &deadline_path,
                format!("not supported in a {kind}'s pod template (Kubernetes refuses it too)"),
            );
            None
        }
        (Some(seconds), _) if seconds > 0 => Some(seconds as u64),
        (Some(seconds), _) => {
            problems.error(&deadline_path, format!("must be > 0 (got {seconds})"));
            None
        }
    };
    let node_name_path = path.child("nodeName");
    let node_name = raw
        .node_name
        .filter(|n| !n.is_empty())
        .filter(|n| check(names::check_dns1123_subdomain(n), &node_name_path, problems));
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
        affinity,
        tolerations,
        topology_spread_constraints,
        active_deadline_seconds,
        node_name,
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

/// The name of a ConfigMap or Secret that something refers to.
pub(crate) fn referenced_name(
    name: Option<String>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<String> {
    let name = required_string(name, path, problems)?;
    check(names::check_dns1123_subdomain(&name), path, problems).then_some(name)
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

/// The PodSpec fields skiff does not model, each decided by its rule (`validate::fields`).
fn decide_pod_fields(raw: &mut RawPodSpec, path: &FieldPath, problems: &mut Problems) {
    use super::fields::{self as f, decide};
    let rules = [
        (
            raw.automount_service_account_token.take(),
            "automountServiceAccountToken",
            f::AUTOMOUNT_TOKEN,
        ),
        (
            raw.ephemeral_containers.take(),
            "ephemeralContainers",
            f::EPHEMERAL_CONTAINERS,
        ),
        (raw.host_ipc.take(), "hostIPC", f::HOST_IPC),
        (raw.host_pid.take(), "hostPID", f::HOST_PID),
        (raw.host_users.take(), "hostUsers", f::HOST_USERS),
        (
            raw.hostname_override.take(),
            "hostnameOverride",
            f::HOSTNAME_OVERRIDE,
        ),
        (
            raw.image_pull_secrets.take(),
            "imagePullSecrets",
            f::IMAGE_PULL_SECRETS,
        ),
        (raw.overhead.take(), "overhead", f::OVERHEAD),
        (
            raw.preemption_policy.take(),
            "preemptionPolicy",
            f::PREEMPTION_POLICY,
        ),
        (raw.priority.take(), "priority", f::PRIORITY),
        (
            raw.priority_class_name.take(),
            "priorityClassName",
            f::PRIORITY,
        ),
        (
            raw.readiness_gates.take(),
            "readinessGates",
            f::READINESS_GATES,
        ),
        (
            raw.resource_claims.take(),
            "resourceClaims",
            f::RESOURCE_CLAIMS,
        ),
        (raw.resources.take(), "resources", f::POD_RESOURCES),
        (
            raw.runtime_class_name.take(),
            "runtimeClassName",
            f::RUNTIME_CLASS,
        ),
        (
            raw.scheduler_name.take(),
            "schedulerName",
            f::SCHEDULER_NAME,
        ),
        (
            raw.scheduling_gates.take(),
            "schedulingGates",
            f::SCHEDULING_GATES,
        ),
        (
            raw.service_account.take(),
            "serviceAccount",
            f::SERVICE_ACCOUNT,
        ),
        (
            raw.service_account_name.take(),
            "serviceAccountName",
            f::SERVICE_ACCOUNT,
        ),
        (
            raw.set_hostname_as_fqdn.take(),
            "setHostnameAsFQDN",
            f::SET_HOSTNAME_AS_FQDN,
        ),
        (
            raw.share_process_namespace.take(),
            "shareProcessNamespace",
            f::SHARE_PROCESS_NAMESPACE,
        ),
    ];
    for (value, name, rule) in rules {
        decide(value, &path.child(name), rule, problems);
    }
    f::os(raw.os.take(), &path.child("os"), problems);
}

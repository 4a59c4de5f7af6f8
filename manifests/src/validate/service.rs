//! Validation of Services: type, cluster IP, ports (names, target ports, node ports), selector,
//! session affinity. What skiff cannot do (load balancers, external IPs, traffic policies that
//! keep traffic node-local, IPv6) is refused with the field named.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::error::{FieldPath, Problems};
use crate::model::object::Kind;
use crate::model::pod::Protocol;
use crate::model::service::{
    ClusterIp, DEFAULT_AFFINITY_TIMEOUT_SECONDS, Service, ServicePort, ServiceSpec, ServiceType,
    SessionAffinity, TargetPort,
};
use crate::names;
use crate::raw::{RawService, RawServicePort, RawTargetPort};

use super::{check, elements, labels, object_meta, one_of, port_number, required};

pub(crate) fn validate_service(raw: RawService, problems: &mut Problems) -> Option<Service> {
    let metadata = object_meta(raw.metadata, Kind::Service, problems);
    let root = FieldPath::root();
    // The name is one label of the Service's DNS name (<name>.<namespace>.svc.<domain>) and the
    // prefix of its environment variables: an RFC 1035 label, as Kubernetes requires.
    let valid_subdomain = names::check_dns1123_subdomain(&metadata.name).is_ok();
    if valid_subdomain && names::check_dns1123_label(&metadata.name).is_err() {
        problems.error(
            &root.child("metadata").child("name"),
            format!(
                "a Service name must be one DNS label (lowercase letters, digits and '-', at most 63 characters, no '.'; it is the first label of <name>.<namespace>.svc.cluster.local; got {:?})",
                metadata.name
            ),
        );
    } else if valid_subdomain && !metadata.name.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.error(
            &root.child("metadata").child("name"),
            format!(
                "a Service name must start with a letter (it is a DNS label; got {:?})",
                metadata.name
            ),
        );
    }
    let spec_path = root.child("spec");
    let spec = required(raw.spec, &spec_path, problems)?;
    let type_path = spec_path.child("type");
    let type_ = match spec.type_.as_deref() {
        None | Some("") => Some(ServiceType::ClusterIP),
        Some("LoadBalancer") => {
            problems.error(
                &type_path,
                "LoadBalancer is not supported: skiff nodes have no load balancer to provision; use NodePort (reachable on every node's address)",
            );
            None
        }
        Some(text) => one_of(
            text,
            &[
                ("ClusterIP", ServiceType::ClusterIP),
                ("NodePort", ServiceType::NodePort),
                ("ExternalName", ServiceType::ExternalName),
            ],
            &type_path,
            problems,
        ),
    };
    refuse_unsupported(&spec, &spec_path, problems);
    let ip_path = spec_path.child("clusterIP");
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") => ClusterIp::Auto,
        Some("None") => ClusterIp::Headless,
        Some(text) => match text.parse::<Ipv4Addr>() {
            Ok(ip) => ClusterIp::Pinned(ip),
            Err(_) => {
                problems.error(
                    &ip_path,
                    format!(
                        "must be empty (allocated), \"None\" (headless) or an IPv4 address (got {text:?}; IPv6 is not supported)"
                    ),
                );
                ClusterIp::Auto
            }
        },
    };
    let ips_path = spec_path.child("clusterIPs");
    let listed: Vec<String> = elements(spec.cluster_ips, &ips_path, problems)
        .into_iter()
        .map(|(_, _, ip)| ip)
        .collect();
    if !listed.is_empty() {
        let first = spec.cluster_ip.clone().unwrap_or_default();
        if listed.len() > 1 {
            problems.error(
                &ips_path,
                "only one cluster IP is supported (IPv4; dual-stack is not)",
            );
        } else if !first.is_empty() && listed[0] != first {
            problems.error(
                &ips_path.index(0),
                format!("must equal clusterIP ({first:?}; got {:?})", listed[0]),
            );
        } else if first.is_empty() {
            problems.error(
                &ips_path,
                "set clusterIP instead (skiff reads clusterIP only)",
            );
        }
    }
    let selector = labels(spec.selector, &spec_path.child("selector"), problems);
    let ports_path = spec_path.child("ports");
    let ports = ports(spec.ports, &ports_path, type_, problems);
    let external_name = spec.external_name.filter(|n| !n.is_empty());
    let name_path = spec_path.child("externalName");
    match type_ {
        Some(ServiceType::ExternalName) => match &external_name {
            None => problems.error(&name_path, "required for type ExternalName"),
            Some(name) => {
                check(
                    names::check_dns1123_subdomain(name.trim_end_matches('.')),
                    &name_path,
                    problems,
                );
                if cluster_ip != ClusterIp::Auto {
                    problems.error(&ip_path, "must be empty for type ExternalName");
                }
            }
        },
        Some(_) => {
            if external_name.is_some() {
                problems.error(&name_path, "only type ExternalName uses externalName");
            }
            if selector.is_empty() {
                problems.warn(
                    &spec_path.child("selector"),
                    "absent: this Service selects no pods, and skiff has no Endpoints objects to list them by hand, so it has no endpoints (connections to it are refused at once and its DNS name has no address); add a selector, or use type ExternalName for a service outside the cluster",
                );
            }
            if ports.is_empty() && cluster_ip != ClusterIp::Headless {
                problems.error(
                    &ports_path,
                    "at least one port is required (only a headless Service, clusterIP: None, may have none)",
                );
            }
        }
        None => {}
    }
    if type_ == Some(ServiceType::NodePort) && cluster_ip == ClusterIp::Headless {
        problems.error(
            &ip_path,
            "a NodePort Service cannot be headless (clusterIP: None)",
        );
    }
    let mut session_affinity = affinity(
        &spec.session_affinity,
        spec.session_affinity_config,
        &spec_path,
        problems,
    );
    let mut selector = selector;
    let mut publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    if type_ == Some(ServiceType::ExternalName) {
        // Only a DNS alias: no address, no endpoints. What would choose or spread endpoints is
        // dropped, and said so.
        let alias = "type ExternalName is only a DNS alias (a CNAME to externalName), with no address and no endpoints";
        if !selector.is_empty() {
            problems.warn(
                &spec_path.child("selector"),
                format!("ignored: {alias}; the selected pods are not listed"),
            );
            selector.clear();
        }
        if publish_not_ready {
            problems.warn(
                &spec_path.child("publishNotReadyAddresses"),
                format!("ignored: {alias}"),
            );
            publish_not_ready = false;
        }
        if session_affinity != SessionAffinity::None {
            problems.warn(
                &spec_path.child("sessionAffinity"),
                format!("ignored: {alias}, so no connection goes through skiff to keep on one"),
            );
            session_affinity = SessionAffinity::None;
        }
    }
    if session_affinity != SessionAffinity::None && cluster_ip == ClusterIp::Headless {
        problems.error(
            &spec_path.child("sessionAffinity"),
            "a headless Service has no address to keep affinity on: remove it",
        );
    }
    Some(Service {
        metadata,
        spec: ServiceSpec {
            type_: type_?,
            cluster_ip,
            selector: selector.into_iter().collect(),
            ports,
            external_name,
            publish_not_ready_addresses: publish_not_ready,
            session_affinity,
        },
    })
}

fn refuse_unsupported(
    spec: &crate::raw::RawServiceSpec,
    path: &FieldPath,
    problems: &mut Problems,
) {
    let refused = [
        (
            "externalIPs",
            spec.external_ips.is_some(),
            "external IPs are not supported; use a NodePort Service",
        ),
        (
            "loadBalancerIP",
            spec.load_balancer_ip.is_some(),
            "skiff has no load balancers",
        ),
        (
            "loadBalancerSourceRanges",
            spec.load_balancer_source_ranges.is_some(),
            "skiff has no load balancers",
        ),
        (
            "loadBalancerClass",
            spec.load_balancer_class.is_some(),
            "skiff has no load balancers",
        ),
        (
            "healthCheckNodePort",
            spec.health_check_node_port.is_some(),
            "skiff has no load balancers",
        ),
    ];
    for (field, set, why) in refused {
        if set {
            problems.error(&path.child(field), format!("not supported: {why}"));
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() {
        problems.warn(
            &path.child("allocateLoadBalancerNodePorts"),
            "ignored: it applies to LoadBalancer Services only",
        );
    }
    if spec.traffic_distribution.is_some() {
        problems.warn(
            &path.child("trafficDistribution"),
            "ignored: endpoints are chosen at random among all ready ones",
        );
    }
    for (field, value) in [
        ("externalTrafficPolicy", &spec.external_traffic_policy),
        ("internalTrafficPolicy", &spec.internal_traffic_policy),
    ] {
        match value.as_deref() {
            None | Some("") | Some("Cluster") => {}
            Some("Local") => problems.error(
                &path.child(field),
                "Local is not supported yet (traffic is spread over the endpoints on every node); remove it or use Cluster",
            ),
            Some(other) => problems.error(
                &path.child(field),
                format!("must be one of \"Cluster\", \"Local\" (got {other:?})"),
            ),
        }
    }
    let families_path = path.child("ipFamilies");
    if let Some(list) = &spec.ip_families {
        for (i, family) in list.iter().enumerate() {
            if let Some(family) = family
                && family != "IPv4"
            {
                problems.error(
                    &families_path.index(i),
                    format!("only IPv4 is supported (got {family:?})"),
                );
            }
        }
    }
    match spec.ip_family_policy.as_deref() {
        None | Some("") | Some("SingleStack") => {}
        Some("PreferDualStack") => problems.warn(
            &path.child("ipFamilyPolicy"),
            "PreferDualStack: skiff is IPv4 only, so the Service is single-stack IPv4",
        ),
        Some("RequireDualStack") => problems.error(
            &path.child("ipFamilyPolicy"),
            "RequireDualStack is not supported: skiff is IPv4 only",
        ),
        Some(other) => problems.error(
            &path.child("ipFamilyPolicy"),
            format!(
                "must be one of \"SingleStack\", \"PreferDualStack\", \"RequireDualStack\" (got {other:?})"
            ),
        ),
    }
}

fn ports(
    list: Option<crate::raw::List<RawServicePort>>,
    path: &FieldPath,
    type_: Option<ServiceType>,
    problems: &mut Problems,
) -> Vec<ServicePort> {
    let items = elements(list, path, problems);
    let many = items.len() > 1;
    let mut out: Vec<ServicePort> = Vec::new();
    let mut names_seen = BTreeSet::new();
    let mut ports_seen = BTreeSet::new();
    let mut node_ports_seen = BTreeSet::new();
    for (_, item_path, raw) in items {
        let name = raw.name.unwrap_or_default();
        let name_path = item_path.child("name");
        if name.is_empty() {
            if many {
                problems.error(&name_path, "required when a Service has more than one port");
            }
        } else if check(names::check_dns1123_label(&name), &name_path, problems)
            && !names_seen.insert(name.clone())
        {
            problems.error(&name_path, format!("duplicate port name {name:?}"));
        }
        let protocol_path = item_path.child("protocol");
        let protocol = match raw.protocol.as_deref() {
            None | Some("") => Some(Protocol::Tcp),
            Some("SCTP") => {
                problems.error(&protocol_path, "SCTP is not supported; use TCP or UDP");
                None
            }
            Some(text) => one_of(
                text,
                &[("TCP", Protocol::Tcp), ("UDP", Protocol::Udp)],
                &protocol_path,
                problems,
            ),
        };
        let port_path = item_path.child("port");
        let port = match raw.port {
            None => {
                problems.error(&port_path, "required");
                None
            }
            Some(n) => port_number(n, &port_path, problems),
        };
        let target_path = item_path.child("targetPort");
        let target_port = match raw.target_port {
            None => port.map(TargetPort::Number),
            Some(RawTargetPort::Int(0)) => port.map(TargetPort::Number),
            Some(RawTargetPort::Int(n)) => {
                port_number(n, &target_path, problems).map(TargetPort::Number)
            }
            Some(RawTargetPort::String(text)) => match text.parse::<i64>() {
                Ok(n) => port_number(n, &target_path, problems).map(TargetPort::Number),
                Err(_) => check(names::check_port_name(&text), &target_path, problems)
                    .then_some(TargetPort::Name(text)),
            },
        };
        let node_path = item_path.child("nodePort");
        let node_port = match raw.node_port {
            None | Some(0) => None,
            Some(n) if type_ != Some(ServiceType::NodePort) => {
                problems.error(
                    &node_path,
                    format!("only a NodePort Service has node ports (got {n})"),
                );
                None
            }
            // The range is the node's (`--service-node-port-range`): checked by the agent when
            // the file is read or applied (`ParsedFile::check_node_ports`) and by the leader.
            Some(n) => match u16::try_from(n) {
                Ok(p) => {
                    if !node_ports_seen.insert((p, protocol)) {
                        problems.error(&node_path, format!("duplicate node port {p}"));
                    }
                    Some(p)
                }
                Err(_) => {
                    problems.error(
                        &node_path,
                        format!("must be a port number between 1 and 65535 (got {n})"),
                    );
                    None
                }
            },
        };
        if let Some(app) = raw.app_protocol.filter(|a| !a.is_empty()) {
            problems.warn(
                &item_path.child("appProtocol"),
                format!("{app:?} is informational only: skiff forwards the port at layer 4"),
            );
        }
        let (Some(protocol), Some(port), Some(target_port)) = (protocol, port, target_port) else {
            continue;
        };
        if !ports_seen.insert((port, protocol)) {
            problems.error(
                &port_path,
                format!("duplicate port {port}/{}", protocol.as_str()),
            );
            continue;
        }
        out.push(ServicePort {
            name,
            protocol,
            port,
            target_port,
            node_port,
        });
    }
    if type_ == Some(ServiceType::ExternalName) && !out.is_empty() {
        // Kubernetes accepts and ignores them: the name is a DNS alias, there is no proxying.
        problems.warn(
            path,
            "ignored for type ExternalName (a DNS alias has no ports to forward)",
        );
    }
    // Kept with the Service for as long as it exists: no spare capacity (one port pushed
    // leaves room for four).
    out.shrink_to_fit();
    out
}

fn affinity(
    text: &Option<String>,
    config: Option<crate::raw::RawSessionAffinityConfig>,
    path: &FieldPath,
    problems: &mut Problems,
) -> SessionAffinity {
    let affinity_path = path.child("sessionAffinity");
    let timeout_path = path
        .child("sessionAffinityConfig")
        .child("clientIP")
        .child("timeoutSeconds");
    let timeout = config
        .and_then(|c| c.client_ip)
        .and_then(|c| c.timeout_seconds);
    match text.as_deref() {
        None | Some("") | Some("None") => {
            if timeout.is_some() {
                problems.error(&timeout_path, "only used with sessionAffinity: ClientIP");
            }
            SessionAffinity::None
        }
        Some("ClientIP") => {
            let timeout_seconds = match timeout {
                None => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
                Some(n) if (1..=86_400).contains(&n) => n as u32,
                Some(n) => {
                    problems.error(
                        &timeout_path,
                        format!("must be between 1 and 86400 seconds (got {n})"),
                    );
                    DEFAULT_AFFINITY_TIMEOUT_SECONDS
                }
            };
            SessionAffinity::ClientIp { timeout_seconds }
        }
        Some(other) => {
            problems.error(
                &affinity_path,
                format!("must be one of \"None\", \"ClientIP\" (got {other:?})"),
            );
            SessionAffinity::None
        }
    }
}

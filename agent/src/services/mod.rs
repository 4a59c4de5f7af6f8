//! Services: the leader's address book ([`alloc`]), endpoints computed by every node
//! ([`endpoints`]), and the nftables program each node applies ([`rules`]).
//!
//! Data flow: Service objects replicate like every object; the leader allocates ClusterIPs and
//! node ports and publishes the book (`sched/svc-ips`); every node joins the book, the objects
//! and every node's pod reports into a [`ServiceTable`], which its proxy task turns into rules
//! and which `get services` and `get endpoints` show.

pub mod alloc;
pub mod dns;
pub mod endpoints;
pub mod flows;
pub mod links;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use compact_str::{CompactString, format_compact};
use skiff_manifests::{Kind, Object, Service, ServiceType, SessionAffinity, Valid};

pub use alloc::{Allocation, Book};
pub use endpoints::{Endpoint, NamedPort};
pub use links::{ServiceLink, ServiceLinks};

/// One Service as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceView {
    /// The Service object itself (shared with the replicated objects, not copied); its
    /// namespace and name are the view's ([`ServiceView::namespace`], [`ServiceView::name`]).
    pub service: SharedService,
    /// What the leader's book says (empty until the book names the Service).
    pub allocation: Allocation,
    pub endpoints: Vec<Endpoint>,
    /// Pods the selector matches (not being deleted), ready or not.
    pub selected: usize,
}

impl ServiceView {
    pub fn namespace(&self) -> &str {
        &self.service.metadata.namespace
    }

    pub fn name(&self) -> &str {
        &self.service.metadata.name
    }
}

/// A Service object as the replica holds it: a reference, read as a [`Service`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedService(Valid<Object>);

impl SharedService {
    /// `None` when the object is not a Service.
    pub fn new(object: Valid<Object>) -> Option<SharedService> {
        matches!(object.get(), Object::Service(_)).then_some(SharedService(object))
    }
}

impl std::ops::Deref for SharedService {
    type Target = Service;
    fn deref(&self) -> &Service {
        match self.0.get() {
            Object::Service(s) => s,
            // `new` accepts Services only.
            _ => unreachable!("a SharedService holds a Service"),
        }
    }
}

/// Every Service by `namespace/name`.
/// (Keys up to 24 bytes are held inline.)
pub type ServiceTable = BTreeMap<CompactString, ServiceView>;

/// The Services among the desired objects, by `namespace/name`.
pub fn services_of(objects: &crate::desired::Objects) -> BTreeMap<CompactString, &Service> {
    objects
        .iter()
        .filter(|(k, _)| k.kind == Kind::Service)
        .filter_map(|(k, (_, o))| match o.get() {
            Object::Service(s) => Some((format_compact!("{}/{}", k.namespace, k.name), s)),
            _ => None,
        })
        .collect()
}

/// Joins the objects, the leader's book and every node's pod reports.
pub fn table(
    objects: &crate::desired::Objects,
    book: &Book,
    pods: &crate::cluster::service::PodReports,
    gone_nodes: &BTreeSet<String>,
) -> ServiceTable {
    let views: Vec<endpoints::PodView<'_>> = pods
        .iter()
        .map(|((ns, name), (node, report))| endpoints::PodView {
            namespace: ns,
            pod: report
                .status
                .get("podIP")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .map(|ip| {
                    Arc::new(endpoints::EndpointPod {
                        ip,
                        ready: report.ready,
                        name: name.clone(),
                        node: node.clone(),
                        hostname: report.hostname.clone(),
                        ports: report.ports.clone(),
                    })
                }),
            deleting: report.deleting,
            labels: &report.labels,
            subdomain: report.subdomain.as_deref(),
        })
        .collect();
    objects
        .iter()
        .filter(|(k, _)| k.kind == Kind::Service)
        .filter_map(|(k, (_, o))| {
            let service = SharedService::new(o.clone())?;
            let key = format_compact!("{}/{}", k.namespace, k.name);
            let (namespace, name) = (k.namespace.as_str(), k.name.as_str());
            let endpoints =
                endpoints::endpoints(namespace, name, &service, views.iter().cloned(), gone_nodes);
            // Stopping pods are counted only where they stay endpoints (publishNotReadyAddresses),
            // so that the ready count never exceeds the total.
            let selected = views
                .iter()
                .filter(|p| {
                    p.namespace == namespace
                        && (!p.deleting || service.spec.publish_not_ready_addresses)
                        && service.spec.selects(p.labels)
                })
                .count();
            let view = ServiceView {
                allocation: book.get(&key).cloned().unwrap_or_default(),
                service,
                endpoints,
                selected,
            };
            Some((key, view))
        })
        .collect()
}

/// What the node programs: every port of every Service with an address (or node port).
pub fn programmed_ports(table: &ServiceTable) -> Vec<rules::ProgrammedPort> {
    let mut out = Vec::new();
    for (key, view) in table {
        let spec = &view.service.spec;
        if spec.type_ == ServiceType::ExternalName || spec.is_headless() {
            continue;
        }
        let cluster_ip = view.allocation.cluster_ip;
        let affinity_seconds = match spec.session_affinity {
            SessionAffinity::None => None,
            SessionAffinity::ClientIp { timeout_seconds } => Some(timeout_seconds),
        };
        for p in &spec.ports {
            let protocol = p.protocol.as_str();
            let port_key = alloc::port_key(&p.name, protocol);
            let node_port = view.allocation.node_ports.get(&port_key).copied();
            if cluster_ip.is_none() && node_port.is_none() {
                continue;
            }
            let endpoints = view
                .endpoints
                .iter()
                .filter(|e| e.serving(&view.service))
                .filter_map(|e| Some((e.ip(), e.port(p)?)))
                .collect();
            out.push(rules::ProgrammedPort {
                service: key.to_string(),
                key: port_key,
                protocol: if protocol == "UDP" { "udp" } else { "tcp" },
                cluster_ip,
                port: p.port,
                node_port,
                endpoints,
                affinity_seconds,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dns::tests::service;
    use super::endpoints::{EndpointPod, NamedPort};
    use super::*;

    fn pod(name: &str, ip: &str, ports: &[(&str, u16, &str)]) -> Endpoint {
        Endpoint::new(
            Arc::new(EndpointPod {
                ip: ip.parse().unwrap(),
                ready: true,
                name: name.into(),
                node: "n1".into(),
                hostname: None,
                ports: ports
                    .iter()
                    .map(|(n, p, proto)| NamedPort {
                        name: (*n).into(),
                        port: *p,
                        protocol: (*proto).into(),
                    })
                    .collect(),
            }),
            false,
        )
    }

    fn unready(e: Endpoint) -> Endpoint {
        let mut pod = EndpointPod::clone(&e.pod);
        pod.ready = false;
        Endpoint::new(Arc::new(pod), false)
    }

    fn view(
        spec: &str,
        ip: Option<&str>,
        node_ports: &[(&str, u16)],
        eps: Vec<Endpoint>,
    ) -> ServiceView {
        ServiceView {
            service: service("s", spec),
            allocation: Allocation {
                cluster_ip: ip.map(|i| i.parse().unwrap()),
                node_ports: node_ports.iter().map(|(k, p)| ((*k).into(), *p)).collect(),
                refused: Vec::new(),
            },
            endpoints: eps,
            selected: 0,
        }
    }

    #[test]
    fn programmed_ports_are_the_ports_with_an_address_and_their_pods_ports() {
        let both = || {
            vec![
                pod(
                    "a",
                    "10.42.1.2",
                    &[("http", 8080, "TCP"), ("dns", 5353, "UDP")],
                ),
                // Declares no port named http: not behind the named port, but behind a number.
                pod("b", "10.42.2.2", &[("web", 9090, "TCP")]),
                // Not ready: listed by `get endpoints`, behind no port.
                unready(pod(
                    "u",
                    "10.42.3.2",
                    &[("http", 8080, "TCP"), ("dns", 5353, "UDP")],
                )),
            ]
        };
        let mut table = ServiceTable::new();
        table.insert(
            "default/web".into(),
            view(
                "  type: NodePort\n  selector: {app: a}\n  sessionAffinity: ClientIP\n  ports:\n  - {name: http, port: 80, targetPort: http}\n  - {name: raw, port: 81, targetPort: 7000}\n  - {name: dns, port: 53, targetPort: dns, protocol: UDP}\n",
                Some("10.43.0.10"),
                &[("http/TCP", 30080)],
                both(),
            ),
        );
        // Headless, ExternalName and a Service whose address was refused: nothing programmed.
        table.insert(
            "default/headless".into(),
            view(
                "  clusterIP: None\n  selector: {app: a}\n  ports: [{port: 80}]\n",
                None,
                &[],
                both(),
            ),
        );
        table.insert(
            "default/ext".into(),
            view(
                "  type: ExternalName\n  externalName: a.example.com\n",
                None,
                &[],
                vec![],
            ),
        );
        table.insert(
            "default/refused".into(),
            view(
                "  selector: {app: a}\n  ports: [{port: 80}]\n",
                None,
                &[],
                both(),
            ),
        );
        let ports = programmed_ports(&table);
        let got: Vec<_> = ports
            .iter()
            .map(|p| {
                (
                    p.service.as_str(),
                    p.key.as_str(),
                    p.protocol,
                    p.cluster_ip.map(|ip| ip.to_string()),
                    p.port,
                    p.node_port,
                    p.endpoints
                        .iter()
                        .map(|(ip, port)| format!("{ip}:{port}"))
                        .collect::<Vec<_>>(),
                    p.affinity_seconds,
                )
            })
            .collect();
        let ip = Some("10.43.0.10".to_string());
        assert_eq!(
            got,
            [
                (
                    "default/web",
                    "http/TCP",
                    "tcp",
                    ip.clone(),
                    80,
                    Some(30080),
                    vec!["10.42.1.2:8080".to_string()],
                    Some(10_800),
                ),
                (
                    "default/web",
                    "raw/TCP",
                    "tcp",
                    ip.clone(),
                    81,
                    None,
                    vec!["10.42.1.2:7000".to_string(), "10.42.2.2:7000".to_string()],
                    Some(10_800),
                ),
                (
                    "default/web",
                    "dns/UDP",
                    "udp",
                    ip,
                    53,
                    None,
                    vec!["10.42.1.2:5353".to_string()],
                    Some(10_800),
                ),
            ]
        );
    }
}

//! Endpoints, computed by every node from what it already has: the Service's selector, and each
//! pod's report (labels, address, readiness, named container ports, node). No leader is on the
//! packet path, so a node cut off from the others keeps serving with what it last knew.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skiff_manifests::{Protocol, Service, ServicePort, TargetPort};

/// A container port a pod declares (for Services whose targetPort is a name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

/// What the endpoint computation reads of one pod.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    pub namespace: &'a str,
    /// What its endpoints hold of it, shared by every Service the pod is behind (a pod behind
    /// 1,000 Services is described once); none without an address (never an endpoint).
    pub pod: Option<Arc<EndpointPod>>,
    /// Being stopped: never an endpoint (its connections drain while it stops).
    pub deleting: bool,
    pub labels: &'a BTreeMap<String, String>,
    /// The pod's `subdomain`, when set.
    pub subdomain: Option<&'a str>,
}

/// A pod as its endpoints describe it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointPod {
    pub ip: Ipv4Addr,
    pub ready: bool,
    pub name: String,
    pub node: String,
    /// The pod's `hostname`, when set.
    pub hostname: Option<String>,
    /// The container ports it declares (named target ports resolve against them).
    pub ports: Vec<NamedPort>,
}

/// One pod behind a Service. Small on purpose: a node holds one per Service a pod is behind
/// (1,000 Services over the same 10 pods are 10,000 endpoints), so the pod is shared and its
/// ports are read through the Service's ports ([`Endpoint::port`]) rather than copied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub pod: Arc<EndpointPod>,
    /// The pod's hostname is its DNS name under this Service (its subdomain names it).
    named: bool,
}

impl Endpoint {
    pub fn new(pod: Arc<EndpointPod>, named: bool) -> Endpoint {
        Endpoint { pod, named }
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.pod.ip
    }

    pub fn ready(&self) -> bool {
        self.pod.ready
    }

    /// Whether `service` sends traffic here (and lists it as a ready address): a ready pod, or
    /// any of a Service that publishes not-ready addresses.
    pub fn serving(&self, service: &Service) -> bool {
        self.pod.ready || service.spec.publish_not_ready_addresses
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.pod.name
    }

    pub fn node(&self) -> &str {
        &self.pod.node
    }

    /// The pod's hostname when its subdomain names this Service (its DNS name under it).
    pub fn hostname(&self) -> Option<&str> {
        self.pod.hostname.as_deref().filter(|_| self.named)
    }

    /// The port on the pod for Service port `port`; none when its target is a name the pod
    /// does not declare (the pod is then no endpoint of that Service port).
    pub fn port(&self, port: &ServicePort) -> Option<u16> {
        target_port(port, &self.pod.ports)
    }
}

/// The port on a pod declaring `pod_ports` that Service port `port` forwards to.
fn target_port(port: &ServicePort, pod_ports: &[NamedPort]) -> Option<u16> {
    match &port.target_port {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => pod_ports
            .iter()
            .find(|c| &c.name == name && c.protocol == port.protocol.as_str())
            .map(|c| c.port),
    }
}

/// The endpoints of `service` among `pods`: selected, addressed and not being deleted (or any
/// of them, stopping too, with `publishNotReadyAddresses`). Unready pods are kept, for
/// `get endpoints` to list them as not ready; what sends traffic or answers DNS takes only
/// those [`Endpoint::serving`]. Endpoints on `gone_nodes` (NotReady for longer than the
/// eviction delay) are left out unless that would leave none serving: a blackhole is worse
/// than a slow endpoint. Sorted by address.
pub fn endpoints<'a>(
    namespace: &str,
    name: &str,
    service: &Service,
    pods: impl IntoIterator<Item = PodView<'a>>,
    gone_nodes: &BTreeSet<String>,
) -> Vec<Endpoint> {
    let spec = &service.spec;
    let mut all: Vec<Endpoint> = pods
        .into_iter()
        .filter(|p| p.namespace == namespace && spec.selects(p.labels))
        // A stopping pod leaves at once, unless the Service publishes every address (then it
        // stays until it is gone, as Kubernetes keeps terminating pods of such Services).
        .filter(|p| !p.deleting || spec.publish_not_ready_addresses)
        .filter_map(|p| {
            let pod = p.pod.as_ref()?;
            // A pod that declares none of the Service's named target ports serves none of it.
            if !spec.ports.is_empty()
                && !spec
                    .ports
                    .iter()
                    .any(|sp| target_port(sp, &pod.ports).is_some())
            {
                return None;
            }
            Some(Endpoint::new(pod.clone(), p.subdomain == Some(name)))
        })
        .collect();
    // One endpoint per address; of two reports of one address (a stale one beside its new
    // pod's, say), the serving one is kept.
    all.sort_by(|a, b| {
        a.ip()
            .cmp(&b.ip())
            .then(b.serving(service).cmp(&a.serving(service)))
            .then(a.cmp(b))
    });
    all.dedup_by(|a, b| a.ip() == b.ip());
    if all
        .iter()
        .any(|e| e.serving(service) && !gone_nodes.contains(e.node()))
    {
        all.retain(|e| !gone_nodes.contains(e.node()));
    }
    // Kept for as long as the Service is: no spare capacity (a Vec grown one endpoint at a time
    // to 10 holds room for 16).
    all.shrink_to_fit();
    all
}

/// `protocol` of a Service port as the report spells it.
pub fn protocol_name(p: Protocol) -> &'static str {
    p.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_manifests::{Object, parse_file};

    fn service(spec: &str) -> Service {
        let yaml = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n{spec}");
        let parsed = parse_file("svc.yaml", yaml.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.errors());
        match parsed.objects()[0].get() {
            Object::Service(s) => s.clone(),
            _ => unreachable!(),
        }
    }

    struct Pod {
        ns: &'static str,
        name: &'static str,
        node: &'static str,
        ip: Option<&'static str>,
        ready: bool,
        deleting: bool,
        labels: BTreeMap<String, String>,
        ports: Vec<NamedPort>,
    }

    fn pod(name: &'static str, node: &'static str, ip: &'static str, ready: bool) -> Pod {
        Pod {
            ns: "default",
            name,
            node,
            ip: Some(ip),
            ready,
            deleting: false,
            labels: [("app".to_string(), "web".to_string())].into(),
            ports: vec![NamedPort {
                name: "http".into(),
                port: 8080,
                protocol: "TCP".into(),
            }],
        }
    }

    fn views(pods: &[Pod]) -> Vec<PodView<'_>> {
        pods.iter()
            .map(|p| PodView {
                namespace: p.ns,
                pod: p.ip.map(|i| {
                    Arc::new(EndpointPod {
                        ip: i.parse().unwrap(),
                        ready: p.ready,
                        name: p.name.into(),
                        node: p.node.into(),
                        hostname: None,
                        ports: p.ports.clone(),
                    })
                }),
                deleting: p.deleting,
                labels: &p.labels,
                subdomain: None,
            })
            .collect()
    }

    fn names(eps: &[Endpoint]) -> Vec<&str> {
        eps.iter().map(Endpoint::name).collect()
    }

    #[test]
    fn the_table() {
        let by_number =
            service("  selector: {app: web}\n  ports: [{port: 80, targetPort: 9090}]\n");
        let by_name = service("  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n");
        let not_ready_too = service(
            "  selector: {app: web}\n  publishNotReadyAddresses: true\n  ports: [{port: 80}]\n",
        );
        let no_selector = service("  ports: [{port: 80}]\n");
        let mut other_ns = pod("o", "n1", "10.42.1.9", true);
        other_ns.ns = "prod";
        let mut other_app = pod("x", "n1", "10.42.1.8", true);
        other_app.labels = [("app".to_string(), "db".to_string())].into();
        let mut deleting = pod("d", "n1", "10.42.1.7", true);
        deleting.deleting = true;
        let mut no_ip = pod("i", "n1", "10.42.1.6", true);
        no_ip.ip = None;
        let mut no_named_port = pod("p", "n2", "10.42.2.5", true);
        no_named_port.ports.clear();
        let pods = vec![
            pod("a", "n1", "10.42.1.2", true),
            pod("b", "n2", "10.42.2.2", false),
            pod("c", "n3", "10.42.3.2", true),
            other_ns,
            other_app,
            deleting,
            no_ip,
            no_named_port,
        ];
        let none = BTreeSet::new();
        let n3_gone: BTreeSet<String> = ["n3".to_string()].into();
        let n1_n3_gone: BTreeSet<String> = ["n1".to_string(), "n3".to_string()].into();
        let all_gone: BTreeSet<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        let cases: Vec<(&str, &Service, &BTreeSet<String>, Vec<&str>)> = vec![
            (
                "selected, same namespace, addressed; unready ones too (not serving)",
                &by_number,
                &none,
                vec!["a", "b", "c", "p"],
            ),
            (
                "a named target port needs the pod to declare it",
                &by_name,
                &none,
                vec!["a", "b", "c"],
            ),
            (
                "publishNotReadyAddresses takes unready and stopping pods too",
                &not_ready_too,
                &none,
                vec!["a", "b", "c", "d", "p"],
            ),
            ("no selector: no endpoints", &no_selector, &none, vec![]),
            (
                "endpoints on a gone node are dropped",
                &by_number,
                &n3_gone,
                vec!["a", "b", "p"],
            ),
            (
                "unless that leaves none",
                &by_number,
                &all_gone,
                vec!["a", "b", "c", "p"],
            ),
            (
                "or leaves only unready ones",
                &by_name,
                &n1_n3_gone,
                vec!["a", "b", "c"],
            ),
        ];
        for (what, svc, gone, want) in cases {
            let got = endpoints("default", "web", svc, views(&pods), gone);
            let mut got = names(&got);
            got.sort();
            assert_eq!(got, want, "{what}");
        }
        let serving = |svc: &Service| {
            let got = endpoints("default", "web", svc, views(&pods), &none);
            let mut names: Vec<String> = got
                .iter()
                .filter(|e| e.serving(svc))
                .map(|e| e.name().to_string())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            serving(&by_number),
            ["a", "c", "p"],
            "only ready pods serve"
        );
        assert_eq!(
            serving(&not_ready_too),
            ["a", "b", "c", "d", "p"],
            "every pod serves with publishNotReadyAddresses"
        );
        let got = endpoints("default", "web", &by_name, views(&pods), &none);
        assert_eq!(
            got[0].port(&by_name.spec.ports[0]),
            Some(8080),
            "the named port resolved per pod"
        );
        let got = endpoints("default", "web", &by_number, views(&pods), &none);
        assert_eq!(got[0].port(&by_number.spec.ports[0]), Some(9090));
    }

    #[test]
    fn of_two_reports_of_one_address_the_serving_one_is_kept() {
        let svc = service("  selector: {app: web}\n  ports: [{port: 80}]\n");
        // "a" sorts first by name: a stale unready report beside the ready new pod.
        let pods = [
            pod("a-stale", "n1", "10.42.1.2", false),
            pod("b-new", "n1", "10.42.1.2", true),
        ];
        let got = endpoints("default", "web", &svc, views(&pods), &BTreeSet::new());
        assert_eq!(names(&got), ["b-new"]);
        assert!(got[0].serving(&svc));
    }

    #[test]
    fn a_hostname_names_the_endpoint_only_under_its_subdomain() {
        let svc = service("  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80}]\n");
        let pods = [
            pod("a", "n1", "10.42.1.2", true),
            pod("b", "n1", "10.42.1.3", true),
        ];
        let mut v = views(&pods);
        for (view, (hostname, subdomain)) in v.iter_mut().zip([("alpha", "web"), ("beta", "other")])
        {
            let mut pod = EndpointPod::clone(view.pod.as_ref().unwrap());
            pod.hostname = Some(hostname.into());
            view.pod = Some(Arc::new(pod));
            view.subdomain = Some(subdomain);
        }
        let got = endpoints("default", "web", &svc, v, &BTreeSet::new());
        assert_eq!(got[0].hostname(), Some("alpha"));
        assert_eq!(got[1].hostname(), None);
    }
}

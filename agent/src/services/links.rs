//! The Kubernetes service environment variables a container gets for the Services of its
//! namespace that exist when it starts (`enableServiceLinks`, on by default): for a Service
//! `redis-primary` at 10.43.0.11 with port 6379, `REDIS_PRIMARY_SERVICE_HOST=10.43.0.11`,
//! `REDIS_PRIMARY_SERVICE_PORT=6379`, and the Docker link style
//! `REDIS_PRIMARY_PORT=tcp://10.43.0.11:6379`, `REDIS_PRIMARY_PORT_6379_TCP=...`,
//! `..._PROTO`, `..._PORT`, `..._ADDR`; a named port adds `..._SERVICE_PORT_<NAME>`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use skiff_manifests::ServiceType;

use super::SharedService;

/// One Service with an address, as the environment names it: the Service object itself
/// (shared with the Service table, not copied) and its ClusterIP.
#[derive(Clone, Debug)]
pub struct ServiceLink {
    service: SharedService,
    pub ip: Ipv4Addr,
}

impl ServiceLink {
    /// `None` for a Service without a ClusterIP of its own (headless, ExternalName).
    pub fn new(service: SharedService, ip: Ipv4Addr) -> Option<ServiceLink> {
        let spec = &service.spec;
        (spec.type_ != ServiceType::ExternalName && !spec.is_headless())
            .then_some(ServiceLink { service, ip })
    }

    pub fn name(&self) -> &str {
        &self.service.metadata.name
    }

    /// (port name, port, `TCP`/`UDP`) in the Service's order.
    pub fn ports(&self) -> impl Iterator<Item = (&str, u16, &'static str)> {
        self.service
            .spec
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.port, p.protocol.as_str()))
    }
}

/// Equal when the variables they make are: the same name, address and ports (a change of
/// the Service elsewhere, its labels say, is not a change of its links).
impl PartialEq for ServiceLink {
    fn eq(&self, other: &ServiceLink) -> bool {
        self.ip == other.ip && self.name() == other.name() && self.ports().eq(other.ports())
    }
}

impl Eq for ServiceLink {}

/// Namespace -> its Services with a ClusterIP, by name.
pub type ServiceLinks = BTreeMap<String, Vec<ServiceLink>>;

/// The links of every Service that has a ClusterIP (headless and ExternalName have none).
pub fn links_of(table: &super::ServiceTable) -> ServiceLinks {
    let mut out = ServiceLinks::new();
    for view in table.values() {
        let Some(link) = view
            .allocation
            .cluster_ip
            .and_then(|ip| ServiceLink::new(view.service.clone(), ip))
        else {
            continue;
        };
        match out.get_mut(view.namespace()) {
            Some(links) => links.push(link),
            None => {
                out.insert(view.namespace().to_string(), vec![link]);
            }
        }
    }
    for links in out.values_mut() {
        links.shrink_to_fit();
    }
    out
}

fn var_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variables for `links`, in a stable order.
pub fn env_vars(links: &[ServiceLink]) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for link in links {
        let Some((_, first_port, first_proto)) = link.ports().next() else {
            continue;
        };
        let svc = var_name(link.name());
        let ip = link.ip;
        vars.push((format!("{svc}_SERVICE_HOST"), ip.to_string()));
        vars.push((format!("{svc}_SERVICE_PORT"), first_port.to_string()));
        for (name, port, _) in link.ports() {
            if !name.is_empty() {
                vars.push((
                    format!("{svc}_SERVICE_PORT_{}", var_name(name)),
                    port.to_string(),
                ));
            }
        }
        let scheme = |proto: &str| proto.to_ascii_lowercase();
        vars.push((
            format!("{svc}_PORT"),
            format!("{}://{ip}:{first_port}", scheme(first_proto)),
        ));
        for (_, port, proto) in link.ports() {
            let base = format!("{svc}_PORT_{port}_{proto}");
            vars.push((base.clone(), format!("{}://{ip}:{port}", scheme(proto))));
            vars.push((format!("{base}_PROTO"), scheme(proto)));
            vars.push((format!("{base}_PORT"), port.to_string()));
            vars.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    vars
}

/// A link for tests: Service `name` (namespace `default`) at `ip` with `ports` (YAML list
/// items under `ports:`).
#[cfg(test)]
pub(crate) fn test_link(name: &str, ip: &str, ports: &str) -> ServiceLink {
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: x}}\n  ports:\n{ports}"
    );
    let parsed = skiff_manifests::parse_file("svc.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let service = SharedService::new(parsed.objects()[0].clone()).expect("a Service");
    ServiceLink::new(service, ip.parse().expect("an address")).expect("a ClusterIP Service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_and_values() {
        let links = [test_link(
            "redis-primary",
            "10.43.0.11",
            "  - {name: redis, port: 6379}\n  - {name: metrics, port: 9121, protocol: UDP}\n",
        )];
        let vars: BTreeMap<String, String> = env_vars(&links).into_iter().collect();
        let want = [
            ("REDIS_PRIMARY_SERVICE_HOST", "10.43.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121"),
            ("REDIS_PRIMARY_PORT", "tcp://10.43.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.43.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.43.0.11"),
            ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.43.0.11:9121"),
        ];
        for (k, v) in want {
            assert_eq!(vars.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(vars.len(), 13);
    }

    #[test]
    fn links_compare_by_name_address_and_ports_only() {
        let a = test_link("db", "10.43.0.7", "  - {port: 5432}\n");
        assert_eq!(
            a,
            test_link("db", "10.43.0.7", "  - {port: 5432, targetPort: 5433}\n")
        );
        assert_ne!(a, test_link("db", "10.43.0.8", "  - {port: 5432}\n"));
        assert_ne!(a, test_link("db2", "10.43.0.7", "  - {port: 5432}\n"));
        assert_ne!(a, test_link("db", "10.43.0.7", "  - {port: 5433}\n"));
    }
}

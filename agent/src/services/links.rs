//! The Kubernetes service environment variables a container gets for the Services of its
//! namespace that exist when it starts (`enableServiceLinks`, on by default): for a Service
//! `redis-primary` at 10.43.0.11 with port 6379, `REDIS_PRIMARY_SERVICE_HOST=10.43.0.11`,
//! `REDIS_PRIMARY_SERVICE_PORT=6379`, and the Docker link style
//! `REDIS_PRIMARY_PORT=tcp://10.43.0.11:6379`, `REDIS_PRIMARY_PORT_6379_TCP=...`,
//! `..._PROTO`, `..._PORT`, `..._ADDR`; a named port adds `..._SERVICE_PORT_<NAME>`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use skiff_manifests::ServiceType;

/// One Service with an address, as the environment names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLink {
    pub name: String,
    pub ip: Ipv4Addr,
    /// (port name, port, `TCP`/`UDP`) in the Service's order.
    pub ports: Vec<(String, u16, &'static str)>,
}

/// Namespace -> its Services with a ClusterIP, by name.
pub type ServiceLinks = BTreeMap<String, Vec<ServiceLink>>;

/// The links of every Service that has a ClusterIP (headless and ExternalName have none).
pub fn links_of(table: &super::ServiceTable) -> ServiceLinks {
    let mut out = ServiceLinks::new();
    for view in table.values() {
        let spec = &view.service.spec;
        if spec.type_ == ServiceType::ExternalName || spec.is_headless() {
            continue;
        }
        let Some(ip) = view.allocation.cluster_ip else {
            continue;
        };
        out.entry(view.namespace().to_string())
            .or_default()
            .push(ServiceLink {
                name: view.name().to_string(),
                ip,
                ports: spec
                    .ports
                    .iter()
                    .map(|p| (p.name.clone(), p.port, p.protocol.as_str()))
                    .collect(),
            });
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
        let Some((_, first_port, first_proto)) = link.ports.first() else {
            continue;
        };
        let svc = var_name(&link.name);
        let ip = link.ip;
        vars.push((format!("{svc}_SERVICE_HOST"), ip.to_string()));
        vars.push((format!("{svc}_SERVICE_PORT"), first_port.to_string()));
        for (name, port, _) in &link.ports {
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
        for (_, port, proto) in &link.ports {
            let base = format!("{svc}_PORT_{port}_{proto}");
            vars.push((base.clone(), format!("{}://{ip}:{port}", scheme(proto))));
            vars.push((format!("{base}_PROTO"), scheme(proto)));
            vars.push((format!("{base}_PORT"), port.to_string()));
            vars.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_and_values() {
        let links = [ServiceLink {
            name: "redis-primary".into(),
            ip: "10.43.0.11".parse().unwrap(),
            ports: vec![("".into(), 6379, "TCP"), ("metrics".into(), 9121, "UDP")],
        }];
        let vars: BTreeMap<String, String> = env_vars(&links).into_iter().collect();
        let want = [
            ("REDIS_PRIMARY_SERVICE_HOST", "10.43.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
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
        assert_eq!(vars.len(), 12);
    }
}

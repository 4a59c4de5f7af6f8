//! Which tracked flows a Service change makes stale (pure). A UDP flow has no end, so after
//! its endpoint is gone the client's next datagrams would still go to the old address until
//! the flow times out; and a deleted Service must leave no flow behind. The proxy deletes what
//! [`stale`] names after each sync.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use skiff_cni::conntrack::Flow;

use super::rules::ProgrammedPort;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Flows to forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// UDP flows to the Service port (its ClusterIP or node port) answered by this endpoint.
    Endpoint {
        to: Target,
        endpoint: (Ipv4Addr, u16),
    },
    /// Every flow to a Service port that is no longer programmed.
    Port(Target),
}

/// Where clients send: a ClusterIP and port, and a node port on every address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub protocol: u8,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
}

impl Target {
    fn of(p: &ProgrammedPort) -> Target {
        Target {
            protocol: if p.protocol == "udp" { UDP } else { TCP },
            cluster_ip: p.cluster_ip,
            port: p.port,
            node_port: p.node_port,
        }
    }

    fn addressed_by(&self, flow: &Flow) -> bool {
        let o = &flow.orig;
        o.protocol == self.protocol
            && (self
                .cluster_ip
                .is_some_and(|ip| o.dst == ip && o.dport == self.port)
                || self.node_port.is_some_and(|port| o.dport == port))
    }
}

impl Stale {
    pub fn matches(&self, flow: &Flow) -> bool {
        match self {
            Stale::Endpoint { to, endpoint } => {
                to.addressed_by(flow)
                    && flow.reply.src == endpoint.0
                    && flow.reply.sport == endpoint.1
            }
            Stale::Port(to) => to.addressed_by(flow),
        }
    }
}

/// What going from `old` to `new` makes stale: UDP endpoints that left a port still
/// programmed, and every port no longer programmed (or programmed at another address).
pub fn stale(old: &[ProgrammedPort], new: &[ProgrammedPort]) -> Vec<Stale> {
    let key = |p: &ProgrammedPort| (p.service.clone(), p.key.clone());
    let now: BTreeMap<_, &ProgrammedPort> = new.iter().map(|p| (key(p), p)).collect();
    let mut out = Vec::new();
    for before in old {
        let target = Target::of(before);
        match now.get(&key(before)) {
            Some(after) if Target::of(after) == target => {
                if target.protocol != UDP {
                    continue;
                }
                for endpoint in &before.endpoints {
                    if !after.endpoints.contains(endpoint) {
                        out.push(Stale::Endpoint {
                            to: target.clone(),
                            endpoint: *endpoint,
                        });
                    }
                }
            }
            _ => out.push(Stale::Port(target)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cni::conntrack::FlowTuple;

    fn port(service: &str, protocol: &'static str, eps: &[(&str, u16)]) -> ProgrammedPort {
        ProgrammedPort {
            service: service.into(),
            key: format!("dns/{}", protocol.to_uppercase()),
            protocol,
            cluster_ip: Some("10.43.0.10".parse().unwrap()),
            port: 53,
            node_port: Some(30053),
            endpoints: eps
                .iter()
                .map(|(ip, p)| (ip.parse().unwrap(), *p))
                .collect(),
            affinity_seconds: None,
        }
    }

    fn flow(protocol: u8, dst: &str, dport: u16, endpoint: &str, eport: u16) -> Flow {
        let client: Ipv4Addr = "10.42.0.7".parse().unwrap();
        let dst: Ipv4Addr = dst.parse().unwrap();
        let endpoint: Ipv4Addr = endpoint.parse().unwrap();
        Flow {
            orig: FlowTuple {
                protocol,
                src: client,
                dst,
                sport: 40000,
                dport,
            },
            reply: FlowTuple {
                protocol,
                src: endpoint,
                dst: client,
                sport: eport,
                dport: 40000,
            },
        }
    }

    #[test]
    fn the_table() {
        let a = ("10.42.1.2", 5353);
        let b = ("10.42.2.2", 5353);
        let to_a = flow(UDP, "10.43.0.10", 53, a.0, a.1);
        let to_b = flow(UDP, "10.43.0.10", 53, b.0, b.1);
        let node_port_to_a = flow(UDP, "192.0.2.1", 30053, a.0, a.1);
        let direct_to_a = flow(UDP, a.0, a.1, a.0, a.1);
        let tcp_to_a = flow(TCP, "10.43.0.10", 53, a.0, a.1);
        let flows = [&to_a, &to_b, &node_port_to_a, &direct_to_a, &tcp_to_a];
        type Row<'a> = (
            &'a str,
            Vec<ProgrammedPort>,
            Vec<ProgrammedPort>,
            Vec<&'a Flow>,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "nothing changed",
                vec![port("s", "udp", &[a, b])],
                vec![port("s", "udp", &[a, b])],
                vec![],
            ),
            (
                "a UDP endpoint left: its flows through the ClusterIP and node port",
                vec![port("s", "udp", &[a, b])],
                vec![port("s", "udp", &[b])],
                vec![&to_a, &node_port_to_a],
            ),
            (
                "a TCP endpoint left: its connections are the endpoint's to end",
                vec![port("s", "tcp", &[a, b])],
                vec![port("s", "tcp", &[b])],
                vec![],
            ),
            (
                "the Service is gone: every flow to it, either protocol",
                vec![port("s", "udp", &[a, b]), port("t", "tcp", &[a])],
                vec![],
                vec![&to_a, &to_b, &node_port_to_a, &tcp_to_a],
            ),
            (
                "an endpoint added: nothing",
                vec![port("s", "udp", &[a])],
                vec![port("s", "udp", &[a, b])],
                vec![],
            ),
        ];
        for (what, old, new, want) in rows {
            let stale = stale(&old, &new);
            let got: Vec<&Flow> = flows
                .iter()
                .copied()
                .filter(|f| stale.iter().any(|s| s.matches(f)))
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }
}

//! Which tracked flows a Service change makes stale (pure). A UDP flow has no end, so after
//! its endpoint is gone the client's next datagrams would still go to the old address until
//! the flow times out; and a deleted Service must leave no flow behind. The proxy deletes what
//! [`stale`] names after each sync.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use skiff_cni::conntrack::Flow;

use super::rules::{NODE_PORT_MARK, ProgrammedPort};

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
    /// UDP flows to a ClusterIP port that no rule translated: sent while the port had no rules
    /// or no endpoint, they would keep going past the Service until they time out.
    Untranslated(Target),
    /// At the first sync after the agent started, when what was programmed before is not
    /// known: UDP flows to the service CIDR, and UDP flows a node port rule translated (their
    /// connection carries [`NODE_PORT_MARK`]), that the programmed ports would not make now.
    /// TCP connections are left to end (the rules may not hold every Service yet; a tracked
    /// connection keeps its endpoint).
    AtStart {
        cidr: ipnet::Ipv4Net,
        now: Vec<(Target, Vec<(Ipv4Addr, u16)>)>,
    },
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

    /// A flow to the ClusterIP port, or a translated one to the node port (a flow that no rule
    /// translated to some other host's port of that number is not this Service's).
    fn addressed_by(&self, flow: &Flow) -> bool {
        let o = &flow.orig;
        self.to_cluster_ip(flow)
            || (o.protocol == self.protocol
                && self
                    .node_port
                    .is_some_and(|port| o.dport == port && translated(flow)))
    }

    fn to_cluster_ip(&self, flow: &Flow) -> bool {
        let o = &flow.orig;
        o.protocol == self.protocol
            && self
                .cluster_ip
                .is_some_and(|ip| o.dst == ip && o.dport == self.port)
    }
}

/// Whether a rule rewrote the flow's destination (DNAT): the reply comes from elsewhere.
fn translated(flow: &Flow) -> bool {
    flow.reply.src != flow.orig.dst || flow.reply.sport != flow.orig.dport
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
            Stale::Untranslated(to) => to.to_cluster_ip(flow) && !translated(flow),
            Stale::AtStart { cidr, now } => {
                if flow.orig.protocol != UDP {
                    return false;
                }
                match now.iter().find(|(to, _)| to.addressed_by(flow)) {
                    // To the service CIDR, and no port of it is programmed: a Service gone;
                    // or through a node port (its connection mark says so) no longer
                    // programmed for UDP.
                    None => {
                        cidr.contains(&flow.orig.dst)
                            || (flow.mark & NODE_PORT_MARK != 0 && translated(flow))
                    }
                    Some((_, endpoints)) if translated(flow) => {
                        !endpoints.contains(&(flow.reply.src, flow.reply.sport))
                    }
                    Some((_, endpoints)) => !endpoints.is_empty(),
                }
            }
        }
    }
}

/// What to forget at the first sync after a start, with `new` programmed and nothing known of
/// what was before (a Service deleted, or an endpoint gone, while the agent was down): the UDP
/// flows [`stale`] would name for some earlier state. A flow through a node port is told by its
/// connection mark, set by the node port's rule: a hostPort's flow of the same number has none.
pub fn stale_at_start(cidr: ipnet::Ipv4Net, new: &[ProgrammedPort]) -> Stale {
    Stale::AtStart {
        cidr,
        now: new
            .iter()
            .map(|p| (Target::of(p), p.endpoints.clone()))
            .collect(),
    }
}

/// What going from `old` to `new` makes stale: UDP endpoints that left a port still
/// programmed, every port no longer programmed (or programmed at another address), and
/// untranslated UDP flows to a ClusterIP port that now has endpoints and had none (or no rules).
pub fn stale(old: &[ProgrammedPort], new: &[ProgrammedPort]) -> Vec<Stale> {
    let key = |p: &ProgrammedPort| (p.service.clone(), p.key.clone());
    let now: BTreeMap<_, &ProgrammedPort> = new.iter().map(|p| (key(p), p)).collect();
    let before: BTreeMap<_, &ProgrammedPort> = old.iter().map(|p| (key(p), p)).collect();
    let mut out = Vec::new();
    for after in new {
        let target = Target::of(after);
        let served_before = before
            .get(&key(after))
            .is_some_and(|b| Target::of(b) == target && !b.endpoints.is_empty());
        if target.protocol == UDP
            && target.cluster_ip.is_some()
            && !after.endpoints.is_empty()
            && !served_before
        {
            out.push(Stale::Untranslated(target));
        }
    }
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
            mark: 0,
        }
    }

    /// `f` as a node port rule leaves it: with the node port bit in its connection mark.
    fn marked(f: Flow) -> Flow {
        Flow {
            mark: NODE_PORT_MARK | 0x1,
            ..f
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
        // Sent before the rules (or an endpoint) were there: nothing translated it.
        let untranslated = flow(UDP, "10.43.0.10", 53, "10.43.0.10", 53);
        // A pod's own flow to some host's port 30053: not the Service's node port.
        let elsewhere_30053 = flow(UDP, "192.0.2.9", 30053, "192.0.2.9", 30053);
        let flows = [
            &to_a,
            &to_b,
            &node_port_to_a,
            &direct_to_a,
            &tcp_to_a,
            &untranslated,
            &elsewhere_30053,
        ];
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
                vec![&to_a, &to_b, &node_port_to_a, &tcp_to_a, &untranslated],
            ),
            (
                "an endpoint added: nothing",
                vec![port("s", "udp", &[a])],
                vec![port("s", "udp", &[a, b])],
                vec![],
            ),
            (
                "a UDP port first programmed: flows that went past it",
                vec![],
                vec![port("s", "udp", &[a])],
                vec![&untranslated],
            ),
            (
                "a UDP port's first endpoint: flows that went past it",
                vec![port("s", "udp", &[])],
                vec![port("s", "udp", &[a])],
                vec![&untranslated],
            ),
            (
                "a UDP port still without endpoints: nothing yet",
                vec![],
                vec![port("s", "udp", &[])],
                vec![],
            ),
            (
                "a TCP port first programmed: nothing (a connection that got no answer ends)",
                vec![],
                vec![port("s", "tcp", &[a])],
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

    #[test]
    fn at_start_what_no_programmed_port_would_make_is_stale() {
        let a = ("10.42.1.2", 5353);
        let b = ("10.42.2.2", 5353);
        let cidr: ipnet::Ipv4Net = "10.43.0.0/16".parse().unwrap();
        let to_a = flow(UDP, "10.43.0.10", 53, a.0, a.1);
        let to_b = flow(UDP, "10.43.0.10", 53, b.0, b.1);
        let node_port_to_a = marked(flow(UDP, "192.0.2.1", 30053, a.0, a.1));
        let tcp_to_a = flow(TCP, "10.43.0.10", 53, a.0, a.1);
        let untranslated = flow(UDP, "10.43.0.10", 53, "10.43.0.10", 53);
        // Through a node port no longer programmed (its Service deleted while the agent was
        // down), to a port number no Service has now; TCP is left to end.
        let gone_node_port = marked(flow(UDP, "192.0.2.1", 30099, a.0, a.1));
        let gone_tcp_node_port = marked(flow(TCP, "192.0.2.1", 30099, a.0, 8080));
        // A hostPort of the same number: translated, but no node port rule's mark.
        let host_port_to_a = flow(UDP, "192.0.2.1", 30099, a.0, a.1);
        // To a ClusterIP that no Service has now (deleted while the agent was down); the TCP
        // one is left to end.
        let gone_service = flow(UDP, "10.43.0.99", 53, a.0, a.1);
        let gone_tcp = flow(TCP, "10.43.0.99", 80, a.0, 8080);
        // Not the Services' business: outside the CIDR, or some host's port 30053.
        let direct_to_a = flow(UDP, a.0, a.1, a.0, a.1);
        let elsewhere_30053 = flow(UDP, "192.0.2.9", 30053, "192.0.2.9", 30053);
        let flows = [
            &to_a,
            &to_b,
            &node_port_to_a,
            &tcp_to_a,
            &untranslated,
            &gone_service,
            &gone_tcp,
            &direct_to_a,
            &elsewhere_30053,
            &gone_node_port,
            &gone_tcp_node_port,
            &host_port_to_a,
        ];
        let rows: Vec<(&str, Vec<ProgrammedPort>, Vec<&Flow>)> = vec![
            (
                "nothing programmed: every UDP flow to the CIDR or through a node port",
                vec![],
                vec![
                    &to_a,
                    &to_b,
                    &node_port_to_a,
                    &untranslated,
                    &gone_service,
                    &gone_node_port,
                ],
            ),
            (
                "udp with a and b: only the flows to the Service that is gone",
                vec![port("s", "udp", &[a, b])],
                vec![&untranslated, &gone_service, &gone_node_port],
            ),
            (
                "udp with b only: a's flows too, through the ClusterIP and node port",
                vec![port("s", "udp", &[b])],
                vec![
                    &to_a,
                    &node_port_to_a,
                    &untranslated,
                    &gone_service,
                    &gone_node_port,
                ],
            ),
            (
                "udp without endpoints: untranslated flows wait for one",
                vec![port("s", "udp", &[])],
                vec![
                    &to_a,
                    &to_b,
                    &node_port_to_a,
                    &gone_service,
                    &gone_node_port,
                ],
            ),
            (
                "tcp only: the UDP flows to its address are no Service's; TCP is left to end",
                vec![port("s", "tcp", &[b])],
                vec![
                    &to_a,
                    &to_b,
                    &node_port_to_a,
                    &untranslated,
                    &gone_service,
                    &gone_node_port,
                ],
            ),
        ];
        for (what, now, want) in rows {
            let stale = stale_at_start(cidr, &now);
            let got: Vec<&Flow> = flows.iter().copied().filter(|f| stale.matches(f)).collect();
            assert_eq!(got, want, "{what}");
        }
    }
}

//! Cluster DNS answers, pure: every node answers for the cluster domain (`cluster.local`) from
//! its own Service table, so names keep resolving on a node cut off from the others.
//!
//! - `<svc>.<ns>.svc.<domain>`: A of the ClusterIP; for a headless Service, one A per ready
//!   endpoint (every endpoint with `publishNotReadyAddresses`); for ExternalName, a CNAME.
//! - `<pod>.<svc>.<ns>.svc.<domain>`: A of that endpoint of a headless Service.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV per named port (the ClusterIP's name, or
//!   each endpoint's name for a headless Service, with its A in the additional section).
//! - `<d>.<c>.<b>.<a>.in-addr.arpa` of a ClusterIP: PTR to the Service's name.
//! - Any other name under the domain: NXDOMAIN (NODATA for a name that exists but not with
//!   that type), with the zone's SOA, so a search-path fan-out ends here.
//! - Everything else is the upstream resolvers' ([`Answer::Forward`]).

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use skiff_manifests::ServiceType;

use super::ServiceTable;

/// The cluster domain.
pub const DOMAIN: &str = "cluster.local";
/// Time to live of every answer (CoreDNS's kubernetes plugin's default).
pub const TTL: u32 = 5;

/// A pod's search domains in namespace `ns` (kubelet's ClusterFirst list).
pub fn searches(ns: &str) -> Vec<String> {
    vec![
        format!("{ns}.svc.{DOMAIN}"),
        format!("svc.{DOMAIN}"),
        DOMAIN.to_string(),
    ]
}

/// What to do with a query.
#[derive(Debug)]
pub enum Answer {
    /// Answered here.
    Local(Message),
    /// Not ours: send it to the upstream resolvers.
    Forward,
}

/// The answer to `request` from `table`.
pub fn answer(request: &Message, table: &ServiceTable) -> Answer {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.queries = request.queries.clone();
    if request.metadata.message_type != MessageType::Query
        || request.metadata.op_code != OpCode::Query
        || request.queries.len() != 1
    {
        response.metadata.response_code = ResponseCode::NotImp;
        return Answer::Local(response);
    }
    let query = &request.queries[0];
    let qname = query.name().to_lowercase();
    let qtype = query.query_type();
    let text = qname.to_ascii();
    let text = text.trim_end_matches('.');
    let zone = zone_name();
    let found = if let Some(rest) = text.strip_suffix(&format!(".{DOMAIN}")) {
        lookup(rest, &qname, table)
    } else if text == DOMAIN {
        Found::Exists(Vec::new(), Vec::new())
    } else if let Some(ip) = reverse(text) {
        match reverse_lookup(ip, table) {
            Some(name) => Found::Exists(
                vec![Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::PTR(PTR(name)),
                )],
                Vec::new(),
            ),
            None => return Answer::Forward,
        }
    } else {
        return Answer::Forward;
    };
    response.metadata.authoritative = true;
    match found {
        Found::Exists(records, additionals) => {
            let answers: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    qtype == RecordType::ANY
                        || r.record_type() == qtype
                        || r.record_type() == RecordType::CNAME
                })
                .collect();
            if answers.is_empty() {
                response.authorities.push(soa(&zone));
            } else {
                response.additionals = additionals;
            }
            response.answers = answers;
        }
        Found::Missing => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.authorities.push(soa(&zone));
        }
    }
    Answer::Local(response)
}

enum Found {
    /// The name exists: its records (of any type) and additional records.
    Exists(Vec<Record>, Vec<Record>),
    Missing,
}

fn zone_name() -> Name {
    Name::from_ascii(format!("{DOMAIN}.")).expect("a valid domain")
}

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{text}.{DOMAIN}.")).unwrap_or_else(|_| zone_name())
}

fn soa(zone: &Name) -> Record {
    let mname = Name::from_ascii(format!("ns.dns.{DOMAIN}.")).expect("valid");
    let rname = Name::from_ascii(format!("hostmaster.{DOMAIN}.")).expect("valid");
    Record::from_rdata(
        zone.clone(),
        TTL,
        RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL)),
    )
}

fn a(owner: &Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(owner.clone(), TTL, RData::A(A(ip)))
}

/// `rest` is the name without `.<domain>`, e.g. `web.default.svc`.
fn lookup(rest: &str, qname: &Name, table: &ServiceTable) -> Found {
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        ["svc"] => Found::Exists(Vec::new(), Vec::new()),
        [ns, "svc"] => {
            if table.values().any(|v| v.namespace == *ns) {
                Found::Exists(Vec::new(), Vec::new())
            } else {
                Found::Missing
            }
        }
        [svc, ns, "svc"] => match table.get(&format!("{ns}/{svc}")) {
            None => Found::Missing,
            Some(view) => Found::Exists(service_records(qname, view), Vec::new()),
        },
        [pod, svc, ns, "svc"] if !pod.starts_with('_') => {
            let Some(view) = table.get(&format!("{ns}/{svc}")) else {
                return Found::Missing;
            };
            if !view.service.spec.is_headless() {
                return Found::Missing;
            }
            match serving(view).find(|e| e.pod == *pod) {
                Some(e) => Found::Exists(vec![a(qname, e.ip)], Vec::new()),
                None => Found::Missing,
            }
        }
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            let Some(view) = table.get(&format!("{ns}/{svc}")) else {
                return Found::Missing;
            };
            let (port, proto) = (&port[1..], proto[1..].to_ascii_uppercase());
            let Some(sp) = view
                .service
                .spec
                .ports
                .iter()
                .find(|p| p.name == port && p.protocol.as_str() == proto)
            else {
                return Found::Missing;
            };
            let svc_name = name(&format!("{svc}.{ns}.svc"));
            if view.service.spec.is_headless() {
                let mut records = Vec::new();
                let mut additionals = Vec::new();
                let key = super::alloc::port_key(&sp.name, &proto);
                for e in serving(view) {
                    let Some(target_port) = e.ports.get(&key) else {
                        continue;
                    };
                    let target = name(&format!("{}.{svc}.{ns}.svc", e.pod));
                    records.push(Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::SRV(SRV::new(0, 100, *target_port, target.clone())),
                    ));
                    additionals.push(a(&target, e.ip));
                }
                Found::Exists(records, additionals)
            } else {
                let additionals = view
                    .allocation
                    .cluster_ip
                    .map(|ip| vec![a(&svc_name, ip)])
                    .unwrap_or_default();
                Found::Exists(
                    vec![Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::SRV(SRV::new(0, 100, sp.port, svc_name)),
                    )],
                    additionals,
                )
            }
        }
        _ => Found::Missing,
    }
}

/// The endpoints a headless Service's name lists.
fn serving(view: &super::ServiceView) -> impl Iterator<Item = &super::Endpoint> {
    let all = view.service.spec.publish_not_ready_addresses;
    view.endpoints.iter().filter(move |e| all || e.ready)
}

fn service_records(qname: &Name, view: &super::ServiceView) -> Vec<Record> {
    let spec = &view.service.spec;
    if spec.type_ == ServiceType::ExternalName {
        let target = spec.external_name.as_deref().unwrap_or_default();
        return Name::from_ascii(format!("{}.", target.trim_end_matches('.')))
            .map(|t| {
                vec![Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::CNAME(CNAME(t)),
                )]
            })
            .unwrap_or_default();
    }
    if spec.is_headless() {
        return serving(view).map(|e| a(qname, e.ip)).collect();
    }
    view.allocation
        .cluster_ip
        .map(|ip| vec![a(qname, ip)])
        .unwrap_or_default()
}

/// The address of an `in-addr.arpa` name.
fn reverse(text: &str) -> Option<Ipv4Addr> {
    let rest = text.strip_suffix(".in-addr.arpa")?;
    let octets: Vec<u8> = rest
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    let [d, c, b, a] = octets.as_slice() else {
        return None;
    };
    Some(Ipv4Addr::new(*a, *b, *c, *d))
}

fn reverse_lookup(ip: Ipv4Addr, table: &ServiceTable) -> Option<Name> {
    table
        .values()
        .find(|v| v.allocation.cluster_ip == Some(ip))
        .map(|v| name(&format!("{}.{}.svc", v.name, v.namespace)))
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;

//! Cluster DNS answers, pure: every node answers for the cluster domain (`cluster.local`) from
//! its own Service table, so names keep resolving on a node cut off from the others.
//!
//! - `<svc>.<ns>.svc.<domain>`: A of the ClusterIP; for a headless Service, one A per ready
//!   endpoint (every endpoint with `publishNotReadyAddresses`); for ExternalName, a CNAME.
//! - `<host>.<svc>.<ns>.svc.<domain>`: A of that endpoint of a headless Service, where `<host>`
//!   is the pod's `hostname` (when its `subdomain` names the Service) or its address with
//!   dashes (`10-42-1-5`), as CoreDNS names endpoints; the pod's name also answers (skiff has no
//!   StatefulSets, so this is how a Deployment's pod is reached by name).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV per named port (the ClusterIP's name, or
//!   each endpoint's name for a headless Service, with its A in the additional section).
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A of `a.b.c.d` (CoreDNS's `pods insecure`).
//! - `<d>.<c>.<b>.<a>.in-addr.arpa` of a ClusterIP: PTR to the Service's name; of an endpoint:
//!   PTR to its name under its Service.
//! - Any other name under the domain: NXDOMAIN (NODATA for a name that exists but not with
//!   that type), with the zone's SOA, so a search-path fan-out ends here.
//! - Everything else is the upstream resolvers' ([`Answer::Forward`]).

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use skiff_manifests::ServiceType;

use super::ServiceTable;

/// The cluster domain unless `--cluster-domain` says otherwise.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// Time to live of every answer (CoreDNS's kubernetes plugin's default).
pub const TTL: u32 = 5;

/// A pod's search domains in namespace `ns` (kubelet's ClusterFirst list).
pub fn searches(ns: &str, domain: &str) -> Vec<String> {
    vec![
        format!("{ns}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
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

/// The answer to `request` from `table` for the cluster domain `domain`.
pub fn answer(request: &Message, table: &ServiceTable, domain: &str) -> Answer {
    answer_with_pods(request, table, domain, &|_| None)
}

/// [`answer`], with `pod_namespace` giving the namespace of the pod that has an address: the
/// PTR of a pod that is no Service's endpoint is `<a-b-c-d>.<namespace>.pod.<domain>`.
pub fn answer_with_pods(
    request: &Message,
    table: &ServiceTable,
    domain: &str,
    pod_namespace: &dyn Fn(Ipv4Addr) -> Option<String>,
) -> Answer {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.as_str();
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
    let zone = zone_name(domain);
    let found = if let Some(rest) = text.strip_suffix(&format!(".{domain}")) {
        lookup(rest, &qname, table, domain)
    } else if text == domain {
        // The zone's apex: its SOA (and no other record: NOERROR without answers for the rest).
        Found::Exists(vec![soa(&zone, domain)], Vec::new())
    } else if let Some(ip) = reverse(text) {
        let pod = || pod_namespace(ip).map(|ns| name(&format!("{}.{ns}.pod", dashed(ip)), domain));
        match reverse_lookup(ip, table, domain).or_else(pod) {
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
                // The cluster zone's SOA, not for a reverse name (that is another zone).
                if reverse(text).is_none() {
                    response.authorities.push(soa(&zone, domain));
                }
            } else {
                response.additionals = additionals;
            }
            response.answers = answers;
        }
        Found::Missing => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.authorities.push(soa(&zone, domain));
        }
    }
    Answer::Local(response)
}

enum Found {
    /// The name exists: its records (of any type) and additional records.
    Exists(Vec<Record>, Vec<Record>),
    Missing,
}

fn zone_name(domain: &str) -> Name {
    Name::from_ascii(format!("{domain}.")).unwrap_or_else(|_| Name::root())
}

fn name(text: &str, domain: &str) -> Name {
    Name::from_ascii(format!("{text}.{domain}.")).unwrap_or_else(|_| zone_name(domain))
}

fn soa(zone: &Name, domain: &str) -> Record {
    let mname = name("ns.dns", domain);
    let rname = name("hostmaster", domain);
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
fn lookup(rest: &str, qname: &Name, table: &ServiceTable, domain: &str) -> Found {
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        ["svc"] | ["pod"] => Found::Exists(Vec::new(), Vec::new()),
        [_, "pod"] => Found::Exists(Vec::new(), Vec::new()),
        [dashed, _, "pod"] => match undash(dashed) {
            Some(ip) => Found::Exists(vec![a(qname, ip)], Vec::new()),
            None => Found::Missing,
        },
        [ns, "svc"] => {
            if table.values().any(|v| v.namespace() == *ns) {
                Found::Exists(Vec::new(), Vec::new())
            } else {
                Found::Missing
            }
        }
        [svc, ns, "svc"] => match table.get(format!("{ns}/{svc}").as_str()) {
            None => Found::Missing,
            Some(view) => Found::Exists(service_records(qname, view), Vec::new()),
        },
        [pod, svc, ns, "svc"] if !pod.starts_with('_') => {
            let Some(view) = table.get(format!("{ns}/{svc}").as_str()) else {
                return Found::Missing;
            };
            if !view.service.spec.is_headless() {
                return Found::Missing;
            }
            match serving(view).find(|e| endpoint_label(e) == *pod || e.name() == *pod) {
                Some(e) => Found::Exists(vec![a(qname, e.ip())], Vec::new()),
                None => Found::Missing,
            }
        }
        // SRV names a named port (an unnamed one has no `_<port>` label: `_` alone is no name).
        [port, proto, svc, ns, "svc"]
            if port.len() > 1 && port.starts_with('_') && proto.starts_with('_') =>
        {
            let Some(view) = table.get(format!("{ns}/{svc}").as_str()) else {
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
            let svc_name = name(&format!("{svc}.{ns}.svc"), domain);
            if view.service.spec.is_headless() {
                let mut records = Vec::new();
                let mut additionals = Vec::new();
                for e in serving(view) {
                    let Some(target_port) = e.port(sp) else {
                        continue;
                    };
                    let target = name(&format!("{}.{svc}.{ns}.svc", endpoint_label(e)), domain);
                    records.push(Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::SRV(SRV::new(0, 100, target_port, target.clone())),
                    ));
                    additionals.push(a(&target, e.ip()));
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
    view.endpoints.iter().filter(|e| e.serving(&view.service))
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
        return serving(view).map(|e| a(qname, e.ip())).collect();
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

fn reverse_lookup(ip: Ipv4Addr, table: &ServiceTable, domain: &str) -> Option<Name> {
    if let Some(v) = table.values().find(|v| v.allocation.cluster_ip == Some(ip)) {
        return Some(name(&format!("{}.{}.svc", v.name(), v.namespace()), domain));
    }
    table.values().find_map(|v| {
        let e = serving(v).find(|e| e.ip() == ip)?;
        Some(name(
            &format!("{}.{}.{}.svc", endpoint_label(e), v.name(), v.namespace()),
            domain,
        ))
    })
}

/// An endpoint's name under its Service: the pod's hostname, or its address with dashes.
fn endpoint_label(e: &super::Endpoint) -> String {
    match e.hostname() {
        Some(h) => h.to_string(),
        None => dashed(e.ip()),
    }
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `10-42-1-5` as an address.
fn undash(label: &str) -> Option<Ipv4Addr> {
    let octets: Vec<u8> = label
        .split('-')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets.as_slice() else {
        return None;
    };
    Some(Ipv4Addr::new(*a, *b, *c, *d))
}

#[cfg(test)]
#[path = "dns_tests.rs"]
pub(crate) mod tests;

//! The leader's address book for Services: a ClusterIP from the service CIDR and a node port for
//! each port of a NodePort Service. Pure: the same Services and the same previous book give the
//! same book, so a new leader (or a restarted one that reads the book back from gossip) keeps
//! every address while its Service exists.
//!
//! Order of preference for a ClusterIP: a pinned `spec.clusterIP` (refused with a reason when it
//! is outside the CIDR or taken by another Service), then the previous book's address, then a
//! hash of `namespace/name` probed linearly. Node ports likewise within the node port range. An
//! address or node port a Service still holds in the previous book is its own: a new pin of it
//! is refused (as Kubernetes refuses an address already allocated), it does not move the holder.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use skiff_manifests::{ClusterIp, NodePortRange, Service, ServiceType};

/// `namespace/name` (held inline up to 24 bytes).
pub type ServiceName = compact_str::CompactString;

/// What one Service got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// None for headless and ExternalName Services, and when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<Ipv4Addr>,
    /// `<port name>/<protocol>` (the name empty for a single unnamed port) -> node port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_ports: BTreeMap<String, u16>,
    /// Why an address or a node port could not be given (the Service is then not programmed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// The leader's book, as published under `sched/svc-ips`.
pub type Book = BTreeMap<ServiceName, Allocation>;

/// The key of a Service port in [`Allocation::node_ports`].
pub fn port_key(name: &str, protocol: &str) -> String {
    format!("{name}/{protocol}")
}

/// Allocates addresses and node ports for `services` (namespace/name -> Service), keeping what
/// `previous` gave when it is still valid: ClusterIPs from `cidr`, node ports from `node_ports`.
pub fn allocate(
    services: &BTreeMap<ServiceName, &Service>,
    previous: &Book,
    cidr: Ipv4Net,
    node_ports: NodePortRange,
) -> Book {
    let mut book: Book = services
        .keys()
        .map(|k| (k.clone(), Allocation::default()))
        .collect();
    let mut used_ips: BTreeMap<Ipv4Addr, ServiceName> = BTreeMap::new();
    let usable =
        |ip: Ipv4Addr| cidr.contains(&ip) && ip != cidr.network() && ip != cidr.broadcast();
    let wants_ip = |s: &Service| {
        s.spec.type_ != ServiceType::ExternalName && s.spec.cluster_ip != ClusterIp::Headless
    };
    // 0. What the previous book gave Services that still exist and keep asking for it (no pin,
    // or a pin of that address) stays theirs.
    for (name, s) in services {
        let Some(ip) = previous.get(name).and_then(|a| a.cluster_ip) else {
            continue;
        };
        let keeps = match s.spec.cluster_ip {
            ClusterIp::Auto => true,
            ClusterIp::Pinned(pin) => pin == ip,
            ClusterIp::Headless => false,
        };
        if wants_ip(s) && keeps && usable(ip) {
            used_ips.entry(ip).or_insert_with(|| name.clone());
        }
    }
    let own_or_free = |used: &BTreeMap<Ipv4Addr, ServiceName>, ip: Ipv4Addr, name: &ServiceName| {
        used.get(&ip).is_none_or(|holder| holder == name)
    };
    // 1. Pinned addresses: the Service that held it before wins a conflict, then name order.
    let mut pinned: Vec<(&ServiceName, Ipv4Addr)> = services
        .iter()
        .filter(|(_, s)| wants_ip(s))
        .filter_map(|(k, s)| match s.spec.cluster_ip {
            ClusterIp::Pinned(ip) => Some((k, ip)),
            _ => None,
        })
        .collect();
    pinned.sort_by_key(|(k, ip)| {
        (
            previous.get(*k).and_then(|a| a.cluster_ip) != Some(*ip),
            (*k).clone(),
        )
    });
    for (name, ip) in pinned {
        let entry = book.get_mut(name).expect("listed");
        if !usable(ip) {
            entry.refused.push(format!(
                "clusterIP {ip} is not in the service CIDR {cidr} (or is its network or broadcast address)"
            ));
        } else if !own_or_free(&used_ips, ip, name) {
            let holder = &used_ips[&ip];
            entry.refused.push(format!(
                "clusterIP {ip} is already used by Service {holder}"
            ));
        } else {
            used_ips.insert(ip, name.clone());
            entry.cluster_ip = Some(ip);
        }
    }
    // 2. Previous addresses of Services that do not pin one.
    for (name, s) in services {
        if !wants_ip(s) || s.spec.cluster_ip != ClusterIp::Auto {
            continue;
        }
        if let Some(ip) = previous.get(name).and_then(|a| a.cluster_ip)
            && usable(ip)
            && own_or_free(&used_ips, ip, name)
        {
            used_ips.insert(ip, name.clone());
            book.get_mut(name).expect("listed").cluster_ip = Some(ip);
        }
    }
    // 3. New addresses: a hash of the name, probed linearly over the usable range.
    let size = u64::from(u32::from(cidr.broadcast()) - u32::from(cidr.network())).saturating_sub(1);
    for (name, s) in services {
        if !wants_ip(s) || s.spec.cluster_ip != ClusterIp::Auto {
            continue;
        }
        let entry = book.get_mut(name).expect("listed");
        if entry.cluster_ip.is_some() {
            continue;
        }
        let start = stable_hash(name) % size.max(1);
        let found = (0..size).find_map(|i| {
            let offset = (start + i) % size + 1;
            let ip = Ipv4Addr::from(u32::from(cidr.network()) + offset as u32);
            (!used_ips.contains_key(&ip)).then_some(ip)
        });
        match found {
            Some(ip) => {
                used_ips.insert(ip, name.clone());
                entry.cluster_ip = Some(ip);
            }
            None => entry
                .refused
                .push(format!("the service CIDR {cidr} has no free address left")),
        }
    }
    allocate_node_ports(services, previous, &mut book, node_ports);
    book
}

fn allocate_node_ports(
    services: &BTreeMap<ServiceName, &Service>,
    previous: &Book,
    book: &mut Book,
    range: NodePortRange,
) {
    let node_port_services = || {
        services
            .iter()
            .filter(|(_, s)| s.spec.type_ == ServiceType::NodePort)
    };
    // (port, protocol) -> holder (Service, port key).
    let mut used: BTreeMap<(u16, &'static str), (ServiceName, String)> = BTreeMap::new();
    // What the previous book gave ports that still exist and keep asking for it stays theirs.
    for (name, s) in node_port_services() {
        for p in &s.spec.ports {
            let key = port_key(&p.name, p.protocol.as_str());
            if let Some(np) = previous.get(name).and_then(|a| a.node_ports.get(&key))
                && range.contains(*np)
                && p.node_port.is_none_or(|pin| pin == *np)
            {
                used.entry((*np, p.protocol.as_str()))
                    .or_insert_with(|| (name.clone(), key));
            }
        }
    }
    let own_or_free = |used: &BTreeMap<(u16, &'static str), (ServiceName, String)>,
                       at: (u16, &'static str),
                       name: &ServiceName,
                       key: &str| {
        used.get(&at)
            .is_none_or(|(holder, held)| holder == name && held == key)
    };
    // Pinned node ports first: the previous holder wins, then name order.
    let mut pinned: Vec<(&ServiceName, String, &'static str, u16)> = Vec::new();
    for (name, s) in node_port_services() {
        for p in &s.spec.ports {
            if let Some(np) = p.node_port {
                let key = port_key(&p.name, p.protocol.as_str());
                pinned.push((name, key, p.protocol.as_str(), np));
            }
        }
    }
    pinned.sort_by_key(|(name, key, _, np)| {
        (
            previous.get(*name).and_then(|a| a.node_ports.get(key)) != Some(np),
            (*name).clone(),
            key.clone(),
        )
    });
    for (name, key, protocol, np) in pinned {
        let entry = book.get_mut(name).expect("listed");
        if !range.contains(np) {
            entry.refused.push(format!(
                "nodePort {np}/{protocol} is outside the node port range {range} (--service-node-port-range)"
            ));
        } else if !own_or_free(&used, (np, protocol), name, &key) {
            let (holder, _) = &used[&(np, protocol)];
            entry.refused.push(format!(
                "nodePort {np}/{protocol} is already used by Service {holder}"
            ));
        } else {
            used.insert((np, protocol), (name.clone(), key.clone()));
            entry.node_ports.insert(key, np);
        }
    }
    // Previous node ports, then new ones from a hash.
    let size = range.size();
    for pass in [false, true] {
        for (name, s) in node_port_services() {
            for p in &s.spec.ports {
                if p.node_port.is_some() {
                    continue;
                }
                let protocol = p.protocol.as_str();
                let key = port_key(&p.name, protocol);
                let entry = book.get_mut(name).expect("listed");
                if entry.node_ports.contains_key(&key) {
                    continue;
                }
                if !pass {
                    if let Some(np) = previous
                        .get(name)
                        .and_then(|a| a.node_ports.get(&key))
                        .copied()
                        && range.contains(np)
                        && own_or_free(&used, (np, protocol), name, &key)
                    {
                        used.insert((np, protocol), (name.clone(), key.clone()));
                        entry.node_ports.insert(key, np);
                    }
                    continue;
                }
                let start = (stable_hash(&format!("{name}/{key}")) % u64::from(size)) as u32;
                let found = (0..size).find_map(|i| {
                    let np = range.first() + ((start + i) % size) as u16;
                    (!used.contains_key(&(np, protocol))).then_some(np)
                });
                match found {
                    Some(np) => {
                        used.insert((np, protocol), (name.clone(), key.clone()));
                        entry.node_ports.insert(key, np);
                    }
                    None => entry
                        .refused
                        .push(format!("no free node port left for {protocol} in {range}")),
                }
            }
        }
    }
}

/// FNV-1a: stable across builds and platforms (std's hasher is not).
/// A refusal in the book that is new for its Service: a warning event `describe service` shows
/// (the only way a user learns why a pinned address or node port was not given). Routine
/// allocations make no event: creating many Services would push every other event out of the
/// bounded log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookEvent {
    pub service: ServiceName,
    pub reason: &'static str,
    pub message: String,
}

/// The refusals in `new` that `old` did not hold for the same Service. A Service that left
/// the book has nothing to say.
pub fn book_events(old: &Book, new: &Book) -> Vec<BookEvent> {
    let mut events = Vec::new();
    for (service, now) in new {
        let was = old.get(service).map_or(&[][..], |a| &a.refused[..]);
        for why in &now.refused {
            if !was.contains(why) {
                events.push(BookEvent {
                    service: service.clone(),
                    reason: "AllocationFailed",
                    message: why.clone(),
                });
            }
        }
    }
    events
}

fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_manifests::{Object, parse_file};

    fn service(name: &str, spec: &str) -> Service {
        let yaml =
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
        let parsed = parse_file("svc.yaml", yaml.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.errors());
        match parsed.objects()[0].get() {
            Object::Service(s) => s.clone(),
            _ => unreachable!(),
        }
    }

    fn run(list: &[(&str, Service)], previous: &Book, cidr: &str) -> Book {
        run_in(list, previous, cidr, NodePortRange::DEFAULT)
    }

    fn run_in(
        list: &[(&str, Service)],
        previous: &Book,
        cidr: &str,
        node_ports: NodePortRange,
    ) -> Book {
        let services: BTreeMap<ServiceName, &Service> = list
            .iter()
            .map(|(n, s)| (format!("default/{n}").into(), s))
            .collect();
        allocate(&services, previous, cidr.parse().expect("cidr"), node_ports)
    }

    fn ip(book: &Book, name: &str) -> Option<Ipv4Addr> {
        book.get(format!("default/{name}").as_str())
            .and_then(|a| a.cluster_ip)
    }

    const PORT: &str = "  ports: [{port: 80}]\n";

    #[test]
    fn addresses_are_stable_unique_and_in_the_cidr() {
        let cidr = "10.43.0.0/16";
        let list: Vec<(String, Service)> = (0..200)
            .map(|i| (format!("s{i}"), service(&format!("s{i}"), PORT)))
            .collect();
        let list: Vec<(&str, Service)> =
            list.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let first = run(&list, &Book::new(), cidr);
        let ips: std::collections::BTreeSet<Ipv4Addr> =
            first.values().filter_map(|a| a.cluster_ip).collect();
        assert_eq!(ips.len(), 200, "every Service has its own address");
        let net: Ipv4Net = cidr.parse().unwrap();
        assert!(
            ips.iter()
                .all(|ip| net.contains(ip) && *ip != net.network() && *ip != net.broadcast())
        );
        // Same inputs, no previous book: the same addresses (a leader with no history).
        assert_eq!(run(&list, &Book::new(), cidr), first);
        // Adding and removing Services leaves the others where they were.
        let mut more = list[10..].to_vec();
        let extra = service("extra", PORT);
        more.push(("extra", extra));
        let second = run(&more, &first, cidr);
        for (name, _) in &list[10..] {
            assert_eq!(
                ip(&second, name),
                ip(&first, name),
                "{name} kept its address"
            );
        }
        assert!(ip(&second, "extra").is_some());
        assert!(
            !second.contains_key("default/s0"),
            "a deleted Service leaves the book"
        );
    }

    #[test]
    fn the_table() {
        let small = "10.43.0.0/30"; // two usable addresses: .1 and .2
        struct Case {
            what: &'static str,
            services: Vec<(&'static str, Service)>,
            previous: Vec<(&'static str, &'static str)>,
            cidr: &'static str,
            want: Vec<(&'static str, Option<&'static str>, &'static str)>,
        }
        let cases = vec![
            Case {
                what: "a pinned address is honoured",
                services: vec![(
                    "a",
                    service("a", "  clusterIP: 10.43.7.7\n  ports: [{port: 80}]\n"),
                )],
                previous: vec![],
                cidr: "10.43.0.0/16",
                want: vec![("a", Some("10.43.7.7"), "")],
            },
            Case {
                what: "a pinned address outside the CIDR is refused",
                services: vec![(
                    "a",
                    service("a", "  clusterIP: 10.99.0.1\n  ports: [{port: 80}]\n"),
                )],
                previous: vec![],
                cidr: "10.43.0.0/16",
                want: vec![("a", None, "not in the service CIDR 10.43.0.0/16")],
            },
            Case {
                what: "two pins of one address: the holder keeps it, the other is refused",
                services: vec![
                    (
                        "a",
                        service("a", "  clusterIP: 10.43.0.9\n  ports: [{port: 80}]\n"),
                    ),
                    (
                        "b",
                        service("b", "  clusterIP: 10.43.0.9\n  ports: [{port: 80}]\n"),
                    ),
                ],
                previous: vec![("b", "10.43.0.9")],
                cidr: "10.43.0.0/16",
                want: vec![
                    ("a", None, "already used by Service default/b"),
                    ("b", Some("10.43.0.9"), ""),
                ],
            },
            Case {
                what: "a pin of an address another Service holds is refused: the holder keeps it",
                services: vec![
                    (
                        "a",
                        service("a", "  clusterIP: 10.43.0.9\n  ports: [{port: 80}]\n"),
                    ),
                    ("b", service("b", PORT)),
                ],
                previous: vec![("b", "10.43.0.9")],
                cidr: "10.43.0.0/16",
                want: vec![
                    (
                        "a",
                        None,
                        "clusterIP 10.43.0.9 is already used by Service default/b",
                    ),
                    ("b", Some("10.43.0.9"), ""),
                ],
            },
            Case {
                what: "an address whose Service is gone can be pinned",
                services: vec![(
                    "a",
                    service("a", "  clusterIP: 10.43.0.9\n  ports: [{port: 80}]\n"),
                )],
                previous: vec![("b", "10.43.0.9")],
                cidr: "10.43.0.0/16",
                want: vec![("a", Some("10.43.0.9"), "")],
            },
            Case {
                what: "a Service that pins another address gives its old one up",
                services: vec![
                    (
                        "a",
                        service("a", "  clusterIP: 10.43.0.9\n  ports: [{port: 80}]\n"),
                    ),
                    (
                        "b",
                        service("b", "  clusterIP: 10.43.0.10\n  ports: [{port: 80}]\n"),
                    ),
                ],
                previous: vec![("b", "10.43.0.9")],
                cidr: "10.43.0.0/16",
                want: vec![("a", Some("10.43.0.9"), ""), ("b", Some("10.43.0.10"), "")],
            },
            Case {
                what: "headless and ExternalName get none",
                services: vec![
                    ("h", service("h", "  clusterIP: None\n")),
                    (
                        "x",
                        service("x", "  type: ExternalName\n  externalName: a.example.com\n"),
                    ),
                ],
                previous: vec![],
                cidr: "10.43.0.0/16",
                want: vec![("h", None, ""), ("x", None, "")],
            },
            Case {
                what: "a full CIDR refuses the third",
                services: vec![
                    ("a", service("a", PORT)),
                    ("b", service("b", PORT)),
                    ("c", service("c", PORT)),
                ],
                previous: vec![("a", "10.43.0.1"), ("b", "10.43.0.2")],
                cidr: small,
                want: vec![
                    ("a", Some("10.43.0.1"), ""),
                    ("b", Some("10.43.0.2"), ""),
                    ("c", None, "no free address left"),
                ],
            },
        ];
        for case in cases {
            let previous: Book = case
                .previous
                .iter()
                .map(|(n, ip)| {
                    (
                        format!("default/{n}").into(),
                        Allocation {
                            cluster_ip: Some(ip.parse().unwrap()),
                            ..Allocation::default()
                        },
                    )
                })
                .collect();
            let book = run(&case.services, &previous, case.cidr);
            for (name, want_ip, want_refusal) in &case.want {
                let got = &book[format!("default/{name}").as_str()];
                assert_eq!(
                    got.cluster_ip,
                    want_ip.map(|i| i.parse().unwrap()),
                    "{}: {name}",
                    case.what
                );
                if want_refusal.is_empty() {
                    assert!(
                        got.refused.is_empty(),
                        "{}: {name}: {:?}",
                        case.what,
                        got.refused
                    );
                } else {
                    assert!(
                        got.refused.iter().any(|r| r.contains(want_refusal)),
                        "{}: {name}: {:?}",
                        case.what,
                        got.refused
                    );
                }
            }
        }
    }

    #[test]
    fn node_ports_pinned_kept_and_allocated() {
        let web = service(
            "web",
            "  type: NodePort\n  ports: [{name: http, port: 80, nodePort: 30080}, {name: admin, port: 81}]\n",
        );
        let other = service(
            "other",
            "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n",
        );
        // Without history the first name wins a pinned node port.
        let fresh = run(
            &[("web", web.clone()), ("other", other.clone())],
            &Book::new(),
            "10.43.0.0/16",
        );
        assert_eq!(fresh["default/other"].node_ports.get("/TCP"), Some(&30080));
        assert!(fresh["default/web"].refused[0].contains("already used by Service default/other"));
        // The Service that held it keeps it.
        let held: Book = [(
            "default/web".into(),
            Allocation {
                node_ports: [("http/TCP".to_string(), 30080)].into(),
                ..Allocation::default()
            },
        )]
        .into();
        let book = run(
            &[("web", web.clone()), ("other", other.clone())],
            &held,
            "10.43.0.0/16",
        );
        let web_ports = &book["default/web"].node_ports;
        assert_eq!(web_ports.get("http/TCP"), Some(&30080));
        let admin = *web_ports.get("admin/TCP").expect("allocated");
        assert!(NodePortRange::DEFAULT.contains(admin) && admin != 30080);
        assert!(
            book["default/other"]
                .refused
                .iter()
                .any(|r| r.contains("nodePort 30080/TCP is already used by Service default/web")),
            "{:?}",
            book["default/other"]
        );
        // The allocated one is kept on the next pass, even with other Services added.
        let third = service("third", "  type: NodePort\n  ports: [{port: 80}]\n");
        let again = run(
            &[("web", web.clone()), ("third", third)],
            &book,
            "10.43.0.0/16",
        );
        assert_eq!(
            again["default/web"].node_ports.get("admin/TCP"),
            Some(&admin)
        );
        assert_eq!(again["default/third"].node_ports.len(), 1);
        // A new pin of a node port another Service was given is refused; the holder keeps it.
        let late = service(
            "late",
            &format!("  type: NodePort\n  ports: [{{port: 80, nodePort: {admin}}}]\n"),
        );
        let after = run(
            &[("web", web.clone()), ("late", late)],
            &book,
            "10.43.0.0/16",
        );
        assert_eq!(
            after["default/web"].node_ports.get("admin/TCP"),
            Some(&admin)
        );
        assert!(after["default/late"].node_ports.is_empty());
        assert!(
            after["default/late"]
                .refused
                .iter()
                .any(|r| r.contains(&format!(
                    "nodePort {admin}/TCP is already used by Service default/web"
                ))),
            "{:?}",
            after["default/late"]
        );
        // UDP and TCP on the same number do not clash.
        let dns = service(
            "dns",
            "  type: NodePort\n  ports: [{name: a, port: 53, protocol: UDP, nodePort: 30053}, {name: b, port: 53, nodePort: 30053}]\n",
        );
        let book = run(&[("dns", dns)], &Book::new(), "10.43.0.0/16");
        assert_eq!(
            book["default/dns"].node_ports.len(),
            2,
            "{:?}",
            book["default/dns"]
        );
    }

    #[test]
    fn node_ports_come_from_the_configured_range() {
        let range: NodePortRange = "8000-8003".parse().unwrap();
        let cidr = "10.43.0.0/16";
        let np = |name: &str| service(name, "  type: NodePort\n  ports: [{port: 80}]\n");
        let pinned = |name: &str, port: u16| {
            service(
                name,
                &format!("  type: NodePort\n  ports: [{{port: 80, nodePort: {port}}}]\n"),
            )
        };
        let list = [("a", np("a")), ("b", np("b")), ("c", pinned("c", 8002))];
        let book = run_in(&list, &Book::new(), cidr, range);
        let ports: std::collections::BTreeSet<u16> = book
            .values()
            .flat_map(|a| a.node_ports.values().copied())
            .collect();
        assert_eq!(ports.len(), 3, "{book:?}");
        assert!(ports.iter().all(|p| range.contains(*p)), "{book:?}");
        assert_eq!(book["default/c"].node_ports.get("/TCP"), Some(&8002));
        // A pin outside the range is refused with the range named; the default range's
        // 30080 is outside this one.
        let book = run_in(&[("d", pinned("d", 30080))], &Book::new(), cidr, range);
        assert!(book["default/d"].node_ports.is_empty());
        assert!(
            book["default/d"].refused[0]
                .contains("nodePort 30080/TCP is outside the node port range 8000-8003"),
            "{:?}",
            book["default/d"]
        );
        // A port the previous book gave outside a new range moves into it.
        let old = run_in(
            &[("a", np("a"))],
            &Book::new(),
            cidr,
            NodePortRange::DEFAULT,
        );
        let moved = run_in(&[("a", np("a"))], &old, cidr, range);
        assert!(
            range.contains(moved["default/a"].node_ports["/TCP"]),
            "{moved:?}"
        );
        // Full: the fifth Service is refused, the others keep theirs.
        let five: Vec<(String, Service)> = (0..5)
            .map(|i| (format!("s{i}"), np(&format!("s{i}"))))
            .collect();
        let five: Vec<(&str, Service)> =
            five.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let book = run_in(&five, &Book::new(), cidr, range);
        let refused: Vec<&String> = book.values().flat_map(|a| &a.refused).collect();
        assert_eq!(
            refused,
            ["no free node port left for TCP in 8000-8003"],
            "{book:?}"
        );
    }

    #[test]
    fn book_events_are_the_refusals_that_are_new() {
        let cidr = "10.43.0.0/16";
        let web = service("web", PORT);
        let first = run(&[("web", web.clone())], &Book::new(), cidr);
        let ip = first["default/web"].cluster_ip.expect("an address");
        // An address given is no event; a Service that left says nothing either.
        assert!(book_events(&Book::new(), &first).is_empty());
        assert!(book_events(&first, &Book::new()).is_empty());
        // A pin another Service holds: refused once, not again while it stays refused.
        let pin = service("pin", &format!("  clusterIP: {ip}\n{PORT}"));
        let second = run(&[("web", web), ("pin", pin)], &first, cidr);
        assert_eq!(
            book_events(&first, &second),
            [BookEvent {
                service: "default/pin".into(),
                reason: "AllocationFailed",
                message: format!("clusterIP {ip} is already used by Service default/web"),
            }]
        );
        assert!(book_events(&second, &second).is_empty());
    }
}

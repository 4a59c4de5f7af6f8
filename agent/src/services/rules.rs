//! The nftables program for Services, planned as data and applied as `nft` scripts in
//! skiff's own service table (one per node): a verdict map from (address, protocol, port) to a
//! chain per Service port that picks an endpoint at random (`numgen`), one DNAT chain per
//! endpoint, node ports on the node's own addresses, and a reject for Services with no ready
//! endpoint (a TCP reset or ICMP unreachable at once, not a blackhole).
//!
//! The first sync replaces the whole table in one transaction; later ones send only the
//! difference (changed chains flushed and refilled, map elements added and deleted, chains no
//! longer used deleted after the elements that named them), also in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Packets to a node port are marked so that postrouting masquerades them (replies come back
/// through the node the client chose); their connection gets the same bit as its ct mark, so
/// that after a restart a UDP flow through a node port no longer programmed can be told from
/// a hostPort's (see [`super::flows::Stale::AtStart`]). The bit is ORed in, so other users'
/// bits stay; software that sets the whole ct mark only takes that cleanup away (such flows
/// then time out), and a foreign user of this bit only makes a translated UDP flow be
/// forgotten at start (its next datagram makes a new one).
pub const NODE_PORT_MARK: u32 = 0x4000;

/// One Service port as the node programs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammedPort {
    /// `namespace/name` and the port key (`<port name>/<protocol>`): names the chains.
    pub service: String,
    pub key: String,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// (endpoint address, port on the pod), sorted.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
    /// `sessionAffinity: ClientIP` timeout.
    pub affinity_seconds: Option<u32>,
}

/// The whole program: what the table must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// `addr . proto . port` -> chain (Services with endpoints).
    pub service_ips: BTreeMap<String, String>,
    /// `proto . port` -> chain (node ports with endpoints).
    pub node_ports: BTreeMap<String, String>,
    /// `addr . proto . port` of Services with no endpoint (rejected).
    pub rejected_ips: BTreeSet<String>,
    /// `proto . port` of node ports with no endpoint (rejected).
    pub rejected_node_ports: BTreeSet<String>,
    /// Chain name -> its rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name -> timeout seconds.
    pub sets: BTreeMap<String, u32>,
}

/// A short, stable name part (FNV-1a, 64 bits as hex): chains and sets are named by it, and two
/// that collide would share a chain, so 32 bits were too few (about 1% with 1,000 Services of
/// 10 endpoints and affinity sets).
fn tag(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Plans the table's content for `ports`.
pub fn plan(ports: &[ProgrammedPort]) -> Ruleset {
    let mut rs = Ruleset::default();
    for p in ports {
        let id = tag(&format!("{}/{}", p.service, p.key));
        let svc_chain = format!("svc-{id}");
        if p.endpoints.is_empty() {
            if let Some(ip) = p.cluster_ip {
                rs.rejected_ips
                    .insert(format!("{ip} . {} . {}", p.protocol, p.port));
            }
            if let Some(np) = p.node_port {
                rs.rejected_node_ports
                    .insert(format!("{} . {np}", p.protocol));
            }
            continue;
        }
        let mut rules = Vec::new();
        let mut ep_chains = Vec::new();
        if p.affinity_seconds.is_none() {
            // No affinity: one rule picks the endpoint and rewrites to it, so the table holds
            // one chain per Service port (a smaller table makes every nft transaction faster).
            rules.push(match p.endpoints.as_slice() {
                [(ip, port)] => format!("meta l4proto {} dnat to {ip}:{port}", p.protocol),
                many => {
                    let arms: Vec<String> = many
                        .iter()
                        .enumerate()
                        .map(|(i, (ip, port))| format!("{i} : {ip} . {port}"))
                        .collect();
                    format!(
                        "meta l4proto {} dnat ip addr . port to numgen random mod {} map {{ {} }}",
                        p.protocol,
                        many.len(),
                        arms.join(", ")
                    )
                }
            });
        }
        for (ip, port) in p.endpoints.iter().filter(|_| p.affinity_seconds.is_some()) {
            let ep_chain = format!(
                "sep-{}",
                tag(&format!("{}/{}/{ip}:{port}", p.service, p.key))
            );
            let mut ep_rules = Vec::new();
            if let Some(timeout) = p.affinity_seconds {
                // The timeout is part of the name: a new timeout is a new set.
                let set = format!("saf-{}", tag(&format!("{ep_chain}/{timeout}")));
                rs.sets.insert(set.clone(), timeout);
                rules.push(format!("ip saddr @{set} goto {ep_chain}"));
                ep_rules.push(format!("update @{set} {{ ip saddr }}"));
            }
            ep_rules.push(format!("meta l4proto {} dnat to {ip}:{port}", p.protocol));
            rs.chains.insert(ep_chain.clone(), ep_rules);
            ep_chains.push(ep_chain);
        }
        if ep_chains.is_empty() {
            // Picked above.
        } else if ep_chains.len() == 1 {
            rules.push(format!("goto {}", ep_chains[0]));
        } else {
            let arms: Vec<String> = ep_chains
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{i} : goto {c}"))
                .collect();
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                ep_chains.len(),
                arms.join(", ")
            ));
        }
        rs.chains.insert(svc_chain.clone(), rules);
        if let Some(ip) = p.cluster_ip {
            rs.service_ips.insert(
                format!("{ip} . {} . {}", p.protocol, p.port),
                svc_chain.clone(),
            );
        }
        if let Some(np) = p.node_port {
            let np_chain = format!("snp-{id}");
            rs.chains.insert(
                np_chain.clone(),
                vec![
                    format!("meta mark set meta mark | {NODE_PORT_MARK:#x}"),
                    format!("ct mark set ct mark | {NODE_PORT_MARK:#x}"),
                    format!("goto {svc_chain}"),
                ],
            );
            rs.node_ports
                .insert(format!("{} . {np}", p.protocol), np_chain);
        }
    }
    rs
}

/// The fixed part: maps, base chains and the reject chain.
fn skeleton(t: &str) -> String {
    format!(
        "add map ip {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n\
         add map ip {t} node-ports {{ type inet_proto . inet_service : verdict; }}\n\
         add set ip {t} rejected-ips {{ type ipv4_addr . inet_proto . inet_service; }}\n\
         add set ip {t} rejected-node-ports {{ type inet_proto . inet_service; }}\n\
         add chain ip {t} nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain ip {t} nat-output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain ip {t} nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         add chain ip {t} filter-forward {{ type filter hook forward priority -110; policy accept; }}\n\
         add chain ip {t} filter-output {{ type filter hook output priority -110; policy accept; }}\n\
         add chain ip {t} filter-input {{ type filter hook input priority -110; policy accept; }}\n\
         add chain ip {t} services\n\
         add chain ip {t} reject-service\n\
         add rule ip {t} services ip daddr . meta l4proto . th dport vmap @service-ips\n\
         add rule ip {t} services fib daddr type local meta l4proto . th dport vmap @node-ports\n\
         add rule ip {t} nat-prerouting jump services\n\
         add rule ip {t} nat-output jump services\n\
         add rule ip {t} nat-postrouting meta mark & {NODE_PORT_MARK:#x} == {NODE_PORT_MARK:#x} masquerade\n\
         add rule ip {t} filter-forward ct state new ip daddr . meta l4proto . th dport @rejected-ips goto reject-service\n\
         add rule ip {t} filter-output ct state new ip daddr . meta l4proto . th dport @rejected-ips goto reject-service\n\
         add rule ip {t} filter-input ct state new meta l4proto . th dport @rejected-node-ports goto reject-service\n\
         add rule ip {t} reject-service meta l4proto tcp reject with tcp reset\n\
         add rule ip {t} reject-service reject\n"
    )
}

fn add_chain(s: &mut String, t: &str, name: &str, rules: &[String]) {
    let _ = writeln!(s, "add chain ip {t} {name}");
    for r in rules {
        let _ = writeln!(s, "add rule ip {t} {name} {r}");
    }
}

/// Replaces the whole table with `rs` in one transaction.
pub fn full_script(t: &str, rs: &Ruleset) -> String {
    let mut s = format!("add table ip {t}\ndelete table ip {t}\nadd table ip {t}\n");
    for (set, timeout) in &rs.sets {
        let _ = writeln!(
            s,
            "add set ip {t} {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
        );
    }
    // Endpoint chains before the chains that jump to them.
    for (name, rules) in rs.chains.iter().filter(|(n, _)| n.starts_with("sep-")) {
        add_chain(&mut s, t, name, rules);
    }
    for (name, rules) in rs.chains.iter().filter(|(n, _)| n.starts_with("svc-")) {
        add_chain(&mut s, t, name, rules);
    }
    for (name, rules) in rs.chains.iter().filter(|(n, _)| n.starts_with("snp-")) {
        add_chain(&mut s, t, name, rules);
    }
    s.push_str(&skeleton(t));
    for (k, chain) in &rs.service_ips {
        let _ = writeln!(s, "add element ip {t} service-ips {{ {k} : goto {chain} }}");
    }
    for (k, chain) in &rs.node_ports {
        let _ = writeln!(s, "add element ip {t} node-ports {{ {k} : goto {chain} }}");
    }
    for k in &rs.rejected_ips {
        let _ = writeln!(s, "add element ip {t} rejected-ips {{ {k} }}");
    }
    for k in &rs.rejected_node_ports {
        let _ = writeln!(s, "add element ip {t} rejected-node-ports {{ {k} }}");
    }
    s
}

/// The script that turns `old` into `new`; empty when they are equal.
pub fn diff_script(t: &str, old: &Ruleset, new: &Ruleset) -> String {
    let mut s = String::new();
    // New sets, new and changed chains (endpoint chains first: service chains jump to them).
    for (set, timeout) in &new.sets {
        if !old.sets.contains_key(set) {
            let _ = writeln!(
                s,
                "add set ip {t} {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
            );
        }
    }
    for prefix in ["sep-", "svc-", "snp-"] {
        for (name, rules) in new.chains.iter().filter(|(n, _)| n.starts_with(prefix)) {
            match old.chains.get(name) {
                Some(old_rules) if old_rules == rules => {}
                Some(_) => {
                    let _ = writeln!(s, "flush chain ip {t} {name}");
                    for r in rules {
                        let _ = writeln!(s, "add rule ip {t} {name} {r}");
                    }
                }
                None => add_chain(&mut s, t, name, rules),
            }
        }
    }
    // Map and set elements.
    for (map, old_map, new_map) in [
        ("service-ips", &old.service_ips, &new.service_ips),
        ("node-ports", &old.node_ports, &new.node_ports),
    ] {
        for (k, chain) in old_map {
            if new_map.get(k) != Some(chain) {
                let _ = writeln!(s, "delete element ip {t} {map} {{ {k} }}");
            }
        }
        for (k, chain) in new_map {
            if old_map.get(k) != Some(chain) {
                let _ = writeln!(s, "add element ip {t} {map} {{ {k} : goto {chain} }}");
            }
        }
    }
    for (set, old_set, new_set) in [
        ("rejected-ips", &old.rejected_ips, &new.rejected_ips),
        (
            "rejected-node-ports",
            &old.rejected_node_ports,
            &new.rejected_node_ports,
        ),
    ] {
        for k in old_set.difference(new_set) {
            let _ = writeln!(s, "delete element ip {t} {set} {{ {k} }}");
        }
        for k in new_set.difference(old_set) {
            let _ = writeln!(s, "add element ip {t} {set} {{ {k} }}");
        }
    }
    // Chains and sets no longer used, after the elements and rules that named them: node
    // port chains, then service chains, then endpoint chains.
    for prefix in ["snp-", "svc-", "sep-"] {
        for name in old
            .chains
            .keys()
            .filter(|n| n.starts_with(prefix) && !new.chains.contains_key(*n))
        {
            let _ = writeln!(s, "flush chain ip {t} {name}\ndelete chain ip {t} {name}");
        }
    }
    for set in old.sets.keys().filter(|k| !new.sets.contains_key(*k)) {
        let _ = writeln!(s, "delete set ip {t} {set}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(service: &str, ip: &str, endpoints: &[(&str, u16)]) -> ProgrammedPort {
        ProgrammedPort {
            service: service.into(),
            key: "/TCP".into(),
            protocol: "tcp",
            cluster_ip: Some(ip.parse().unwrap()),
            port: 80,
            node_port: None,
            endpoints: endpoints
                .iter()
                .map(|(i, p)| (i.parse().unwrap(), *p))
                .collect(),
            affinity_seconds: None,
        }
    }

    #[test]
    fn plan_spreads_over_endpoints_and_rejects_without_any() {
        let mut web = port(
            "default/web",
            "10.43.0.10",
            &[("10.42.1.2", 8080), ("10.42.2.2", 8080)],
        );
        web.node_port = Some(30080);
        let empty = port("default/empty", "10.43.0.11", &[]);
        let rs = plan(&[web, empty]);
        let chain = &rs.service_ips["10.43.0.10 . tcp . 80"];
        let rules = &rs.chains[chain];
        assert_eq!(
            rules,
            &vec!["meta l4proto tcp dnat ip addr . port to numgen random mod 2 map { 0 : 10.42.1.2 . 8080, 1 : 10.42.2.2 . 8080 }".to_string()]
        );
        assert!(
            rs.chains.keys().all(|n| !n.starts_with("sep-")),
            "no chain per endpoint without affinity"
        );
        assert!(rs.rejected_ips.contains("10.43.0.11 . tcp . 80"));
        assert!(!rs.service_ips.contains_key("10.43.0.11 . tcp . 80"));
        let np = &rs.node_ports["tcp . 30080"];
        assert_eq!(
            rs.chains[np],
            [
                "meta mark set meta mark | 0x4000".to_string(),
                "ct mark set ct mark | 0x4000".to_string(),
                format!("goto {chain}"),
            ]
        );
        // One endpoint: no numgen.
        let one = plan(&[port("default/one", "10.43.0.12", &[("10.42.1.3", 80)])]);
        let chain = &one.service_ips["10.43.0.12 . tcp . 80"];
        assert_eq!(
            one.chains[chain][0],
            "meta l4proto tcp dnat to 10.42.1.3:80"
        );
    }

    #[test]
    fn affinity_remembers_the_client_per_endpoint() {
        let mut p = port(
            "default/web",
            "10.43.0.10",
            &[("10.42.1.2", 8080), ("10.42.2.2", 8080)],
        );
        p.affinity_seconds = Some(60);
        let rs = plan(&[p.clone()]);
        assert_eq!(rs.sets.len(), 2);
        let chain = &rs.service_ips["10.43.0.10 . tcp . 80"];
        let rules = &rs.chains[chain];
        assert!(
            rules[0].starts_with("ip saddr @saf-") && rules[2].starts_with("numgen"),
            "{rules:?}"
        );
        p.affinity_seconds = Some(30);
        let other = plan(&[p]);
        assert!(
            other.sets.keys().all(|k| !rs.sets.contains_key(k)),
            "a new timeout is a new set"
        );
    }

    #[test]
    fn a_diff_touches_only_what_changed_and_deletes_after_unlinking() {
        let before = plan(&[
            port(
                "default/web",
                "10.43.0.10",
                &[("10.42.1.2", 8080), ("10.42.2.2", 8080)],
            ),
            port("default/db", "10.43.0.20", &[("10.42.1.5", 5432)]),
        ]);
        assert_eq!(diff_script("t", &before, &before), "");
        // One web endpoint goes; db is untouched.
        let after = plan(&[
            port("default/web", "10.43.0.10", &[("10.42.1.2", 8080)]),
            port("default/db", "10.43.0.20", &[("10.42.1.5", 5432)]),
        ]);
        let script = diff_script("t", &before, &after);
        assert!(!script.contains("5432"), "db is not touched:\n{script}");
        assert!(
            !script.contains("element"),
            "the web element stays:\n{script}"
        );
        assert!(
            script.contains("flush chain ip t svc-")
                && script.contains("dnat to 10.42.1.2:8080")
                && script.lines().count() == 2,
            "only web's chain is rewritten:\n{script}"
        );
        // With affinity, endpoint chains go after the rule that named them.
        let sticky = |eps: &[(&str, u16)]| {
            let mut p = port("default/web", "10.43.0.10", eps);
            p.affinity_seconds = Some(60);
            plan(&[p])
        };
        let script = diff_script(
            "t",
            &sticky(&[("10.42.1.2", 8080), ("10.42.2.2", 8080)]),
            &sticky(&[("10.42.1.2", 8080)]),
        );
        let flush = script
            .find("flush chain ip t svc-")
            .expect("web chain rewritten");
        let delete = script
            .find("delete chain ip t sep-")
            .expect("gone endpoint's chain deleted");
        assert!(
            flush < delete,
            "rewritten before the chain it named goes:\n{script}"
        );
        // The last endpoint goes: the element moves to the reject set and the chains go.
        let none = plan(&[
            port("default/web", "10.43.0.10", &[]),
            port("default/db", "10.43.0.20", &[("10.42.1.5", 5432)]),
        ]);
        let script = diff_script("t", &after, &none);
        let unlink = script
            .find("delete element ip t service-ips { 10.43.0.10 . tcp . 80 }")
            .expect("element deleted");
        let svc_gone = script
            .find("delete chain ip t svc-")
            .expect("service chain deleted");
        assert!(unlink < svc_gone, "{script}");
        assert!(script.contains("add element ip t rejected-ips { 10.43.0.10 . tcp . 80 }"));
    }
}

//! Validation of a pod's name and resolver fields: `hostname`, `subdomain`, `dnsPolicy`,
//! `dnsConfig` and `hostAliases`, with Kubernetes' limits.

use std::net::IpAddr;

use crate::error::{FieldPath, Problems};
use crate::model::pod::{DnsOption, DnsPolicy, HostAlias, PodDnsConfig};
use crate::names;
use crate::raw::{List, RawDnsConfig, RawHostAlias};

use super::{check, elements, one_of, required_string};

/// At most this many nameservers (the resolver's own limit).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains, of at most this many characters together.
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// `hostname` and `subdomain`: DNS-1123 labels.
pub(crate) fn label(
    value: Option<String>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<String> {
    let value = value.filter(|v| !v.is_empty())?;
    check(names::check_dns1123_label(&value), path, problems).then_some(value)
}

/// `dnsPolicy` and `dnsConfig` together (`None` needs a nameserver in `dnsConfig`).
pub(crate) fn dns(
    policy: Option<String>,
    config: Option<RawDnsConfig>,
    path: &FieldPath,
    problems: &mut Problems,
) -> (DnsPolicy, Option<PodDnsConfig>) {
    let policy_path = path.child("dnsPolicy");
    let policy = match policy {
        None => DnsPolicy::ClusterFirst,
        Some(text) => one_of(
            &text,
            &[
                ("ClusterFirst", DnsPolicy::ClusterFirst),
                (
                    "ClusterFirstWithHostNet",
                    DnsPolicy::ClusterFirstWithHostNet,
                ),
                ("Default", DnsPolicy::Default),
                ("None", DnsPolicy::None),
            ],
            &policy_path,
            problems,
        )
        .unwrap_or_default(),
    };
    let config_path = path.child("dnsConfig");
    let config = config.map(|raw| dns_config(raw, &config_path, problems));
    if policy == DnsPolicy::None && config.as_ref().is_none_or(|c| c.nameservers.is_empty()) {
        problems.error(
            &config_path.child("nameservers"),
            "must name at least one nameserver when dnsPolicy is None",
        );
    }
    (policy, config)
}

fn dns_config(raw: RawDnsConfig, path: &FieldPath, problems: &mut Problems) -> PodDnsConfig {
    let ns_path = path.child("nameservers");
    let mut nameservers = Vec::new();
    for (_, item_path, text) in elements(raw.nameservers, &ns_path, problems) {
        match text.parse::<IpAddr>() {
            Ok(_) => nameservers.push(text),
            Err(_) => problems.error(&item_path, format!("must be an IP address (got {text:?})")),
        }
    }
    if nameservers.len() > MAX_NAMESERVERS {
        problems.error(
            &ns_path,
            format!(
                "must have at most {MAX_NAMESERVERS} nameservers (got {})",
                nameservers.len()
            ),
        );
    }
    let search_path = path.child("searches");
    let mut searches = Vec::new();
    for (_, item_path, text) in elements(raw.searches, &search_path, problems) {
        if check(
            names::check_dns1123_subdomain(text.trim_end_matches('.')),
            &item_path,
            problems,
        ) {
            searches.push(text);
        }
    }
    if searches.len() > MAX_SEARCHES {
        problems.error(
            &search_path,
            format!(
                "must have at most {MAX_SEARCHES} search domains (got {})",
                searches.len()
            ),
        );
    }
    let chars: usize =
        searches.iter().map(String::len).sum::<usize>() + searches.len().saturating_sub(1);
    if chars > MAX_SEARCH_CHARS {
        problems.error(
            &search_path,
            format!("must be at most {MAX_SEARCH_CHARS} characters together (got {chars})"),
        );
    }
    let mut options = Vec::new();
    for (_, item_path, option) in elements(raw.options, &path.child("options"), problems) {
        if let Some(name) = required_string(option.name, &item_path.child("name"), problems) {
            options.push(DnsOption {
                name,
                value: option.value,
            });
        }
    }
    PodDnsConfig {
        nameservers,
        searches,
        options,
    }
}

/// `hostAliases`: an address and at least one host name each.
pub(crate) fn host_aliases(
    list: Option<List<RawHostAlias>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<HostAlias> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let ip_path = item_path.child("ip");
        let ip = required_string(raw.ip, &ip_path, problems).filter(|ip| {
            let ok = ip.parse::<IpAddr>().is_ok();
            if !ok {
                problems.error(&ip_path, format!("must be an IP address (got {ip:?})"));
            }
            ok
        });
        let names_path = item_path.child("hostnames");
        let mut hostnames = Vec::new();
        for (_, name_path, name) in elements(raw.hostnames, &names_path, problems) {
            if check(names::check_dns1123_subdomain(&name), &name_path, problems) {
                hostnames.push(name);
            }
        }
        if hostnames.is_empty() {
            problems.error(&names_path, "must name at least one host");
            continue;
        }
        if let Some(ip) = ip {
            out.push(HostAlias { ip, hostnames });
        }
    }
    out
}

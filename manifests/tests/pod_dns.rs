//! A pod's name and resolver fields: hostname, subdomain, dnsPolicy, dnsConfig, hostAliases.

use skiff_manifests::{DnsPolicy, Object, PodSpec, parse_file};

fn pod_yaml(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox\n"
    )
}

fn spec(extra: &str) -> PodSpec {
    let parsed = parse_file("pod.yaml", pod_yaml(extra).as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    match parsed.objects()[0].get() {
        Object::Pod(p) => (*p.spec).clone(),
        _ => panic!("not a Pod"),
    }
}

fn errors(extra: &str) -> Vec<(String, String)> {
    parse_file("pod.yaml", pod_yaml(extra).as_bytes())
        .errors()
        .into_iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect()
}

#[test]
fn defaults_are_cluster_first_and_read_back_as_nothing() {
    let s = spec("");
    assert_eq!(s.dns_policy, DnsPolicy::ClusterFirst);
    assert!(s.dns_config.is_none() && s.host_aliases.is_empty());
    assert!(s.hostname.is_none() && s.subdomain.is_none());
    let json = serde_json::to_value(&s).unwrap();
    for field in [
        "dnsPolicy",
        "dnsConfig",
        "hostAliases",
        "hostname",
        "subdomain",
    ] {
        assert!(json.get(field).is_none(), "{field} in {json}");
    }
}

#[test]
fn every_field_is_read() {
    let s = spec(
        "  hostname: db-0\n  subdomain: db\n  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [corp.example, example.org.]\n    options:\n    - name: ndots\n      value: \"2\"\n    - name: edns0\n  hostAliases:\n  - ip: 192.0.2.10\n    hostnames: [foo.local, bar.local]\n",
    );
    assert_eq!(s.hostname.as_deref(), Some("db-0"));
    assert_eq!(s.subdomain.as_deref(), Some("db"));
    assert_eq!(s.dns_policy, DnsPolicy::None);
    let c = s.dns_config.clone().unwrap();
    assert_eq!(c.nameservers, ["192.0.2.53"]);
    assert_eq!(c.searches, ["corp.example", "example.org."]);
    assert_eq!(c.options.len(), 2);
    assert_eq!(c.options[0].value.as_deref(), Some("2"));
    assert_eq!(c.options[1].value, None);
    assert_eq!(s.host_aliases[0].ip, "192.0.2.10");
    assert_eq!(s.host_aliases[0].hostnames, ["foo.local", "bar.local"]);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["dnsPolicy"], "None");
    assert_eq!(json["dnsConfig"]["options"][0]["value"], "2");
    assert_eq!(json["hostAliases"][0]["hostnames"][1], "bar.local");
}

#[test]
fn policies_choose_the_cluster_dns_as_kubernetes_does() {
    assert!(DnsPolicy::ClusterFirst.uses_cluster_dns(false));
    assert!(!DnsPolicy::ClusterFirst.uses_cluster_dns(true));
    assert!(DnsPolicy::ClusterFirstWithHostNet.uses_cluster_dns(true));
    assert!(DnsPolicy::ClusterFirstWithHostNet.uses_cluster_dns(false));
    assert!(!DnsPolicy::Default.uses_cluster_dns(false));
    assert!(!DnsPolicy::None.uses_cluster_dns(false));
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (
            "  dnsPolicy: ClusterLast\n",
            "spec.dnsPolicy",
            "must be one of",
        ),
        (
            "  dnsPolicy: None\n",
            "spec.dnsConfig.nameservers",
            "at least one nameserver",
        ),
        (
            "  dnsPolicy: None\n  dnsConfig:\n    searches: [a.example]\n",
            "spec.dnsConfig.nameservers",
            "at least one nameserver",
        ),
        (
            "  dnsConfig:\n    nameservers: [1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4]\n",
            "spec.dnsConfig.nameservers",
            "at most 3",
        ),
        (
            "  dnsConfig:\n    nameservers: [dns.example]\n",
            "spec.dnsConfig.nameservers[0]",
            "IP address",
        ),
        (
            "  dnsConfig:\n    searches: [Bad_Domain]\n",
            "spec.dnsConfig.searches[0]",
            "subdomain",
        ),
        (
            "  dnsConfig:\n    options:\n    - value: \"1\"\n",
            "spec.dnsConfig.options[0].name",
            "required",
        ),
        (
            "  hostAliases:\n  - ip: nowhere\n    hostnames: [a]\n",
            "spec.hostAliases[0].ip",
            "IP address",
        ),
        (
            "  hostAliases:\n  - ip: 192.0.2.1\n",
            "spec.hostAliases[0].hostnames",
            "at least one host",
        ),
        (
            "  hostAliases:\n  - hostnames: [a]\n",
            "spec.hostAliases[0].ip",
            "required",
        ),
        (
            "  hostname: Not_A_Label\n",
            "spec.hostname",
            "RFC 1123 label",
        ),
        ("  subdomain: a.b\n", "spec.subdomain", "RFC 1123 label"),
    ];
    for (extra, field, message) in cases {
        let found = errors(extra);
        assert!(
            found.iter().any(|(f, m)| f == field && m.contains(message)),
            "{extra}: want {field}: {message}; got {found:?}"
        );
    }
    let many: Vec<String> = (0..33).map(|i| format!("s{i}.example")).collect();
    let found = errors(&format!(
        "  dnsConfig:\n    searches: [{}]\n",
        many.join(", ")
    ));
    assert!(
        found
            .iter()
            .any(|(f, m)| f == "spec.dnsConfig.searches" && m.contains("at most 32")),
        "{found:?}"
    );
}

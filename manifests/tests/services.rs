//! Services: what is accepted (and how it reads back), what is refused with its field named,
//! and what is accepted with a precise warning.

use skiff_manifests::{
    ClusterIp, NodePortRange, Object, ServiceType, SessionAffinity, TargetPort, parse_file,
};

fn service(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n{spec}")
}

/// (field, message) of every error.
fn errors(yaml: &str) -> Vec<(String, String)> {
    parse_file("svc.yaml", yaml.as_bytes())
        .errors()
        .into_iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect()
}

fn warnings(yaml: &str) -> Vec<(String, String)> {
    parse_file("svc.yaml", yaml.as_bytes())
        .warnings()
        .into_iter()
        .map(|w| (w.field.clone(), w.message.clone()))
        .collect()
}

fn valid(yaml: &str) -> skiff_manifests::Service {
    let parsed = parse_file("svc.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let object = *parsed.objects().first().expect("one object");
    match object.get() {
        Object::Service(s) => s.clone(),
        other => panic!("not a Service: {other:?}"),
    }
}

#[test]
fn a_cluster_ip_service_with_defaults() {
    let svc = valid(&service("  selector: {app: web}\n  ports:\n  - port: 80\n"));
    assert_eq!(svc.spec.type_, ServiceType::ClusterIP);
    assert_eq!(svc.spec.cluster_ip, ClusterIp::Auto);
    assert_eq!(svc.spec.ports.len(), 1);
    let port = &svc.spec.ports[0];
    assert_eq!(port.port, 80);
    assert_eq!(
        port.target_port,
        TargetPort::Number(80),
        "targetPort defaults to port"
    );
    assert_eq!(port.protocol.as_str(), "TCP");
    assert_eq!(svc.spec.session_affinity, SessionAffinity::None);
    assert!(
        svc.spec
            .selects(&[("app".to_string(), "web".to_string())].into())
    );
    assert!(
        !svc.spec
            .selects(&[("app".to_string(), "db".to_string())].into())
    );
}

#[test]
fn every_supported_field_is_read() {
    let svc = valid(&service(
        "  type: NodePort\n  clusterIP: 10.43.0.10\n  selector: {app: web}\n  publishNotReadyAddresses: true\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30080}\n  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}\n",
    ));
    assert_eq!(svc.spec.type_, ServiceType::NodePort);
    assert_eq!(
        svc.spec.cluster_ip,
        ClusterIp::Pinned("10.43.0.10".parse().unwrap())
    );
    assert!(svc.spec.publish_not_ready_addresses);
    assert_eq!(
        svc.spec.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: 60
        }
    );
    assert_eq!(
        svc.spec.ports[0].target_port,
        TargetPort::Name("http".into())
    );
    assert_eq!(svc.spec.ports[0].node_port, Some(30080));
    assert_eq!(svc.spec.ports[1].target_port, TargetPort::Number(5353));
    assert_eq!(svc.spec.ports[1].protocol.as_str(), "UDP");
    // Reads back in Kubernetes' shape.
    let json = serde_json::to_value(Object::Service(svc)).unwrap();
    assert_eq!(json["spec"]["clusterIP"], "10.43.0.10");
    assert_eq!(json["spec"]["type"], "NodePort");
    assert_eq!(json["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(json["spec"]["ports"][1]["targetPort"], 5353);
    assert_eq!(
        json["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        60
    );
}

#[test]
fn headless_and_external_name() {
    let headless = valid(&service("  clusterIP: None\n  selector: {app: db}\n"));
    assert!(headless.spec.is_headless());
    assert!(
        headless.spec.ports.is_empty(),
        "a headless Service may have no ports"
    );
    let external = valid(&service(
        "  type: ExternalName\n  externalName: db.example.com\n",
    ));
    assert_eq!(external.spec.type_, ServiceType::ExternalName);
    assert_eq!(
        external.spec.external_name.as_deref(),
        Some("db.example.com")
    );
}

#[test]
fn refusals_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  type: LoadBalancer\n  ports: [{port: 80}]\n",
            "spec.type",
            "LoadBalancer is not supported",
        ),
        (
            "  type: Fancy\n  ports: [{port: 80}]\n",
            "spec.type",
            "must be one of",
        ),
        (
            "  selector: {app: web}\n",
            "spec.ports",
            "at least one port is required",
        ),
        (
            "  ports: [{port: 80}, {port: 81}]\n",
            "spec.ports[0].name",
            "required when a Service has more than one port",
        ),
        (
            "  ports: [{name: a, port: 80}, {name: a, port: 81}]\n",
            "spec.ports[1].name",
            "duplicate port name",
        ),
        (
            "  ports: [{name: a, port: 80}, {name: b, port: 80}]\n",
            "spec.ports[1].port",
            "duplicate port 80/TCP",
        ),
        (
            "  ports: [{port: 0}]\n",
            "spec.ports[0].port",
            "between 1 and 65535",
        ),
        (
            "  ports: [{port: 80, protocol: SCTP}]\n",
            "spec.ports[0].protocol",
            "SCTP is not supported",
        ),
        (
            "  ports: [{port: 80, targetPort: Not_A_Name}]\n",
            "spec.ports[0].targetPort",
            "",
        ),
        (
            "  ports: [{port: 80, nodePort: 30080}]\n",
            "spec.ports[0].nodePort",
            "only a NodePort Service",
        ),
        (
            "  type: NodePort\n  ports: [{port: 80, nodePort: 70000}]\n",
            "spec.ports[0].nodePort",
            "between 1 and 65535",
        ),
        (
            "  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n",
            "spec.clusterIP",
            "cannot be headless",
        ),
        (
            "  clusterIP: fd00::1\n  ports: [{port: 80}]\n",
            "spec.clusterIP",
            "IPv6 is not supported",
        ),
        (
            "  clusterIP: 10.43.0.1\n  clusterIPs: [10.43.0.2]\n  ports: [{port: 80}]\n",
            "spec.clusterIPs[0]",
            "must equal clusterIP",
        ),
        (
            "  type: ExternalName\n",
            "spec.externalName",
            "required for type ExternalName",
        ),
        (
            "  externalName: x.example.com\n  ports: [{port: 80}]\n",
            "spec.externalName",
            "only type ExternalName",
        ),
        (
            "  externalIPs: [1.2.3.4]\n  ports: [{port: 80}]\n",
            "spec.externalIPs",
            "not supported",
        ),
        (
            "  externalTrafficPolicy: Local\n  type: NodePort\n  ports: [{port: 80}]\n",
            "spec.externalTrafficPolicy",
            "Local is not supported",
        ),
        (
            "  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n",
            "spec.ipFamilies[0]",
            "only IPv4",
        ),
        (
            "  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n",
            "spec.ipFamilyPolicy",
            "IPv4 only",
        ),
        (
            "  sessionAffinity: Sticky\n  ports: [{port: 80}]\n",
            "spec.sessionAffinity",
            "must be one of",
        ),
        (
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n",
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "between 1 and 86400",
        ),
    ];
    for (spec, field, message) in cases {
        let found = errors(&service(spec));
        assert!(
            found.iter().any(|(f, m)| f == field && m.contains(message)),
            "{spec}: want {field}: {message}; got {found:?}"
        );
    }
    let found = errors(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: 1web\nspec:\n  ports: [{port: 80}]\n",
    );
    assert!(
        found
            .iter()
            .any(|(f, m)| f == "metadata.name" && m.contains("must start with a letter")),
        "{found:?}"
    );
    // One DNS label: no dots, at most 63 characters (a Pod or ConfigMap may have either).
    let long = format!("a{}", "b".repeat(63));
    for name in ["web.v2", long.as_str()] {
        let found = errors(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports: [{{port: 80}}]\n"
        ));
        assert!(
            found
                .iter()
                .any(|(f, m)| f == "metadata.name" && m.contains("must be one DNS label")),
            "{name}: {found:?}"
        );
    }
    let fine = errors(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-{}\nspec:\n  ports: [{{port: 80}}]\n",
        "b".repeat(59)
    ));
    assert!(fine.is_empty(), "{fine:?}");
}

#[test]
fn accepted_with_a_precise_warning() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  ipFamilyPolicy: PreferDualStack\n  ports: [{port: 80}]\n",
            "spec.ipFamilyPolicy",
            "single-stack IPv4",
        ),
        (
            "  ports: [{port: 80, appProtocol: http}]\n",
            "spec.ports[0].appProtocol",
            "informational only",
        ),
        (
            "  type: ExternalName\n  externalName: a.example.com\n  ports: [{port: 80}]\n",
            "spec.ports",
            "ignored for type ExternalName",
        ),
        (
            "  ports: [{port: 80}]\n",
            "spec.selector",
            "skiff has no Endpoints objects",
        ),
        ("  clusterIP: None\n", "spec.selector", "selects no pods"),
        (
            "  type: ExternalName\n  externalName: a.example.com\n  selector: {app: web}\n",
            "spec.selector",
            "ignored: type ExternalName is only a DNS alias",
        ),
        (
            "  type: ExternalName\n  externalName: a.example.com\n  publishNotReadyAddresses: true\n",
            "spec.publishNotReadyAddresses",
            "ignored: type ExternalName",
        ),
        (
            "  type: ExternalName\n  externalName: a.example.com\n  sessionAffinity: ClientIP\n",
            "spec.sessionAffinity",
            "no connection goes through skiff",
        ),
    ];
    for (spec, field, message) in cases {
        let yaml = service(spec);
        assert!(errors(&yaml).is_empty(), "{spec}: {:?}", errors(&yaml));
        let found = warnings(&yaml);
        assert!(
            found.iter().any(|(f, m)| f == field && m.contains(message)),
            "{spec}: want {field}: {message}; got {found:?}"
        );
    }
    // What an ExternalName Service was told is ignored is not in the model either (no
    // endpoints are computed for it).
    let yaml = service(
        "  type: ExternalName\n  externalName: a.example.com\n  selector: {app: web}\n  publishNotReadyAddresses: true\n  sessionAffinity: ClientIP\n",
    );
    let parsed = parse_file("svc.yaml", yaml.as_bytes());
    let Object::Service(svc) = parsed.objects()[0].get() else {
        panic!("not a Service")
    };
    assert!(svc.spec.selector.is_empty());
    assert!(!svc.spec.publish_not_ready_addresses);
    assert_eq!(svc.spec.session_affinity, SessionAffinity::None);
}

#[test]
fn enable_service_links_defaults_to_true_and_reads_back_only_when_off() {
    let pod = |extra: &str| {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox\n"
        );
        let parsed = parse_file("pod.yaml", yaml.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.errors());
        assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
        let object = parsed.objects()[0].clone();
        let Object::Pod(p) = object.get() else {
            panic!("not a Pod")
        };
        (
            p.spec.enable_service_links,
            serde_json::to_value(object.get()).unwrap(),
        )
    };
    let (on, json) = pod("");
    assert!(on);
    assert!(json["spec"].get("enableServiceLinks").is_none(), "{json}");
    let (off, json) = pod("  enableServiceLinks: false\n");
    assert!(!off);
    assert_eq!(json["spec"]["enableServiceLinks"], false);
}

#[test]
fn node_ports_outside_the_nodes_range_are_refused_with_the_field() {
    let yaml = format!(
        "{}---\n{}",
        service("  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n"),
        service(
            "  type: NodePort\n  ports: [{name: b, port: 81}, {name: a, port: 80, nodePort: 8080}]\n"
        )
        .replace("name: web", "name: api")
    );
    // Parsing alone checks only that it is a port.
    let parsed = skiff_manifests::parse_file("np.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    for (range, api_ok) in [("30000-32767", false), ("8000-8999", true)] {
        let range: NodePortRange = range.parse().unwrap();
        let mut parsed = skiff_manifests::parse_file("np.yaml", yaml.as_bytes());
        parsed.check_node_ports("np.yaml", range);
        let errors: Vec<String> = parsed.errors().iter().map(|e| e.to_string()).collect();
        let web_ok = range.contains(30080);
        assert_eq!(
            parsed.objects().len(),
            usize::from(web_ok) + usize::from(api_ok),
            "{range}: {errors:?}"
        );
        if !api_ok {
            assert_eq!(
                errors,
                [
                    "manifest np.yaml: document 2: spec.ports[1].nodePort: must be in the node port range 30000-32767 (got 8080; the agent's --service-node-port-range)"
                ]
            );
        }
        if !web_ok {
            assert!(
                errors[0].contains("document 1: spec.ports[0].nodePort"),
                "{errors:?}"
            );
        }
    }
}

#[test]
fn node_port_ranges_parse_and_refuse_nonsense() {
    let r: NodePortRange = "30000-32767".parse().unwrap();
    assert_eq!(r, NodePortRange::DEFAULT);
    assert_eq!((r.size(), r.to_string().as_str()), (2768, "30000-32767"));
    let one: NodePortRange = "8080".parse().unwrap();
    assert!(one.contains(8080) && !one.contains(8081) && one.size() == 1);
    for bad in ["", "0-10", "20-10", "a-b", "1-70000", "-5", "30000-"] {
        assert!(bad.parse::<NodePortRange>().is_err(), "{bad:?}");
    }
}

use super::*;
use crate::services::endpoints::EndpointPod;
use crate::services::{Allocation, Endpoint, ServiceView};
use hickory_proto::op::Query;
use skiff_manifests::parse_file;
use std::collections::BTreeMap;

pub(crate) fn service(name: &str, spec: &str) -> crate::services::SharedService {
    let yaml = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
    let parsed = parse_file("svc.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    crate::services::SharedService::new(parsed.objects()[0].clone()).expect("a Service")
}

pub(crate) fn endpoint(pod: &str, ip: &str, ready: bool) -> Endpoint {
    named_endpoint(pod, ip, ready, None)
}

/// An endpoint whose pod has `hostname` under this Service.
fn named_endpoint(pod: &str, ip: &str, ready: bool, hostname: Option<&str>) -> Endpoint {
    let pod = EndpointPod {
        ip: ip.parse().unwrap(),
        ready,
        name: pod.into(),
        node: "n1".into(),
        hostname: hostname.map(Into::into),
        ports: Vec::new(),
    };
    Endpoint::new(std::sync::Arc::new(pod), hostname.is_some())
}

/// Four Services: `web` and `plain` with ClusterIPs, headless `db` with a named endpoint, a
/// not-ready one and a ready one, and ExternalName `ext`.
pub(crate) fn table() -> ServiceTable {
    let mut t = BTreeMap::new();
    let view = |svc, ip: Option<&str>, endpoints| ServiceView {
        service: svc,
        allocation: Allocation {
            cluster_ip: ip.map(|i| i.parse().unwrap()),
            ..Allocation::default()
        },
        endpoints,
        selected: 0,
    };
    t.insert(
        "default/web".into(),
        view(
            service(
                "web",
                "  selector: {app: web}\n  ports: [{name: http, port: 80}]\n",
            ),
            Some("10.43.0.10"),
            vec![],
        ),
    );
    t.insert(
        "default/db".into(),
        view(
            service(
                "db",
                "  clusterIP: None\n  selector: {app: db}\n  ports: [{name: db, port: 5432}]\n",
            ),
            None,
            vec![
                named_endpoint("db-0", "10.42.1.5", true, Some("primary")),
                endpoint("db-1", "10.42.2.5", false),
                endpoint("db-2", "10.42.3.5", true),
            ],
        ),
    );
    t.insert(
        "default/plain".into(),
        view(
            service("plain", "  selector: {app: plain}\n  ports: [{port: 80}]\n"),
            Some("10.43.0.11"),
            vec![],
        ),
    );
    t.insert(
        "default/ext".into(),
        view(
            service(
                "ext",
                "  type: ExternalName\n  externalName: db.example.com\n",
            ),
            None,
            vec![],
        ),
    );
    t
}

fn ask(name: &str, qtype: RecordType) -> Answer {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    answer(&request, &table(), DEFAULT_DOMAIN)
}

fn local(name: &str, qtype: RecordType) -> Message {
    match ask(name, qtype) {
        Answer::Local(m) => m,
        Answer::Forward => panic!("{name} forwarded"),
    }
}

fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn the_table() {
    let cases: &[(&str, RecordType, ResponseCode, &[&str])] = &[
        (
            "web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.43.0.10"],
        ),
        (
            "WEB.Default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.43.0.10"],
        ),
        (
            "web.default.svc.cluster.local.",
            RecordType::AAAA,
            ResponseCode::NoError,
            &[],
        ),
        (
            "db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.42.1.5", "10.42.3.5"],
        ),
        (
            "primary.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.42.1.5"],
        ),
        (
            "10-42-3-5.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.42.3.5"],
        ),
        (
            "db-2.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.42.3.5"],
        ),
        (
            "10-42-7-9.default.pod.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.42.7.9"],
        ),
        (
            "10-42-7.default.pod.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "5.3.42.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NoError,
            &["10-42-3-5.db.default.svc.cluster.local."],
        ),
        (
            "5.1.42.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NoError,
            &["primary.db.default.svc.cluster.local."],
        ),
        (
            "db-0.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["10.42.1.5"],
        ),
        (
            "db-1.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "db-0.web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "ext.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &["db.example.com."],
        ),
        (
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
            &["0 100 80 web.default.svc.cluster.local."],
        ),
        (
            "_db._tcp.db.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
            &[
                "0 100 5432 primary.db.default.svc.cluster.local.",
                "0 100 5432 10-42-3-5.db.default.svc.cluster.local.",
            ],
        ),
        (
            "_._tcp.plain.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "_nope._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "nope.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "web.default.svc.cluster.local.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            &[],
        ),
        (
            "prod.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
        ),
        (
            "10.0.43.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NoError,
            &["web.default.svc.cluster.local."],
        ),
    ];
    for (name, qtype, rcode, want) in cases {
        let m = local(name, *qtype);
        assert_eq!(m.metadata.response_code, *rcode, "{name} {qtype}");
        assert_eq!(data(&m), *want, "{name} {qtype}");
        assert!(m.metadata.authoritative, "{name}");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        if want.is_empty() {
            assert_eq!(
                m.authorities.len(),
                1,
                "{name}: the SOA says how long to cache the miss"
            );
        }
    }
    // The SRV of a headless Service carries its endpoints' addresses.
    let srv = local("_db._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(srv.additionals.len(), 2);
    // Not ours: the upstream resolvers answer.
    for name in ["example.com.", "1.0.168.192.in-addr.arpa."] {
        assert!(
            matches!(ask(name, RecordType::A), Answer::Forward),
            "{name}"
        );
    }
}

#[test]
fn answers_survive_the_wire() {
    let m = local("web.default.svc.cluster.local.", RecordType::A);
    let bytes = m.to_vec().expect("encode");
    let back = Message::from_vec(&bytes).expect("decode");
    assert_eq!(back.answers.len(), 1);
    assert_eq!(back.queries, m.queries);
}

#[test]
fn the_cluster_domain_is_a_setting() {
    let mut request = Message::query();
    request.add_query(Query::query(
        Name::from_ascii("web.default.svc.edge.example.").unwrap(),
        RecordType::A,
    ));
    let Answer::Local(m) = answer(&request, &table(), "edge.example") else {
        panic!("not answered")
    };
    assert_eq!(data(&m), ["10.43.0.10"]);
    assert!(matches!(
        answer(&request, &table(), DEFAULT_DOMAIN),
        Answer::Forward
    ));
    assert_eq!(
        searches("prod", "edge.example"),
        ["prod.svc.edge.example", "svc.edge.example", "edge.example"]
    );
}

#[test]
fn the_zone_apex_has_its_soa_and_reverse_names_no_cluster_soa() {
    let apex = local("cluster.local.", RecordType::SOA);
    assert_eq!(apex.metadata.response_code, ResponseCode::NoError);
    assert_eq!(apex.answers.len(), 1);
    assert_eq!(apex.answers[0].record_type(), RecordType::SOA);
    let ns = local("cluster.local.", RecordType::NS);
    assert!(ns.answers.is_empty() && ns.authorities.len() == 1, "{ns:?}");
    // An A question for a ClusterIP's reverse name: no answer, and no cluster.local SOA.
    let a = local("10.0.43.10.in-addr.arpa.", RecordType::A);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty() && a.authorities.is_empty(), "{a:?}");
}

#[test]
fn a_pod_that_is_no_endpoint_has_a_pod_ptr() {
    let ptr = |name: &str| {
        let mut request = Message::query();
        request.add_query(Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::PTR,
        ));
        let pods = |ip: Ipv4Addr| {
            [Ipv4Addr::new(10, 42, 9, 9), Ipv4Addr::new(10, 42, 2, 5)]
                .contains(&ip)
                .then(|| "tools".to_string())
        };
        answer_with_pods(&request, &table(), DEFAULT_DOMAIN, &pods)
    };
    let Answer::Local(m) = ptr("9.9.42.10.in-addr.arpa.") else {
        panic!("a pod's address is answered here")
    };
    assert_eq!(data(&m), ["10-42-9-9.tools.pod.cluster.local."]);
    // An endpoint keeps its name under the Service; an address of no pod goes upstream.
    let Answer::Local(m) = ptr("5.3.42.10.in-addr.arpa.") else {
        panic!("an endpoint")
    };
    assert_eq!(data(&m), ["10-42-3-5.db.default.svc.cluster.local."]);
    // An unready endpoint (db-1) is named as a pod: the Service does not serve it.
    let Answer::Local(m) = ptr("5.2.42.10.in-addr.arpa.") else {
        panic!("a pod's address is answered here")
    };
    assert_eq!(data(&m), ["10-42-2-5.tools.pod.cluster.local."]);
    assert!(matches!(ptr("8.8.8.8.in-addr.arpa."), Answer::Forward));
}

#[test]
fn a_headless_service_that_publishes_not_ready_addresses_lists_them_all() {
    let mut t = table();
    t.insert(
        "default/all".into(),
        ServiceView {
            service: service(
                "all",
                "  clusterIP: None\n  publishNotReadyAddresses: true\n  selector: {app: all}\n  ports: [{name: db, port: 5432}]\n",
            ),
            allocation: Allocation::default(),
            endpoints: vec![
                endpoint("all-0", "10.42.1.6", true),
                endpoint("all-1", "10.42.2.6", false),
            ],
            selected: 2,
        },
    );
    let mut request = Message::query();
    request.add_query(Query::query(
        Name::from_ascii("all.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let Answer::Local(m) = answer(&request, &t, DEFAULT_DOMAIN) else {
        panic!("forwarded")
    };
    let mut got = data(&m);
    got.sort();
    assert_eq!(got, ["10.42.1.6", "10.42.2.6"]);
}

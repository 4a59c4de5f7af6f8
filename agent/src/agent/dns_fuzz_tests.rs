//! Property-based fuzzing of the node's DNS server as the UDP loop runs it (any pod can send it
//! anything): arbitrary bytes and DNS-shaped queries of names near the cluster's never panic;
//! every answer is a response to the query (its id and question, within the UDP size the
//! client allows); and an answer copied from the cache is the answer made afresh.

use super::tests::settings;
use super::*;
use hickory_proto::op::Message;
use proptest::prelude::*;

fn state() -> watch::Receiver<Arc<ClusterState>> {
    let table = crate::services::dns::tests::table();
    let state = super::tests::state_with_pod(table, ("default", "db-0"), "10.42.1.5");
    // The sender may go: the receiver keeps the last value.
    watch::channel(Arc::new(state)).1
}

/// Labels near the cluster's names (and some that are not names at all).
fn label() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just("web"),
        Just("WeB"),
        Just("db"),
        Just("plain"),
        Just("ext"),
        Just("primary"),
        Just("default"),
        Just("svc"),
        Just("cluster"),
        Just("local"),
        Just("pod"),
        Just("in-addr"),
        Just("ip6"),
        Just("arpa"),
        Just("10"),
        Just("42"),
        Just("43"),
        Just("0"),
        Just("1"),
        Just("5"),
        Just("256"),
        Just("10-42-1-5"),
        Just("10-42-1"),
        Just("_http"),
        Just("_db"),
        Just("_tcp"),
        Just("_udp"),
        Just("*"),
        Just("-"),
    ]
    .prop_map(|w| w.as_bytes().to_vec());
    prop_oneof![
        6 => word,
        1 => prop::collection::vec(any::<u8>(), 1..64),
        1 => Just(vec![b'x'; 63]),
    ]
}

/// A query of one question (mostly of the cluster's zone), its flags, type and class partly
/// random, with or without an EDNS record.
fn query() -> impl Strategy<Value = Vec<u8>> {
    let qtype = prop_oneof![
        Just(1u16), // A
        Just(28),   // AAAA
        Just(33),   // SRV
        Just(12),   // PTR
        Just(5),    // CNAME
        Just(6),    // SOA
        Just(2),    // NS
        Just(16),   // TXT
        Just(255),  // ANY
        any::<u16>(),
    ];
    let class = prop_oneof![6 => Just(1u16), 1 => any::<u16>()];
    let suffix = prop_oneof![
        Just(vec!["svc", "cluster", "local"]),
        Just(vec!["default", "svc", "cluster", "local"]),
        Just(vec!["pod", "cluster", "local"]),
        Just(vec!["in-addr", "arpa"]),
        Just(vec!["cluster", "local"]),
        Just(vec![]),
    ];
    let made = (prop::collection::vec(label(), 0..6), suffix).prop_map(|(labels, suffix)| {
        let suffix = suffix.iter().map(|s| s.as_bytes().to_vec());
        labels.into_iter().chain(suffix).collect::<Vec<_>>()
    });
    // The names the table answers, whole.
    let known = prop_oneof![
        Just("web.default.svc.cluster.local"),
        Just("db.default.svc.cluster.local"),
        Just("primary.db.default.svc.cluster.local"),
        Just("ext.default.svc.cluster.local"),
        Just("plain.default.svc.cluster.local"),
        Just("_http._tcp.web.default.svc.cluster.local"),
        Just("_db._tcp.db.default.svc.cluster.local"),
        Just("10.0.43.10.in-addr.arpa"),
        Just("5.1.42.10.in-addr.arpa"),
        Just("10-42-1-5.default.pod.cluster.local"),
        Just("cluster.local"),
    ]
    .prop_map(|n| {
        n.split('.')
            .map(|l| l.as_bytes().to_vec())
            .collect::<Vec<_>>()
    });
    (
        any::<u16>(),
        prop_oneof![6 => Just(0x01u8), 1 => any::<u8>()],
        prop_oneof![1 => made, 1 => known],
        qtype,
        class,
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(id, flags, labels, qtype, class, edns)| {
            let mut q = Vec::new();
            q.extend_from_slice(&id.to_be_bytes());
            q.extend_from_slice(&[flags, 0]);
            let additional: u16 = edns.map_or(0, |_| 1);
            q.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
            q.extend_from_slice(&additional.to_be_bytes());
            for l in labels {
                q.push(l.len() as u8);
                q.extend_from_slice(&l);
            }
            q.push(0);
            q.extend_from_slice(&qtype.to_be_bytes());
            q.extend_from_slice(&class.to_be_bytes());
            if let Some(size) = edns {
                // OPT: root name, type 41, class = UDP size, TTL 0, no data.
                q.extend_from_slice(&[0, 0, 41]);
                q.extend_from_slice(&size.to_be_bytes());
                q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            }
            q
        })
}

/// The answer's meaning, for comparing a cached answer with a fresh one: names compared in
/// lower case (a cached answer keeps the case of the question that made it).
fn meaning(m: &Message) -> (u16, String, Vec<String>, usize, bool) {
    (
        m.metadata.id,
        format!("{:?}", m.metadata.response_code),
        m.answers
            .iter()
            .map(|r| format!("{} {}", r.name.to_lowercase(), r.data).to_lowercase())
            .collect(),
        m.authorities.len(),
        m.metadata.truncation,
    )
}

/// Checks one answer to `query`; returns it parsed.
fn check(query: &[u8], bytes: &[u8]) -> Result<Message, TestCaseError> {
    let reply = Message::from_vec(bytes)
        .map_err(|e| TestCaseError::fail(format!("the answer does not parse: {e}")))?;
    let asked = Message::from_vec(query)
        .map_err(|e| TestCaseError::fail(format!("an unparsable query was answered: {e}")))?;
    prop_assert_eq!(reply.metadata.id, asked.metadata.id);
    prop_assert_eq!(
        reply.metadata.message_type,
        hickory_proto::op::MessageType::Response
    );
    prop_assert_eq!(&reply.queries, &asked.queries);
    let limit = usize::from(asked.max_payload().clamp(512, UDP_PAYLOAD));
    prop_assert!(bytes.len() <= limit, "{} bytes over {limit}", bytes.len());
    Ok(reply)
}

/// Flips the case of the question's letters where `mask` says (a resolver's 0x20 trick).
fn recased(query: &[u8], mask: u64) -> Option<Vec<u8>> {
    let end = question_end(query)?;
    let mut q = query.to_vec();
    for (i, b) in q[12..end - 4].iter_mut().enumerate() {
        if b.is_ascii_alphabetic() && mask >> (i % 64) & 1 == 1 {
            *b ^= 0x20;
        }
    }
    Some(q)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fuzz_dns_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let (state, settings) = (state(), settings());
        let mut answerer = UdpAnswerer::default();
        for _ in 0..2 {
            if let Handled::Send(reply) = answerer.answer(&bytes, &state, &settings) {
                let reply = reply.to_vec();
                check(&bytes, &reply)?;
            }
        }
    }

    #[test]
    fn fuzz_dns_queries(q in query(), id in any::<u16>(), mask in any::<u64>()) {
        let (state, settings) = (state(), settings());
        let mut answerer = UdpAnswerer::default();
        let first = match answerer.answer(&q, &state, &settings) {
            Handled::Send(reply) => reply.to_vec(),
            Handled::Relay(_) | Handled::Drop => return Ok(()),
        };
        let first = check(&q, &first)?;
        // The same question again, with another id and its letters' case changed: the
        // answer (from the cache when the first was kept) means what a fresh one does.
        let Some(mut again) = recased(&q, mask) else { return Ok(()) };
        again[..2].copy_from_slice(&id.to_be_bytes());
        let kept = match answerer.answer(&again, &state, &settings) {
            Handled::Send(reply) => reply.to_vec(),
            _ => return Err(TestCaseError::fail("answered once, then not")),
        };
        let kept = check(&again, &kept)?;
        let fresh = match UdpAnswerer::default().answer(&again, &state, &settings) {
            Handled::Send(reply) => reply.to_vec(),
            _ => return Err(TestCaseError::fail("answered from the cache only")),
        };
        let fresh = check(&again, &fresh)?;
        prop_assert_eq!(meaning(&kept), meaning(&fresh));
        prop_assert_eq!(meaning(&first).1, meaning(&fresh).1);
    }
}

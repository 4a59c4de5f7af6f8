//! Property-based fuzzing of the node-to-node rpc framing and the join request decoder: any
//! bytes are refused or decoded, never a panic, within a time bound.

use super::wire;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(2);

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_rpc_request_frame(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let started = Instant::now();
        if let Some(payload) = wire::decode_request(&body) {
            prop_assert!(payload.len() < body.len());
        }
        let mut head = [0u8; 5];
        for (h, b) in head.iter_mut().zip(body.iter()) {
            *h = *b;
        }
        let _ = wire::parse_header(head);
        prop_assert!(started.elapsed() < BOUND);
    }

    #[test]
    fn fuzz_rpc_request_roundtrip(payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        let body = wire::encode_request(&payload);
        prop_assert_eq!(wire::decode_request(&body), Some(payload.as_slice()));
        // Any truncation or extension is refused.
        prop_assert_eq!(wire::decode_request(&body[..body.len() - 1]), None);
        let mut longer = body.clone();
        longer.push(0);
        prop_assert_eq!(wire::decode_request(&longer), None);
    }

    #[test]
    fn fuzz_join_request(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let started = Instant::now();
        let _ = postcard::from_bytes::<crate::join::JoinRequest>(&bytes);
        let _ = bytes
            .iter()
            .map(|b| *b as char)
            .collect::<String>()
            .parse::<crate::records::Digest>();
        prop_assert!(started.elapsed() < BOUND);
    }
}

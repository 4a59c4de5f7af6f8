//! Property-based fuzzing of the local API's request decoder (the line a client sends) and of
//! the node-to-node rpc request decoder: any bytes get a request or an error answer, never a
//! panic, within a time bound; every request that decodes encodes back to itself.

use super::Request;
use super::server::decode_line;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(2);

fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"".to_string()),
        Just("\"type\"".to_string()),
        Just("\"Get\"".to_string()),
        Just("\"Apply\"".to_string()),
        Just("\"Logs\"".to_string()),
        Just("\"files\"".to_string()),
        Just("\"kind\"".to_string()),
        Just("null".to_string()),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        "[a-zA-Z0-9 _.-]{0,10}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

fn check(line: &[u8]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    match decode_line(line) {
        Ok(request) => {
            let again = serde_json::to_string(&request).expect("requests encode");
            prop_assert_eq!(serde_json::from_str::<Request>(&again).ok(), Some(request));
        }
        Err(e) => prop_assert!(e.to_string().starts_with("malformed request: ")),
    }
    let _ = serde_json::from_slice::<crate::agent::node_request::NodeRequest>(line);
    prop_assert!(started.elapsed() < BOUND);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_api_request_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes)?;
    }

    #[test]
    fn fuzz_api_request_json_shaped(text in jsonish()) {
        check(text.as_bytes())?;
    }
}

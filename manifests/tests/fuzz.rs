//! Property-based fuzzing of the manifest parser and validator: any bytes, and YAML-shaped text
//! built from the tokens that break parsers (anchors, aliases, deep nesting, odd scalars), are
//! answered with objects or errors naming the file: never a panic, and within a time bound.
//! `cargo xtask fuzz --minutes N` runs these longer (PROPTEST_CASES).

use proptest::prelude::*;
use std::time::{Duration, Instant};

/// Per-input time bound; generous for a debug build on a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(2);

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("apiVersion: v1\n".to_string()),
        Just("apiVersion: apps/v1\n".to_string()),
        Just("kind: Pod\n".to_string()),
        Just("kind: Deployment\n".to_string()),
        Just("kind: ConfigMap\n".to_string()),
        Just("kind: Secret\n".to_string()),
        Just("metadata: {name: web}\n".to_string()),
        Just("spec:\n".to_string()),
        Just("  replicas: ".to_string()),
        Just("  containers:\n  - name: c\n    image: busybox\n".to_string()),
        Just("  template:\n    spec:\n".to_string()),
        Just("data:\n  a: ".to_string()),
        Just("&a [".to_string()),
        Just("*a, ".to_string()),
        Just("<<: *a\n".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("- ".to_string()),
        Just("---\n".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("!!binary ".to_string()),
        Just("1e999999".to_string()),
        Just("99999999999999999999999Ei".to_string()),
        Just("-1".to_string()),
        Just("null".to_string()),
        Just("~".to_string()),
        Just("\u{0}".to_string()),
        "[a-zA-Z0-9:./-]{0,12}",
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

fn check(bytes: &[u8]) {
    let started = Instant::now();
    let parsed = skiff_manifests::parse_file("fuzz.yaml", bytes);
    let took = started.elapsed();
    assert!(took < BOUND, "parsing took {took:?}");
    for e in parsed.errors() {
        assert!(e.to_string().contains("fuzz.yaml"), "{e}");
    }
    // Whatever validated serializes and validates again to the same object.
    for object in parsed.objects() {
        let json = object.to_json();
        let again = skiff_manifests::Valid::<skiff_manifests::Object>::from_json(&json)
            .expect("a validated object validates again");
        assert_eq!(again.content_hash(), object.content_hash());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_manifest_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes);
    }

    #[test]
    fn fuzz_manifest_yaml_shaped(text in yamlish()) {
        check(text.as_bytes());
    }

    #[test]
    fn fuzz_manifest_deep_nesting(depth in 0usize..20_000, open in prop_oneof![Just("["), Just("{a: "), Just("- ")]) {
        let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {}", open.repeat(depth));
        check(text.as_bytes());
    }
}

//! Image reference normalization (`busybox` -> `docker.io/library/busybox:latest`).

use oci_client::Reference;

use super::ImageError;

/// Parses an image reference and returns its canonical form: registry host, full repository path,
/// and a tag (`latest` when neither tag nor digest is given).
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    Ok(parse_reference(reference)?.whole())
}

pub(crate) fn parse_reference(reference: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    let parsed = reference
        .trim()
        .parse::<Reference>()
        .map_err(|e| invalid(e.to_string()))?;
    if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository names must be lowercase".into()));
    }
    Ok(parsed)
}

/// Whether to talk plain HTTP to `registry` (`host` or `host:port`): loopback hosts always, and
/// registries listed as insecure, either exactly or by host alone.
pub(crate) fn uses_plain_http(registry: &str, insecure: &[String]) -> bool {
    is_loopback_registry(registry)
        || insecure
            .iter()
            .any(|r| r == registry || registry.split(':').next() == Some(r.as_str()))
}

/// True for registries reached over plain HTTP without being listed: the loopback host.
pub(crate) fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_references() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            ("nginx/unit:1.2", "docker.io/nginx/unit:1.2"),
            ("skiff.local/busybox:latest", "skiff.local/busybox:latest"),
            ("skiff.local/busybox", "skiff.local/busybox:latest"),
            ("127.0.0.1:5000/x/y:1", "127.0.0.1:5000/x/y:1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:v2", "localhost:5000/app:v2"),
            (
                "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_reference(input).unwrap(), want, "input {input:?}");
        }
    }

    #[test]
    fn rejects_invalid_references() {
        for input in ["", "UPPER/case", "a b", "x@sha256:short", "registry:5000/"] {
            let err = normalize_reference(input).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidReference { .. }),
                "{input:?}: {err}"
            );
        }
    }

    #[test]
    fn insecure_list_matches_host_or_host_and_port() {
        let insecure = vec!["edge.lan".to_string(), "10.0.0.9:5000".to_string()];
        for (registry, want) in [
            ("edge.lan", true),
            ("edge.lan:5000", true),
            ("10.0.0.9:5000", true),
            ("10.0.0.9:6000", false),
            ("10.0.0.9", false),
            ("docker.io", false),
            ("localhost:5000", true),
        ] {
            assert_eq!(uses_plain_http(registry, &insecure), want, "{registry}");
        }
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        for (registry, want) in [
            ("127.0.0.1:5000", true),
            ("localhost", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("docker.io", false),
            ("skiff.local", false),
            ("10.0.0.1:5000", false),
        ] {
            assert_eq!(is_loopback_registry(registry), want, "{registry}");
        }
    }
}

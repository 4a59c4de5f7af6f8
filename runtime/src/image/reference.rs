//! Image reference normalization (`busybox` -> `docker.io/library/busybox:latest`).
//!
//! The grammar is the distribution project's (`[domain/]path[:tag][@digest]`), checked by hand:
//! oci-spec's `Reference::from_str` compiles a regex whose automaton holds about 7 MB of heap for
//! the life of the process, a third of the agent's memory budget.

use oci_client::Reference;

use super::ImageError;

/// Longest repository path a registry accepts.
const MAX_REPOSITORY_LEN: usize = 255;
/// Longest tag a registry accepts.
const MAX_TAG_LEN: usize = 128;

/// Parses an image reference and returns its canonical form: registry host, full repository path,
/// and a tag (`latest` when neither tag nor digest is given).
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    Ok(parse_reference(reference)?.whole())
}

pub(crate) fn parse_reference(reference: &str) -> Result<Reference, ImageError> {
    parse(reference.trim()).map_err(|reason| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    })
}

fn parse(s: &str) -> Result<Reference, &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
        None => (s, None),
    };
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&rest[..colon], Some(check_tag(&rest[colon + 1..])?))
        }
        _ => (rest, None),
    };
    let (registry, repository) = split_name(name)?;
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lowercase");
    }
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err("the repository name is longer than 255 characters");
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    })
}

/// Splits `[domain/]path` into registry and repository, Docker Hub's defaults filled in.
fn split_name(name: &str) -> Result<(String, String), &'static str> {
    let components: Vec<&str> = name.split('/').collect();
    let (first, path) = match components.split_first() {
        Some((first, path)) if !path.is_empty() => (*first, path),
        _ => (name, &[][..]),
    };
    let first_is_path = is_path_component(first);
    if !(first_is_path || (!path.is_empty() && is_domain(first))) {
        return Err("invalid reference format");
    }
    if !path.iter().all(|c| is_path_component(c)) {
        return Err("invalid reference format");
    }
    let explicit_domain =
        !path.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    if !explicit_domain {
        let repository = if path.is_empty() {
            format!("library/{name}")
        } else {
            name.to_string()
        };
        return Ok(("docker.io".into(), repository));
    }
    let registry = if first == "index.docker.io" {
        "docker.io"
    } else {
        first
    };
    let mut repository = path.join("/");
    if registry == "docker.io" && path.len() == 1 {
        repository = format!("library/{repository}");
    }
    Ok((registry.to_string(), repository))
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Lowercase alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = s.as_bytes();
    if !bytes.first().is_some_and(|&b| alnum(b as char))
        || !bytes.last().is_some_and(|&b| alnum(b as char))
    {
        return false;
    }
    let mut separator = String::new();
    for c in s.chars() {
        if alnum(c) {
            if !(separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|c| c == '-'))
            {
                return false;
            }
            separator.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return false;
        }
    }
    true
}

fn check_tag(tag: &str) -> Result<&str, &'static str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = tag.len() <= MAX_TAG_LEN
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(tag)
    } else {
        Err("invalid tag format")
    }
}

/// `algorithm:hex`, with the hex length the algorithm implies.
fn check_digest(digest: &str) -> Result<&str, &'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("invalid checksum digest format");
    };
    if hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("invalid checksum digest format");
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() == want {
        Ok(digest)
    } else {
        Err("invalid checksum digest length")
    }
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
        // Tags are ASCII as the OCI distribution spec defines them (oci-spec's regex takes any
        // Unicode word character, which no registry accepts).
        for input in [
            "",
            "UPPER/case",
            "a b",
            "x@sha256:short",
            "registry:5000/",
            "a:é",
        ] {
            let err = normalize_reference(input).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidReference { .. }),
                "{input:?}: {err}"
            );
        }
    }

    /// The hand-written grammar accepts and normalizes exactly what oci-spec's regex does (plus
    /// this module's rule that repositories are lowercase).
    #[test]
    fn agrees_with_the_oci_spec_parser() {
        let hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let long_tag = "t".repeat(129);
        let long_repo = format!("a/{}", "b".repeat(260));
        let inputs = [
            "busybox".to_string(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "test.com/repo:tag".into(),
            "test:5000/repo".into(),
            "test:5000/repo:tag".into(),
            format!("test:5000/repo@sha256:{hex64}"),
            format!("test:5000/repo:tag@sha256:{hex64}"),
            "sub-dom1.foo.com/bar/baz/quux".into(),
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
            "b.gcr.io/test.example.com/my-app:test.example.com".into(),
            "xn--n3h.com/myimage:xn--n3h.com".into(),
            "foo_bar.com:8080".into(),
            "foo/foo_bar.com:8080".into(),
            "a.b-c/d__e---f.g:0_T.v-1".into(),
            "localhost/app".into(),
            "localhost:5000/a/b/c:v".into(),
            "index.docker.io/busybox".into(),
            "docker.io/library/busybox:1".into(),
            "-bad.com/x".into(),
            "bad-.com/x".into(),
            "a..b/x".into(),
            "a/b..c".into(),
            "a/b___c".into(),
            "a/.b".into(),
            "a/b.".into(),
            "a//b".into(),
            "/a".into(),
            "a/".into(),
            ":tag".into(),
            "a:".into(),
            "a:.tag".into(),
            format!("a:{long_tag}"),
            format!("a:{}", &long_tag[..128]),
            long_repo,
            "a@sha256:abc".into(),
            format!("a@sha256:{hex64}0"),
            format!("a@md5:{hex64}"),
            format!("a@sha512:{hex64}{hex64}"),
            format!("a@sha256:{}", hex64.to_uppercase()),
            format!("a@sha256{hex64}"),
            "a@".into(),
            "a b".into(),
            "host:port/x".into(),
            "host:80:90/x".into(),
            "UPPER.com/x".into(),
            "Upper/x".into(),
            "a:b/c".into(),
            "a:1/c:d".into(),
            "a_b/c".into(),
            "a-b/c".into(),
            "a.b:0/c".into(),
            "a.b:/c".into(),
            "a/b:c:d".into(),
            "a/b-/c".into(),
            "a@b@c".into(),
            "é/x".into(),
        ];
        for input in &inputs {
            let theirs = input
                .parse::<Reference>()
                .map_err(|e| e.to_string())
                .and_then(
                    |r| match r.repository().chars().any(|c| c.is_ascii_uppercase()) {
                        true => Err("uppercase".to_string()),
                        false => Ok(r),
                    },
                );
            let ours = parse(input);
            match (&theirs, &ours) {
                (Ok(t), Ok(o)) => assert_eq!(t.whole(), o.whole(), "{input:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{input:?}: oci-spec {theirs:?}, ours {ours:?}"),
            }
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

//! Name rules shared with Kubernetes: DNS-1123 labels and subdomains, label keys and values,
//! port names, environment variable names and ConfigMap/Secret keys. Each check returns a
//! [`NameError`] whose message is what the user is shown (after the field path).

/// A name that breaks one of the rules below; each variant carries the name as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error(
        "must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters (got {0:?})"
    )]
    Subdomain(String),
    #[error(
        "must be a lowercase RFC 1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters (got {0:?})"
    )]
    Label(String),
    #[error("key prefix must be a lowercase DNS subdomain such as example.com (got {0:?})")]
    LabelKeyPrefix(String),
    #[error(
        "key must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, with an optional DNS prefix and '/' (got {0:?})"
    )]
    LabelKey(String),
    #[error(
        "label value must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (got {0:?})"
    )]
    LabelValue(String),
    #[error(
        "must be at most 15 lowercase letters, digits and '-', with at least one letter and no leading, trailing or doubled '-' (got {0:?})"
    )]
    PortName(String),
    #[error(
        "must consist of letters, digits, '_', '-' or '.' and not start with a digit (got {0:?})"
    )]
    EnvVarName(String),
    #[error(
        "key must be at most 253 letters, digits, '-', '_' or '.', and not '.' or '..' (got {0:?})"
    )]
    ConfigKey(String),
    #[error("must be a relative path (got {0:?})")]
    AbsolutePath(String),
    #[error("must not contain '..' (got {0:?})")]
    ParentPath(String),
}

/// `metadata.name` of most objects: at most 253 characters of lowercase letters, digits, `-`
/// and `.`, each dot-separated part starting and ending with a letter or digit.
pub fn check_dns1123_subdomain(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 253 || !name.split('.').all(is_label_shape) {
        return Err(NameError::Subdomain(name.to_string()));
    }
    Ok(())
}

/// Container, volume and namespace names: at most 63 characters of lowercase letters, digits
/// and `-`, starting and ending with a letter or digit.
pub fn check_dns1123_label(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 63 || !is_label_shape(name) {
        return Err(NameError::Label(name.to_string()));
    }
    Ok(())
}

fn is_label_shape(part: &str) -> bool {
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Label and annotation keys: an optional DNS-subdomain prefix and `/`, then a name of at most
/// 63 characters (letters, digits, `-`, `_`, `.`, starting and ending alphanumeric).
pub fn check_label_key(key: &str) -> Result<(), NameError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns1123_subdomain(prefix).map_err(|_| NameError::LabelKeyPrefix(key.to_string()))?;
    }
    if name.is_empty() || name.len() > 63 || !is_qualified_name_part(name) {
        return Err(NameError::LabelKey(key.to_string()));
    }
    Ok(())
}

/// Label values: empty, or at most 63 letters, digits, `-`, `_`, `.` starting and ending alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), NameError> {
    if value.is_empty() || (value.len() <= 63 && is_qualified_name_part(value)) {
        return Ok(());
    }
    Err(NameError::LabelValue(value.to_string()))
}

fn is_qualified_name_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Port names (IANA service names): at most 15 lowercase letters, digits and `-`, at least one
/// letter, no leading, trailing or doubled `-`.
pub fn check_port_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(NameError::PortName(name.to_string()))
    }
}

/// Environment variable names: letters, digits, `_`, `-`, `.`, not starting with a digit.
pub fn check_env_var_name(name: &str) -> Result<(), NameError> {
    let ok = name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NameError::EnvVarName(name.to_string()))
    }
}

/// ConfigMap and Secret keys: at most 253 letters, digits, `-`, `_`, `.`; not `.` or `..`.
pub fn check_config_key(key: &str) -> Result<(), NameError> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NameError::ConfigKey(key.to_string()))
    }
}

/// Relative file paths inside a volume (`items[].path`, `subPath`): not absolute, no `..` part.
pub(crate) fn check_relative_path(path: &str) -> Result<(), NameError> {
    if path.is_empty() {
        return Err(NameError::Empty);
    }
    if path.starts_with('/') {
        return Err(NameError::AbsolutePath(path.to_string()));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(NameError::ParentPath(path.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for ok in [
            "web",
            "a",
            "web-1",
            "my.app",
            "a.b.c",
            "0abc",
            &"a".repeat(253),
        ] {
            assert_eq!(check_dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "web_1",
            "-web",
            "web-",
            "a..b",
            ".a",
            "a.",
            "a b",
            "wéb",
            &"a".repeat(254),
        ] {
            assert!(check_dns1123_subdomain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels() {
        for ok in ["web", "a", "nginx-1", "1abc", &"a".repeat(63)] {
            assert_eq!(check_dns1123_label(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Web", "my.app", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(check_dns1123_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "example.com/Tier_1",
            "A-b.c",
        ] {
            assert_eq!(check_label_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/app",
            "Example.com/app",
            "app/",
            "-app",
            "a/b/c",
            &"a".repeat(64),
        ] {
            assert!(check_label_key(bad).is_err(), "{bad:?}");
        }
        for ok in ["", "web", "v1.2.3", "Release_A"] {
            assert_eq!(check_label_value(ok), Ok(()), "{ok}");
        }
        for bad in ["-x", "x-", "a b", "a/b", &"a".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_env_and_key_names() {
        for ok in ["http", "web-8080", "a1"] {
            assert_eq!(check_port_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "8080",
            "HTTP",
            "-http",
            "http-",
            "a--b",
            "sixteen-chars-xx",
        ] {
            assert!(check_port_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["PATH", "my_var", "a.b-c", "_x"] {
            assert_eq!(check_env_var_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1X", "A=B", "A B"] {
            assert!(check_env_var_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["config.yaml", "KEY", "a-b_c"] {
            assert_eq!(check_config_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(check_config_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_relative_path("conf/app.yaml").is_ok());
        assert!(check_relative_path("/etc/x").is_err());
        assert!(check_relative_path("a/../b").is_err());
    }
}

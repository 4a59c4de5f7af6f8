//! Validation of `securityContext` (pod and container). The tree is read field by field: a field
//! skiff does not enforce, or does not know, is an error naming its path, because a security
//! setting must never be ignored.

use serde_json::{Map, Value};

use crate::error::{FieldPath, Problems};
use crate::model::security::{
    CAPABILITY_NAMES, Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

use super::describe;

/// Largest uid/gid Kubernetes accepts.
const MAX_ID: i64 = 2_147_483_647;

/// Fields Kubernetes has that skiff cannot enforce: refused with this explanation.
const UNSUPPORTED: &str =
    "is not supported by skiff and a security setting is never ignored: remove it";

pub(crate) fn pod_security_context(
    raw: Option<Value>,
    path: &FieldPath,
    problems: &mut Problems,
) -> PodSecurityContext {
    let mut out = PodSecurityContext::default();
    let Some(fields) = mapping(raw, path, problems) else {
        return out;
    };
    for (key, value) in fields {
        let field = path.child(&key);
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "runAsUser" => out.run_as_user = id(&value, &field, problems),
            "runAsGroup" => out.run_as_group = id(&value, &field, problems),
            "runAsNonRoot" => out.run_as_non_root = boolean(&value, &field, problems),
            "fsGroup" => out.fs_group = id(&value, &field, problems),
            "supplementalGroups" => out.supplemental_groups = ids(&value, &field, problems),
            "seccompProfile" => out.seccomp_profile = seccomp(value, &field, problems),
            // What ownership changes skiff makes does not depend on it: emptyDir volumes are
            // new for every pod, so both policies give the same result.
            "fsGroupChangePolicy" => {
                allowed_string(&value, &["Always", "OnRootMismatch"], &field, problems)
            }
            // skiff merges the image's groups (Kubernetes' default); Strict is not supported.
            "supplementalGroupsPolicy" => allowed_string(&value, &["Merge"], &field, problems),
            "seLinuxOptions"
            | "seLinuxChangePolicy"
            | "windowsOptions"
            | "sysctls"
            | "appArmorProfile" => problems.error(&field, UNSUPPORTED),
            _ => problems.error(&field, unknown_field()),
        }
    }
    out
}

pub(crate) fn container_security_context(
    raw: Option<Value>,
    path: &FieldPath,
    problems: &mut Problems,
) -> SecurityContext {
    let mut out = SecurityContext::default();
    let Some(fields) = mapping(raw, path, problems) else {
        return out;
    };
    for (key, value) in fields {
        let field = path.child(&key);
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "runAsUser" => out.run_as_user = id(&value, &field, problems),
            "runAsGroup" => out.run_as_group = id(&value, &field, problems),
            "runAsNonRoot" => out.run_as_non_root = boolean(&value, &field, problems),
            "capabilities" => out.capabilities = capabilities(value, &field, problems),
            "privileged" => out.privileged = boolean(&value, &field, problems),
            "readOnlyRootFilesystem" => {
                out.read_only_root_filesystem = boolean(&value, &field, problems)
            }
            "allowPrivilegeEscalation" => {
                out.allow_privilege_escalation = boolean(&value, &field, problems)
            }
            "seccompProfile" => out.seccomp_profile = seccomp(value, &field, problems),
            // `Default` is what every container gets; `Unmasked` is not supported.
            "procMount" => allowed_string(&value, &["Default"], &field, problems),
            "seLinuxOptions" | "windowsOptions" | "appArmorProfile" => {
                problems.error(&field, UNSUPPORTED)
            }
            _ => problems.error(&field, unknown_field()),
        }
    }
    // Kubernetes' rules: no_new_privs cannot be asked of a container that may gain everything.
    if out.allow_privilege_escalation == Some(false) {
        let escalation = path.child("allowPrivilegeEscalation");
        if out.privileged == Some(true) {
            problems.error(
                &escalation,
                "cannot be false when privileged is true: set one or the other",
            );
        }
        if out.capabilities.add.iter().any(|c| c == "SYS_ADMIN") {
            problems.error(
                &escalation,
                "cannot be false when capabilities.add has SYS_ADMIN: drop one of them",
            );
        }
    }
    out
}

fn unknown_field() -> String {
    "unknown field; a security setting is never ignored: remove it or fix its name".to_string()
}

fn mapping(
    raw: Option<Value>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Map<String, Value>> {
    match raw? {
        Value::Null => None,
        Value::Object(fields) => Some(fields),
        other => {
            problems.error(
                path,
                format!("must be a mapping (got {})", describe(&other)),
            );
            None
        }
    }
}

fn id(value: &Value, path: &FieldPath, problems: &mut Problems) -> Option<u32> {
    match value.as_i64() {
        Some(n) if (0..=MAX_ID).contains(&n) => u32::try_from(n).ok(),
        Some(n) => {
            problems.error(path, format!("must be between 0 and {MAX_ID} (got {n})"));
            None
        }
        None => {
            problems.error(
                path,
                format!("must be an integer (got {})", describe_value(value)),
            );
            None
        }
    }
}

fn ids(value: &Value, path: &FieldPath, problems: &mut Problems) -> Vec<u32> {
    let Value::Array(items) = value else {
        problems.error(path, format!("must be a list (got {})", describe(value)));
        return Vec::new();
    };
    let mut out: Vec<u32> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if let Some(gid) = id(item, &path.index(index), problems)
            && !out.contains(&gid)
        {
            out.push(gid);
        }
    }
    out
}

fn boolean(value: &Value, path: &FieldPath, problems: &mut Problems) -> Option<bool> {
    let found = value.as_bool();
    if found.is_none() {
        problems.error(
            path,
            format!("must be true or false (got {})", describe_value(value)),
        );
    }
    found
}

fn string<'a>(value: &'a Value, path: &FieldPath, problems: &mut Problems) -> Option<&'a str> {
    let found = value.as_str();
    if found.is_none() {
        problems.error(path, format!("must be a string (got {})", describe(value)));
    }
    found
}

fn allowed_string(value: &Value, allowed: &[&str], path: &FieldPath, problems: &mut Problems) {
    if let Some(text) = string(value, path, problems)
        && !allowed.contains(&text)
    {
        let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        problems.error(
            path,
            format!(
                "skiff supports only {} (got {text:?}); a security setting is never ignored",
                names.join(", ")
            ),
        );
    }
}

/// A short rendering of a scalar for messages (`"abc"`, `-1`), else its type.
fn describe_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => describe(other).to_string(),
    }
}

fn capabilities(value: Value, path: &FieldPath, problems: &mut Problems) -> Capabilities {
    let mut out = Capabilities::default();
    let Some(fields) = mapping(Some(value), path, problems) else {
        return out;
    };
    for (key, value) in fields {
        let field = path.child(&key);
        if value.is_null() {
            continue;
        }
        let list = match key.as_str() {
            "add" => &mut out.add,
            "drop" => &mut out.drop,
            _ => {
                problems.error(&field, unknown_field());
                continue;
            }
        };
        let Value::Array(items) = value else {
            problems.error(&field, format!("must be a list (got {})", describe(&value)));
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let item_path = field.index(index);
            let Some(name) = string(item, &item_path, problems) else {
                continue;
            };
            match capability_name(name) {
                Some(name) if !list.contains(&name) => list.push(name),
                Some(_) => {}
                None => problems.error(
                    &item_path,
                    format!(
                        "unknown capability {name:?}; use a Linux capability name such as \"NET_ADMIN\" or \"CAP_NET_ADMIN\", or \"ALL\""
                    ),
                ),
            }
        }
    }
    out
}

/// `net_admin`, `CAP_NET_ADMIN` -> `NET_ADMIN`; `all` -> `ALL`; unknown -> None.
pub(crate) fn capability_name(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Some(upper);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITY_NAMES.contains(&bare).then(|| bare.to_string())
}

fn seccomp(value: Value, path: &FieldPath, problems: &mut Problems) -> Option<SeccompProfile> {
    let fields = mapping(Some(value), path, problems)?;
    let mut kind: Option<String> = None;
    let mut file: Option<String> = None;
    for (key, value) in fields {
        let field = path.child(&key);
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "type" => kind = string(&value, &field, problems).map(str::to_string),
            "localhostProfile" => file = string(&value, &field, problems).map(str::to_string),
            _ => problems.error(&field, unknown_field()),
        }
    }
    let type_path = path.child("type");
    let file_path = path.child("localhostProfile");
    let Some(kind) = kind else {
        problems.error(
            &type_path,
            "is required: RuntimeDefault, Unconfined or Localhost",
        );
        return None;
    };
    if kind != "Localhost" && file.is_some() {
        problems.error(&file_path, "may only be set when type is Localhost");
        return None;
    }
    match kind.as_str() {
        "RuntimeDefault" => Some(SeccompProfile::RuntimeDefault),
        "Unconfined" => Some(SeccompProfile::Unconfined),
        "Localhost" => match file {
            None => {
                problems.error(&file_path, "is required when type is Localhost");
                None
            }
            Some(file) => match check_profile_path(&file) {
                Ok(()) => Some(SeccompProfile::Localhost(file)),
                Err(error) => {
                    problems.error(&file_path, error.to_string());
                    None
                }
            },
        },
        other => {
            problems.error(
                &type_path,
                format!(
                    "must be one of \"RuntimeDefault\", \"Unconfined\", \"Localhost\" (got {other:?})"
                ),
            );
            None
        }
    }
}

/// A Localhost seccomp profile path that is not a plain relative path.
#[derive(Debug, thiserror::Error)]
#[error(
    "{why} (got {file:?}); name a file relative to the agent's <data-dir>/seccomp/ directory, like \"profiles/audit.json\""
)]
struct BadProfilePath {
    why: &'static str,
    file: String,
}

/// A profile is a relative path under the agent's seccomp directory: no `..`, no absolute path.
fn check_profile_path(file: &str) -> Result<(), BadProfilePath> {
    let bad = |why: &'static str| {
        Err(BadProfilePath {
            why,
            file: file.to_string(),
        })
    };
    if file.is_empty() {
        return bad("must not be empty");
    }
    if file.starts_with('/') {
        return bad("must be a relative path");
    }
    if file
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("must not contain empty, \".\" or \"..\" parts");
    }
    if !file
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return bad("may only use letters, digits, '.', '_', '-' and '/'");
    }
    Ok(())
}

//! Validation: from a document's generic tree to a validated [`Object`], collecting every
//! problem with its field path. Dispatches on apiVersion + kind; shared checks (metadata,
//! required fields, enumerations) live here.

mod config;
mod container;
mod dns;
mod env;
mod fields;
mod jobs;
mod pod;
mod probe;
mod scheduling;
mod security;
mod service;
mod volume;
mod workloads;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::decode::{Values, decode};
use crate::error::{FieldPath, ManifestError, Problems};
use crate::model::object::{DEFAULT_NAMESPACE, Kind, Object, ObjectMeta};
use crate::names;
use crate::raw::{List, RawMeta, StringMap};
use crate::valid::Valid;

/// Largest total of all annotations of one object, as in Kubernetes.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Validates one document tree. Returns the object when there are no errors; warnings are
/// collected either way.
pub(crate) fn validate_document(value: Value, problems: &mut Problems) -> Option<Object> {
    let root = FieldPath::root();
    let Value::Object(fields) = &value else {
        problems.error(
            &root,
            format!(
                "a document must be a mapping with apiVersion, kind and metadata (got {})",
                describe(&value)
            ),
        );
        return None;
    };
    let api_version = type_field(
        fields.get("apiVersion"),
        &root.child("apiVersion"),
        problems,
    );
    let kind_name = type_field(fields.get("kind"), &root.child("kind"), problems);
    let (api_version, kind_name) = (api_version?, kind_name?);
    let Some(kind) = Kind::from_type(&api_version, &kind_name) else {
        let mut message = format!("unknown kind {kind_name:?} (apiVersion {api_version:?})");
        if let Some(known) = Kind::from_name(&kind_name) {
            message.push_str(&format!(
                "; {} uses apiVersion {:?}",
                known.as_str(),
                known.api_version()
            ));
        } else {
            let supported: Vec<String> = Kind::ALL
                .iter()
                .map(|k| format!("{} {}", k.api_version(), k.as_str()))
                .collect();
            message.push_str(&format!("; supported: {}", supported.join(", ")));
        }
        problems.error(&root.child("kind"), message);
        return None;
    };
    let object = match kind {
        Kind::Pod => workloads::validate_pod(decode(value, Values::Shown, problems)?, problems)
            .map(Object::Pod),
        Kind::Deployment => {
            workloads::validate_deployment(decode(value, Values::Shown, problems)?, problems)
                .map(Object::Deployment)
        }
        Kind::DaemonSet => {
            workloads::validate_daemon_set(decode(value, Values::Shown, problems)?, problems)
                .map(Object::DaemonSet)
        }
        Kind::Namespace => {
            config::validate_namespace(decode(value, Values::Shown, problems)?, problems)
                .map(Object::Namespace)
        }
        Kind::ConfigMap => {
            config::validate_config_map(decode(value, Values::Shown, problems)?, problems)
                .map(Object::ConfigMap)
        }
        Kind::Secret => config::validate_secret(decode(value, Values::Hidden, problems)?, problems)
            .map(Object::Secret),
        Kind::Service => {
            service::validate_service(decode(value, Values::Shown, problems)?, problems)
                .map(Object::Service)
        }
        Kind::Job => {
            jobs::validate_job(decode(value, Values::Shown, problems)?, problems).map(Object::Job)
        }
        Kind::CronJob => jobs::validate_cron_job(decode(value, Values::Shown, problems)?, problems)
            .map(Object::CronJob),
    };
    if problems.has_errors() { None } else { object }
}

/// Validates a single stored object (the `Deserialize` path of `Valid<Object>`).
pub(crate) fn validate_value(
    source: &str,
    value: Value,
) -> Result<Valid<Object>, Vec<ManifestError>> {
    let mut problems = Problems::default();
    let object = validate_document(value, &mut problems);
    let (errors, _warnings) = problems.into_manifest(source, 1);
    match object {
        Some(object) if errors.is_empty() => Ok(Valid::new_unchecked(object)),
        _ => Err(errors),
    }
}

fn type_field(value: Option<&Value>, path: &FieldPath, problems: &mut Problems) -> Option<String> {
    match value {
        Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
        None | Some(Value::Null) => {
            problems.error(path, "required");
            None
        }
        Some(Value::String(_)) => {
            problems.error(path, "must not be empty");
            None
        }
        Some(other) => {
            problems.error(path, format!("must be a string (got {})", describe(other)));
            None
        }
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reports a missing value; passes a present one through.
pub(crate) fn required<T>(
    value: Option<T>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<T> {
    if value.is_none() {
        problems.error(path, "required");
    }
    value
}

/// A required, non-empty string.
pub(crate) fn required_string(
    value: Option<String>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<String> {
    match value {
        None => {
            problems.error(path, "required");
            None
        }
        Some(text) if text.is_empty() => {
            problems.error(path, "must not be empty");
            None
        }
        Some(text) => Some(text),
    }
}

/// Maps a string to one of the allowed values, or reports the allowed spellings.
pub(crate) fn one_of<T: Copy>(
    value: &str,
    table: &[(&str, T)],
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<T> {
    if let Some((_, found)) = table.iter().find(|(name, _)| *name == value) {
        return Some(*found);
    }
    let names: Vec<String> = table.iter().map(|(name, _)| format!("{name:?}")).collect();
    problems.error(
        path,
        format!("must be one of {} (got {value:?})", names.join(", ")),
    );
    None
}

/// The present elements of a list with their indexes; null elements are reported.
pub(crate) fn elements<T>(
    list: Option<List<T>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<(usize, FieldPath, T)> {
    let mut out = Vec::new();
    for (index, item) in list.unwrap_or_default().into_iter().enumerate() {
        let item_path = path.index(index);
        match item {
            Some(item) => out.push((index, item_path, item)),
            None => problems.error(&item_path, "must not be null"),
        }
    }
    out
}

/// A port number (1-65535).
pub(crate) fn port_number(value: i64, path: &FieldPath, problems: &mut Problems) -> Option<u16> {
    match u16::try_from(value) {
        Ok(port) if port >= 1 => Some(port),
        _ => {
            problems.error(path, format!("must be between 1 and 65535 (got {value})"));
            None
        }
    }
}

/// Runs a name rule and reports its message.
pub(crate) fn check<E: std::fmt::Display>(
    result: Result<(), E>,
    path: &FieldPath,
    problems: &mut Problems,
) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            problems.error(path, error.to_string());
            false
        }
    }
}

/// Label map (`metadata.labels`, `nodeSelector`, `matchLabels`): keys and values checked.
pub(crate) fn labels(
    map: Option<StringMap>,
    path: &FieldPath,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let map = map.unwrap_or_default();
    for (key, value) in &map {
        let entry = path.child(key);
        check(names::check_label_key(key), &entry, problems);
        check(names::check_label_value(value), &entry, problems);
    }
    map
}

pub(crate) fn annotations(
    map: Option<StringMap>,
    path: &FieldPath,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let map = map.unwrap_or_default();
    let mut total = 0;
    for (key, value) in &map {
        check(names::check_label_key(key), &path.child(key), problems);
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        problems.error(
            path,
            format!("must be at most 256 KiB in total (got {total} bytes)"),
        );
    }
    map
}

/// Validates `metadata` of a top-level object of `kind`.
pub(crate) fn object_meta(raw: Option<RawMeta>, kind: Kind, problems: &mut Problems) -> ObjectMeta {
    let path = FieldPath::root().child("metadata");
    let Some(raw) = required(raw, &path, problems) else {
        return ObjectMeta::default();
    };
    let name_path = path.child("name");
    let name = required_string(raw.name, &name_path, problems).unwrap_or_default();
    if !name.is_empty() {
        let rule = if kind == Kind::Namespace {
            names::check_dns1123_label(&name)
        } else {
            names::check_dns1123_subdomain(&name)
        };
        check(rule, &name_path, problems);
    }
    let namespace_path = path.child("namespace");
    let namespace = match raw.namespace.filter(|ns| !ns.is_empty()) {
        Some(namespace) if kind.is_namespaced() => {
            check(
                names::check_dns1123_label(&namespace),
                &namespace_path,
                problems,
            );
            namespace
        }
        Some(_) => {
            problems.warn(
                &namespace_path,
                format!("ignored: a {kind} is not namespaced"),
            );
            String::new()
        }
        None if kind.is_namespaced() => DEFAULT_NAMESPACE.to_string(),
        None => String::new(),
    };
    ObjectMeta {
        name,
        namespace,
        labels: labels(raw.labels, &path.child("labels"), problems),
        annotations: annotations(raw.annotations, &path.child("annotations"), problems),
    }
}

/// `0..=0o777` file modes (`defaultMode`, `items[].mode`).
pub(crate) fn file_mode(value: i64, path: &FieldPath, problems: &mut Problems) -> Option<u32> {
    if (0..=0o777).contains(&value) {
        u32::try_from(value).ok()
    } else {
        problems.error(
            path,
            format!(
                "must be a file mode between 0 and 0777 octal (0 to 511 decimal) (got {value})"
            ),
        );
        None
    }
}

//! Validation of a container's environment: `env` (literal values and references to ConfigMap
//! and Secret keys) and `envFrom` (whole ConfigMaps and Secrets with an optional prefix).

use crate::error::{FieldPath, Problems};
use crate::model::pod::{
    EnvFromRef, EnvFromSource, EnvValue, EnvVar, EnvVarSource, KeySelector, NameRef, PodField,
    ResourceFieldRef,
};
use crate::names;
use crate::quantity::{Quantity, QuantityText};
use crate::raw::{List, RawEnvFrom, RawEnvVar, RawFieldRef, RawKeyRef, RawResourceFieldRef};

use super::pod::referenced_name;
use super::{check, elements, required_string};

fn key_ref(raw: RawKeyRef, path: &FieldPath, problems: &mut Problems) -> Option<KeySelector> {
    let name = referenced_name(raw.name, &path.child("name"), problems);
    let key_path = path.child("key");
    let key = required_string(raw.key, &key_path, problems)
        .filter(|key| check(names::check_config_key(key), &key_path, problems));
    Some(KeySelector {
        name: name?,
        key: key?,
        optional: raw.optional.unwrap_or(false),
    })
}

/// `fieldRef`: one of the pod fields Kubernetes puts in a container's environment.
fn field_ref(raw: RawFieldRef, path: &FieldPath, problems: &mut Problems) -> Option<PodField> {
    if let Some(v) = raw.api_version.filter(|v| v != "v1") {
        problems.error(&path.child("apiVersion"), format!("must be v1 (got {v:?})"));
        return None;
    }
    let field_path = path.child("fieldPath");
    let text = required_string(raw.field_path, &field_path, problems)?;
    let field = PodField::parse(&text);
    if field.is_none() {
        let why = if text == "spec.serviceAccountName" {
            "not supported: skiff has no service accounts".to_string()
        } else {
            format!(
                "unsupported field {text:?}: use metadata.name, metadata.namespace, metadata.uid, \
                 metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, status.podIP, \
                 status.podIPs, status.hostIP or status.hostIPs"
            )
        };
        problems.error(&field_path, why);
    }
    field
}

/// `resourceFieldRef`: cpu or memory, request or limit, with a positive divisor (default 1).
pub(crate) fn resource_field_ref(
    raw: RawResourceFieldRef,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ResourceFieldRef> {
    let resource_path = path.child("resource");
    let resource = required_string(raw.resource, &resource_path, problems)?;
    let known = [
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    if !known.contains(&resource.as_str()) {
        problems.error(
            &resource_path,
            format!("must be one of {} (got {resource:?})", known.join(", ")),
        );
        return None;
    }
    let divisor_path = path.child("divisor");
    let divisor = match raw.divisor {
        None => Quantity::parse("1").ok()?,
        Some(QuantityText(text)) => match Quantity::parse(&text) {
            Ok(q) if !q.is_negative() && !q.is_zero() && q.to_millis().is_ok_and(|m| m > 0) => q,
            Ok(_) => {
                problems.error(&divisor_path, format!("must be positive (got {text:?})"));
                return None;
            }
            Err(e) => {
                problems.error(&divisor_path, e.to_string());
                return None;
            }
        },
    };
    Some(ResourceFieldRef {
        container_name: raw.container_name.filter(|c| !c.is_empty()),
        resource,
        divisor,
    })
}

pub(crate) fn env(
    list: Option<List<RawEnvVar>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<EnvVar> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let name_path = item_path.child("name");
        let name = required_string(raw.name, &name_path, problems)
            .filter(|name| check(names::check_env_var_name(name), &name_path, problems));
        let value = match (raw.value, raw.value_from) {
            (Some(_), Some(_)) => {
                problems.error(&item_path, "must set either value or valueFrom, not both");
                None
            }
            (value, None) => Some(EnvValue::Value(value.unwrap_or_default())),
            (None, Some(from)) if from.file_key_ref.is_some() => {
                let field = item_path.child("valueFrom").child("fileKeyRef");
                let rule = super::fields::FILE_KEY_REF;
                super::fields::decide(from.file_key_ref, &field, rule, problems);
                None
            }
            (None, Some(from)) => {
                let from_path = item_path.child("valueFrom");
                let set = [
                    from.config_map_key_ref.is_some(),
                    from.secret_key_ref.is_some(),
                    from.field_ref.is_some(),
                    from.resource_field_ref.is_some(),
                ]
                .iter()
                .filter(|s| **s)
                .count();
                if set > 1 {
                    problems.error(
                        &from_path,
                        "must set only one of configMapKeyRef, secretKeyRef, fieldRef and resourceFieldRef",
                    );
                    None
                } else if let Some(r) = from.config_map_key_ref {
                    key_ref(r, &from_path.child("configMapKeyRef"), problems)
                        .map(|k| EnvValue::ValueFrom(EnvVarSource::ConfigMapKeyRef(k)))
                } else if let Some(r) = from.secret_key_ref {
                    key_ref(r, &from_path.child("secretKeyRef"), problems)
                        .map(|k| EnvValue::ValueFrom(EnvVarSource::SecretKeyRef(k)))
                } else if let Some(r) = from.field_ref {
                    field_ref(r, &from_path.child("fieldRef"), problems)
                        .map(|f| EnvValue::ValueFrom(EnvVarSource::FieldRef(f)))
                } else if let Some(r) = from.resource_field_ref {
                    resource_field_ref(r, &from_path.child("resourceFieldRef"), problems)
                        .map(|r| EnvValue::ValueFrom(EnvVarSource::ResourceFieldRef(r)))
                } else {
                    problems.error(
                        &from_path,
                        "must set configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef",
                    );
                    None
                }
            }
        };
        if let (Some(name), Some(value)) = (name, value) {
            out.push(EnvVar { name, value });
        }
    }
    out
}

pub(crate) fn env_from(
    list: Option<List<RawEnvFrom>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<EnvFromSource> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let prefix = raw.prefix.filter(|prefix| !prefix.is_empty());
        if let Some(prefix) = &prefix {
            check(
                names::check_env_var_name(prefix),
                &item_path.child("prefix"),
                problems,
            );
        }
        let name_ref = |raw: crate::raw::RawNameRef, path: &FieldPath, problems: &mut Problems| {
            referenced_name(raw.name, &path.child("name"), problems).map(|name| NameRef {
                name,
                optional: raw.optional.unwrap_or(false),
            })
        };
        let source = match (raw.config_map_ref, raw.secret_ref) {
            (Some(r), None) => name_ref(r, &item_path.child("configMapRef"), problems)
                .map(EnvFromRef::ConfigMapRef),
            (None, Some(r)) => {
                name_ref(r, &item_path.child("secretRef"), problems).map(EnvFromRef::SecretRef)
            }
            (Some(_), Some(_)) => {
                problems.error(
                    &item_path,
                    "must set only one of configMapRef and secretRef",
                );
                None
            }
            (None, None) => {
                problems.error(&item_path, "must set configMapRef or secretRef");
                None
            }
        };
        if let Some(source) = source {
            out.push(EnvFromSource { prefix, source });
        }
    }
    out
}

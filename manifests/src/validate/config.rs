//! Validation of Namespace, ConfigMap and Secret objects: key names, base64 decoding, size
//! limits. Secret values never appear in messages.

use std::collections::BTreeMap;

use crate::error::{FieldPath, Problems};
use crate::model::config::{ConfigMap, Namespace, Secret, SecretBytes, decode_base64};
use crate::model::object::Kind;
use crate::names;
use crate::raw::{RawConfigMap, RawNamespace, RawSecret};

use super::{check, object_meta};

/// Largest ConfigMap or Secret payload, as in Kubernetes.
const MAX_DATA_BYTES: usize = 1024 * 1024;

pub(crate) fn validate_namespace(raw: RawNamespace, problems: &mut Problems) -> Option<Namespace> {
    Some(Namespace {
        metadata: object_meta(raw.metadata, Kind::Namespace, problems),
    })
}

pub(crate) fn validate_config_map(raw: RawConfigMap, problems: &mut Problems) -> Option<ConfigMap> {
    let metadata = object_meta(raw.metadata, Kind::ConfigMap, problems);
    let root = FieldPath::root();
    let data_path = root.child("data");
    let data = raw.data.unwrap_or_default();
    for key in data.keys() {
        check(
            names::check_config_key(key),
            &data_path.child(key),
            problems,
        );
    }
    let binary_path = root.child("binaryData");
    let mut binary_data = BTreeMap::new();
    for (key, text) in raw.binary_data.unwrap_or_default() {
        let key_path = binary_path.child(&key);
        if !check(names::check_config_key(&key), &key_path, problems) {
            continue;
        }
        if data.contains_key(&key) {
            problems.error(
                &key_path,
                format!("key {key:?} is also in data; use one of them"),
            );
            continue;
        }
        match decode_base64(&text) {
            Ok(bytes) => {
                binary_data.insert(key, bytes);
            }
            Err(invalid) => problems.error(&key_path, invalid.to_string()),
        }
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + binary_data
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    check_size(size, &root, problems);
    Some(ConfigMap {
        metadata,
        data,
        binary_data,
    })
}

pub(crate) fn validate_secret(raw: RawSecret, problems: &mut Problems) -> Option<Secret> {
    let metadata = object_meta(raw.metadata, Kind::Secret, problems);
    let root = FieldPath::root();
    let type_ = raw
        .type_
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Opaque".to_string());
    let mut data = BTreeMap::new();
    let data_path = root.child("data");
    for (key, text) in raw.data.unwrap_or_default() {
        let key_path = data_path.child(&key);
        if !check(names::check_config_key(&key), &key_path, problems) {
            continue;
        }
        match decode_base64(&text.0) {
            Ok(bytes) => {
                data.insert(key, SecretBytes::new(bytes));
            }
            Err(invalid) => problems.error(
                &key_path,
                format!("{invalid}; put plain text under stringData instead"),
            ),
        }
    }
    let string_path = root.child("stringData");
    for (key, text) in raw.string_data.unwrap_or_default() {
        if check(
            names::check_config_key(&key),
            &string_path.child(&key),
            problems,
        ) {
            // stringData wins over data, as in Kubernetes.
            data.insert(key, SecretBytes::new(text.0.into_bytes()));
        }
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.expose().len()).sum();
    check_size(size, &root, problems);
    Some(Secret {
        metadata,
        type_,
        data,
    })
}

fn check_size(size: usize, path: &FieldPath, problems: &mut Problems) {
    if size > MAX_DATA_BYTES {
        problems.error(
            path,
            format!("data must be at most 1 MiB in total (got {size} bytes)"),
        );
    }
}

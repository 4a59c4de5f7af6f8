//! Validated configuration objects: Namespace, ConfigMap and Secret. Secret bytes never appear
//! in Debug output.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::object::ObjectMeta;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub metadata: ObjectMeta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Decoded bytes; serialized as base64 like Kubernetes.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "base64_map"
    )]
    pub binary_data: BTreeMap<String, Vec<u8>>,
}

impl ConfigMap {
    /// The bytes of a key from `data` or `binaryData`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data
            .get(key)
            .map(|value| value.as_bytes())
            .or_else(|| self.binary_data.get(key).map(Vec::as_slice))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    pub metadata: ObjectMeta,
    /// `Opaque` unless set.
    #[serde(rename = "type")]
    pub type_: String,
    /// `data` and `stringData` merged (stringData wins), decoded; serialized as base64 `data`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, SecretBytes>,
}

impl Secret {
    pub fn get(&self, key: &str) -> Option<&SecretBytes> {
        self.data.get(key)
    }
}

/// The decoded value of one secret key. Debug prints `<redacted>`; read it with [`SecretBytes::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub(crate) fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }

    /// The secret itself: write it only where the container needs it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(&self.0))
    }
}

fn base64_map<S: Serializer>(
    map: &BTreeMap<String, Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (key, bytes) in map {
        out.serialize_entry(key, &BASE64.encode(bytes))?;
    }
    out.end()
}

/// Text that is not standard base64. Carries nothing of the input (it may be a Secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be valid base64 (standard alphabet with padding)")]
pub(crate) struct InvalidBase64;

/// Decodes standard base64 (with padding, as Kubernetes writes it). The error never contains
/// the input.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, InvalidBase64> {
    BASE64.decode(text.trim()).map_err(|_| InvalidBase64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_never_show_in_debug() {
        let mut data = BTreeMap::new();
        data.insert(
            "password".to_string(),
            SecretBytes::new(b"hunter2".to_vec()),
        );
        let secret = Secret {
            metadata: ObjectMeta::default(),
            type_: "Opaque".into(),
            data,
        };
        let debug = format!("{secret:?} {:#?}", secret);
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("password"));
        let json = serde_json::to_value(&secret).ok();
        assert_eq!(
            json.as_ref().map(|j| j["data"]["password"].clone()),
            Some(serde_json::json!("aHVudGVyMg=="))
        );
    }

    #[test]
    fn base64_errors_do_not_echo_input() {
        let error = decode_base64("c2VjcmV0!!").unwrap_err().to_string();
        assert!(!error.contains("c2Vj") && !error.contains("!!"), "{error}");
        assert_eq!(decode_base64("aGk="), Ok(b"hi".to_vec()));
    }
}

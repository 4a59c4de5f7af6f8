//! `Valid<T>`: a value that came out of validation. Only this crate can build one, so code that
//! takes a `Valid<T>` never sees unchecked input. Deserializing one re-runs validation.

use std::fmt;
use std::ops::Deref;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManifestError;
use crate::model::config::{ConfigMap, Namespace, Secret};
use crate::model::object::Object;
use crate::model::workloads::{DaemonSet, Deployment, Pod};

/// A validated `T`. Read it through `Deref`; build it with [`crate::parse_file`].
#[derive(Clone, PartialEq, Eq)]
pub struct Valid<T>(T);

impl<T> Valid<T> {
    /// Only validation (and conversions between validated values) may call this.
    pub(crate) fn new_unchecked(value: T) -> Valid<T> {
        Valid(value)
    }

    pub fn get(&self) -> &T {
        &self.0
    }

    /// Gives up the guarantee and returns the plain value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Valid<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Valid<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Valid<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Valid<Object> {
    /// Validates one object given as JSON (as written by `serde_json::to_vec` of a `Valid<Object>`).
    pub fn from_json(bytes: &[u8]) -> Result<Valid<Object>, Vec<ManifestError>> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
            vec![ManifestError {
                file: "stored object".to_string(),
                document: 1,
                field: String::new(),
                message: format!("invalid JSON: {error}"),
            }]
        })?;
        crate::validate::validate_value("stored object", value)
    }

    /// The object as compact JSON in Kubernetes shape.
    pub fn to_json(&self) -> Vec<u8> {
        crate::hash::to_json_bytes(&self.0)
    }
}

/// Deserializing re-validates: the input must be a complete Kubernetes-shaped object in a
/// self-describing format (JSON, YAML). Binary formats such as postcard are not supported.
impl<'de> Deserialize<'de> for Valid<Object> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        crate::validate::validate_value("stored object", value).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            D::Error::custom(text.join("; "))
        })
    }
}

macro_rules! kind_conversions {
    ($($variant:ident),*) => {$(
        impl From<Valid<$variant>> for Valid<Object> {
            fn from(value: Valid<$variant>) -> Valid<Object> {
                Valid(Object::$variant(value.0))
            }
        }

        /// Narrows a validated object to one kind; gives the object back if it is another kind.
        impl TryFrom<Valid<Object>> for Valid<$variant> {
            type Error = Valid<Object>;
            fn try_from(object: Valid<Object>) -> Result<Valid<$variant>, Valid<Object>> {
                match object.0 {
                    Object::$variant(inner) => Ok(Valid(inner)),
                    other => Err(Valid(other)),
                }
            }
        }

        impl<'de> Deserialize<'de> for Valid<$variant> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let object = Valid::<Object>::deserialize(deserializer)?;
                let kind = object.kind();
                Valid::<$variant>::try_from(object).map_err(|_| {
                    D::Error::custom(format!(
                        "expected a {}, got a {kind}",
                        stringify!($variant)
                    ))
                })
            }
        }
    )*};
}

kind_conversions!(Pod, Deployment, DaemonSet, Namespace, ConfigMap, Secret);

//! `Valid<T>`: a value that came out of validation. Only this crate can build one, so code that
//! takes a `Valid<T>` never sees unchecked input. Deserializing one re-runs validation.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManifestError;
use crate::model::config::{ConfigMap, Namespace, Secret};
use crate::model::jobs::{CronJob, Job};
use crate::model::object::Object;
use crate::model::workloads::{DaemonSet, Deployment, Pod};

/// A validated `T`. Read it through `Deref`; build it with [`crate::parse_file`].
///
/// The value is shared: cloning a `Valid` is a reference-count bump, so a large object (a
/// 1 MiB ConfigMap) held by the sources, the replica, the scheduler and the API costs one
/// copy. An object's content hash is computed once and remembered.
pub struct Valid<T> {
    value: Arc<T>,
    content_hash: Arc<OnceLock<String>>,
}

impl<T> Clone for Valid<T> {
    fn clone(&self) -> Self {
        Valid {
            value: self.value.clone(),
            content_hash: self.content_hash.clone(),
        }
    }
}

impl<T: PartialEq> PartialEq for Valid<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.value, &other.value) || self.value == other.value
    }
}

impl<T: Eq> Eq for Valid<T> {}

impl<T> Valid<T> {
    /// Only validation (and conversions between validated values) may call this.
    pub(crate) fn new_unchecked(value: T) -> Valid<T> {
        Valid {
            value: Arc::new(value),
            content_hash: Arc::default(),
        }
    }

    pub fn get(&self) -> &T {
        &self.value
    }

    /// Gives up the guarantee and returns the plain value (a copy when it is shared).
    pub fn into_inner(self) -> T
    where
        T: Clone,
    {
        Arc::unwrap_or_clone(self.value)
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> AsRef<T> for Valid<T> {
    fn as_ref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Valid<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: Serialize> Serialize for Valid<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
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
        crate::hash::to_json_bytes(&*self.value)
    }

    /// [`Object::content_hash`], computed once per validated value.
    pub fn content_hash(&self) -> String {
        self.content_hash
            .get_or_init(|| self.value.content_hash())
            .clone()
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
                Valid::new_unchecked(Object::$variant(Arc::unwrap_or_clone(value.value)))
            }
        }

        /// Narrows a validated object to one kind; gives the object back if it is another kind.
        impl TryFrom<Valid<Object>> for Valid<$variant> {
            type Error = Valid<Object>;
            fn try_from(object: Valid<Object>) -> Result<Valid<$variant>, Valid<Object>> {
                if !matches!(*object.value, Object::$variant(_)) {
                    return Err(object);
                }
                match Arc::unwrap_or_clone(object.value) {
                    Object::$variant(inner) => Ok(Valid::new_unchecked(inner)),
                    other => Err(Valid::new_unchecked(other)),
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

kind_conversions!(
    Pod, Deployment, DaemonSet, Namespace, ConfigMap, Secret, Job, CronJob
);

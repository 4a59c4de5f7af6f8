//! The object envelope: supported kinds, metadata, identity keys and the `Object` enum.
//!
//! Adding a kind (Service, Job): a variant in [`Kind`] and [`Object`], its model type,
//! a raw type and a validator registered in `validate::validate_kind`. The compiler points at
//! every match that must learn about it.

use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;

use serde::{Deserialize, Serialize, Serializer};

use super::config::{ConfigMap, Namespace, Secret};
use super::jobs::{CronJob, Job};
use super::service::Service;
use super::workloads::{DaemonSet, Deployment, Pod};

/// The kinds skiff understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    ConfigMap,
    Secret,
    Pod,
    Deployment,
    DaemonSet,
    Service,
    Job,
    CronJob,
}

impl Kind {
    /// Every kind, in the order they should be applied (namespaces and configuration first).
    pub const ALL: [Kind; 9] = [
        Kind::Namespace,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Service,
        Kind::Pod,
        Kind::Deployment,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::Service => "Service",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::ConfigMap | Kind::Secret | Kind::Pod | Kind::Service => "v1",
            Kind::Deployment | Kind::DaemonSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
        }
    }

    /// False for cluster-wide kinds (Namespace), whose keys have an empty namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::Namespace)
    }

    /// The kind spelled exactly as [`Kind::as_str`] spells it (`Deployment`).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind for an exact `apiVersion` + `kind` pair.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.as_str() == kind)
    }

    /// The kind for a command-line word, as kubectl accepts them: `pod`, `pods`, `po`,
    /// `deployment`, `deploy`, `daemonset`, `ds`, `ns`, `cm`, `configmaps`, `secret`...
    /// (case-insensitive).
    pub fn from_cli_name(word: &str) -> Option<Kind> {
        let kind = match word.to_ascii_lowercase().as_str() {
            "pod" | "pods" | "po" => Kind::Pod,
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "daemonset" | "daemonsets" | "ds" => Kind::DaemonSet,
            "namespace" | "namespaces" | "ns" => Kind::Namespace,
            "configmap" | "configmaps" | "cm" => Kind::ConfigMap,
            "secret" | "secrets" => Kind::Secret,
            "service" | "services" | "svc" => Kind::Service,
            "job" | "jobs" => Kind::Job,
            "cronjob" | "cronjobs" | "cj" => Kind::CronJob,
            _ => return None,
        };
        Some(kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind + namespace + name. Displays as `Deployment default/web`
/// (`Namespace prod` for cluster-wide kinds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
///
/// Namespace and name are held inline up to 24 bytes (a name of up to 63 characters
/// otherwise): every map of objects holds a key per object, and a short `String` costs a heap
/// block of at least 32 bytes besides its 24.
pub struct ObjectKey {
    pub kind: Kind,
    /// Empty for cluster-wide kinds.
    pub namespace: CompactString,
    pub name: CompactString,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
        let namespace = if kind.is_namespaced() {
            CompactString::new(namespace)
        } else {
            CompactString::default()
        };
        ObjectKey {
            kind,
            namespace,
            name: CompactString::new(name),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The namespace of objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ObjectMeta {
    pub name: String,
    /// `default` unless set; empty for cluster-wide kinds.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One validated object of a supported kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Pod(Pod),
    Deployment(Deployment),
    DaemonSet(DaemonSet),
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Job(Job),
    CronJob(CronJob),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Deployment(_) => Kind::Deployment,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::Namespace(_) => Kind::Namespace,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
            Object::Service(_) => Kind::Service,
            Object::Job(_) => Kind::Job,
            Object::CronJob(_) => Kind::CronJob,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let meta = self.metadata();
        ObjectKey::new(self.kind(), &meta.namespace, &meta.name)
    }
}

/// Serializes as a Kubernetes object: `apiVersion`, `kind`, then the object's own fields.
impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Typed<'a, T> {
            api_version: &'static str,
            kind: &'static str,
            #[serde(flatten)]
            object: &'a T,
        }
        fn typed<S: Serializer, T: Serialize>(
            kind: Kind,
            object: &T,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            Typed {
                api_version: kind.api_version(),
                kind: kind.as_str(),
                object,
            }
            .serialize(serializer)
        }
        let kind = self.kind();
        match self {
            Object::Pod(o) => typed(kind, o, serializer),
            Object::Deployment(o) => typed(kind, o, serializer),
            Object::DaemonSet(o) => typed(kind, o, serializer),
            Object::Namespace(o) => typed(kind, o, serializer),
            Object::ConfigMap(o) => typed(kind, o, serializer),
            Object::Secret(o) => typed(kind, o, serializer),
            Object::Service(o) => typed(kind, o, serializer),
            Object::Job(o) => typed(kind, o, serializer),
            Object::CronJob(o) => typed(kind, o, serializer),
        }
    }
}

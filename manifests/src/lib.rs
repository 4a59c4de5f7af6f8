//! skiff-manifests: Kubernetes-style manifests (YAML or JSON, multi-document) parsed and
//! validated into objects that downstream code can trust.
//!
//! Code map:
//! - [`parse_file`] (this file): bytes -> documents -> validated objects, errors and warnings.
//! - `documents`: splitting at `---`, YAML/JSON parsing into a generic tree (the only YAML user).
//! - `decode` + `raw`: tree -> lenient raw types, collecting every type error and unknown field.
//! - `validate`: raw -> [`model`] types, every problem reported with its field path.
//! - [`Valid`]: proof of validation; deserializing one re-validates.
//! - [`quantity`], [`names`]: Kubernetes quantities and name rules.
//! - `hash`, [`naming`]: content hashes, pod-template-hash, Deployment and DaemonSet pod names.
//!
//! Invariants: no IO and no clock; secret values never appear in Debug output or messages;
//! a bad document never hides the good documents of the same file.

mod decode;
mod documents;
mod error;
mod hash;
pub mod model;
pub mod names;
pub mod naming;
pub mod quantity;
mod raw;
mod valid;
mod validate;

use std::collections::BTreeMap;

pub use documents::{YamlError, to_yaml};
pub use error::{ManifestError, ManifestWarning};
pub use hash::{CONTENT_HASH_LEN, POD_TEMPLATE_HASH_LEN};
pub use model::config::{ConfigMap, Namespace, Secret, SecretBytes};
pub use model::jobs::{
    CompletionMode, ConcurrencyPolicy, CronJob, CronJobSpec, DEFAULT_BACKOFF_LIMIT, FailureAction,
    Job, JobSpec, JobTemplate, PodFailurePolicy,
};
pub use model::object::{DEFAULT_NAMESPACE, Kind, Object, ObjectKey, ObjectMeta};
pub use model::pod::{
    ConfigMapVolume, Container, ContainerPort, DnsOption, DnsPolicy, EmptyDirVolume, EnvFromRef,
    EnvFromSource, EnvValue, EnvVar, EnvVarSource, HostAlias, HostPathType, HostPathVolume,
    KeySelector, KeyToPath, NameRef, PodDnsConfig, PodField, PodSpec, Protocol, PullPolicy,
    ResourceFieldRef, ResourceList, ResourceRequirements, ResourceTotals, RestartPolicy,
    SecretVolume, StorageMedium, Volume, VolumeMount, VolumeSource,
};
pub use model::probe::{
    Hook, HttpGetAction, HttpHeader, HttpScheme, Lifecycle, Probe, ProbeHandler, ProbePort,
};
pub use model::service::{
    ClusterIp, NodePortRange, Service, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
    TargetPort,
};
pub use model::workloads::{
    DEFAULT_PROGRESS_DEADLINE_SECONDS, DEFAULT_REVISION_HISTORY_LIMIT, DaemonSet, DaemonSetSpec,
    DaemonSetUpdate, Deployment, DeploymentSpec, DeploymentStrategy, IntOrPercent, LabelSelector,
    Pod, PodTemplate, RollingUpdate, TemplateMetadata,
};
pub use naming::{
    JOB_INDEX_ENV, JOB_INDEX_LABEL, JOB_NAME_LABEL, POD_TEMPLATE_HASH_LABEL, PodSuffix,
    daemon_set_pod_name, deployment_pod_name,
};
pub use quantity::{Quantity, QuantityError};
pub use valid::Valid;

use error::Problems;

/// Every non-empty document of one manifest file.
#[derive(Debug)]
pub struct ParsedFile {
    /// In file order; `index` counts from 1.
    pub documents: Vec<ParsedDocument>,
}

/// One document: a validated object or every error found in it, plus warnings either way.
#[derive(Debug)]
pub struct ParsedDocument {
    /// 1-based index among the file's non-empty documents.
    pub index: usize,
    /// 1-based line in the file where the document starts.
    pub line: usize,
    pub result: Result<Valid<Object>, Vec<ManifestError>>,
    pub warnings: Vec<ManifestWarning>,
}

impl ParsedFile {
    /// Every error of every document, in order.
    pub fn errors(&self) -> Vec<&ManifestError> {
        self.documents
            .iter()
            .filter_map(|d| d.result.as_ref().err())
            .flatten()
            .collect()
    }

    /// Every warning of every document, in order.
    pub fn warnings(&self) -> Vec<&ManifestWarning> {
        self.documents.iter().flat_map(|d| &d.warnings).collect()
    }

    /// The objects of the documents that validated.
    pub fn objects(&self) -> Vec<&Valid<Object>> {
        self.documents
            .iter()
            .filter_map(|d| d.result.as_ref().ok())
            .collect()
    }

    /// True when no document has errors (warnings do not count).
    pub fn is_ok(&self) -> bool {
        self.documents.iter().all(|d| d.result.is_ok())
    }

    /// Refuses, as an error at `spec.ports[i].nodePort`, every Service document that pins a
    /// node port outside `range`: parsing checks only that it is a port number, because the
    /// range is the node's (`--service-node-port-range`). `file_name` labels the errors.
    pub fn check_node_ports(&mut self, file_name: &str, range: NodePortRange) {
        for document in &mut self.documents {
            let Ok(object) = &document.result else {
                continue;
            };
            let Object::Service(service) = object.as_ref() else {
                continue;
            };
            let errors: Vec<ManifestError> = service
                .spec
                .ports
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let np = p.node_port.filter(|np| !range.contains(*np))?;
                    Some(ManifestError {
                        file: file_name.to_string(),
                        document: document.index,
                        field: format!("spec.ports[{i}].nodePort"),
                        message: format!(
                            "must be in the node port range {range} (got {np}; the agent's --service-node-port-range)"
                        ),
                    })
                })
                .collect();
            if !errors.is_empty() {
                document.result = Err(errors);
            }
        }
    }

    /// All objects if every document validated, else all errors: the whole-file view the
    /// agent uses (it keeps the last good version of a file that has any error).
    pub fn into_result(self) -> Result<Vec<Valid<Object>>, Vec<ManifestError>> {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for document in self.documents {
            match document.result {
                Ok(object) => objects.push(object),
                Err(mut found) => errors.append(&mut found),
            }
        }
        if errors.is_empty() {
            Ok(objects)
        } else {
            Err(errors)
        }
    }
}

/// The largest manifest file read or parsed (the watched directory and `apply` alike): 1 MiB.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Most '[' and '{' a file may leave open at any point. The YAML scanner's cost grows with the
/// square of the flow nesting depth (16,000 levels: seconds), long before its recursion limit
/// (128) refuses the document, so deeper input is refused by a linear count first. Brackets in
/// strings and comments count too: no real manifest comes near the limit.
pub const MAX_FLOW_DEPTH: usize = 1000;

/// The line where the count of unclosed brackets first exceeds [`MAX_FLOW_DEPTH`], if it does.
fn too_deep(bytes: &[u8]) -> Option<usize> {
    let mut depth: usize = 0;
    let mut line = 1;
    for &b in bytes {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    None
}

/// What a file over [`MAX_FILE_BYTES`] is told.
pub fn too_large_message(size: u64) -> String {
    format!("file is {size} bytes; a manifest file may be at most 1 MiB ({MAX_FILE_BYTES} bytes)")
}

/// Parses and validates every document of a manifest file. `file_name` only labels messages.
///
/// YAML (documents separated by `---`) or JSON (one or more concatenated objects). Empty
/// documents are skipped. Two documents with the same kind, namespace and name make the
/// second one an error.
///
/// ```
/// let yaml = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: edge}\n---\n\
///              apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: -1}\n";
/// let parsed = skiff_manifests::parse_file("web.yaml", yaml);
/// assert_eq!(parsed.objects()[0].key().to_string(), "Namespace edge");
/// let errors: Vec<String> = parsed.errors().iter().map(|e| e.to_string()).collect();
/// assert!(errors.contains(&"manifest web.yaml: document 2: spec.replicas: must be >= 0 (got -1)".to_string()));
/// assert!(!parsed.is_ok());
/// ```
pub fn parse_file(file_name: &str, bytes: &[u8]) -> ParsedFile {
    let mut documents = Vec::new();
    if bytes.len() > MAX_FILE_BYTES {
        documents.push(ParsedDocument {
            index: 1,
            line: 1,
            result: Err(vec![ManifestError {
                file: file_name.to_string(),
                document: 1,
                field: String::new(),
                message: too_large_message(bytes.len() as u64),
            }]),
            warnings: Vec::new(),
        });
        return ParsedFile { documents };
    }
    if let Some(line) = too_deep(bytes) {
        documents.push(ParsedDocument {
            index: 1,
            line,
            result: Err(vec![ManifestError {
                file: file_name.to_string(),
                document: 1,
                field: String::new(),
                message: format!(
                    "invalid YAML: more than {MAX_FLOW_DEPTH} unclosed '[' or '{{' by line {line}"
                ),
            }]),
            warnings: Vec::new(),
        });
        return ParsedFile { documents };
    }
    let mut seen: BTreeMap<ObjectKey, usize> = BTreeMap::new();
    for (position, source) in documents::split_documents(bytes).into_iter().enumerate() {
        let index = position + 1;
        let mut problems = Problems::default();
        let object = match source.content {
            Ok(value) => validate::validate_document(value, &mut problems),
            Err(message) => {
                problems.error(&error::FieldPath::root(), message);
                None
            }
        };
        if let Some(object) = &object {
            let key = object.key();
            if let Some(first) = seen.get(&key) {
                problems.error(
                    &error::FieldPath::root().child("metadata").child("name"),
                    format!("{key} is already defined in document {first}"),
                );
            } else {
                seen.insert(key, index);
            }
        }
        let (errors, warnings) = problems.into_manifest(file_name, index);
        let result = match object {
            Some(object) if errors.is_empty() => Ok(Valid::new_unchecked(object)),
            _ if errors.is_empty() => Err(vec![ManifestError {
                file: file_name.to_string(),
                document: index,
                field: String::new(),
                message: "document could not be read".to_string(),
            }]),
            _ => Err(errors),
        };
        documents.push(ParsedDocument {
            index,
            line: source.start_line,
            result,
            warnings,
        });
    }
    ParsedFile { documents }
}

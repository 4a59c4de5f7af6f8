//! Validation of pod volumes: one source each (emptyDir, hostPath, configMap, secret,
//! downwardAPI, projected), key projections, downward API files and file modes. Kubernetes'
//! other sources are refused by name.

use std::collections::BTreeSet;

use crate::error::{FieldPath, Problems};
use crate::model::pod::{
    ConfigMapVolume, DEFAULT_VOLUME_MODE, DownwardApiFile, DownwardApiProjection,
    DownwardApiSource, DownwardApiVolume, EmptyDirVolume, HostPathType, HostPathVolume, KeyToPath,
    ObjectProjection, ProjectedVolume, Projection, SecretVolume, StorageMedium, Volume,
    VolumeField, VolumeSource,
};
use crate::names;
use crate::raw::{List, RawDownwardApiFile, RawKeyToPath, RawProjection, RawVolume};

use super::env::resource_field_ref;
use super::pod::{byte_quantity, referenced_name};
use super::{check, elements, file_mode, one_of, required_string};

/// Kubernetes volume sources skiff does not have (their errors name them).
const UNSUPPORTED_SOURCES: [&str; 24] = [
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// The valid volumes, and the names of all volumes (valid or not) for checking mounts.
pub(crate) fn volumes(
    list: Option<List<RawVolume>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> (Vec<Volume>, BTreeSet<String>) {
    let mut out: Vec<Volume> = Vec::new();
    let mut all_names = BTreeSet::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let name_path = item_path.child("name");
        let name = required_string(raw.name, &name_path, problems);
        if let Some(name) = &name
            && check(names::check_dns1123_label(name), &name_path, problems)
            && !all_names.insert(name.clone())
        {
            problems.error(&name_path, format!("duplicate volume name {name:?}"));
        }
        let mut sources = Vec::new();
        if let Some(empty_dir) = raw.empty_dir {
            let source_path = item_path.child("emptyDir");
            let medium = match empty_dir.medium.as_deref() {
                None => Some(StorageMedium::Default),
                Some(text) => one_of(
                    text,
                    &[
                        ("", StorageMedium::Default),
                        ("Memory", StorageMedium::Memory),
                    ],
                    &source_path.child("medium"),
                    problems,
                ),
            };
            let size_limit = empty_dir
                .size_limit
                .and_then(|text| {
                    byte_quantity(&text.0, &source_path.child("sizeLimit"), problems).map(Some)
                })
                .unwrap_or(None);
            sources.push((
                "emptyDir",
                medium.map(|medium| VolumeSource::EmptyDir(EmptyDirVolume { medium, size_limit })),
            ));
        }
        if let Some(host_path) = raw.host_path {
            let source_path = item_path.child("hostPath");
            let path_path = source_path.child("path");
            let host = required_string(host_path.path, &path_path, problems);
            if let Some(host) = &host
                && !host.starts_with('/')
            {
                problems.error(
                    &path_path,
                    format!("must be an absolute path (got {host:?})"),
                );
            }
            let type_ = match host_path.type_.as_deref() {
                None => Some(HostPathType::Unset),
                Some(text) => one_of(
                    text,
                    &HostPathType::ALL,
                    &source_path.child("type"),
                    problems,
                ),
            };
            let source = host
                .zip(type_)
                .map(|(path, type_)| VolumeSource::HostPath(HostPathVolume { path, type_ }));
            sources.push(("hostPath", source));
        }
        if let Some(config_map) = raw.config_map {
            let source_path = item_path.child("configMap");
            let name = referenced_name(config_map.name, &source_path.child("name"), problems);
            let items = key_to_paths(config_map.items, &source_path.child("items"), problems);
            let mode = default_mode(
                config_map.default_mode,
                &source_path.child("defaultMode"),
                problems,
            );
            let source = name.zip(mode).map(|(name, default_mode)| {
                VolumeSource::ConfigMap(ConfigMapVolume {
                    name,
                    items,
                    default_mode,
                    optional: config_map.optional.unwrap_or(false),
                })
            });
            sources.push(("configMap", source));
        }
        if let Some(secret) = raw.secret {
            let source_path = item_path.child("secret");
            let name = referenced_name(
                secret.secret_name,
                &source_path.child("secretName"),
                problems,
            );
            let items = key_to_paths(secret.items, &source_path.child("items"), problems);
            let mode = default_mode(
                secret.default_mode,
                &source_path.child("defaultMode"),
                problems,
            );
            let source = name.zip(mode).map(|(secret_name, default_mode)| {
                VolumeSource::Secret(SecretVolume {
                    secret_name,
                    items,
                    default_mode,
                    optional: secret.optional.unwrap_or(false),
                })
            });
            sources.push(("secret", source));
        }
        if let Some(downward) = raw.downward_api {
            let source_path = item_path.child("downwardAPI");
            let items = downward_api_files(downward.items, &source_path.child("items"), problems);
            let mode = default_mode(
                downward.default_mode,
                &source_path.child("defaultMode"),
                problems,
            );
            let source = mode.map(|default_mode| {
                VolumeSource::DownwardApi(DownwardApiVolume {
                    items,
                    default_mode,
                })
            });
            sources.push(("downwardAPI", source));
        }
        if let Some(projected) = raw.projected {
            let source_path = item_path.child("projected");
            let sources_of =
                projections(projected.sources, &source_path.child("sources"), problems);
            let mode = default_mode(
                projected.default_mode,
                &source_path.child("defaultMode"),
                problems,
            );
            let source = mode.map(|default_mode| {
                VolumeSource::Projected(ProjectedVolume {
                    sources: sources_of,
                    default_mode,
                })
            });
            sources.push(("projected", source));
        }
        for key in raw.other.keys() {
            let field = item_path.child(key);
            if UNSUPPORTED_SOURCES.contains(&key.as_str()) {
                problems.error(&field, "not supported yet (skiff has emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes)");
                sources.push(("unsupported", None));
            } else {
                problems.warn(&field, "unknown field, ignored");
            }
        }
        match sources.len() {
            0 => problems.error(
                &item_path,
                "must set one volume source: emptyDir, hostPath, configMap, secret, downwardAPI or projected",
            ),
            1 => {}
            _ => {
                let kinds: Vec<&str> = sources
                    .iter()
                    .map(|(kind, _)| *kind)
                    .filter(|kind| *kind != "unsupported")
                    .chain(raw.other.keys().map(String::as_str).filter(|k| UNSUPPORTED_SOURCES.contains(k)))
                    .collect();
                problems.error(&item_path, format!("must set only one volume source (got {})", kinds.join(", ")));
            }
        }
        if let (Some(name), Some((_, Some(source)))) = (name, sources.pop()) {
            out.push(Volume { name, source });
        }
    }
    (out, all_names)
}

fn default_mode(
    mode: Option<crate::raw::FileMode>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<u32> {
    match mode {
        None => Some(DEFAULT_VOLUME_MODE),
        Some(mode) => file_mode(mode.0, path, problems),
    }
}

fn key_to_paths(
    list: Option<List<RawKeyToPath>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<KeyToPath> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let key_path = item_path.child("key");
        let key = required_string(raw.key, &key_path, problems)
            .filter(|key| check(names::check_config_key(key), &key_path, problems));
        let file_path = item_path.child("path");
        let file = required_string(raw.path, &file_path, problems)
            .filter(|file| check(names::check_relative_path(file), &file_path, problems));
        let mode = match raw.mode {
            None => Some(None),
            Some(mode) => file_mode(mode.0, &item_path.child("mode"), problems).map(Some),
        };
        if let (Some(key), Some(path), Some(mode)) = (key, file, mode) {
            out.push(KeyToPath { key, path, mode });
        }
    }
    out
}

/// The files of a downwardAPI volume or projection: a relative path each, and one of
/// `fieldRef` (name, namespace, uid, labels, annotations) or `resourceFieldRef` (with its
/// container named).
fn downward_api_files(
    list: Option<List<RawDownwardApiFile>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<DownwardApiFile> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let file_path = item_path.child("path");
        let file = required_string(raw.path, &file_path, problems)
            .filter(|file| check(names::check_relative_path(file), &file_path, problems));
        if let Some(file) = &file
            && !seen.insert(file.clone())
        {
            problems.error(&file_path, format!("duplicate path {file:?}"));
        }
        let mode = match raw.mode {
            None => Some(None),
            Some(mode) => file_mode(mode.0, &item_path.child("mode"), problems).map(Some),
        };
        let source = match (raw.field_ref, raw.resource_field_ref) {
            (Some(_), Some(_)) => {
                problems.error(
                    &item_path,
                    "must set only one of fieldRef and resourceFieldRef",
                );
                None
            }
            (None, None) => {
                problems.error(&item_path, "must set fieldRef or resourceFieldRef");
                None
            }
            (Some(field), None) => {
                let ref_path = item_path.child("fieldRef");
                if let Some(v) = field.api_version.filter(|v| v != "v1") {
                    problems.error(
                        &ref_path.child("apiVersion"),
                        format!("must be v1 (got {v:?})"),
                    );
                    None
                } else {
                    let field_path = ref_path.child("fieldPath");
                    required_string(field.field_path, &field_path, problems).and_then(|text| {
                        let parsed = VolumeField::parse(&text);
                        if parsed.is_none() {
                            problems.error(
                                &field_path,
                                format!(
                                    "unsupported field {text:?} in a volume: use metadata.name, \
                                     metadata.namespace, metadata.uid, metadata.labels, \
                                     metadata.annotations, metadata.labels['KEY'] or \
                                     metadata.annotations['KEY'] (addresses and the node name \
                                     are for the environment only, as in Kubernetes)"
                                ),
                            );
                        }
                        parsed.map(DownwardApiSource::Field)
                    })
                }
            }
            (None, Some(resource)) => {
                let ref_path = item_path.child("resourceFieldRef");
                let container_missing =
                    resource.container_name.as_deref().is_none_or(str::is_empty);
                if container_missing {
                    problems.error(
                        &ref_path.child("containerName"),
                        "required in a volume (which container's resources)",
                    );
                }
                resource_field_ref(resource, &ref_path, problems)
                    .filter(|_| !container_missing)
                    .map(DownwardApiSource::Resource)
            }
        };
        if let (Some(path), Some(source), Some(mode)) = (file, source, mode) {
            out.push(DownwardApiFile { path, source, mode });
        }
    }
    out
}

/// The sources of a projected volume: configMap, secret and downwardAPI; the others Kubernetes
/// has (serviceAccountToken, clusterTrustBundle, podCertificate) are refused by name.
fn projections(
    list: Option<List<RawProjection>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<Projection> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let mut kinds = Vec::new();
        let mut found = None;
        if let Some(c) = raw.config_map {
            kinds.push("configMap");
            found = object_projection(c, &item_path.child("configMap"), problems)
                .map(Projection::ConfigMap);
        }
        if let Some(s) = raw.secret {
            kinds.push("secret");
            found =
                object_projection(s, &item_path.child("secret"), problems).map(Projection::Secret);
        }
        if let Some(d) = raw.downward_api {
            kinds.push("downwardAPI");
            let items = downward_api_files(
                d.items,
                &item_path.child("downwardAPI").child("items"),
                problems,
            );
            found = Some(Projection::DownwardApi(DownwardApiProjection { items }));
        }
        for key in raw.other.keys() {
            let field = item_path.child(key);
            match key.as_str() {
                "serviceAccountToken" => problems.error(
                    &field,
                    "not supported: skiff has no service accounts or API tokens",
                ),
                "clusterTrustBundle" | "podCertificate" => {
                    problems.error(&field, "not supported yet")
                }
                _ => {
                    problems.warn(&field, "unknown field, ignored");
                    continue;
                }
            }
            kinds.push("unsupported");
        }
        match kinds.len() {
            0 => problems.error(
                &item_path,
                "must set one projection source: configMap, secret or downwardAPI",
            ),
            1 => out.extend(found),
            _ => {
                let named: Vec<&str> = kinds.into_iter().filter(|k| *k != "unsupported").collect();
                if named.len() > 1 {
                    problems.error(
                        &item_path,
                        format!(
                            "must set only one projection source (got {})",
                            named.join(", ")
                        ),
                    );
                }
            }
        }
    }
    out
}

fn object_projection(
    raw: crate::raw::RawObjectProjection,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ObjectProjection> {
    let name = referenced_name(raw.name, &path.child("name"), problems);
    let items = key_to_paths(raw.items, &path.child("items"), problems);
    Some(ObjectProjection {
        name: name?,
        items,
        optional: raw.optional.unwrap_or(false),
    })
}

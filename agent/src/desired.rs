//! Desired state, pure: manifest files (and objects applied through the API) -> the objects this
//! node declares; the pods the leader assigned to this node -> which pods to create and delete. A broken file keeps its last good
//! version; an object declared twice keeps its first declaration (by source name).

use crate::pod::{Owner, PodRecord};
use skiff_manifests::model::workloads::{Deployment, Pod};
use skiff_manifests::naming::PodSuffix;
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where an object was declared: a manifest file path, or `api:<key>` for `skiff apply`.
pub type Source = String;

/// Desired objects by key, with where each was declared.
pub type Objects = BTreeMap<ObjectKey, (Source, Valid<Object>)>;

/// The prefix of sources applied through the API.
pub const API_SOURCE_PREFIX: &str = "api:";

/// Every object of `files` with every file's warnings; or, when any document has an error, one
/// message with every error, then the warnings (so that ignored fields are not learnt only
/// once the errors are fixed), then what happens: nothing of the request is applied, as a
/// watched file keeps its last good version until every document in it is valid. Used by
/// `apply` (with or without `--dry-run`) and by a dry run with no agent to ask. `node_ports`:
/// the range a pinned `nodePort` must be in (None: any port, for `delete -f`).
pub fn check_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    node_ports: Option<skiff_manifests::NodePortRange>,
) -> Result<(Vec<Valid<Object>>, Vec<String>), String> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (name, bytes) in files {
        let parsed = parse_checked(name, bytes, node_ports);
        errors.extend(parsed.errors().iter().map(|e| e.to_string()));
        warnings.extend(parsed.warnings().iter().map(|w| w.to_string()));
        objects.extend(parsed.objects().into_iter().cloned());
    }
    if errors.is_empty() {
        return Ok((objects, warnings));
    }
    let mut lines = errors;
    lines.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
    lines.push(
        "nothing is applied or deleted until every document is valid (a watched file keeps its \
         last good version meanwhile)"
            .to_string(),
    );
    Err(lines.join("\n"))
}

/// `parse_file`, then pinned node ports checked against `node_ports` when given: how a file a
/// user hands this node (watched or applied) is read.
pub fn parse_checked(
    name: &str,
    bytes: &[u8],
    node_ports: Option<skiff_manifests::NodePortRange>,
) -> skiff_manifests::ParsedFile {
    let mut parsed = skiff_manifests::parse_file(name, bytes);
    if let Some(range) = node_ports {
        parsed.check_node_ports(name, range);
    }
    parsed
}

/// The merged desired objects, and the declarations that lost to an earlier one.
#[derive(Debug, Default)]
pub struct Merged {
    /// Shared with the cluster task (handed on without a copy).
    pub objects: Arc<Objects>,
    pub conflicts: Vec<(Source, String)>,
}

/// Merges every source's objects; on a duplicate key the first source (by name) wins.
pub fn merge<'a, S, O>(sources: S) -> Merged
where
    S: IntoIterator<Item = (&'a Source, O)>,
    O: IntoIterator<Item = &'a Valid<Object>>,
{
    let mut objects = Objects::new();
    let mut conflicts = Vec::new();
    for (source, declared) in sources {
        for object in declared {
            let key = object.key();
            if let Some((first, _)) = objects.get(&key) {
                conflicts.push((
                    source.clone(),
                    format!("{key} is already declared in {first}; this declaration is ignored"),
                ));
                continue;
            }
            objects.insert(key, (source.clone(), object.clone()));
        }
    }
    Merged {
        // Built again in one pass: a map filled one key at a time in key order keeps its
        // nodes about half full, and this one is kept (and shared) until the next change.
        objects: Arc::new(objects.into_iter().collect()),
        conflicts,
    }
}

/// A pod to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPod {
    pub pod: Valid<Pod>,
    pub owner: Option<Owner>,
    pub spec_hash: String,
}

/// Whether the ConfigMaps or Secrets differ between `old` and `new` (pods waiting on them are
/// retried at once).
pub fn config_changed(old: &Objects, new: &Objects) -> bool {
    let config = |objects: &Objects| -> Vec<(ObjectKey, String)> {
        objects
            .iter()
            .filter(|(k, _)| matches!(k.kind, Kind::ConfigMap | Kind::Secret))
            .map(|(k, (_, o))| (k.clone(), o.content_hash()))
            .collect()
    };
    config(old) != config(new)
}

/// What the node should change in its pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodChanges {
    pub create: Vec<NewPod>,
    /// Uids of pods to stop and remove.
    pub delete: Vec<String>,
    /// Objects that cannot run yet, with the reason (e.g. a missing namespace).
    pub blocked: Vec<(ObjectKey, String)>,
    /// Job pods the leader ended while they still run (their Job failed): uid and why. They
    /// stop for good and keep their record and logs, as an evicted pod does.
    pub stop: Vec<(String, crate::pod::PodFailure)>,
}

/// Compares the pods the leader assigned to `node` with the pod records. A pod running the
/// assigned template is kept; an assigned pod this node lacks is built from its owner object
/// (Deployment, DaemonSet or bare Pod) once this node holds the owner's matching version
/// (until then it is listed in `blocked`); every other live pod is deleted.
pub fn assigned_changes(
    objects: &BTreeMap<ObjectKey, (Source, Valid<Object>)>,
    assigned: &[crate::cluster::keys::AssignedPod],
    pods: &[&PodRecord],
    node: &str,
) -> PodChanges {
    use skiff_manifests::model::workloads::DaemonSet;
    let mut changes = PodChanges::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for a in assigned.iter().filter(|a| a.node == node) {
        let same_name: Vec<&&PodRecord> = pods
            .iter()
            .filter(|p| p.namespace == a.namespace && p.name == a.name)
            .collect();
        let job_pod = a.owner.kind == Kind::Job;
        if let Some(p) = same_name.iter().find(|p| {
            p.deleting_since.is_none()
                    && p.spec_hash == a.template_hash
                    // A failed (evicted) pod of a workload is replaced (a bare Pod stays, and
                    // a Job's leader counts it and makes a new attempt under a new name).
                    && !(p.owner.is_some() && p.status.failure.is_some() && !job_pod)
        }) {
            wanted.insert(p.uid.clone());
            if let Some(end) = a.job.as_ref().and_then(|m| m.end.as_ref())
                && !end.succeeded
                && !end.counted
                && p.status.failure.is_none()
                && !matches!(
                    p.phase(),
                    crate::pod::Phase::Succeeded | crate::pod::Phase::Failed
                )
            {
                changes.stop.push((
                    p.uid.clone(),
                    crate::pod::PodFailure {
                        reason: end.reason.clone(),
                        message: format!("stopped: its Job failed ({})", end.reason),
                    },
                ));
            }
            continue;
        }
        if !same_name.is_empty() {
            // The old pod of that name is deleted below; the new one comes once it is gone.
            continue;
        }
        if a.job.as_ref().is_some_and(|m| m.end.is_some()) {
            continue; // an ended attempt this node no longer has is never started again
        }
        let kind = match a.owner.kind {
            Kind::Deployment | Kind::DaemonSet | Kind::Job => a.owner.kind,
            _ => Kind::Pod,
        };
        let key = ObjectKey::new(kind, &a.namespace, &a.owner.name);
        let waiting = |what: &str| (key.clone(), format!("waiting for {what} of {key}"));
        let Some((_, object)) = objects.get(&key) else {
            changes.blocked.push(waiting("the object"));
            continue;
        };
        let built = match kind {
            Kind::Deployment => Valid::<Deployment>::try_from(object.clone())
                .ok()
                .filter(|d| d.pod_template_hash() == a.template_hash)
                .and_then(|d| {
                    let suffix = PodSuffix::new(a.name.rsplit('-').next()?).ok()?;
                    let pod = d.new_pod(&suffix);
                    (pod.metadata.name == a.name).then_some(pod)
                }),
            Kind::DaemonSet => Valid::<DaemonSet>::try_from(object.clone())
                .ok()
                .filter(|d| d.pod_template_hash() == a.template_hash)
                .map(|d| d.new_pod(node))
                .filter(|pod| pod.metadata.name == a.name),
            Kind::Job => Valid::<skiff_manifests::Job>::try_from(object.clone())
                .ok()
                .filter(|j| j.pod_template_hash() == a.template_hash)
                .and_then(|j| {
                    let mark = a.job.as_ref()?;
                    (j.pod_name(mark.attempt, mark.index) == a.name || mark.attempt == 0)
                        .then(|| j.new_pod(a.name.clone(), mark.index))
                }),
            _ => Valid::<Pod>::try_from(object.clone())
                .ok()
                .filter(|_| object.content_hash() == a.template_hash),
        };
        match built {
            Some(pod) => changes.create.push(NewPod {
                pod,
                owner: (kind != Kind::Pod).then(|| a.owner.clone()),
                spec_hash: a.template_hash.clone(),
            }),
            None => changes.blocked.push(waiting("the assigned version")),
        }
    }
    changes.delete = pods
        .iter()
        .filter(|p| p.deleting_since.is_none() && !wanted.contains(&p.uid))
        .map(|p| p.uid.clone())
        .collect();
    changes
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;

//! Validation of Pod, Deployment and DaemonSet objects: replicas, selector against template
//! labels, rollout strategy; the pod spec itself is checked in `validate::pod`.

use crate::error::{FieldPath, Problems};
use crate::model::object::Kind;
use crate::model::pod::RestartPolicy;
use crate::model::workloads::{
    DEFAULT_PROGRESS_DEADLINE_SECONDS, DEFAULT_REVISION_HISTORY_LIMIT, DaemonSet, DaemonSetSpec,
    DaemonSetUpdate, Deployment, DeploymentSpec, DeploymentStrategy, IntOrPercent, LabelSelector,
    Pod, PodTemplate, RollingUpdate, TemplateMetadata,
};
use crate::raw::{
    RawDaemonSet, RawDeployment, RawIntOrString, RawPod, RawPodTemplate, RawRollingUpdate,
    RawSelector, RawStrategy,
};

use super::pod::{PodContext, pod_spec};
use super::{annotations, labels, object_meta, one_of, required};

pub(crate) fn validate_pod(raw: RawPod, problems: &mut Problems) -> Option<Pod> {
    let metadata = object_meta(raw.metadata, Kind::Pod, problems);
    let spec_path = FieldPath::root().child("spec");
    let spec = pod_spec(
        required(raw.spec, &spec_path, problems)?,
        &spec_path,
        PodContext::Pod,
        problems,
    )?;
    Some(Pod {
        metadata,
        spec: Box::new(spec),
    })
}

pub(crate) fn validate_deployment(
    raw: RawDeployment,
    problems: &mut Problems,
) -> Option<Deployment> {
    let metadata = object_meta(raw.metadata, Kind::Deployment, problems);
    let spec_path = FieldPath::root().child("spec");
    let spec = required(raw.spec, &spec_path, problems)?;

    let replicas_path = spec_path.child("replicas");
    let replicas = match spec.replicas {
        None => Some(1),
        Some(count) if count < 0 => {
            problems.error(&replicas_path, format!("must be >= 0 (got {count})"));
            None
        }
        Some(count) => match u32::try_from(count).ok().filter(|c| *c <= i32::MAX as u32) {
            Some(count) => Some(count),
            None => {
                problems.error(
                    &replicas_path,
                    format!("must be <= {} (got {count})", i32::MAX),
                );
                None
            }
        },
    };

    let (selector, template) = selector_and_template(
        spec.selector,
        spec.template,
        Kind::Deployment,
        &spec_path,
        problems,
    );

    let strategy = strategy(spec.strategy, &spec_path.child("strategy"), problems);
    let mut seconds = |value: Option<i64>, field: &str, default: u32, least: i64| -> Option<u32> {
        match value {
            None => Some(default),
            Some(v) if v >= least && v <= i64::from(i32::MAX) => Some(v as u32),
            Some(v) => {
                problems.error(
                    &spec_path.child(field),
                    format!("must be between {least} and {} (got {v})", i32::MAX),
                );
                None
            }
        }
    };
    let min_ready_seconds = seconds(spec.min_ready_seconds, "minReadySeconds", 0, 0);
    let progress_deadline_seconds = seconds(
        spec.progress_deadline_seconds,
        "progressDeadlineSeconds",
        DEFAULT_PROGRESS_DEADLINE_SECONDS,
        1,
    );
    let revision_history_limit = seconds(
        spec.revision_history_limit,
        "revisionHistoryLimit",
        DEFAULT_REVISION_HISTORY_LIMIT,
        0,
    );
    if let (Some(ready), Some(deadline)) = (min_ready_seconds, progress_deadline_seconds)
        && deadline <= ready
    {
        problems.error(
            &spec_path.child("progressDeadlineSeconds"),
            format!("must be greater than minReadySeconds ({ready}), got {deadline}"),
        );
    }
    Some(Deployment {
        metadata,
        spec: Box::new(DeploymentSpec {
            replicas: replicas?,
            selector: selector?,
            template: template?,
            strategy: strategy?,
            min_ready_seconds: min_ready_seconds?,
            progress_deadline_seconds: progress_deadline_seconds?,
            revision_history_limit: revision_history_limit?,
            paused: spec.paused.unwrap_or(false),
        }),
    })
}

pub(crate) fn validate_daemon_set(raw: RawDaemonSet, problems: &mut Problems) -> Option<DaemonSet> {
    let metadata = object_meta(raw.metadata, Kind::DaemonSet, problems);
    let spec_path = FieldPath::root().child("spec");
    let spec = required(raw.spec, &spec_path, problems)?;
    let (selector, template) = selector_and_template(
        spec.selector,
        spec.template,
        Kind::DaemonSet,
        &spec_path,
        problems,
    );
    let update_strategy = daemon_set_update(
        spec.update_strategy,
        &spec_path.child("updateStrategy"),
        problems,
    );
    let revision_history_limit = match spec.revision_history_limit {
        None => Some(DEFAULT_REVISION_HISTORY_LIMIT),
        Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Some(v as u32),
        Some(v) => {
            problems.error(
                &spec_path.child("revisionHistoryLimit"),
                format!("must be between 0 and {} (got {v})", i32::MAX),
            );
            None
        }
    };
    Some(DaemonSet {
        metadata,
        spec: DaemonSetSpec {
            selector: selector?,
            template: template?,
            update_strategy: update_strategy?,
            revision_history_limit: revision_history_limit?,
        },
    })
}

/// `spec.selector` and `spec.template` of a workload that stamps out pods (`kind`), and the
/// check that the selector matches the template's labels.
fn selector_and_template(
    selector: Option<RawSelector>,
    template: Option<RawPodTemplate>,
    kind: Kind,
    spec_path: &FieldPath,
    problems: &mut Problems,
) -> (Option<LabelSelector>, Option<PodTemplate>) {
    let selector_path = spec_path.child("selector");
    let selector = required(selector, &selector_path, problems).map(|selector| {
        let expressions_path = selector_path.child("matchExpressions");
        if selector.match_expressions.is_some() {
            problems.error(&expressions_path, "not supported yet; use matchLabels");
        }
        let labels_path = selector_path.child("matchLabels");
        let raw_labels = required(selector.match_labels, &labels_path, problems);
        let present = raw_labels.is_some();
        let match_labels = labels(raw_labels, &labels_path, problems);
        if present && match_labels.is_empty() {
            problems.error(
                &labels_path,
                format!("must not be empty: a {kind} needs labels to find its pods"),
            );
        }
        LabelSelector { match_labels }
    });

    let template_path = spec_path.child("template");
    let template = pod_template(template, kind, &template_path, problems);

    if let (Some(selector), Some(template)) = (&selector, &template) {
        let mismatched: Vec<String> = selector
            .match_labels
            .iter()
            .filter(|(key, value)| template.metadata.labels.get(*key) != Some(value))
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        if !mismatched.is_empty() {
            problems.error(
                &template_path.child("metadata").child("labels"),
                format!(
                    "must match spec.selector.matchLabels (missing or different: {})",
                    mismatched.join(", ")
                ),
            );
        }
    }
    (selector, template)
}

/// The required pod template of a `kind` at `path`.
pub(crate) fn pod_template(
    template: Option<RawPodTemplate>,
    kind: Kind,
    template_path: &FieldPath,
    problems: &mut Problems,
) -> Option<PodTemplate> {
    required(template, template_path, problems).and_then(|template| {
        let meta_path = template_path.child("metadata");
        let meta = template.metadata.unwrap_or_default();
        let metadata = TemplateMetadata {
            labels: labels(meta.labels, &meta_path.child("labels"), problems),
            annotations: annotations(meta.annotations, &meta_path.child("annotations"), problems),
        };
        let pod_path = template_path.child("spec");
        let spec = pod_spec(
            required(template.spec, &pod_path, problems)?,
            &pod_path,
            PodContext::Template(kind),
            problems,
        )?;
        Some(PodTemplate {
            metadata,
            spec: Box::new(spec),
        })
    })
}

fn strategy(
    raw: Option<RawStrategy>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<DeploymentStrategy> {
    let Some(raw) = raw else {
        return Some(DeploymentStrategy::default());
    };
    #[derive(Clone, Copy)]
    enum Type {
        RollingUpdate,
        Recreate,
    }
    let type_name = raw.type_.unwrap_or_else(|| "RollingUpdate".to_string());
    let table = [
        ("RollingUpdate", Type::RollingUpdate),
        ("Recreate", Type::Recreate),
    ];
    let rolling_path = path.child("rollingUpdate");
    match one_of(&type_name, &table, &path.child("type"), problems)? {
        Type::Recreate => {
            if raw.rolling_update.is_some() {
                problems.error(&rolling_path, "must not be set when type is Recreate");
            }
            Some(DeploymentStrategy::Recreate)
        }
        Type::RollingUpdate => {
            let rolling_update = rolling_update(
                raw.rolling_update.unwrap_or_default(),
                &rolling_path,
                problems,
            )?;
            Some(DeploymentStrategy::RollingUpdate { rolling_update })
        }
    }
}

/// A DaemonSet's `updateStrategy`: RollingUpdate with `maxUnavailable` (an integer or a
/// percentage of the nodes); `maxSurge` other than 0 and `OnDelete` are refused for now.
fn daemon_set_update(
    raw: Option<RawStrategy>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<DaemonSetUpdate> {
    let Some(raw) = raw else {
        return Some(DaemonSetUpdate::default());
    };
    let type_name = raw.type_.unwrap_or_else(|| "RollingUpdate".to_string());
    match type_name.as_str() {
        "RollingUpdate" => {}
        "OnDelete" => {
            problems.error(
                &path.child("type"),
                "OnDelete is not supported yet: use RollingUpdate",
            );
            return None;
        }
        other => {
            problems.error(
                &path.child("type"),
                format!("must be one of RollingUpdate, OnDelete (got {other:?})"),
            );
            return None;
        }
    }
    let rolling_path = path.child("rollingUpdate");
    let rolling = raw.rolling_update.unwrap_or_default();
    if let Some(surge) = rolling.max_surge {
        let surge = int_or_percent(surge, &rolling_path.child("maxSurge"), problems)?;
        if !matches!(surge, IntOrPercent::Int(0) | IntOrPercent::Percent(0)) {
            problems.error(
                &rolling_path.child("maxSurge"),
                "not supported yet for a DaemonSet: only 0 (one pod per node, replaced in place)",
            );
            return None;
        }
    }
    let max_unavailable = match rolling.max_unavailable {
        Some(value) => int_or_percent(value, &rolling_path.child("maxUnavailable"), problems)?,
        None => DaemonSetUpdate::default().max_unavailable,
    };
    match max_unavailable {
        IntOrPercent::Int(0) | IntOrPercent::Percent(0) => {
            problems.error(
                &rolling_path.child("maxUnavailable"),
                "must not be 0 when maxSurge is 0",
            );
            None
        }
        IntOrPercent::Percent(p) if p > 100 => {
            problems.error(
                &rolling_path.child("maxUnavailable"),
                format!("must be at most 100% (got {p}%)"),
            );
            None
        }
        _ => Some(DaemonSetUpdate { max_unavailable }),
    }
}

fn rolling_update(
    raw: RawRollingUpdate,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<RollingUpdate> {
    let defaults = RollingUpdate::default();
    let surge_path = path.child("maxSurge");
    let unavailable_path = path.child("maxUnavailable");
    let max_surge = match raw.max_surge {
        Some(value) => int_or_percent(value, &surge_path, problems),
        None => Some(defaults.max_surge),
    };
    let max_unavailable = match raw.max_unavailable {
        Some(value) => int_or_percent(value, &unavailable_path, problems),
        None => Some(defaults.max_unavailable),
    };
    let (max_surge, max_unavailable) = (max_surge?, max_unavailable?);
    if let IntOrPercent::Percent(percent) = max_unavailable
        && percent > 100
    {
        problems.error(
            &unavailable_path,
            format!("must be at most 100% (got {percent}%)"),
        );
        return None;
    }
    let is_zero = |v: IntOrPercent| matches!(v, IntOrPercent::Int(0) | IntOrPercent::Percent(0));
    if is_zero(max_surge) && is_zero(max_unavailable) {
        problems.error(&unavailable_path, "must not be 0 when maxSurge is 0");
        return None;
    }
    Some(RollingUpdate {
        max_surge,
        max_unavailable,
    })
}

fn int_or_percent(
    raw: RawIntOrString,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<IntOrPercent> {
    let parsed = match &raw {
        RawIntOrString::Int(count) => u32::try_from(*count)
            .ok()
            .filter(|c| *c <= i32::MAX as u32)
            .map(IntOrPercent::Int),
        RawIntOrString::String(text) => text
            .strip_suffix('%')
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse().ok())
            .map(IntOrPercent::Percent),
    };
    if parsed.is_none() {
        let got = match raw {
            RawIntOrString::Int(count) => count.to_string(),
            RawIntOrString::String(text) => format!("{text:?}"),
        };
        problems.error(
            path,
            format!("must be a non-negative integer or a percentage such as \"25%\" (got {got})"),
        );
    }
    parsed
}

/// Only `Always` is allowed in the template of a Deployment or DaemonSet (`kind`): its pods
/// must keep running; a Job's pods run to completion (`OnFailure` or `Never`).
pub(crate) fn check_template_restart_policy(
    policy: RestartPolicy,
    kind: Kind,
    path: &FieldPath,
    problems: &mut Problems,
) {
    if kind == Kind::Job {
        if policy == RestartPolicy::Always {
            problems.error(
                path,
                "must be \"OnFailure\" or \"Never\" in a Job (its pods run to completion; \
                 Kubernetes requires it to be set)",
            );
        }
        return;
    }
    if policy != RestartPolicy::Always {
        problems.error(
            path,
            format!("must be \"Always\" in a {kind} (got {:?})", policy.as_str()),
        );
    }
}

//! The revisions of a workload's pod template (Deployments and DaemonSets), kept with the
//! object's record so that every node has the same history as the version it holds (pure).
//!
//! A new version whose template differs from the current one becomes a new revision, numbered
//! one past the highest; a template equal to an older revision's (an undo, or a file edited
//! back) moves that revision to the top under a new number, as Kubernetes renumbers the
//! ReplicaSet it reuses. `revisionHistoryLimit` old revisions are kept beside the current one.
//! `rollout undo` builds the object that brings an older template back ([`undo`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use skiff_manifests::{Object, Valid};

/// The annotation a Deployment's author sets to say why a revision was made.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Opt-in: a rollout that exceeds its progress deadline goes back to the previous revision.
pub const AUTO_ROLLBACK: &str = "skiff.dev/auto-rollback";

/// The cause written on a revision that an automatic rollback brought back.
pub const AUTO_ROLLBACK_CAUSE_PREFIX: &str = "auto-rollback";

/// One revision of a pod template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub revision: u64,
    /// The template's hash (`pod-template-hash`).
    pub template_hash: String,
    /// `spec.template` in Kubernetes shape.
    pub template: Value,
    /// `kubernetes.io/change-cause` of the version that made it (or why skiff made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// When this node recorded it (wall clock ms).
    pub at_ms: u64,
}

/// A templated workload's template hash, template and history limit; `None` for other kinds.
fn templated(object: &Valid<Object>) -> Option<(String, Value, u32)> {
    let (hash, limit) = match object.get() {
        Object::Deployment(d) => (d.pod_template_hash(), d.spec.revision_history_limit),
        Object::DaemonSet(d) => (d.pod_template_hash(), d.spec.revision_history_limit),
        _ => return None,
    };
    let json: Value = serde_json::from_slice(&object.to_json()).ok()?;
    let template = json.pointer("/spec/template")?.clone();
    Some((hash, template, limit))
}

fn cause_of(object: &Valid<Object>) -> Option<String> {
    object
        .metadata()
        .annotations
        .get(CHANGE_CAUSE)
        .filter(|c| !c.is_empty())
        .cloned()
}

/// The history of `new`, which replaces `previous` (with its history `before`). A record that
/// predates histories (`before` empty) starts from the previous version's template.
pub fn next(
    before: &[Revision],
    previous: Option<&Valid<Object>>,
    new: &Valid<Object>,
    now_ms: u64,
) -> Vec<Revision> {
    next_with_cause(before, previous, new, cause_of(new), now_ms)
}

fn next_with_cause(
    before: &[Revision],
    previous: Option<&Valid<Object>>,
    new: &Valid<Object>,
    cause: Option<String>,
    now_ms: u64,
) -> Vec<Revision> {
    let Some((hash, template, limit)) = templated(new) else {
        return Vec::new();
    };
    let mut history: Vec<Revision> = before.to_vec();
    if history.is_empty()
        && let Some(prev) = previous.filter(|p| p.kind() == new.kind())
        && let Some((prev_hash, prev_template, _)) = templated(prev)
    {
        history.push(Revision {
            revision: 1,
            template_hash: prev_hash,
            template: prev_template,
            cause: cause_of(prev),
            at_ms: now_ms,
        });
    }
    match history.last_mut() {
        // The template did not change (replicas, strategy, metadata): the same revision, with
        // the newest change cause.
        Some(last) if last.template_hash == hash => {
            if cause.is_some() {
                last.cause = cause;
            }
        }
        _ => {
            let number = history.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
            history.retain(|r| r.template_hash != hash);
            history.push(Revision {
                revision: number,
                template_hash: hash,
                template,
                cause,
                at_ms: now_ms,
            });
        }
    }
    let keep = limit as usize + 1;
    if history.len() > keep {
        history.drain(..history.len() - keep);
    }
    history
}

/// Why a rollback cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UndoError {
    #[error("no rollout history found for {0}")]
    NoHistory(String),
    #[error("no previous revision of {0} to roll back to")]
    NoPrevious(String),
    #[error("unable to find specified revision {1} in the history of {0}")]
    NotFound(String, u64),
    #[error("skipped rollback of {0}: the current template already matches revision {1}")]
    AlreadyCurrent(String, u64),
    #[error("revision {1} of {0} is no longer a valid object: {2}")]
    Invalid(String, u64, String),
}

/// A rollback: the object with the older template and its history.
#[derive(Debug, Clone)]
pub struct Undone {
    pub object: Valid<Object>,
    pub history: Vec<Revision>,
    /// The revision brought back (its number before it moved to the top).
    pub from_revision: u64,
    /// Its new number.
    pub revision: u64,
}

/// The object `current` (with `history`) becomes when the template of revision `to` (`None`
/// or 0: the one before the current) is brought back. `what` names the object for messages;
/// `cause` is written on the revision brought back.
pub fn undo(
    what: &str,
    current: &Valid<Object>,
    history: &[Revision],
    to: Option<u64>,
    cause: Option<String>,
    now_ms: u64,
) -> Result<Undone, UndoError> {
    let Some(last) = history.last() else {
        return Err(UndoError::NoHistory(what.to_string()));
    };
    let target = match to.filter(|n| *n != 0) {
        None => history
            .iter()
            .rev()
            .nth(1)
            .ok_or_else(|| UndoError::NoPrevious(what.to_string()))?,
        Some(n) => history
            .iter()
            .find(|r| r.revision == n)
            .ok_or_else(|| UndoError::NotFound(what.to_string(), n))?,
    };
    if target.template_hash == last.template_hash {
        return Err(UndoError::AlreadyCurrent(what.to_string(), target.revision));
    }
    let invalid = |detail: String| UndoError::Invalid(what.to_string(), target.revision, detail);
    let mut json: Value =
        serde_json::from_slice(&current.to_json()).map_err(|e| invalid(e.to_string()))?;
    let Some(spec) = json.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err(invalid("the object has no spec".into()));
    };
    spec.insert("template".into(), target.template.clone());
    let bytes = serde_json::to_vec(&json).map_err(|e| invalid(e.to_string()))?;
    let object = Valid::<Object>::from_json(&bytes).map_err(|errors| {
        invalid(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let cause = cause.or_else(|| target.cause.clone());
    let history = next_with_cause(history, Some(current), &object, cause, now_ms);
    let revision = history.last().map_or(0, |r| r.revision);
    Ok(Undone {
        object,
        history,
        from_revision: target.revision,
        revision,
    })
}

/// Whether a Deployment asks to be rolled back when its rollout exceeds its deadline, and its
/// current revision was not itself brought back by such a rollback (no back and forth).
pub fn wants_auto_rollback(object: &Valid<Object>, history: &[Revision]) -> bool {
    matches!(object.get(), Object::Deployment(_))
        && object
            .metadata()
            .annotations
            .get(AUTO_ROLLBACK)
            .is_some_and(|v| v == "true")
        && history.len() >= 2
        && !history.last().is_some_and(|r| {
            r.cause
                .as_deref()
                .is_some_and(|c| c.starts_with(AUTO_ROLLBACK_CAUSE_PREFIX))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, replicas: u32, extra_meta: &str) -> Valid<Object> {
        let yaml = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n{extra_meta}spec:\n  replicas: {replicas}\n  revisionHistoryLimit: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: c, image: {image}}}]\n"
        );
        let parsed = skiff_manifests::parse_file("d.yaml", yaml.as_bytes());
        assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
        parsed.objects().into_iter().next().cloned().expect("one")
    }

    fn image_of(r: &Revision) -> &str {
        r.template
            .pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    /// Applies the versions one after another; returns the history as (revision, image).
    fn run(versions: &[Valid<Object>]) -> Vec<(u64, String)> {
        let mut history = Vec::new();
        let mut previous: Option<&Valid<Object>> = None;
        for v in versions {
            history = next(&history, previous, v, 1);
            previous = Some(v);
        }
        history
            .iter()
            .map(|r| (r.revision, image_of(r).to_string()))
            .collect()
    }

    #[test]
    fn revisions_table() {
        let a = || deployment("a", 1, "");
        let b = || deployment("b", 1, "");
        let c = || deployment("c", 1, "");
        let d = || deployment("d", 1, "");
        type Row = (&'static str, Vec<Valid<Object>>, Vec<(u64, &'static str)>);
        let rows: Vec<Row> = vec![
            ("first version", vec![a()], vec![(1, "a")]),
            ("a new template", vec![a(), b()], vec![(1, "a"), (2, "b")]),
            (
                "replicas alone make no revision",
                vec![a(), deployment("a", 5, "")],
                vec![(1, "a")],
            ),
            (
                "an older template moves to the top renumbered",
                vec![a(), b(), a()],
                vec![(2, "b"), (3, "a")],
            ),
            (
                "limit 2 keeps two old revisions beside the current",
                vec![a(), b(), c(), d()],
                vec![(2, "b"), (3, "c"), (4, "d")],
            ),
        ];
        for (name, versions, want) in rows {
            let want: Vec<(u64, String)> =
                want.into_iter().map(|(n, i)| (n, i.to_string())).collect();
            assert_eq!(run(&versions), want, "{name}");
        }
    }

    #[test]
    fn a_record_without_history_starts_from_the_previous_version() {
        let (a, b) = (deployment("a", 1, ""), deployment("b", 1, ""));
        let h = next(&[], Some(&a), &b, 5);
        assert_eq!(
            h.iter()
                .map(|r| (r.revision, image_of(r)))
                .collect::<Vec<_>>(),
            vec![(1, "a"), (2, "b")]
        );
    }

    #[test]
    fn change_cause_is_kept_per_revision() {
        let cause = |c: &str| format!("  annotations: {{kubernetes.io/change-cause: \"{c}\"}}\n");
        let a = deployment("a", 1, &cause("first"));
        let b = deployment("b", 1, &cause("image b"));
        let b_scaled = deployment("b", 3, &cause("scaled"));
        let h = next(&[], None, &a, 1);
        let h = next(&h, Some(&a), &b, 2);
        assert_eq!(h[0].cause.as_deref(), Some("first"));
        assert_eq!(h[1].cause.as_deref(), Some("image b"));
        let h = next(&h, Some(&b), &b_scaled, 3);
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].cause.as_deref(), Some("scaled"));
    }

    #[test]
    fn undo_table() {
        let a = deployment("a", 2, "");
        let b = deployment("b", 2, "");
        let c = deployment("c", 2, "");
        let h = next(&[], None, &a, 1);
        let h = next(&h, Some(&a), &b, 2);
        let h = next(&h, Some(&b), &c, 3);
        // To the previous: b comes back as revision 4; replicas and metadata stay.
        let u = undo("deployment.apps/web", &c, &h, None, None, 4).expect("undo");
        let Object::Deployment(d) = u.object.get() else {
            panic!("a deployment")
        };
        assert_eq!(d.spec.template.spec.containers[0].image, "b");
        assert_eq!(d.spec.replicas, 2);
        assert_eq!((u.from_revision, u.revision), (2, 4));
        assert_eq!(
            u.history
                .iter()
                .map(|r| (r.revision, image_of(r)))
                .collect::<Vec<_>>(),
            vec![(1, "a"), (3, "c"), (4, "b")]
        );
        // To a named revision; 0 means the previous one.
        let u = undo("d", &c, &h, Some(1), None, 4).expect("undo to 1");
        assert_eq!((u.from_revision, u.revision), (1, 4));
        let u = undo("d", &c, &h, Some(0), None, 4).expect("undo to 0");
        assert_eq!(u.from_revision, 2);
        // What cannot be done is said.
        assert_eq!(
            undo("d", &c, &h, Some(9), None, 4).unwrap_err(),
            UndoError::NotFound("d".into(), 9)
        );
        assert_eq!(
            undo("d", &c, &h, Some(3), None, 4).unwrap_err(),
            UndoError::AlreadyCurrent("d".into(), 3)
        );
        assert_eq!(
            undo("d", &a, &next(&[], None, &a, 1), None, None, 4).unwrap_err(),
            UndoError::NoPrevious("d".into())
        );
        assert_eq!(
            undo("d", &a, &[], None, None, 4).unwrap_err(),
            UndoError::NoHistory("d".into())
        );
    }

    #[test]
    fn auto_rollback_is_opt_in_and_never_undoes_itself() {
        let on = "  annotations: {skiff.dev/auto-rollback: \"true\"}\n";
        let a = deployment("a", 1, on);
        let b = deployment("b", 1, on);
        let h = next(&[], None, &a, 1);
        assert!(!wants_auto_rollback(&a, &h), "nothing to go back to");
        let h = next(&h, Some(&a), &b, 2);
        assert!(wants_auto_rollback(&b, &h));
        assert!(!wants_auto_rollback(&deployment("b", 1, ""), &h), "opt-in");
        let u = undo(
            "d",
            &b,
            &h,
            None,
            Some(format!("{AUTO_ROLLBACK_CAUSE_PREFIX} from revision 2")),
            3,
        )
        .expect("undo");
        assert!(
            !wants_auto_rollback(&u.object, &u.history),
            "a revision brought back by an automatic rollback is not rolled back again"
        );
    }
}

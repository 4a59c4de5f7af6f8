//! `skiff rollout status` and `skiff scale`: client commands built on `get` and `apply`.
//!
//! `rollout status` follows the Deployment's status the way kubectl does (new replicas made,
//! old ones gone, new ones available) and fails once the node reports the Deployment's
//! `Progressing` condition as `ProgressDeadlineExceeded`. `scale` applies the Deployment with a new replica count through
//! the API, so it is kept and replicated like any apply (an object declared by a manifest file
//! on the node asked is refused: edit the file).

use serde_json::Value;

/// A workload named as `deployment/web`, `deploy/web` or `deployments web`.
pub fn parse_target(target: &str, name: Option<&str>) -> Result<(String, String), String> {
    let (kind, name) = match (target.split_once('/'), name) {
        (Some((kind, name)), None) => (kind, name),
        (None, Some(name)) => (target, name),
        _ => return Err(format!("name the workload as KIND/NAME (got {target:?})")),
    };
    let kind = match kind {
        "deployment" | "deployments" | "deploy" => "deployment",
        "daemonset" | "daemonsets" | "ds" => "daemonset",
        "pod" | "pods" | "po" => "pod",
        other => return Err(format!("unknown kind {other:?}: use deployment/NAME")),
    };
    if name.is_empty() {
        return Err("the workload's name is empty".into());
    }
    Ok((kind.to_string(), name.to_string()))
}

/// Where a rollout stands, from the Deployment as `get deployments NAME -o json` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Waiting(String),
    Done(String),
    /// The node reports `ProgressDeadlineExceeded`.
    Failed(String),
}

/// kubectl's reading of a Deployment's status: new replicas made, old ones gone, the new ones
/// available.
pub fn progress(d: &Value) -> Progress {
    let n = |ptr: &str| d.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
    let name = d
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let wanted = n("/spec/replicas");
    let (total, updated, available) = (
        n("/status/replicas"),
        n("/status/updatedReplicas"),
        n("/status/availableReplicas"),
    );
    let waiting = |what: String| {
        Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {what}..."
        ))
    };
    let stalled = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
    let complete = updated >= wanted && total <= updated && available >= updated;
    if stalled && !complete {
        return Progress::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    if d.pointer("/spec/paused") == Some(&Value::Bool(true)) && !complete {
        return Progress::Failed(format!(
            "deployment {name:?} is paused: its rollout waits for `skiff rollout resume deployment/{name}`"
        ));
    }
    if updated < wanted {
        waiting(format!(
            "{updated} out of {wanted} new replicas have been updated"
        ))
    } else if total > updated {
        waiting(format!(
            "{} old replicas are pending termination",
            total - updated
        ))
    } else if available < updated {
        waiting(format!(
            "{available} of {updated} updated replicas are available"
        ))
    } else {
        Progress::Done(format!("deployment {name:?} successfully rolled out"))
    }
}

/// The one Deployment in a `get deployments NAME -o json` answer.
pub fn the_item(value: &Value) -> Option<&Value> {
    match value.get("items").and_then(Value::as_array) {
        Some(items) => items.first(),
        None => Some(value),
    }
}

/// The Deployment as a manifest again with `replicas`: what the status and the agent's
/// additions were are left out.
pub fn scaled_manifest(d: &Value, replicas: u32) -> Value {
    let mut m = as_manifest(d);
    m["spec"]["replicas"] = Value::from(replicas);
    m
}

/// An object as `get -o json` shows it, as a manifest again: without its status and the
/// creation time the agent adds.
fn as_manifest(d: &Value) -> Value {
    let mut m = d.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("creationTimestamp");
    }
    m
}

/// The workload as a manifest again with `restartedAt` in its template's annotations (as
/// `kubectl rollout restart` does): a new template, so its pods are replaced as an update.
pub fn restarted_manifest(d: &Value, restarted_at: &str) -> Value {
    let mut m = as_manifest(d);
    let meta = &mut m["spec"]["template"]["metadata"];
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    meta["annotations"][RESTARTED_AT] = Value::from(restarted_at);
    m
}

/// The Deployment as a manifest again with `spec.paused` set or cleared (`rollout pause` and
/// `rollout resume`).
pub fn paused_manifest(d: &Value, paused: bool) -> Value {
    let mut m = as_manifest(d);
    if paused {
        m["spec"]["paused"] = Value::Bool(true);
    } else if let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("paused");
    }
    m
}

/// The template annotation `rollout restart` sets (kubectl's own name, so tools that know it
/// read it the same way).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(wanted: u64, total: u64, updated: u64, available: u64) -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": wanted},
            "status": {"replicas": total, "updatedReplicas": updated, "availableReplicas": available},
        })
    }

    #[test]
    fn progress_reads_the_status_like_kubectl() {
        let waiting = |s: &str| {
            Progress::Waiting(format!(
                "Waiting for deployment \"web\" rollout to finish: {s}..."
            ))
        };
        let cases = [
            (
                deployment(3, 3, 0, 3),
                waiting("0 out of 3 new replicas have been updated"),
            ),
            (
                deployment(3, 5, 3, 4),
                waiting("2 old replicas are pending termination"),
            ),
            (
                deployment(3, 3, 3, 1),
                waiting("1 of 3 updated replicas are available"),
            ),
            (
                deployment(3, 3, 3, 3),
                Progress::Done("deployment \"web\" successfully rolled out".into()),
            ),
            (
                deployment(0, 0, 0, 0),
                Progress::Done("deployment \"web\" successfully rolled out".into()),
            ),
        ];
        for (d, want) in cases {
            assert_eq!(progress(&d), want, "{d}");
        }
        let mut stalled = deployment(3, 4, 1, 3);
        stalled["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            progress(&stalled),
            Progress::Failed("deployment \"web\" exceeded its progress deadline".into())
        );
    }

    #[test]
    fn targets_are_kind_slash_name_or_two_words() {
        let ok = |t: &str, n: Option<&str>| parse_target(t, n).unwrap();
        assert_eq!(
            ok("deployment/web", None),
            ("deployment".into(), "web".into())
        );
        assert_eq!(ok("deploy/web", None), ("deployment".into(), "web".into()));
        assert_eq!(
            ok("deployments", Some("web")),
            ("deployment".into(), "web".into())
        );
        assert_eq!(ok("ds/agent", None), ("daemonset".into(), "agent".into()));
        assert!(parse_target("web", None).is_err());
        assert!(parse_target("service/web", None).is_err());
        assert!(parse_target("deployment/", None).is_err());
    }

    #[test]
    fn a_scaled_manifest_keeps_the_object_and_drops_the_status() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"a": "b"}},
            "spec": {"replicas": 2, "template": {}},
            "status": {"replicas": 2},
        });
        let m = scaled_manifest(&d, 5);
        assert_eq!(m["spec"]["replicas"], 5);
        assert_eq!(m["metadata"]["labels"]["a"], "b");
        assert!(m.get("status").is_none());
        assert!(m["metadata"].get("creationTimestamp").is_none());
    }

    #[test]
    fn a_restart_stamps_the_template() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}},
            "status": {"replicas": 2},
        });
        let m = restarted_manifest(&d, "2026-12-04T18:00:00Z");
        assert_eq!(
            m["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
            "2026-12-04T18:00:00Z"
        );
        assert_eq!(m["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert!(m.get("status").is_none());
        let again = restarted_manifest(&m, "2026-12-04T18:05:00Z");
        assert_eq!(
            again["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
            "2026-12-04T18:05:00Z"
        );
    }
}

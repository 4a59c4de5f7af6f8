//! Kubernetes fields skiff does not model, each with its own decision: refused with the reason
//! (always, or unless it holds Kubernetes' default, which is what skiff does anyway) or
//! accepted with a warning that says what skiff does instead. Nothing Kubernetes defines is left
//! to the generic "unknown field" warning; `tests/podspec_fields.rs` walks the whole list.

use serde_json::Value;

use crate::error::{FieldPath, Problems};

/// What happens to a field skiff does not model.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rule {
    /// Refused, whatever it holds.
    Refuse(&'static str),
    /// Accepted when it holds one of these values (Kubernetes' default, what skiff does);
    /// refused with the reason otherwise.
    OnlyDefault(&'static [&'static str], &'static str),
    /// Accepted with this warning.
    Warn(&'static str),
    /// Accepted without a warning when it holds one of these values; otherwise a warning.
    WarnUnless(&'static [&'static str], &'static str),
}

/// The value as the default lists write it: a string, number or bool as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Applies `rule` to the field at `path` if it is present (null counts as absent).
pub(crate) fn decide(value: Option<Value>, path: &FieldPath, rule: Rule, problems: &mut Problems) {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return;
    };
    let is_default = |ok: &[&str]| scalar(&value).is_some_and(|s| ok.contains(&s.as_str()));
    match rule {
        Rule::Refuse(why) => problems.error(path, why),
        Rule::OnlyDefault(ok, why) => {
            if !is_default(ok) {
                problems.error(path, why);
            }
        }
        Rule::Warn(why) => problems.warn(path, why),
        Rule::WarnUnless(ok, why) => {
            if !is_default(ok) {
                problems.warn(path, why);
            }
        }
    }
}

// PodSpec.
pub(crate) const AUTOMOUNT_TOKEN: Rule = Rule::WarnUnless(
    &["false"],
    "skiff has no service accounts: no token is mounted in the pod",
);
pub(crate) const EPHEMERAL_CONTAINERS: Rule = Rule::Refuse(
    "not supported: ephemeral containers are added to a running pod through the Kubernetes API, which skiff does not have (use `skiff exec`)",
);
pub(crate) const HOST_IPC: Rule = Rule::OnlyDefault(
    &["false"],
    "not supported: a pod has its own IPC namespace, and a security setting is never ignored",
);
pub(crate) const HOST_PID: Rule = Rule::OnlyDefault(
    &["false"],
    "not supported: a pod has its own PID namespace, and a security setting is never ignored",
);
pub(crate) const HOST_USERS: Rule = Rule::OnlyDefault(
    &["true"],
    "not supported: user namespaces are not available, and a security setting is never ignored",
);
pub(crate) const HOSTNAME_OVERRIDE: Rule =
    Rule::Refuse("not supported yet: use hostname (and subdomain)");
pub(crate) const IMAGE_PULL_SECRETS: Rule = Rule::Warn(
    "ignored: skiff pulls with the node's registry credentials (registry-auth in the agent's config file)",
);
pub(crate) const OVERHEAD: Rule = Rule::Warn(
    "ignored: skiff has no RuntimeClass overhead; only the containers' requests are counted",
);
pub(crate) const PREEMPTION_POLICY: Rule = Rule::WarnUnless(
    &["PreemptLowerPriority", "Never"],
    "ignored: skiff never preempts pods",
);
pub(crate) const PRIORITY: Rule =
    Rule::Warn("ignored: skiff gives every pod the same priority and never preempts pods");
pub(crate) const READINESS_GATES: Rule = Rule::Refuse(
    "not supported: nothing in skiff sets custom pod conditions, so the pod would never be ready",
);
pub(crate) const RESOURCE_CLAIMS: Rule =
    Rule::Refuse("not supported: dynamic resource allocation is not available");
pub(crate) const POD_RESOURCES: Rule =
    Rule::Refuse("not supported yet: set resources on each container");
pub(crate) const RUNTIME_CLASS: Rule = Rule::Refuse(
    "not supported: every container runs with skiff's one runtime (libcontainer), and a runtime class is an isolation setting that is never ignored",
);
pub(crate) const SCHEDULER_NAME: Rule = Rule::OnlyDefault(
    &["default-scheduler"],
    "not supported: skiff's own scheduler places every pod (use default-scheduler or leave it out)",
);
pub(crate) const SCHEDULING_GATES: Rule = Rule::Refuse(
    "not supported: nothing in skiff removes scheduling gates, so the pod would never be scheduled",
);
pub(crate) const SERVICE_ACCOUNT: Rule = Rule::WarnUnless(
    &["default"],
    "ignored: skiff has no service accounts (the pod gets no token and no API identity)",
);
pub(crate) const SET_HOSTNAME_AS_FQDN: Rule = Rule::OnlyDefault(
    &["false"],
    "not supported yet: the hostname is the short name",
);
pub(crate) const SHARE_PROCESS_NAMESPACE: Rule = Rule::OnlyDefault(
    &["false"],
    "not supported yet: each container has its own PID namespace, and a security setting is never ignored",
);

// Container.
pub(crate) const RESIZE_POLICY: Rule = Rule::Warn(
    "ignored: skiff does not resize running containers; a changed resource replaces the pod",
);
pub(crate) const RESTART_POLICY_RULES: Rule = Rule::Refuse("not supported yet");
pub(crate) const STDIN: Rule = Rule::OnlyDefault(
    &["false"],
    "not supported: skiff attaches no stdin or terminal to a container; run a long-lived command instead",
);
pub(crate) const TERMINATION_MESSAGE_PATH: Rule = Rule::WarnUnless(
    &["/dev/termination-log"],
    "ignored: skiff does not collect termination messages yet (the exit code and reason are reported)",
);
pub(crate) const TERMINATION_MESSAGE_POLICY: Rule = Rule::WarnUnless(
    &["File"],
    "ignored: skiff does not collect termination messages yet (the exit code and reason are reported)",
);
pub(crate) const VOLUME_DEVICES: Rule = Rule::Refuse(
    "not supported: raw block devices need persistentVolumeClaims, which skiff does not have",
);

// Container parts.
pub(crate) const HOST_IP: Rule = Rule::OnlyDefault(
    &["", "0.0.0.0"],
    "not supported yet: a hostPort listens on every address of the node",
);
pub(crate) const MOUNT_PROPAGATION: Rule = Rule::OnlyDefault(
    &["None"],
    "not supported: mounts are private to the container, and a propagation setting is never ignored",
);
pub(crate) const RECURSIVE_READ_ONLY: Rule = Rule::OnlyDefault(
    &["Disabled"],
    "not supported yet: readOnly applies to the mount itself, and a security setting is never ignored",
);
pub(crate) const SUB_PATH_EXPR: Rule = Rule::Refuse("not supported yet: use subPath");
pub(crate) const RESOURCE_CLAIM_REFS: Rule =
    Rule::Refuse("not supported: dynamic resource allocation is not available");
pub(crate) const STOP_SIGNAL: Rule = Rule::OnlyDefault(
    &["SIGTERM"],
    "not supported yet: containers are stopped with SIGTERM, then SIGKILL after the grace period",
);
pub(crate) const FILE_KEY_REF: Rule = Rule::Refuse(
    "not supported yet: use configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef",
);

/// `os.name`: only linux.
pub(crate) fn os(value: Option<Value>, path: &FieldPath, problems: &mut Problems) {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return;
    };
    let name = value.get("name").and_then(Value::as_str);
    match name {
        Some("linux") => {}
        Some(other) => problems.error(
            &path.child("name"),
            format!("skiff runs Linux containers only (got {other:?})"),
        ),
        None => problems.error(&path.child("name"), "required"),
    }
}

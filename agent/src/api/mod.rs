//! The local API between the CLI and its agent: one JSON object per line over a unix socket.
//! A request is one line; the answer is one line, or for `logs -f` a stream of lines. `exec` is
//! a session: the agent answers `Ok` once the process runs, the CLI then sends [`ExecInput`]
//! lines while the agent sends `Stdout`/`Stderr` lines, and `Exit` ends it. A CLI that closes
//! the connection before its input ended has the process killed.

pub mod client;
#[cfg(test)]
mod fuzz_tests;
pub mod limits;
pub mod server;

use serde::{Deserialize, Serialize};

/// What the CLI can ask of the agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Get {
        kind: ResourceKind,
        name: Option<String>,
        namespace: Option<String>,
        all_namespaces: bool,
    },
    Describe {
        kind: ResourceKind,
        name: String,
        namespace: Option<String>,
    },
    Logs {
        pod: String,
        namespace: Option<String>,
        container: Option<String>,
        follow: bool,
        tail: Option<usize>,
    },
    Apply {
        files: Vec<ApplyFile>,
        dry_run: bool,
    },
    /// `skiff exec POD [-c CONTAINER] [-it] -- CMD...`.
    Exec {
        pod: String,
        namespace: Option<String>,
        container: Option<String>,
        command: Vec<String>,
        tty: bool,
    },
    Delete {
        target: DeleteTarget,
    },
    ImageImport {
        path: String,
    },
    ImagePull {
        reference: String,
    },
    ImageList,
    Status,
    /// A join token for a new node (only the node holding the cluster CA can issue one).
    TokenCreate {
        ttl_secs: u64,
    },
    /// `skiff token list`: ids, creation and expiry of the join tokens (never the secrets).
    TokenList,
    /// `skiff token revoke ID`.
    TokenRevoke {
        id: String,
    },
    /// `skiff node remove NAME`: forget a replaced device so its name can join again (carried
    /// out by the node that issues certificates).
    RemoveNode {
        name: String,
        #[serde(default)]
        force: bool,
    },
    /// `skiff cordon|uncordon|drain NODE`.
    SetScheduling {
        node: String,
        cordoned: bool,
        draining: bool,
    },
    /// `skiff label node NAME KEY=VALUE... KEY-...`: only the agent's own node is accepted.
    LabelNode {
        node: String,
        set: std::collections::BTreeMap<String, String>,
        remove: Vec<String>,
        overwrite: bool,
    },
    /// `skiff taint node NAME KEY[=VALUE]:EFFECT... KEY[:EFFECT]-...`: only the agent's own
    /// node is accepted.
    TaintNode {
        node: String,
        changes: Vec<String>,
    },
    /// `skiff rollout history KIND/NAME`: the template's revisions kept cluster-wide.
    RolloutHistory {
        kind: ResourceKind,
        name: String,
        namespace: Option<String>,
    },
    /// `skiff rollout undo KIND/NAME [--to-revision N]`.
    RolloutUndo {
        kind: ResourceKind,
        name: String,
        namespace: Option<String>,
        to_revision: Option<u64>,
    },
}

/// Kinds the CLI can name (`get pods`, `get deploy`, ...).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Pods,
    Deployments,
    DaemonSets,
    Nodes,
    Services,
    Endpoints,
    Events,
    Namespaces,
    ConfigMaps,
    Secrets,
    Jobs,
    CronJobs,
}

impl ResourceKind {
    /// Accepts kubectl's spellings: plural, singular and short names.
    pub fn parse(word: &str) -> Option<ResourceKind> {
        Some(match word.to_ascii_lowercase().as_str() {
            "pods" | "pod" | "po" => ResourceKind::Pods,
            "deployments" | "deployment" | "deploy" => ResourceKind::Deployments,
            "daemonsets" | "daemonset" | "ds" => ResourceKind::DaemonSets,
            "nodes" | "node" | "no" => ResourceKind::Nodes,
            "services" | "service" | "svc" => ResourceKind::Services,
            "endpoints" | "endpoint" | "ep" => ResourceKind::Endpoints,
            "events" | "event" | "ev" => ResourceKind::Events,
            "namespaces" | "namespace" | "ns" => ResourceKind::Namespaces,
            "configmaps" | "configmap" | "cm" => ResourceKind::ConfigMaps,
            "secrets" | "secret" => ResourceKind::Secrets,
            "jobs" | "job" => ResourceKind::Jobs,
            "cronjobs" | "cronjob" | "cj" => ResourceKind::CronJobs,
            _ => return None,
        })
    }

    /// The manifest kind this names, for `delete KIND NAME`.
    pub fn manifest_kind(self) -> Option<&'static str> {
        Some(match self {
            ResourceKind::Pods => "Pod",
            ResourceKind::Deployments => "Deployment",
            ResourceKind::DaemonSets => "DaemonSet",
            ResourceKind::Namespaces => "Namespace",
            ResourceKind::ConfigMaps => "ConfigMap",
            ResourceKind::Secrets => "Secret",
            ResourceKind::Jobs => "Job",
            ResourceKind::CronJobs => "CronJob",
            ResourceKind::Services => "Service",
            ResourceKind::Nodes | ResourceKind::Events | ResourceKind::Endpoints => return None,
        })
    }
}

/// One file sent by `apply -f` (the CLI reads it; the agent validates it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApplyFile {
    pub name: String,
    pub content: String,
}

/// What `delete` removes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum DeleteTarget {
    Files {
        files: Vec<ApplyFile>,
    },
    Object {
        kind: ResourceKind,
        name: String,
        namespace: Option<String>,
    },
}

/// One line of an answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The whole answer (Kubernetes-shaped JSON for `get`).
    Ok {
        value: serde_json::Value,
    },
    /// A user error (exit code 1) with a message for stderr.
    Error {
        message: String,
    },
    /// One log line of a stream; the stream ends with `End`.
    LogLine {
        text: String,
    },
    End,
    /// Output of an exec'd process (base64, as it came).
    Stdout {
        data: String,
    },
    Stderr {
        data: String,
    },
    /// The exec'd process ended with `code` (126 or 127 with `message` when it could not start).
    Exit {
        code: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// What the CLI sends during an exec session (one JSON object per line).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum ExecInput {
    /// Bytes for the process's stdin (base64).
    Stdin { data: String },
    /// The CLI's input ended (not sent with a terminal: its process reads until it exits).
    StdinEnd,
    /// The CLI's terminal changed size.
    Resize { cols: u16, rows: u16 },
}

impl ExecInput {
    /// The runtime frame this line stands for; `Err` for data that is not base64.
    pub fn to_runtime(&self) -> Result<skiff_runtime::container::exec::ExecInput, String> {
        use base64::Engine;
        use skiff_runtime::container::exec::ExecInput as Frame;
        Ok(match self {
            ExecInput::Stdin { data } => Frame::Stdin(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| format!("exec input is not base64: {e}"))?,
            ),
            ExecInput::StdinEnd => Frame::StdinEnd,
            ExecInput::Resize { cols, rows } => Frame::Resize {
                cols: *cols,
                rows: *rows,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line() {
        let r = Request::Logs {
            pod: "web".into(),
            namespace: None,
            container: Some("c".into()),
            follow: true,
            tail: Some(5),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    }

    #[test]
    fn kinds_accept_kubectl_spellings() {
        assert_eq!(ResourceKind::parse("po"), Some(ResourceKind::Pods));
        assert_eq!(
            ResourceKind::parse("Deploy"),
            Some(ResourceKind::Deployments)
        );
        assert_eq!(ResourceKind::parse("cm"), Some(ResourceKind::ConfigMaps));
        assert_eq!(ResourceKind::parse("ds"), Some(ResourceKind::DaemonSets));
        assert_eq!(ResourceKind::parse("widgets"), None);
    }
}

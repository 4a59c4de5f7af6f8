//! Answers API requests: reads come from the loop's latest snapshot, changes go to the loop as
//! commands, image import/pull and logs are served here directly. This file routes each request
//! to the file that does its job:
//! - `queries.rs`: `get` and `describe` of pods, objects and events (Kubernetes-shaped JSON,
//!   Secrets redacted).
//! - `nodes.rs`: `get` / `describe` of nodes, cordon / drain, labels.
//! - `logs.rs`: reading and following a container's log.
//! - `exec` (here): a process in a container, through `agent::exec` or the node running it.
//! - `apply.rs`: `apply` and `delete` (manifests parsed here, changes made by the loop).
//! - `images.rs`: image import, pull and list.
//! - `rollout.rs`: `rollout history` and `rollout undo`, answered by the cluster task.
//! - `admin.rs`: join tokens and `node remove`.

mod admin;
mod apply;
mod images;
mod logs;
mod nodes;
mod queries;
mod rollout;

pub(super) use admin::remove_here;
pub(super) use logs::logs_here;

pub(super) use queries::describe_here;

use super::core::{Command, Snapshot};
use crate::api::server::{Handler, Reply};
use crate::api::{Request, Response};
use crate::config::AgentConfig;
use serde_json::{Value, json};
use skiff_manifests::ObjectKey;
use skiff_runtime::image::ImageStore;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every request handler reads and writes: the loop's snapshot and command channel, the
/// image store, the cluster as gossip shows it, and the ways to reach other nodes.
#[derive(Clone)]
pub struct Shared {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub commands: mpsc::Sender<Command>,
    pub images: ImageStore,
    pub config: AgentConfig,
    pub cancel: CancellationToken,
    /// Tasks a request leaves running (log streams): they end at `cancel`, and a stopping agent
    /// waits for them.
    pub tracker: TaskTracker,
    /// Every node of the cluster, from gossip.
    pub nodes: watch::Receiver<Vec<skiff_gossip::NodeStatus>>,
    /// Reaches the node running a pod this node does not (`logs`, `describe pod`); `None` off QUIC.
    pub remote: Option<super::remote::Remote>,
    /// The cluster as this node sees it (leader, term, every node's pods, pending work).
    pub cluster: watch::Receiver<Arc<crate::cluster::ClusterState>>,
    /// This node's metadata writer (runtime labels).
    pub node_meta: super::membership::NodeMeta,
    /// `node remove` (carried out on the node that issues certificates); `None` off QUIC.
    pub remover: Option<skiff_gossip::NodeRemover>,
    /// The container runtime, for `exec`.
    pub runtime: Arc<dyn skiff_runtime::container::ContainerRuntime>,
    /// Requests to the cluster task (`rollout history`, `rollout undo`).
    pub cluster_commands: Option<mpsc::Sender<crate::cluster::ClusterCommand>>,
}

/// The local API's handler: each request answered against `shared`.
pub fn handler(shared: Shared) -> Handler {
    Arc::new(move |request| {
        let shared = shared.clone();
        Box::pin(async move {
            let reply = handle(shared, request).await;
            // An answer about a thousand objects is megabytes of JSON, freed once it is sent.
            crate::memory::trim_soon();
            reply
        })
    })
}

fn ok(value: Value) -> Reply {
    Reply::One(Response::Ok { value })
}

fn err(message: impl Into<String>) -> Reply {
    Reply::One(Response::Error {
        message: message.into(),
    })
}

/// How long a change waits to show in this node's own view before its answer goes anyway.
const VISIBLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until this node's snapshot shows each object as `want` says (with that content hash,
/// or gone for `None`), so that a `get` right after `apply`, `delete` or `rollout undo` sees
/// the change: the loop stores a change at once, but its view comes back through the cluster
/// task a step later. False (after a warning in the log) when it did not show in time; the
/// change is stored all the same (another node's newer version may have won meanwhile).
async fn until_visible(shared: &Shared, want: &[(ObjectKey, Option<String>)]) -> bool {
    let shows = |snap: &Arc<Snapshot>| {
        want.iter().all(|(key, hash)| {
            let now = snap.objects.get(key).map(|(_, o)| o.content_hash());
            now.as_ref() == hash.as_ref()
        })
    };
    until_shown(
        shared,
        shared.snapshot.clone(),
        shows,
        "a change made through the API did not show in this node's view",
    )
    .await
}

/// Waits at most [`VISIBLE_WITHIN`] until `rx`'s value `shows` a change; false (after a
/// warning, `what`, unless the agent is stopping) when it did not.
async fn until_shown<T>(
    shared: &Shared,
    mut rx: watch::Receiver<T>,
    shows: impl FnMut(&T) -> bool,
    what: &str,
) -> bool {
    let shown = tokio::time::timeout(VISIBLE_WITHIN, rx.wait_for(shows)).await;
    let visible = matches!(shown, Ok(Ok(_)));
    if !visible && !shared.cancel.is_cancelled() {
        tracing::warn!("{what} within {VISIBLE_WITHIN:?}");
    }
    visible
}

fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

/// The items of a `get` answer. With a name they are kept (one is answered alone); without,
/// each is encoded as it comes and dropped, so that a list of a thousand objects is text of a
/// few hundred kilobytes in one buffer rather than a tree of tens of thousands of values.
struct Items {
    kept: Option<Vec<Value>>,
    line: String,
    count: usize,
}

impl Items {
    fn new(named: bool) -> Items {
        let mut line = String::new();
        if !named {
            line.push_str(r#"{"type":"ok","value":{"apiVersion":"v1","kind":"List","items":["#);
        }
        Items {
            kept: named.then(Vec::new),
            line,
            count: 0,
        }
    }

    fn push(&mut self, item: Value) {
        self.count += 1;
        match &mut self.kept {
            Some(kept) => kept.push(item),
            None => {
                if self.count > 1 {
                    self.line.push(',');
                }
                // A Value always encodes (its map keys are strings).
                let text = serde_json::to_string(&item).unwrap_or_else(|_| "null".into());
                self.line.push_str(&text);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The answer: the one named item alone, else the list.
    fn reply(self) -> Reply {
        match self.kept {
            Some(mut kept) if kept.len() == 1 => ok(kept.remove(0)),
            Some(kept) => ok(list(kept)),
            None => {
                let mut line = self.line;
                line.push_str("]}}");
                Reply::Line(line)
            }
        }
    }
}

async fn handle(shared: Shared, request: Request) -> Reply {
    let snap = shared.snapshot.borrow().clone();
    match request {
        Request::Get {
            kind,
            name,
            namespace,
            all_namespaces,
        } => {
            if kind == crate::api::ResourceKind::Nodes {
                return nodes::get(&shared, name.as_deref());
            }
            queries::get(
                &snap,
                &shared.cluster.borrow().clone(),
                kind,
                name.as_deref(),
                namespace.as_deref(),
                all_namespaces,
            )
        }
        Request::Describe {
            kind,
            name,
            namespace,
        } => {
            if kind == crate::api::ResourceKind::Nodes {
                return nodes::describe(&shared, &snap, &name);
            }
            queries::describe(&shared, &snap, kind, &name, namespace.as_deref()).await
        }
        Request::Logs {
            pod,
            namespace,
            container,
            follow,
            tail,
        } => logs::logs(&shared, &snap, pod, namespace, container, follow, tail).await,
        Request::Exec {
            pod,
            namespace,
            container,
            command,
            tty,
        } => exec(&shared, &snap, pod, namespace, container, command, tty).await,
        Request::Apply { files, dry_run } => apply::apply(&shared, &snap, files, dry_run).await,
        Request::Delete { target } => apply::delete(&shared, target).await,
        Request::ImageImport { path } => images::import(&shared, path).await,
        Request::ImagePull { reference } => images::pull(&shared, &reference).await,
        Request::ImageList => images::list(&shared),
        Request::SetScheduling {
            node,
            cordoned,
            draining,
        } => nodes::set_scheduling(&shared, &node, cordoned, draining).await,
        Request::Status => ok(super::status::status(
            &snap,
            &shared.cluster.borrow().clone(),
        )),
        Request::TokenCreate { ttl_secs } => admin::token_create(&shared.config.data_dir, ttl_secs),
        Request::TokenList => admin::token_list(&shared.config.data_dir),
        Request::TokenRevoke { id } => admin::token_revoke(&shared.config.data_dir, &id),
        Request::RemoveNode { name, force } => admin::remove_node(&shared, &name, force).await,
        Request::LabelNode {
            node,
            set,
            remove,
            overwrite,
        } => nodes::label(&shared, &node, set, remove, overwrite).await,
        Request::TaintNode { node, changes } => nodes::taint(&shared, &node, &changes).await,
        Request::RolloutHistory {
            kind,
            name,
            namespace,
        } => rollout::history(&shared, kind, name, namespace).await,
        Request::RolloutUndo {
            kind,
            name,
            namespace,
            to_revision,
        } => rollout::undo(&shared, kind, name, namespace, to_revision).await,
    }
}

/// `exec` through the local API: in a pod this node runs, or forwarded to the node that does.
async fn exec(
    shared: &Shared,
    snap: &Snapshot,
    pod: String,
    namespace: Option<String>,
    container: Option<String>,
    command: Vec<String>,
    tty: bool,
) -> Reply {
    if command.is_empty() {
        return err("exec needs a command after --");
    }
    let ns = namespace.unwrap_or_else(|| skiff_manifests::DEFAULT_NAMESPACE.to_string());
    match &shared.remote {
        Some(remote) if queries::find_pod(snap, &pod, Some(&ns)).is_none() => {
            let request = super::node_request::NodeRequest::Exec {
                namespace: ns.clone(),
                pod: pod.clone(),
                container,
                command,
                tty,
            };
            remote
                .exec(request, &pod, &ns, shared.cancel.clone(), &shared.tracker)
                .await
        }
        _ => exec_here(shared, snap, &pod, &ns, container.as_deref(), command, tty),
    }
}

/// `exec` in a pod this node runs (the local API, and other nodes through rpc).
pub(crate) fn exec_here(
    shared: &Shared,
    snap: &Snapshot,
    pod: &str,
    namespace: &str,
    container: Option<&str>,
    command: Vec<String>,
    tty: bool,
) -> Reply {
    let Some(p) = queries::find_pod(snap, pod, Some(namespace)) else {
        return err(format!("pod {pod:?} not found"));
    };
    match super::exec::running_container(p, container) {
        Ok(id) => super::exec::session(
            shared.runtime.clone(),
            &id,
            tty,
            command,
            &shared.tracker,
            shared.cancel.clone(),
        ),
        Err(message) => err(message),
    }
}

#[cfg(test)]
mod items_tests {
    use super::*;

    fn decoded(reply: Reply) -> Response {
        match reply {
            Reply::One(r) => r,
            Reply::Line(text) => serde_json::from_str(&text).expect("one JSON response"),
            Reply::Stream(_) | Reply::Session { .. } => panic!("not one answer"),
        }
    }

    #[test]
    fn a_list_is_encoded_item_by_item_as_the_same_answer() {
        for n in [0, 1, 3] {
            let values: Vec<Value> = (0..n).map(|i| json!({ "name": format!("s{i}") })).collect();
            let mut items = Items::new(false);
            for v in &values {
                items.push(v.clone());
            }
            assert!(matches!(items.reply(), Reply::Line(_)));
            let mut items = Items::new(false);
            for v in &values {
                items.push(v.clone());
            }
            assert_eq!(
                decoded(items.reply()),
                Response::Ok {
                    value: list(values.clone())
                },
                "{n} items"
            );
        }
    }

    #[test]
    fn a_named_item_is_answered_alone() {
        let mut items = Items::new(true);
        assert!(items.is_empty());
        items.push(json!({ "name": "web" }));
        assert_eq!(
            decoded(items.reply()),
            Response::Ok {
                value: json!({ "name": "web" })
            }
        );
    }
}

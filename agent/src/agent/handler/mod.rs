//! Answers API requests: reads come from the loop's latest snapshot, changes go to the loop as
//! commands, image import/pull and logs are served here directly. This file routes each request
//! to the file that does its job:
//! - `queries.rs`: `get` and `describe` of pods, objects and events (Kubernetes-shaped JSON,
//!   Secrets redacted).
//! - `nodes.rs`: `get` / `describe` of nodes, cordon / drain, labels.
//! - `logs.rs`: reading and following a container's log.
//! - `apply.rs`: `apply` and `delete` (manifests parsed here, changes made by the loop).
//! - `images.rs`: image import, pull and list.
//! - `admin.rs`: join tokens and `node remove`.

mod admin;
mod apply;
mod images;
mod logs;
mod nodes;
mod queries;

pub(super) use admin::remove_here;
pub(super) use logs::logs_here;
pub(super) use queries::describe_here;

use super::core::{Command, Snapshot};
use crate::api::server::{Handler, Reply};
use crate::api::{Request, Response};
use crate::config::AgentConfig;
use serde_json::{Value, json};
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
}

/// The local API's handler: each request answered against `shared`.
pub fn handler(shared: Shared) -> Handler {
    Arc::new(move |request| {
        let shared = shared.clone();
        Box::pin(async move { handle(shared, request).await })
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

fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
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
    }
}

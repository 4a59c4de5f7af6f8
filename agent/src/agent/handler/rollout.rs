//! `rollout history` and `rollout undo`: asked of the cluster task, which holds the replica
//! and the revisions kept with each record. An undo is recorded as an event on this node.

use super::{Shared, err, ok};
use crate::api::ResourceKind;
use crate::api::server::Reply;
use crate::cluster::ClusterCommand;
use serde_json::json;
use skiff_manifests::{Kind, ObjectKey};
use tokio::sync::oneshot;

fn key(kind: ResourceKind, name: String, namespace: Option<String>) -> Result<ObjectKey, String> {
    let kind = match kind {
        ResourceKind::Deployments => Kind::Deployment,
        ResourceKind::DaemonSets => Kind::DaemonSet,
        other => {
            return Err(format!(
                "{other:?} have no rollout history: only deployments and daemonsets do"
            )
            .to_lowercase());
        }
    };
    Ok(ObjectKey::new(
        kind,
        namespace
            .as_deref()
            .unwrap_or(skiff_manifests::DEFAULT_NAMESPACE),
        &name,
    ))
}

async fn ask<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> ClusterCommand,
) -> Result<T, String> {
    let Some(commands) = &shared.cluster_commands else {
        return Err("this agent keeps no cluster records".into());
    };
    let (reply, rx) = oneshot::channel();
    if commands.send(make(reply)).await.is_err() {
        return Err("the agent is shutting down".into());
    }
    rx.await
        .unwrap_or_else(|_| Err("the agent is shutting down".into()))
}

/// The revisions, oldest first, with their change causes and templates.
pub(super) async fn history(
    shared: &Shared,
    kind: ResourceKind,
    name: String,
    namespace: Option<String>,
) -> Reply {
    let key = match key(kind, name, namespace) {
        Ok(k) => k,
        Err(e) => return err(e),
    };
    let what = crate::render::describe_key(&key);
    match ask(shared, |reply| ClusterCommand::History {
        key: key.clone(),
        reply,
    })
    .await
    {
        Ok(view) => ok(json!({
            "object": what,
            "declared": crate::cluster::service::declaration(
                crate::cluster::replica::declared_origin(&view.origin)
            ),
            "revisions": view.revisions.iter().map(|r| json!({
                "revision": r.revision,
                "templateHash": r.template_hash,
                "changeCause": r.cause,
                "template": r.template,
            })).collect::<Vec<_>>(),
        })),
        Err(e) => err(e),
    }
}

/// Brings an older template back (`to_revision` none or 0: the previous one).
pub(super) async fn undo(
    shared: &Shared,
    kind: ResourceKind,
    name: String,
    namespace: Option<String>,
    to_revision: Option<u64>,
) -> Reply {
    let key = match key(kind, name, namespace) {
        Ok(k) => k,
        Err(e) => return err(e),
    };
    let what = crate::render::describe_key(&key);
    match ask(shared, |reply| ClusterCommand::Undo {
        key: key.clone(),
        to_revision,
        reply,
    })
    .await
    {
        Ok(done) => {
            super::until_visible(shared, &[(key, Some(done.content_hash.clone()))]).await;
            ok(json!({
                "object": what,
                "fromRevision": done.from_revision,
                "revision": done.revision,
                "declared": crate::cluster::service::declaration(&done.declared),
            }))
        }
        Err(e) => err(e),
    }
}

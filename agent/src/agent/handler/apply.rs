//! `apply [--dry-run]` and `delete`: manifests sent with the request are parsed and validated
//! here (every error reported), and the changes are made by the node loop, which answers what
//! it created, configured or deleted.

use super::{Shared, err, ok, until_visible};
use crate::agent::core::{Command, Snapshot, describe_key};
use crate::api::server::Reply;
use crate::api::{ApplyFile, DeleteTarget};
use serde_json::json;
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use tokio::sync::oneshot;

/// `apply`: with `dry_run`, what would change compared with the snapshot; else the loop applies.
pub(super) async fn apply(
    shared: &Shared,
    snap: &Snapshot,
    files: Vec<ApplyFile>,
    dry_run: bool,
) -> Reply {
    let (objects, warnings) = match parse_all(&files, Some(shared.config.service_node_port_range)) {
        Ok(x) => x,
        Err(e) => return err(e),
    };
    if dry_run {
        let changes: Vec<String> = objects
            .iter()
            .map(|o| {
                let key = o.key();
                let verb = match snap.objects.get(&key) {
                    None => "created",
                    Some((_, cur)) if cur.content_hash() == o.content_hash() => "unchanged",
                    Some(_) => "configured",
                };
                format!("{} {verb} (dry run)", describe_key(&key))
            })
            .collect();
        return ok(json!({ "changes": changes, "warnings": warnings }));
    }
    // The last version of each object is the one that stays.
    let want: std::collections::BTreeMap<ObjectKey, Option<String>> = objects
        .iter()
        .map(|o| (o.key(), Some(o.content_hash())))
        .collect();
    let (reply, rx) = oneshot::channel();
    if shared
        .commands
        .send(Command::ApplyObjects { objects, reply })
        .await
        .is_err()
    {
        return err("the agent is shutting down");
    }
    match rx.await {
        Ok(Ok(changes)) => {
            until_visible(shared, &want.into_iter().collect::<Vec<_>>()).await;
            ok(json!({ "changes": changes, "warnings": warnings }))
        }
        Ok(Err(e)) => err(e.to_string()),
        Err(_) => err("the agent is shutting down"),
    }
}

/// `delete -f FILE...` or `delete KIND NAME`: the loop deletes the objects named.
pub(super) async fn delete(shared: &Shared, target: DeleteTarget) -> Reply {
    let keys: Vec<ObjectKey> = match target {
        DeleteTarget::Files { files } => match parse_all(&files, None) {
            Ok((objects, _)) => objects.iter().map(|o| o.key()).collect(),
            Err(e) => return err(e),
        },
        DeleteTarget::Object {
            kind,
            name,
            namespace,
        } => {
            let Some(k) = kind
                .manifest_kind()
                .and_then(|k| Kind::ALL.into_iter().find(|x| x.as_str() == k))
            else {
                return err(format!("{kind:?} cannot be deleted").to_lowercase());
            };
            vec![ObjectKey::new(
                k,
                namespace
                    .as_deref()
                    .unwrap_or(skiff_manifests::DEFAULT_NAMESPACE),
                &name,
            )]
        }
    };
    let want: Vec<(ObjectKey, Option<String>)> = keys.iter().map(|k| (k.clone(), None)).collect();
    let (reply, rx) = oneshot::channel();
    if shared
        .commands
        .send(Command::DeleteObjects { keys, reply })
        .await
        .is_err()
    {
        return err("the agent is shutting down");
    }
    match rx.await {
        Ok(Ok(changes)) => {
            until_visible(shared, &want).await;
            ok(json!({ "changes": changes }))
        }
        Ok(Err(e)) => err(e.to_string()),
        Err(_) => err("the agent is shutting down"),
    }
}

/// See [`crate::desired::check_files`]; `node_ports`: None for `delete -f` (a Service is
/// deleted whatever its node ports).
fn parse_all(
    files: &[ApplyFile],
    node_ports: Option<skiff_manifests::NodePortRange>,
) -> Result<(Vec<Valid<Object>>, Vec<String>), String> {
    crate::desired::check_files(
        files
            .iter()
            .map(|f| (f.name.as_str(), f.content.as_bytes())),
        node_ports,
    )
}

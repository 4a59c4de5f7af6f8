//! `rollout history` and `rollout undo` against the replica, and the opt-in automatic rollback
//! of a Deployment whose rollout exceeded its progress deadline (made by the scheduling leader
//! only, so one node writes it).

use super::*;
use crate::cluster::history::{self, AUTO_ROLLBACK, AUTO_ROLLBACK_CAUSE_PREFIX};
use crate::cluster::keys::object_key;
use crate::cluster::rollouts::{Progress, Rollouts};
use crate::events::Note;
use skiff_manifests::{Kind, ObjectKey};

impl ClusterService {
    /// Answers a request from the API.
    pub(super) async fn on_command(&mut self, cmd: ClusterCommand, outputs: &ClusterOutputs) {
        match cmd {
            ClusterCommand::History { key, reply } => {
                let what = crate::render::describe_key(&key);
                let answer = match self.replica.history(&object_key(&key)) {
                    Some((_, revisions, origin)) => Ok(HistoryView {
                        revisions: revisions.to_vec(),
                        origin: origin.to_string(),
                    }),
                    None => Err(format!("{what} not found")),
                };
                let _ = reply.send(answer);
            }
            ClusterCommand::Undo {
                key,
                to_revision,
                reply,
            } => {
                let done = self.undo(&key, to_revision, None).await;
                if let Ok(done) = &done {
                    note(outputs, undo_note(&key, done, None));
                }
                let _ = reply.send(done);
            }
        }
    }

    /// Writes the rollback as a new version and advertises it.
    async fn undo(
        &mut self,
        key: &ObjectKey,
        to: Option<u64>,
        cause: Option<String>,
    ) -> Result<UndoDone, String> {
        let what = crate::render::describe_key(key);
        let k = object_key(key);
        let now = (self.timings.clock)();
        let (undone, declared) = self
            .replica
            .undo(&k, &what, to, cause, now)
            .map_err(|e| e.to_string())?;
        if let Some(digest) = self.replica.digest(&k) {
            self.advertise(&k, &digest).await;
        }
        self.replica_changed();
        Ok(UndoDone {
            from_revision: undone.from_revision,
            revision: undone.revision,
            declared,
            content_hash: undone.object.content_hash(),
        })
    }

    /// As the scheduling leader: rolls back every Deployment that opted in
    /// (`skiff.dev/auto-rollback: "true"`) and whose rollout exceeded its progress deadline.
    pub(super) async fn auto_rollback(&mut self, rollouts: &Rollouts, outputs: &ClusterOutputs) {
        for ((namespace, name), view) in rollouts.iter() {
            if view.progress != Progress::DeadlineExceeded {
                continue;
            }
            let key = ObjectKey::new(Kind::Deployment, namespace, name);
            let failed = match self.replica.history(&object_key(&key)) {
                Some((object, revisions, _)) if history::wants_auto_rollback(object, revisions) => {
                    revisions.last().map_or(0, |r| r.revision)
                }
                _ => continue,
            };
            let cause = format!(
                "{AUTO_ROLLBACK_CAUSE_PREFIX}: revision {failed} exceeded its progress deadline"
            );
            match self.undo(&key, None, Some(cause)).await {
                Ok(done) => note(outputs, undo_note(&key, &done, Some(failed))),
                Err(e) => tracing::warn!(
                    "{}: {AUTO_ROLLBACK}: cannot roll back: {e}",
                    crate::render::describe_key(&key)
                ),
            }
        }
    }
}

pub(super) fn note(outputs: &ClusterOutputs, n: Note) {
    match &outputs.events {
        Some(tx) => {
            let _ = tx.send(n);
        }
        None => tracing::info!(
            "{}/{}: {}: {}",
            n.namespace,
            n.object_name,
            n.reason,
            n.message
        ),
    }
}

/// The event of a rollback: what came back and that the declaration now differs.
fn undo_note(key: &ObjectKey, done: &UndoDone, auto_from: Option<u64>) -> Note {
    let how = match auto_from {
        Some(failed) => format!(
            "revision {failed} exceeded its progress deadline ({AUTO_ROLLBACK}); rolled back"
        ),
        None => "rolled back".to_string(),
    };
    Note {
        warning: auto_from.is_some(),
        reason: "RolledBack".into(),
        object_kind: key.kind.as_str().to_string(),
        namespace: key.namespace.to_string(),
        object_name: key.name.to_string(),
        message: format!(
            "{how} to revision {} (now revision {}); {} now differs from what runs: its next change wins again",
            done.from_revision,
            done.revision,
            declaration(&done.declared)
        ),
    }
}

/// `n1:/m/web.yaml` as "manifest file /m/web.yaml on node n1", an API apply as such.
pub fn declaration(origin: &str) -> String {
    let (node, source) = origin.split_once(':').unwrap_or(("", origin));
    if source.starts_with(crate::desired::API_SOURCE_PREFIX) {
        format!("the object applied through the API of node {node}")
    } else {
        format!("manifest file {source} on node {node}")
    }
}

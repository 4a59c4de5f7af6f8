//! Commands from the local API that change the node loop's state: objects applied or deleted
//! through the API (never those a manifest file declares), and a changed image store.

use super::Core;
use crate::desired;
use crate::store::StoreError;
use skiff_cni::PodNetwork;
use skiff_manifests::{Object, ObjectKey, Valid};
use tokio::sync::oneshot;

/// Why objects were not applied or deleted through the API; the message is for the user.
#[derive(Debug, thiserror::Error)]
pub enum ApiObjectError {
    #[error("{key} is declared in manifest file {file}: edit that file instead")]
    ApplyDeclared { key: ObjectKey, file: String },
    #[error("{key} is declared in manifest file {file}: remove it from that file")]
    DeleteDeclared { key: ObjectKey, file: String },
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A command from the API that changes state.
pub enum Command {
    /// Set or remove objects applied through the API; answers with an error for objects that a
    /// manifest file declares.
    ApplyObjects {
        objects: Vec<Valid<Object>>,
        reply: oneshot::Sender<Result<Vec<String>, ApiObjectError>>,
    },
    DeleteObjects {
        keys: Vec<ObjectKey>,
        reply: oneshot::Sender<Result<Vec<String>, ApiObjectError>>,
    },
    /// The image store changed (import or pull through the API).
    ImagesChanged,
    /// An event from outside the loop (a rollback).
    RecordEvent(crate::events::Note),
}

impl<N: PodNetwork + 'static> Core<N> {
    /// Carries out a command from the API and answers it.
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ApplyObjects { objects, reply } => {
                let _ = reply.send(self.apply_objects(objects));
            }
            Command::DeleteObjects { keys, reply } => {
                let _ = reply.send(self.delete_objects(keys));
            }
            Command::ImagesChanged => self.on_images_changed(),
            Command::RecordEvent(note) => {
                let now = self.now();
                self.events.note(now, &note);
            }
        }
    }

    /// Sets objects applied through the API (none if a manifest file declares one of them);
    /// one line per object for the user.
    fn apply_objects(
        &mut self,
        objects: Vec<Valid<Object>>,
    ) -> Result<Vec<String>, ApiObjectError> {
        for object in &objects {
            let key = object.key();
            if let Some(src) = self.sources.source_of(&key)
                && !src.starts_with(desired::API_SOURCE_PREFIX)
            {
                return Err(ApiObjectError::ApplyDeclared {
                    key,
                    file: src.to_string(),
                });
            }
        }
        let mut changes = Vec::new();
        for object in objects {
            let key = object.key();
            let existed = self.sources.source_of(&key).is_some();
            let changed = self
                .sources
                .set_api_object(&key, Some(object), &self.store)?;
            let what = match (existed, changed) {
                (false, _) => "created",
                (true, true) => "configured",
                (true, false) => "unchanged",
            };
            changes.push(format!("{} {what}", describe_key(&key)));
        }
        self.refresh_declared();
        Ok(changes)
    }

    /// Removes objects applied through the API, none if one is unknown or declared by a
    /// manifest file; one line per object for the user.
    fn delete_objects(&mut self, keys: Vec<ObjectKey>) -> Result<Vec<String>, ApiObjectError> {
        for key in &keys {
            match self.sources.source_of(key) {
                None => return Err(ApiObjectError::NotFound(key.clone())),
                Some(src) if !src.starts_with(desired::API_SOURCE_PREFIX) => {
                    return Err(ApiObjectError::DeleteDeclared {
                        key: key.clone(),
                        file: src.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        let mut changes = Vec::new();
        for key in keys {
            self.sources.set_api_object(&key, None, &self.store)?;
            changes.push(format!("{} deleted", describe_key(&key)));
        }
        self.refresh_declared();
        Ok(changes)
    }
}

pub use crate::render::describe_key;

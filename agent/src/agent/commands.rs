//! Commands from the local API that change the node loop's state: objects applied or deleted
//! through the API (never those a manifest file declares), and a changed image store.

use super::Core;
use crate::desired;
use skiff_cni::PodNetwork;
use skiff_manifests::{Object, ObjectKey, Valid};
use tokio::sync::oneshot;

/// A command from the API that changes state.
pub enum Command {
    /// Set or remove objects applied through the API; answers with an error for objects that a
    /// manifest file declares.
    ApplyObjects {
        objects: Vec<Valid<Object>>,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    DeleteObjects {
        keys: Vec<ObjectKey>,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    /// The image store changed (import or pull through the API).
    ImagesChanged,
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
        }
    }

    /// Sets objects applied through the API (none if a manifest file declares one of them);
    /// one line per object for the user.
    fn apply_objects(&mut self, objects: Vec<Valid<Object>>) -> Result<Vec<String>, String> {
        for object in &objects {
            let key = object.key();
            if let Some(src) = self.sources.source_of(&key)
                && !src.starts_with(desired::API_SOURCE_PREFIX)
            {
                return Err(format!(
                    "{key} is declared in manifest file {src}: edit that file instead"
                ));
            }
        }
        let mut changes = Vec::new();
        for object in objects {
            let key = object.key();
            let existed = self.sources.source_of(&key).is_some();
            let changed = self
                .sources
                .set_api_object(&key, Some(object), &self.store)
                .map_err(|e| e.to_string())?;
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
    fn delete_objects(&mut self, keys: Vec<ObjectKey>) -> Result<Vec<String>, String> {
        for key in &keys {
            match self.sources.source_of(key) {
                None => return Err(format!("{key} not found")),
                Some(src) if !src.starts_with(desired::API_SOURCE_PREFIX) => {
                    return Err(format!(
                        "{key} is declared in manifest file {src}: remove it from that file"
                    ));
                }
                Some(_) => {}
            }
        }
        let mut changes = Vec::new();
        for key in keys {
            self.sources
                .set_api_object(&key, None, &self.store)
                .map_err(|e| e.to_string())?;
            changes.push(format!("{} deleted", describe_key(&key)));
        }
        self.refresh_declared();
        Ok(changes)
    }
}

/// kubectl's spelling: `deployment.apps/web`, `pod/x`.
pub fn describe_key(key: &ObjectKey) -> String {
    let kind = key.kind.as_str().to_ascii_lowercase();
    let group = if key.kind.api_version().contains('/') {
        format!(
            "{kind}.{}",
            key.kind.api_version().split('/').next().unwrap_or("")
        )
    } else {
        kind
    };
    format!("{group}/{}", key.name)
}

//! Images through the local API: `image import` (an OCI or docker archive, on the blocking pool),
//! `image pull` and `image list`; the loop hears of new images so waiting pods can start.

use super::{Shared, err, ok};
use crate::agent::core::Command;
use crate::api::server::Reply;
use serde_json::{Value, json};
use skiff_runtime::image::ImageInfo;

/// `image import PATH` (a path on this node).
pub(super) async fn import(shared: &Shared, path: String) -> Reply {
    let images = shared.images.clone();
    let result = tokio::task::spawn_blocking(move || {
        let result = images.import_archive(std::path::Path::new(&path));
        crate::memory::release_free_memory();
        result
    })
    .await;
    match result {
        Ok(Ok(infos)) => {
            let _ = shared.commands.send(Command::ImagesChanged).await;
            ok(images_json(&infos))
        }
        Ok(Err(e)) => err(e.to_string()),
        Err(e) => err(format!("image import failed: {e}")),
    }
}

/// `image pull REFERENCE`, with the agent's registry options.
pub(super) async fn pull(shared: &Shared, reference: &str) -> Reply {
    let opts = crate::agent::execute::pull_options(&shared.config);
    let pulled = shared.images.pull(reference, &opts).await;
    crate::memory::release_free_memory();
    match pulled {
        Ok(info) => {
            let _ = shared.commands.send(Command::ImagesChanged).await;
            ok(images_json(&[info]))
        }
        Err(e) => err(e.to_string()),
    }
}

/// `image list`.
pub(super) fn list(shared: &Shared) -> Reply {
    match shared.images.list() {
        Ok(infos) => ok(images_json(&infos)),
        Err(e) => err(e.to_string()),
    }
}

fn images_json(infos: &[ImageInfo]) -> Value {
    json!({ "items": infos.iter().map(|i| json!({
        "reference": i.reference, "digest": i.digest, "id": i.id, "size": i.size,
    })).collect::<Vec<_>>() })
}

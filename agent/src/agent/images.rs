//! Image pull state on the node loop: what the node knows of each image (present, being
//! pulled, failed and when to try again), starting pulls and folding their results into the
//! pods that wait for them.

use super::Core;
use super::Snapshot;
use crate::agent::execute::{self, PullResult};
use crate::pod::{ContainerPlanSpec, Millis, PodRecord, PullPolicy, Waiting};
use crate::reconciler::plan::ImageState;
use skiff_cni::PodNetwork;
use skiff_runtime::image::{ImageStore, normalize_reference};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Pull state of one image (by normalized reference).
#[derive(Clone, Debug, Default)]
pub(super) struct ImageEntry {
    present: bool,
    pulling: bool,
    failures: u32,
    retry_at: Millis,
    message: String,
}

fn entry_state(e: &ImageEntry) -> ImageState {
    if e.pulling {
        ImageState::Pulling
    } else if e.present {
        ImageState::Present
    } else if e.failures > 0 {
        ImageState::Failed {
            message: e.message.clone(),
            retry_at: e.retry_at,
        }
    } else {
        ImageState::Missing
    }
}

/// The images in the store, all present (the node loop's state at start).
pub(super) fn present_images(images: &ImageStore) -> anyhow::Result<HashMap<String, ImageEntry>> {
    let mut state = HashMap::new();
    for info in images.list()? {
        state.insert(
            info.reference.clone(),
            ImageEntry {
                present: true,
                ..Default::default()
            },
        );
    }
    Ok(state)
}

impl Snapshot {
    /// The image state as the renderer wants it: state and failure count.
    pub fn image_state(&self, image: &str) -> (ImageState, u32) {
        let key = normalize_reference(image).unwrap_or_else(|_| image.to_string());
        match self.images.get(&key) {
            Some(e) => (entry_state(e), e.failures),
            None => (ImageState::Missing, 0),
        }
    }
}

impl<N: PodNetwork + 'static> Core<N> {
    /// What the planner knows of `image`.
    pub(super) fn image_state_of(&self, image: &str) -> ImageState {
        let key = normalize_reference(image).unwrap_or_else(|_| image.to_string());
        self.image_state
            .get(&key)
            .map(entry_state)
            .unwrap_or(ImageState::Missing)
    }

    /// Uids of the pods with a container (init included) that runs `image`.
    fn pods_using(&self, image: &str) -> Vec<String> {
        self.pods
            .values()
            .filter(|p| {
                p.plan
                    .containers
                    .iter()
                    .chain(&p.plan.init_containers)
                    .any(|c| c.image == image)
            })
            .map(|p| p.uid.clone())
            .collect()
    }

    /// Images of a new revision, pulled ahead: a node running pods of a Deployment or
    /// DaemonSet whose template has changed pulls the new template's missing images now, while
    /// its old pods still serve, so that on a slow link the update does not wait for the pull
    /// after an old pod has stopped. (Pods of the new revision may still land elsewhere; those
    /// nodes pull when they get them.)
    pub(super) fn prefetch_new_revisions(
        &mut self,
        pulls: &mpsc::Sender<PullResult>,
        tracker: &TaskTracker,
    ) {
        use skiff_manifests::{Kind, Object, ObjectKey};
        let mut wanted: Vec<String> = Vec::new();
        for p in self.pods.values().filter(|p| p.deleting_since.is_none()) {
            let Some(owner) = &p.owner else { continue };
            let key = ObjectKey::new(owner.kind, &p.namespace, &owner.name);
            let Some((_, object)) = self.objects.get(&key) else {
                continue;
            };
            let (hash, spec) = match (owner.kind, object.get()) {
                (Kind::Deployment, Object::Deployment(d)) => {
                    (d.pod_template_hash(), &d.spec.template.spec)
                }
                (Kind::DaemonSet, Object::DaemonSet(d)) => {
                    (d.pod_template_hash(), &d.spec.template.spec)
                }
                _ => continue,
            };
            if hash == p.spec_hash {
                continue;
            }
            for c in spec.init_containers.iter().chain(&spec.containers) {
                if c.image_pull_policy != skiff_manifests::model::pod::PullPolicy::Never
                    && self.image_state_of(&c.image) == ImageState::Missing
                    && !wanted.contains(&c.image)
                {
                    wanted.push(c.image.clone());
                }
            }
        }
        for image in wanted {
            tracing::info!("pulling {image} ahead of a rolling update (a new revision uses it)");
            self.start_pull(&image, pulls, tracker);
        }
    }

    pub(super) fn start_pull(
        &mut self,
        image: &str,
        pulls: &mpsc::Sender<PullResult>,
        tracker: &TaskTracker,
    ) {
        let key = normalize_reference(image).unwrap_or_else(|_| image.to_string());
        let entry = self.image_state.entry(key.clone()).or_default();
        if entry.pulling {
            return;
        }
        entry.pulling = true;
        let images = self.images.clone();
        let opts = execute::pull_options(&self.config);
        let tx = pulls.clone();
        let image = image.to_string();
        let users = self.pods_using(&image);
        for uid in users {
            self.record_pod_event(&uid, false, "Pulling", &format!("pulling image {image:?}"));
        }
        tracker.spawn(async move {
            let started = std::time::Instant::now();
            let result = images.pull(&image, &opts).await.map(|_| ());
            let _ = tx
                .send(PullResult {
                    key,
                    image,
                    result,
                    took: started.elapsed(),
                })
                .await;
        });
    }

    pub(super) fn on_pull_result(&mut self, p: PullResult) {
        crate::memory::release_free_memory();
        let now = self.now();
        let users = self.pods_using(&p.image);
        let entry = self.image_state.entry(p.key.clone()).or_default();
        entry.pulling = false;
        match p.result {
            Ok(()) => {
                entry.present = true;
                entry.failures = 0;
                entry.message.clear();
                for uid in &users {
                    if let Some(pod) = self.pods.get_mut(uid).map(std::sync::Arc::make_mut) {
                        for (spec, c) in plan_and_status(pod) {
                            if spec.image == p.image && !c.running() {
                                c.pulled = true;
                            }
                        }
                        self.dirty.insert(uid.clone());
                    }
                }
                for uid in users {
                    self.record_pod_event(
                        &uid,
                        false,
                        "Pulled",
                        &format!("pulled image {:?} in {:.1}s", p.image, p.took.as_secs_f64()),
                    );
                }
            }
            Err(error) => {
                let message = error.to_string();
                entry.failures += 1;
                entry.retry_at = now + self.pull.delay(entry.failures).as_millis() as Millis;
                entry.message = message.clone();
                // A present image still counts as present, so pull policy Always would pull again
                // at once: hold those containers back until the retry time, as kubelet does.
                let (failures, retry_at) = (entry.failures, entry.retry_at);
                let reason = if failures > 1 {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                for uid in &users {
                    if let Some(pod) = self.pods.get_mut(uid).map(std::sync::Arc::make_mut) {
                        for (spec, c) in plan_and_status(pod) {
                            if spec.image == p.image
                                && spec.pull_policy == PullPolicy::Always
                                && !c.running()
                                && !c.pulled
                            {
                                c.next_start_at = Some(retry_at);
                                c.waiting = Some(Waiting {
                                    reason: reason.to_string(),
                                    message: format!(
                                        "failed to pull image {:?}: {message}",
                                        p.image
                                    ),
                                });
                            }
                        }
                        self.dirty.insert(uid.clone());
                    }
                }
                for uid in users {
                    self.record_pod_event(
                        &uid,
                        true,
                        "Failed",
                        &format!("failed to pull image {:?}: {message}", p.image),
                    );
                }
            }
        }
    }

    /// The image store changed (import or pull through the API): what it lists is present.
    pub(super) fn on_images_changed(&mut self) {
        match self.images.list() {
            Ok(list) => {
                for info in list {
                    let e = self.image_state.entry(info.reference).or_default();
                    e.present = true;
                    e.failures = 0;
                }
            }
            Err(e) => tracing::warn!("cannot list images: {e}"),
        }
    }
}

/// Each container's plan spec with its mutable status, init containers first.
fn plan_and_status(
    pod: &mut PodRecord,
) -> impl Iterator<Item = (&ContainerPlanSpec, &mut crate::pod::ContainerStatus)> {
    pod.plan
        .init_containers
        .iter()
        .zip(pod.status.init_containers.iter_mut())
        .chain(
            pod.plan
                .containers
                .iter()
                .zip(pod.status.containers.iter_mut()),
        )
}

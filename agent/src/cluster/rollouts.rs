//! Where every Deployment's rollout stands, as each node sees it (pure; `now` a parameter):
//! its available pods (ready for `minReadySeconds` since this node saw them turn ready) and
//! whether the rollout is complete, progressing, or has made no progress for
//! `progressDeadlineSeconds` (`ProgressDeadlineExceeded`). Every node computes it from the
//! objects and the pod reports it already has, so `get deployments` and `rollout status`
//! answer the same on any node, leader or not.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_manifests::{Kind, Object};

use super::keys::PodReport;
use super::schedule::{Readiness, track_readiness};
use super::service::PodReports;

/// A rollout's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every pod is of the current template and available.
    Complete,
    /// Pods are being replaced (or made, or become available) and something moved within the
    /// deadline.
    Progressing,
    /// Nothing moved for `progressDeadlineSeconds`.
    DeadlineExceeded,
    /// `spec.paused`: the rollout waits for `rollout resume` (no deadline runs meanwhile).
    Paused,
}

/// One Deployment's rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutView {
    /// Pods of the current template ready for at least `minReadySeconds`.
    pub available: u32,
    pub progress: Progress,
    /// When the counts last moved (wall clock ms).
    pub since_ms: u64,
}

/// Rollouts by (namespace, name).
pub type Rollouts = BTreeMap<(String, String), RolloutView>;

/// What moves a rollout: the template and its pods' counts (current, available, all).
type Mark = (String, u32, u32, u32);

#[derive(Debug, Default)]
pub struct RolloutTracker {
    readiness: BTreeMap<(String, String), Readiness>,
    marks: BTreeMap<(String, String), (Mark, u64)>,
    /// Per Deployment, the template whose rollout completed (no deadline applies to it after).
    completed: BTreeMap<(String, String), String>,
    last: Option<Last>,
}

/// The inputs and time of the last computation, and its result.
type Last = (
    Arc<crate::desired::Objects>,
    Arc<PodReports>,
    u64,
    Arc<Rollouts>,
);

/// A Deployment's pods: (namespace, name) and report.
type Owned<'a> = Vec<(&'a (String, String), &'a PodReport)>;

/// How often the rollouts are computed again when nothing they read changed (deadlines and
/// `minReadySeconds` pass with time alone).
const RECHECK_MS: u64 = 1_000;

impl RolloutTracker {
    /// [`RolloutTracker::track`], again only when the objects or the reports changed or a
    /// second has passed.
    pub fn track_shared(
        &mut self,
        objects: &Arc<crate::desired::Objects>,
        pods: &Arc<PodReports>,
        now: u64,
    ) -> Arc<Rollouts> {
        if let Some((o, p, at, out)) = &self.last
            && Arc::ptr_eq(o, objects)
            && Arc::ptr_eq(p, pods)
            && now.saturating_sub(*at) < RECHECK_MS
        {
            return out.clone();
        }
        let out = self.track(objects, pods, now);
        self.last = Some((objects.clone(), pods.clone(), now, out.clone()));
        out
    }

    /// The rollouts of the Deployments in `objects`, given the pods' reports at `now`.
    pub fn track(
        &mut self,
        objects: &crate::desired::Objects,
        pods: &PodReports,
        now: u64,
    ) -> Arc<Rollouts> {
        track_readiness(&mut self.readiness, pods, now);
        // Deployment pods by (namespace, owner), once.
        let mut owned: BTreeMap<(&str, &str), Owned<'_>> = BTreeMap::new();
        for (id, (_, report)) in pods.iter() {
            if let Some(o) = report.owner.as_ref().filter(|o| o.kind == Kind::Deployment)
                && !report.deleting
            {
                owned
                    .entry((id.0.as_str(), o.name.as_str()))
                    .or_default()
                    .push((id, report));
            }
        }
        let mut out = Rollouts::new();
        for (key, (_, object)) in objects.iter() {
            let Object::Deployment(d) = object.get() else {
                continue;
            };
            let hash = d.pod_template_hash();
            let min_ready = u64::from(d.spec.min_ready_seconds) * 1000;
            let (mut current, mut available, mut all) = (0u32, 0u32, 0u32);
            let mine = owned
                .get(&(key.namespace.as_str(), key.name.as_str()))
                .map_or(&[][..], Vec::as_slice);
            for (id, report) in mine {
                all += 1;
                if report.template_hash != hash {
                    continue;
                }
                current += 1;
                let since = match self.readiness.get(*id) {
                    Some(Readiness::ReadySince(at)) => Some(*at),
                    _ => None,
                };
                if report.ready && since.is_none_or(|at| now.saturating_sub(at) >= min_ready) {
                    available += 1;
                }
            }
            let id = (key.namespace.to_string(), key.name.to_string());
            let done_before = self.completed.get(&id) == Some(&hash);
            let mark: Mark = (hash.clone(), current, available, all);
            let since = match self.marks.get(&id) {
                // A paused rollout's deadline starts again when it is resumed.
                Some((seen, since)) if *seen == mark && !d.spec.paused => *since,
                _ => now,
            };
            self.marks.insert(id.clone(), (mark, since));
            let wanted = d.spec.replicas;
            let deadline = u64::from(d.spec.progress_deadline_seconds) * 1000;
            let progress = if current == wanted && all == wanted && available == wanted {
                self.completed.insert(id.clone(), hash);
                Progress::Complete
            } else if d.spec.paused {
                Progress::Paused
            } else if !done_before && now.saturating_sub(since) >= deadline {
                Progress::DeadlineExceeded
            } else {
                Progress::Progressing
            };
            out.insert(
                id,
                RolloutView {
                    available,
                    progress,
                    since_ms: since,
                },
            );
        }
        self.marks.retain(|k, _| out.contains_key(k));
        self.completed.retain(|k, _| out.contains_key(k));
        Arc::new(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::PodReport;
    use crate::pod::Owner;

    fn objects(yaml: &str) -> crate::desired::Objects {
        skiff_manifests::parse_file("d.yaml", yaml.as_bytes())
            .objects()
            .into_iter()
            .map(|o| (o.key(), ("d.yaml".to_string(), o.clone())))
            .collect()
    }

    fn deployment(min_ready: u32, deadline: u32, image: &str) -> crate::desired::Objects {
        objects(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  minReadySeconds: {min_ready}\n  progressDeadlineSeconds: {deadline}\n  selector: {{matchLabels: {{app: web}}}}\n  template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [{{name: c, image: {image}}}]}}}}\n"
        ))
    }

    fn hash(objects: &crate::desired::Objects) -> String {
        match objects.values().next().map(|(_, o)| o.get()) {
            Some(Object::Deployment(d)) => d.pod_template_hash(),
            _ => unreachable!(),
        }
    }

    fn report(hash: &str, ready: bool) -> Arc<PodReport> {
        Arc::new(PodReport {
            uid: "u".into(),
            owner: Some(Owner {
                kind: Kind::Deployment,
                name: "web".into(),
            }),
            template_hash: hash.into(),
            created_ms: 0,
            deleting: false,
            running: true,
            ready,
            labels: Default::default(),
            status: serde_json::Value::Null,
            ports: Vec::new(),
            hostname: None,
            subdomain: None,
        })
    }

    fn pods(list: &[(&str, &str, bool)]) -> PodReports {
        list.iter()
            .map(|(name, hash, ready)| {
                (
                    ("default".to_string(), name.to_string()),
                    ("n1".to_string(), report(hash, *ready)),
                )
            })
            .collect()
    }

    fn view(r: &Rollouts) -> RolloutView {
        r[&("default".to_string(), "web".to_string())]
    }

    #[test]
    fn complete_progressing_and_deadline_exceeded() {
        let objects = deployment(0, 10, "i:1");
        let h = hash(&objects);
        let mut t = RolloutTracker::default();
        let done = t.track(&objects, &pods(&[("a", &h, true), ("b", &h, true)]), 1_000);
        assert_eq!(view(&done).progress, Progress::Complete);
        assert_eq!(view(&done).available, 2);
        // A new template: the old pods count, none is current; nothing moves for 10 s.
        let next = deployment(0, 10, "i:2");
        let old = pods(&[("a", &h, true), ("b", &h, true)]);
        let r = t.track(&next, &old, 2_000);
        assert_eq!(view(&r).progress, Progress::Progressing);
        assert_eq!(view(&r).available, 0);
        let r = t.track(&next, &old, 11_999);
        assert_eq!(view(&r).progress, Progress::Progressing);
        let r = t.track(&next, &old, 12_000);
        assert_eq!(view(&r).progress, Progress::DeadlineExceeded);
        // A rollout that completed is not timed out later, whatever its pods do.
        let mut later = RolloutTracker::default();
        later.track(&objects, &pods(&[("a", &h, true), ("b", &h, true)]), 0);
        let one_down = pods(&[("a", &h, true), ("b", &h, false)]);
        later.track(&objects, &one_down, 1_000);
        let r = later.track(&objects, &one_down, 60_000);
        assert_eq!(view(&r).progress, Progress::Progressing);
        // Any movement starts the deadline again.
        let h2 = hash(&next);
        let moved = pods(&[("a", &h, true), ("b", &h, true), ("c", &h2, false)]);
        let r = t.track(&next, &moved, 14_000);
        assert_eq!(view(&r).progress, Progress::Progressing);
        assert_eq!(view(&r).since_ms, 14_000);
    }

    #[test]
    fn available_waits_for_min_ready_seconds_from_when_the_pod_turned_ready() {
        let objects = deployment(5, 600, "i:1");
        let h = hash(&objects);
        let mut t = RolloutTracker::default();
        t.track(&objects, &pods(&[("a", &h, false), ("b", &h, false)]), 0);
        let ready = pods(&[("a", &h, true), ("b", &h, true)]);
        let r = t.track(&objects, &ready, 1_000);
        assert_eq!(view(&r).available, 0, "ready for 0 of 5 s");
        let r = t.track(&objects, &ready, 5_999);
        assert_eq!(view(&r).available, 0);
        let r = t.track(&objects, &ready, 6_000);
        assert_eq!(
            (view(&r).available, view(&r).progress),
            (2, Progress::Complete)
        );
        // Pods ready before this node knew them (made long ago) count at once; pods made
        // within the last minute count from when they are first seen ready.
        let mut fresh = RolloutTracker::default();
        let r = fresh.track(&objects, &ready, 120_000);
        assert_eq!(view(&r).available, 2);
        let mut young = RolloutTracker::default();
        let r = young.track(&objects, &ready, 30_000);
        assert_eq!(view(&r).available, 0);
    }
}

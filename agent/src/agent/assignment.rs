//! What the cluster says this node holds and runs: this node's declarations go out to the
//! cluster task; the cluster's objects and this node's assigned pods come back and become pod
//! records (created or marked for deletion); this node's pod reports go out.

use super::{Core, Snapshot};
use crate::cluster::keys::PodReport;
use crate::desired;
use crate::pod::{
    ContainerPlanSpec, Millis, PodPlanSpec, PodRecord, PodRuntime, PullPolicy, RestartPolicy,
};
use rand::Rng;
use skiff_cni::PodNetwork;
use skiff_manifests::Valid;
use skiff_manifests::model::workloads::Pod;
use std::sync::Arc;
use tokio::sync::watch;

impl<N: PodNetwork + 'static> Core<N> {
    /// Hands this node's declarations to the cluster task (which replicates them and hands back
    /// the cluster's objects and this node's assignment through [`Core::on_desired`]).
    pub(super) fn refresh_declared(&mut self) {
        self.declared
            .send_replace(self.sources.merged.objects.clone());
    }

    /// What the cluster task says this node should hold and run.
    pub(super) fn on_desired(&mut self, desired: crate::cluster::Desired, now: Millis) {
        tracing::debug!(target: "skiff::path", "desired received");
        let keys_changed = desired
            .objects
            .keys()
            .any(|k| !self.first_seen.contains_key(k))
            || self
                .first_seen
                .keys()
                .any(|k| !desired.objects.contains_key(k));
        if keys_changed {
            // Shared with the published snapshot: made again only when an object came or went
            // (in one pass, so that its nodes are full).
            let first_seen = desired
                .objects
                .keys()
                .map(|k| (k.clone(), self.first_seen.get(k).copied().unwrap_or(now)))
                .collect();
            self.first_seen = Arc::new(first_seen);
        }
        if desired::config_changed(&self.objects, &desired.objects) {
            for pod in self.pods.values_mut().map(Arc::make_mut) {
                if pod.status.retry_config_waits() {
                    self.dirty.insert(pod.uid.clone());
                }
            }
        }
        self.objects = desired.objects;
        self.assigned = desired.assigned;
        self.service_links = desired.service_links;
        self.desired_changed = true;
        for p in desired.pending.iter() {
            if self.pending.iter().any(|old| old == p) {
                continue;
            }
            let owner = &p.owner;
            let reason = if p.reason.starts_with("namespace") {
                "Blocked"
            } else {
                "FailedScheduling"
            };
            self.events.record(
                now,
                true,
                reason,
                owner.kind.as_str(),
                &owner.namespace,
                &owner.name,
                &p.reason,
            );
        }
        self.pending = desired.pending;
    }

    /// This node's declarations, for the cluster task.
    pub fn declared(&self) -> watch::Receiver<Arc<crate::desired::Objects>> {
        self.declared.subscribe()
    }

    /// This node's pod reports, for the cluster task.
    pub fn reports(&self) -> watch::Receiver<Arc<crate::cluster::service::OwnReports>> {
        self.reports.subscribe()
    }

    /// Hands the cluster task this node's pod reports, if they changed. A pod's report is
    /// rendered again only when its state changed, or when what it shows depends on the time
    /// or on an image pull (a container waiting to start): rendering every pod on every turn
    /// cost milliseconds per turn with a hundred pods.
    pub(super) fn publish_reports(&mut self, snapshot: &Snapshot, now: Millis) {
        let image = |i: &str| snapshot.image_state(i);
        let ctx = crate::render::RenderContext {
            node_name: &self.config.node_name,
            now,
            image: &image,
        };
        let mut changed = self.report_cache.len() != self.pods.len()
            || self
                .report_cache
                .keys()
                .any(|uid| !self.pods.contains_key(uid));
        self.report_cache
            .retain(|uid, _| self.pods.contains_key(uid));
        for p in self.pods.values() {
            if let Some(cached) = self.report_cache.get(&p.uid)
                && cached.still_shows(p)
            {
                continue;
            }
            let ip = p.status.network.as_ref().map(|n| n.ip.as_str());
            let report = crate::cluster::report(p, ip, &ctx);
            changed |= self
                .report_cache
                .get(&p.uid)
                .is_none_or(|cached| *cached.report != report);
            self.report_cache.insert(
                p.uid.clone(),
                CachedReport {
                    record: p.clone(),
                    report: Arc::new(report),
                },
            );
        }
        if !changed {
            return;
        }
        let reports: crate::cluster::service::OwnReports = self
            .pods
            .values()
            .filter_map(|p| {
                let cached = self.report_cache.get(&p.uid)?;
                Some(((p.namespace.clone(), p.name.clone()), cached.report.clone()))
            })
            .collect();
        self.reports.send_if_modified(|current| {
            if **current == reports {
                false
            } else {
                *current = Arc::new(reports);
                true
            }
        });
    }

    /// Creates the pod records of newly assigned pods and marks those no longer desired (or
    /// whose spec changed) for deletion.
    pub(super) fn apply_desired(&mut self, now: Millis) {
        let records: Vec<&PodRecord> = self.pods.values().map(|p| &**p).collect();
        let Some(assigned) = &self.assigned else {
            // No table yet (a fresh start before the cluster task spoke): keep everything.
            return;
        };
        let changes =
            desired::assigned_changes(&self.objects, assigned, &records, &self.config.node_name);
        for (key, reason) in &changes.blocked {
            self.events.record(
                now,
                true,
                "Blocked",
                key.kind.as_str(),
                &key.namespace,
                &key.name,
                reason,
            );
        }
        for uid in changes.delete {
            if let Some(p) = self.pods.get_mut(&uid).map(Arc::make_mut) {
                p.deleting_since = Some(now);
                self.dirty.insert(uid.clone());
                let (ns, name) = (p.namespace.clone(), p.name.clone());
                self.events.record(
                    now,
                    false,
                    "Killing",
                    "Pod",
                    &ns,
                    &name,
                    "stopping pod: it is no longer desired or its spec changed",
                );
            }
        }
        for (uid, failure) in changes.stop {
            if let Some(p) = self.pods.get_mut(&uid).map(Arc::make_mut) {
                let (ns, name) = (p.namespace.clone(), p.name.clone());
                self.events.record(
                    now,
                    true,
                    &failure.reason,
                    "Pod",
                    &ns,
                    &name,
                    &failure.message,
                );
                p.status.failure = Some(failure);
                self.dirty.insert(uid);
            }
        }
        for new in changes.create {
            let uid = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
            let plan = plan_spec(&new.pod);
            let record = PodRecord {
                uid: uid.clone(),
                namespace: new.pod.metadata.namespace.clone(),
                name: new.pod.metadata.name.clone(),
                owner: new.owner,
                spec_hash: new.spec_hash,
                manifest: new.pod.clone().into(),
                status: PodRuntime::for_plan(&plan),
                plan,
                created_at: now,
                deleting_since: None,
            };
            self.events.record(
                now,
                false,
                "Scheduled",
                "Pod",
                &record.namespace,
                &record.name,
                &format!("assigned to {}", self.config.node_name),
            );
            self.pods.insert(uid.clone(), Arc::new(record));
            self.dirty.insert(uid);
        }
    }
}

/// What the planner needs of a pod's manifest.
fn plan_spec(pod: &Valid<Pod>) -> PodPlanSpec {
    use skiff_manifests::model::pod::{PullPolicy as MP, RestartPolicy as MR};
    let c = |c: &skiff_manifests::model::pod::Container| ContainerPlanSpec {
        name: c.name.clone(),
        image: c.image.clone(),
        pull_policy: match c.image_pull_policy {
            MP::Always => PullPolicy::Always,
            MP::IfNotPresent => PullPolicy::IfNotPresent,
            MP::Never => PullPolicy::Never,
        },
        sidecar: c.sidecar,
    };
    PodPlanSpec {
        init_containers: pod.spec.init_containers.iter().map(c).collect(),
        containers: pod.spec.containers.iter().map(c).collect(),
        restart_policy: match pod.spec.restart_policy {
            MR::Always => RestartPolicy::Always,
            MR::OnFailure => RestartPolicy::OnFailure,
            MR::Never => RestartPolicy::Never,
        },
        grace_period: pod.spec.termination_grace_period(),
        host_network: pod.spec.host_network,
        active_deadline: pod
            .spec
            .active_deadline_seconds
            .map(std::time::Duration::from_secs),
    }
}

/// A pod's last report with what it was rendered from.
pub(super) struct CachedReport {
    /// The record as rendered. Holding it keeps it shared, so a change to the pod makes a new
    /// record (`Arc::make_mut` copies a shared one): the same pointer means nothing changed.
    record: Arc<PodRecord>,
    report: Arc<PodReport>,
}

impl CachedReport {
    /// Whether the report still shows `p`: its state is the same, and no container is in a
    /// state whose rendering depends on the time (a crash backoff) or an image pull.
    fn still_shows(&self, p: &Arc<PodRecord>) -> bool {
        let settled =
            |c: &crate::pod::ContainerStatus| c.current.is_some() || c.done || c.waiting.is_some();
        (Arc::ptr_eq(&self.record, p)
            || (self.record.deleting_since == p.deleting_since && self.record.status == p.status))
            && p.status.init_containers.iter().all(settled)
            && p.status.containers.iter().all(settled)
    }
}

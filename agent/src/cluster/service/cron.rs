//! CronJobs in the cluster task: the scheduling leader evaluates every CronJob
//! (`crate::jobs::cron::step`, pure) when its inputs change or a run is due, writes the runs'
//! Job objects into the replica (stamped by this node, named after their scheduled minute, so
//! a new leader makes the same object), and deletes the Jobs the history limits, a Replace or
//! a deleted CronJob let go.
//!
//! Beyond Kubernetes, a CronJob annotated `skiff.dev/node-local-cron: "true"` keeps firing on
//! a node cut off from the majority (no leader can schedule for it): the node that ran its
//! newest run evaluates the schedule itself, makes the run's Job in its own replica (the same
//! name and content a leader would make) and runs the Job's pods itself, with the same job
//! step, until a leader's table takes over (which adopts the pods it reports). This trades
//! exactly-once for availability: the majority's leader may make the same minute's run.

use super::*;
use crate::cluster::keys::{object_key, parse_object_key};
use crate::events::Note;
use crate::jobs::cron::{self, CRONJOB_ANNOTATION, Child};

/// The opt-in annotation for firing on a node cut off from the majority.
pub const NODE_LOCAL_ANNOTATION: &str = "skiff.dev/node-local-cron";
use skiff_manifests::{CronJob, Job, Kind, Object, ObjectKey, Valid};

/// What the last evaluation looked at, and what it said.
#[derive(Default)]
pub(super) struct CronState {
    objects: Option<Arc<crate::desired::Objects>>,
    table: Option<Arc<Vec<crate::cluster::keys::AssignedPod>>>,
    /// When a run is next due.
    wake_at_ms: Option<u64>,
    /// The last note per CronJob (said once).
    notes: BTreeMap<ObjectKey, String>,
    /// Jobs this node made while cut off, and the entries of their pods on this node (the
    /// table it runs them from until a leader's table takes over).
    pub(super) local_jobs: BTreeSet<ObjectKey>,
    pub(super) local: Vec<crate::cluster::keys::AssignedPod>,
}

impl ClusterService {
    /// As the scheduling leader: makes the CronJobs' due runs and deletes the Jobs they let go.
    pub(super) async fn run_cron_jobs(
        &mut self,
        table: &Arc<Vec<crate::cluster::keys::AssignedPod>>,
        outputs: &ClusterOutputs,
        now: u64,
    ) {
        let same = self
            .cron
            .objects
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, &self.objects))
            && self
                .cron
                .table
                .as_ref()
                .is_some_and(|t| Arc::ptr_eq(t, table))
            && self.cron.wake_at_ms.is_none_or(|at| now < at);
        if same {
            return;
        }
        self.cron.objects = Some(self.objects.clone());
        self.cron.table = Some(table.clone());
        self.cron.wake_at_ms = None;
        let objects = self.objects.clone();
        let tombstones: Vec<ObjectKey> = self
            .replica
            .tombstones()
            .filter_map(parse_object_key)
            .filter(|k| k.kind == Kind::Job)
            .collect();
        let mut made = Vec::new();
        let mut gone = Vec::new();
        let mut crons: BTreeSet<(String, String)> = BTreeSet::new();
        for (key, (_, object)) in objects.iter() {
            let Object::CronJob(_) = object.get() else {
                continue;
            };
            let Ok(cronjob) = Valid::<CronJob>::try_from(object.clone()) else {
                continue;
            };
            crons.insert((key.namespace.to_string(), key.name.to_string()));
            let children = children(&cronjob, &objects, &tombstones, table, now);
            let created_ms = self
                .replica
                .digest(&object_key(key))
                .map_or(now, |d| d.stamp.wall_ms);
            let zone = cron::zone(&cronjob);
            let step = cron::step(
                &cronjob,
                &children,
                created_ms,
                zone.as_ref().map_err(String::as_str),
                now,
            );
            if let Some(at) = step.wake_at_ms {
                self.cron.wake_at_ms = Some(self.cron.wake_at_ms.map_or(at, |w| w.min(at)));
            }
            match &step.note {
                Some((reason, message)) => {
                    if self.cron.notes.get(key) != Some(reason) {
                        self.cron.notes.insert(key.clone(), reason.clone());
                        super::rollback::note(
                            outputs,
                            Note {
                                warning: true,
                                reason: reason.clone(),
                                object_kind: "CronJob".into(),
                                namespace: key.namespace.to_string(),
                                object_name: key.name.to_string(),
                                message: message.clone(),
                            },
                        );
                    }
                }
                None => {
                    self.cron.notes.remove(key);
                }
            }
            for name in &step.delete {
                gone.push(ObjectKey::new(Kind::Job, &key.namespace, name));
            }
            if let Some((name, scheduled)) = step.create {
                match cron::job_object(&cronjob, scheduled) {
                    Ok(job) => made.push((key.clone(), job, name)),
                    Err(e) => tracing::error!("{key}: cannot make its Job {name}: {e}"),
                }
            }
        }
        // A deleted CronJob's Jobs go with it.
        for (key, (_, object)) in objects.iter() {
            if key.kind == Kind::Job
                && let Some(cronjob) = object.metadata().annotations.get(CRONJOB_ANNOTATION)
                && !crons.contains(&(key.namespace.to_string(), cronjob.clone()))
            {
                gone.push(key.clone());
            }
        }
        let mut changed = false;
        for (cronjob, job, name) in made {
            let k = object_key(&job.key());
            if self
                .replica
                .create(&k, &job, &format!("cronjob {}", cronjob.name), now)
            {
                tracing::info!("{cronjob}: made Job {name}");
                super::rollback::note(
                    outputs,
                    Note {
                        warning: false,
                        reason: "SuccessfulCreate".into(),
                        object_kind: "CronJob".into(),
                        namespace: cronjob.namespace.to_string(),
                        object_name: cronjob.name.to_string(),
                        message: format!("Created job {name}"),
                    },
                );
                if let Some(digest) = self.replica.digest(&k) {
                    self.advertise(&k, &digest).await;
                }
                changed = true;
            }
        }
        for key in gone {
            let k = object_key(&key);
            if self.replica.expire(&k, now) {
                tracing::info!(
                    "{key}: deleted (its CronJob's history limit, a Replace, or the CronJob is gone)"
                );
                if let Some(digest) = self.replica.digest(&k) {
                    self.advertise(&k, &digest).await;
                }
                changed = true;
            }
        }
        if changed {
            self.replica_changed();
        }
    }
}

impl ClusterService {
    /// Cut off from the majority: fires the node-local CronJobs whose newest run this node ran
    /// (see the module's docs), and runs the Jobs it made that way. True when the local
    /// entries changed.
    pub(super) async fn run_local_cron(
        &mut self,
        table: &Arc<Vec<crate::cluster::keys::AssignedPod>>,
        outputs: &ClusterOutputs,
        now: u64,
    ) -> bool {
        let objects = self.objects.clone();
        let tombstones: Vec<ObjectKey> = self
            .replica
            .tombstones()
            .filter_map(parse_object_key)
            .filter(|k| k.kind == Kind::Job)
            .collect();
        let me = self.me.clone();
        let mut made = false;
        for (key, (_, object)) in objects.iter() {
            let Object::CronJob(_) = object.get() else {
                continue;
            };
            if object
                .metadata()
                .annotations
                .get(NODE_LOCAL_ANNOTATION)
                .map(String::as_str)
                != Some("true")
            {
                continue;
            }
            let Ok(cronjob) = Valid::<CronJob>::try_from(object.clone()) else {
                continue;
            };
            let children = children(&cronjob, &objects, &tombstones, table, now);
            let Some(newest) = children
                .iter()
                .filter(|c| c.live)
                .max_by_key(|c| c.scheduled_ms)
            else {
                continue; // never ran: no node ran it last
            };
            let ran_here = table
                .iter()
                .chain(self.cron.local.iter())
                .any(|p| p.owner.kind == Kind::Job && p.owner.name == newest.name && p.node == me);
            if !ran_here {
                continue;
            }
            let created_ms = self
                .replica
                .digest(&object_key(key))
                .map_or(now, |d| d.stamp.wall_ms);
            let zone = cron::zone(&cronjob);
            let step = cron::step(
                &cronjob,
                &children,
                created_ms,
                zone.as_ref().map_err(String::as_str),
                now,
            );
            let Some((name, scheduled)) = step.create else {
                continue;
            };
            let Ok(job) = cron::job_object(&cronjob, scheduled) else {
                continue;
            };
            let job_key = job.key();
            let k = object_key(&job_key);
            if self
                .replica
                .create(&k, &job, &format!("cronjob {} (node-local)", key.name), now)
            {
                tracing::warn!("{key}: cut off from the majority: made Job {name} on this node");
                super::rollback::note(
                    outputs,
                    Note {
                        warning: true,
                        reason: "NodeLocalRun".into(),
                        object_kind: "CronJob".into(),
                        namespace: key.namespace.to_string(),
                        object_name: key.name.to_string(),
                        message: format!(
                            "cut off from the majority: {me} made job {name} and runs it"
                        ),
                    },
                );
                if let Some(digest) = self.replica.digest(&k) {
                    self.advertise(&k, &digest).await;
                }
                self.cron.local_jobs.insert(job_key);
                made = true;
            }
        }
        if made {
            self.replica_changed();
        }
        // The Jobs made here, run here with the job step (no other node counts).
        let mut local = Vec::new();
        for job_key in &self.cron.local_jobs {
            let Some((_, object)) = objects.get(job_key) else {
                continue;
            };
            let Ok(job) = Valid::<Job>::try_from(object.clone()) else {
                continue;
            };
            let mine =
                |owner: &crate::pod::Owner| owner.kind == Kind::Job && owner.name == job_key.name;
            let entries: Vec<&crate::cluster::keys::AssignedPod> = self
                .cron
                .local
                .iter()
                .filter(|p| p.namespace == job_key.namespace && mine(&p.owner))
                .collect();
            let seen: BTreeMap<String, crate::jobs::PodSeen> = self
                .pods
                .iter()
                .filter(|((ns, _), (node, r))| {
                    *ns == job_key.namespace && *node == me && r.owner.as_ref().is_some_and(mine)
                })
                .map(|((_, pod), (node, r))| (pod.clone(), crate::jobs::pod_seen(node, r)))
                .collect();
            let lost = |node: &str| node != me;
            let step = crate::jobs::step(
                &job,
                crate::jobs::Inputs {
                    entries,
                    pods: &seen,
                    lost: &lost,
                    taken: &|_| false,
                    now,
                },
            );
            local.extend(step.ended);
            for attempt in step.active {
                local.push(crate::cluster::keys::AssignedPod {
                    namespace: job_key.namespace.to_string(),
                    name: attempt.name,
                    owner: crate::pod::Owner {
                        kind: Kind::Job,
                        name: job_key.name.to_string(),
                    },
                    template_hash: job.pod_template_hash(),
                    node: me.clone(),
                    job: Some(attempt.mark),
                });
            }
        }
        let changed = local != self.cron.local;
        self.cron.local = local;
        changed
    }
}

/// The CronJob's Jobs: live ones it made (with whether they finished, from the table's marks)
/// and deleted ones named like its runs.
fn children(
    cronjob: &Valid<CronJob>,
    objects: &crate::desired::Objects,
    tombstones: &[ObjectKey],
    table: &[crate::cluster::keys::AssignedPod],
    now: u64,
) -> Vec<Child> {
    let (namespace, name) = (&cronjob.metadata.namespace, &cronjob.metadata.name);
    let mut out = Vec::new();
    for (key, (_, object)) in objects.range(
        ObjectKey::new(Kind::Job, namespace, "")
            ..ObjectKey::new(Kind::Job, &(namespace.to_string() + "\0"), ""),
    ) {
        if key.kind != Kind::Job
            || object.metadata().annotations.get(CRONJOB_ANNOTATION) != Some(name)
        {
            continue;
        }
        let Some(scheduled_ms) = cron::scheduled_of(name, &key.name) else {
            continue;
        };
        let Ok(job) = Valid::<Job>::try_from(object.clone()) else {
            continue;
        };
        let entries: Vec<&crate::cluster::keys::AssignedPod> = table
            .iter()
            .filter(|p| {
                p.namespace == *namespace && p.owner.kind == Kind::Job && p.owner.name == key.name
            })
            .collect();
        let status = crate::jobs::status_of(&job, &entries, now);
        out.push(Child {
            name: key.name.to_string(),
            scheduled_ms,
            live: true,
            outcome: status.finished.map(|f| f.complete),
        });
    }
    for key in tombstones {
        if key.namespace == *namespace
            && let Some(scheduled_ms) = cron::scheduled_of(name, &key.name)
        {
            out.push(Child {
                name: key.name.to_string(),
                scheduled_ms,
                live: false,
                outcome: None,
            });
        }
    }
    out
}

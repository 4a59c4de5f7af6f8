//! `get` and `describe` of pods, desired objects and events, rendered as Kubernetes-shaped JSON
//! from the loop's snapshot and the cluster state (Secrets shown with their values redacted); a
//! pod another node runs is described by that node.

use super::{Shared, err, ok};
use crate::agent::core::Snapshot;
use crate::agent::pending;
use crate::agent::status::{placed, summaries};
use crate::api::ResourceKind;
use crate::api::server::Reply;
use crate::cluster::ClusterState;
use crate::pod::{PodRecord, now_millis, rfc3339};
use crate::render::PodSummary;
use crate::render::{self, RenderContext};
use serde_json::{Value, json};
use skiff_manifests::{Kind, Object, ObjectKey, Valid};

/// `get KIND [NAME]` of everything but nodes: this node's pods, other nodes' reported pods and
/// the bare Pods no node runs; events; desired objects.
pub(super) fn get(
    snap: &Snapshot,
    cluster: &ClusterState,
    kind: ResourceKind,
    name: Option<&str>,
    namespace: Option<&str>,
    all: bool,
) -> Reply {
    let mut items = super::Items::new(name.is_some() && kind != ResourceKind::Events);
    match kind {
        ResourceKind::Pods => {
            for p in &snap.pods {
                if ns_matches(&p.namespace, namespace, all) && name.is_none_or(|n| n == p.name) {
                    items.push(render_pod(snap, p));
                }
            }
            for ((ns, pod), (node, report)) in cluster.pods.iter() {
                if *node != snap.node_name
                    && ns_matches(ns, namespace, all)
                    && name.is_none_or(|n| n == pod)
                {
                    items.push(render::reported_pod(ns, pod, node, report));
                }
            }
            // Bare Pods no node runs yet: Pending, with the scheduling reason.
            for pod in pending::unplaced(snap, cluster) {
                if ns_matches(&pod.key.namespace, namespace, all)
                    && name.is_none_or(|n| n == pod.key.name)
                {
                    let first_seen = snap.first_seen.get(pod.key).copied();
                    items.push(pending::pod_json(&pod, first_seen));
                }
            }
        }
        ResourceKind::Events => {
            for (i, e) in snap.events.iter().enumerate() {
                let ns_ok = e.namespace.is_empty() || ns_matches(&e.namespace, namespace, all);
                if ns_ok && name.is_none_or(|n| n == e.object_name) {
                    items.push(e.to_json(i));
                }
            }
        }
        ResourceKind::Nodes => {}
        ResourceKind::Services | ResourceKind::Endpoints => {
            for view in cluster.services.values() {
                if !ns_matches(view.namespace(), namespace, all)
                    || name.is_some_and(|n| n != view.name())
                {
                    continue;
                }
                let key = ObjectKey::new(Kind::Service, view.namespace(), view.name());
                let Some((_, object)) = snap.objects.get(&key) else {
                    continue;
                };
                let created = snap.first_seen.get(&key).copied();
                items.push(if kind == ResourceKind::Services {
                    render::service(object, view, created)
                } else {
                    render::endpoints(view, created)
                });
            }
        }
        other => {
            let want = match other {
                ResourceKind::Deployments => Kind::Deployment,
                ResourceKind::DaemonSets => Kind::DaemonSet,
                ResourceKind::Namespaces => Kind::Namespace,
                ResourceKind::ConfigMaps => Kind::ConfigMap,
                ResourceKind::Jobs => Kind::Job,
                ResourceKind::CronJobs => Kind::CronJob,
                _ => Kind::Secret,
            };
            let pods = summaries(snap, cluster);
            for (key, (_, object)) in snap.objects.iter() {
                if key.kind != want || name.is_some_and(|n| n != key.name) {
                    continue;
                }
                if want != Kind::Namespace && !ns_matches(&key.namespace, namespace, all) {
                    continue;
                }
                let mut v = object_json(snap, key, object);
                if let Object::Deployment(d) = object.get() {
                    let min_available = match &d.spec.strategy {
                        skiff_manifests::DeploymentStrategy::RollingUpdate { rolling_update } => d
                            .spec
                            .replicas
                            .saturating_sub(rolling_update.resolve(d.spec.replicas).1),
                        skiff_manifests::DeploymentStrategy::Recreate => d.spec.replicas,
                    };
                    let rollout = cluster
                        .rollouts
                        .get(&(key.namespace.to_string(), key.name.to_string()))
                        .map(|r| (r, min_available));
                    v = render::deployment(
                        &v,
                        &key.name,
                        &key.namespace,
                        &pods,
                        &d.pod_template_hash(),
                        rollout,
                    );
                    if let Some(t) = snap.first_seen.get(key) {
                        v["metadata"]["creationTimestamp"] = json!(rfc3339(*t));
                    }
                }
                if let Object::Job(_) = object.get() {
                    v["status"] = job_status(cluster, object);
                }
                if let Object::CronJob(_) = object.get() {
                    v["status"] = cron_job_status(snap, cluster, key);
                }
                if let Object::DaemonSet(d) = object.get() {
                    let hash = d.pod_template_hash();
                    let owned: Vec<&PodSummary<'_>> =
                        pods.iter().filter(|p| p.belongs_to(key)).collect();
                    let desired = placed(cluster, key);
                    v["status"] = json!({
                        "desiredNumberScheduled": desired,
                        "currentNumberScheduled": owned.len(),
                        "updatedNumberScheduled":
                            owned.iter().filter(|p| p.template_hash == hash).count(),
                        "numberReady": owned.iter().filter(|p| p.ready).count(),
                    });
                    if let Some(t) = snap.first_seen.get(key) {
                        v["metadata"]["creationTimestamp"] = json!(rfc3339(*t));
                    }
                }
                items.push(v);
            }
        }
    }
    if let Some(n) = name
        && items.is_empty()
        && kind != ResourceKind::Events
    {
        return err(format!("{kind:?} {n:?} not found").to_lowercase());
    }
    items.reply()
}

/// `describe KIND NAME` of everything but nodes: a bare Pod no node runs (Pending, with the
/// reason), a pod another node runs (asked of that node), or what this node holds.
pub(super) async fn describe(
    shared: &Shared,
    snap: &Snapshot,
    kind: ResourceKind,
    name: &str,
    namespace: Option<&str>,
) -> Reply {
    let ns = namespace.unwrap_or(skiff_manifests::DEFAULT_NAMESPACE);
    if kind == ResourceKind::Pods
        && let Some(v) = pending::describe(snap, &shared.cluster.borrow().clone(), ns, name)
    {
        return ok(v);
    }
    if kind == ResourceKind::Services {
        return describe_service(snap, &shared.cluster.borrow().clone(), ns, name);
    }
    if kind == ResourceKind::Jobs {
        return describe_job(snap, &shared.cluster.borrow().clone(), ns, name);
    }
    if kind == ResourceKind::CronJobs {
        return describe_cron_job(snap, &shared.cluster.borrow().clone(), ns, name);
    }
    match &shared.remote {
        // A pod this node does not run: ask the node that reports it.
        Some(remote) if kind == ResourceKind::Pods && find_pod(snap, name, Some(ns)).is_none() => {
            remote.describe_pod(ns, name).await
        }
        _ => describe_here(snap, kind, name, namespace),
    }
}

/// `describe service`: the Service with its address, ports, endpoints and events.
fn describe_service(snap: &Snapshot, cluster: &ClusterState, ns: &str, name: &str) -> Reply {
    let key = ObjectKey::new(Kind::Service, ns, name);
    let (Some(view), Some((_, object))) = (
        cluster.services.get(format!("{ns}/{name}").as_str()),
        snap.objects.get(&key),
    ) else {
        return err(format!("service {name:?} not found"));
    };
    let created = snap.first_seen.get(&key).copied();
    let mut v = render::service(object, view, created);
    v["endpoints"] = render::endpoints(view, created)["subsets"].clone();
    let events: Vec<Value> = snap
        .events
        .iter()
        .filter(|e| e.object_kind == "Service" && e.object_name == name && e.namespace == ns)
        .map(|e| {
            json!(format!(
                "{} {}: {}",
                rfc3339(e.last_seen),
                e.reason,
                e.message
            ))
        })
        .collect();
    v["events"] = json!(events);
    ok(v)
}

/// A Job's `status` in Kubernetes' shape, from its marks in the leader's table.
fn job_status(cluster: &ClusterState, object: &Valid<Object>) -> Value {
    let Ok(job) = Valid::<skiff_manifests::Job>::try_from(object.clone()) else {
        return json!({});
    };
    let entries: Vec<&crate::scheduler::Placement> = cluster
        .table
        .iter()
        .filter(|p| {
            p.namespace == job.metadata.namespace
                && p.owner.kind == Kind::Job
                && p.owner.name == job.metadata.name
        })
        .collect();
    let status = crate::jobs::status_of(&job, &entries, now_millis());
    let mut v = json!({
        "active": status.active,
        "succeeded": status.succeeded,
        "failed": status.failed,
    });
    if let Some(start) = status.start_ms {
        v["startTime"] = json!(rfc3339(start));
    }
    if !status.completed_indexes.is_empty() {
        v["completedIndexes"] = json!(status.completed_indexes);
    }
    if job.spec.suspend && status.finished.is_none() {
        v["conditions"] = json!([{"type": "Suspended", "status": "True", "reason": "JobSuspended",
            "message": "Job suspended"}]);
    }
    if let Some(f) = &status.finished {
        let kind = if f.complete { "Complete" } else { "Failed" };
        v["conditions"] = json!([{
            "type": kind,
            "status": "True",
            "reason": f.reason,
            "message": f.message,
            "lastTransitionTime": rfc3339(f.at_ms),
        }]);
        if f.complete {
            v["completionTime"] = json!(rfc3339(f.at_ms));
        }
    }
    v
}

/// A CronJob's `status` (active Jobs, last scheduled time) from its Jobs, which this node
/// holds like every object, and their marks in the leader's table.
fn cron_job_status(snap: &Snapshot, cluster: &ClusterState, key: &ObjectKey) -> Value {
    use crate::jobs::cron::{CRONJOB_ANNOTATION, scheduled_of};
    let mut active = Vec::new();
    let mut last: Option<u64> = None;
    for (job_key, (_, object)) in snap.objects.iter() {
        if job_key.kind != Kind::Job
            || job_key.namespace != key.namespace
            || object
                .metadata()
                .annotations
                .get(CRONJOB_ANNOTATION)
                .map(String::as_str)
                != Some(key.name.as_str())
        {
            continue;
        }
        let Some(at) = scheduled_of(&key.name, &job_key.name) else {
            continue;
        };
        last = Some(last.map_or(at, |l| l.max(at)));
        if job_status(cluster, object)
            .pointer("/conditions/0/type")
            .is_none_or(|t| t == "Suspended")
        {
            active
                .push(json!({"kind": "Job", "namespace": job_key.namespace, "name": job_key.name}));
        }
    }
    let mut v = json!({ "active": active });
    if let Some(at) = last {
        v["lastScheduleTime"] = json!(rfc3339(at));
    }
    v
}

/// `describe cronjob`: the CronJob with its status, its Jobs (newest first) and its events.
fn describe_cron_job(snap: &Snapshot, cluster: &ClusterState, ns: &str, name: &str) -> Reply {
    use crate::jobs::cron::{CRONJOB_ANNOTATION, scheduled_of};
    let key = ObjectKey::new(Kind::CronJob, ns, name);
    let Some((_, object)) = snap.objects.get(&key) else {
        return err(format!("cronjob {name:?} not found"));
    };
    let mut v = object_json(snap, &key, object);
    v["status"] = cron_job_status(snap, cluster, &key);
    let mut jobs: Vec<(u64, Value)> = snap
        .objects
        .iter()
        .filter(|(k, (_, o))| {
            k.kind == Kind::Job
                && k.namespace == ns
                && o.metadata()
                    .annotations
                    .get(CRONJOB_ANNOTATION)
                    .map(String::as_str)
                    == Some(name)
        })
        .filter_map(|(k, (_, o))| {
            let at = scheduled_of(name, &k.name)?;
            let status = job_status(cluster, o);
            let state = status
                .pointer("/conditions/0/type")
                .and_then(Value::as_str)
                .unwrap_or("Active")
                .to_string();
            Some((
                at,
                json!({"name": k.name, "scheduled": rfc3339(at), "status": state}),
            ))
        })
        .collect();
    jobs.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    v["jobs"] = json!(jobs.into_iter().map(|(_, j)| j).collect::<Vec<_>>());
    let events: Vec<Value> = snap
        .events
        .iter()
        .filter(|e| e.namespace == ns && e.object_kind == "CronJob" && e.object_name == name)
        .map(|e| {
            json!(format!(
                "{} {}: {}",
                rfc3339(e.last_seen),
                e.reason,
                e.message
            ))
        })
        .collect();
    v["events"] = json!(events);
    ok(v)
}

/// `describe job`: the Job with its status, its pods (node, phase) and its events.
fn describe_job(snap: &Snapshot, cluster: &ClusterState, ns: &str, name: &str) -> Reply {
    let key = ObjectKey::new(Kind::Job, ns, name);
    let Some((_, object)) = snap.objects.get(&key) else {
        return err(format!("job {name:?} not found"));
    };
    let mut v = object_json(snap, &key, object);
    v["status"] = job_status(cluster, object);
    let pods: Vec<Value> = cluster
        .table
        .iter()
        .filter(|p| p.namespace == ns && p.owner.kind == Kind::Job && p.owner.name == name)
        .map(|p| {
            let phase = cluster
                .pods
                .get(&(p.namespace.clone(), p.name.clone()))
                .and_then(|(_, r)| r.status.get("phase").and_then(Value::as_str))
                .unwrap_or("Pending")
                .to_string();
            let mut pod = json!({"name": p.name, "node": p.node, "phase": phase});
            if let Some(mark) = &p.job {
                pod["attempt"] = json!(mark.attempt);
                if let Some(i) = mark.index {
                    pod["index"] = json!(i);
                }
                if let Some(end) = &mark.end
                    && !end.succeeded
                {
                    pod["phase"] = json!("Failed");
                    pod["reason"] = json!(end.reason);
                }
            }
            pod
        })
        .collect();
    v["pods"] = json!(pods);
    let events: Vec<Value> = snap
        .events
        .iter()
        .filter(|e| e.namespace == ns && (e.object_kind == "Job" && e.object_name == name))
        .map(|e| {
            json!(format!(
                "{} {}: {}",
                rfc3339(e.last_seen),
                e.reason,
                e.message
            ))
        })
        .collect();
    v["events"] = json!(events);
    ok(v)
}

/// `describe` of what this node holds (the local API, and other nodes through rpc).
pub(crate) fn describe_here(
    snap: &Snapshot,
    kind: ResourceKind,
    name: &str,
    namespace: Option<&str>,
) -> Reply {
    match kind {
        ResourceKind::Pods => {
            let Some(p) = find_pod(snap, name, namespace) else {
                return err(format!("pod {name:?} not found"));
            };
            let mut v = render_pod(snap, p);
            let events: Vec<Value> = snap
                .events
                .iter()
                .filter(|e| {
                    e.object_kind == "Pod" && e.object_name == p.name && e.namespace == p.namespace
                })
                .map(|e| {
                    json!(format!(
                        "{} {} {} (x{}): {}",
                        rfc3339(e.last_seen),
                        if e.warning { "Warning" } else { "Normal" },
                        e.reason,
                        e.count,
                        e.message
                    ))
                })
                .collect();
            v["events"] = json!(events);
            ok(v)
        }
        _ => err(format!("cannot describe {kind:?} {name:?}").to_lowercase()),
    }
}

/// The pod `namespace/name` (default namespace if `None`) this node runs, preferring the live
/// one over one being deleted under the same name.
pub(super) fn find_pod<'a>(
    snap: &'a Snapshot,
    name: &str,
    namespace: Option<&str>,
) -> Option<&'a PodRecord> {
    let ns = namespace.unwrap_or(skiff_manifests::DEFAULT_NAMESPACE);
    snap.pods
        .iter()
        .filter(|p| p.name == name && p.namespace == ns)
        .min_by_key(|p| p.deleting_since.is_some())
        .map(|p| &**p)
}

fn render_pod(snap: &Snapshot, p: &PodRecord) -> Value {
    let now = now_millis();
    let image = |i: &str| snap.image_state(i);
    let ctx = RenderContext {
        node_name: &snap.node_name,
        now,
        image: &image,
    };
    render::pod(p, p.status.network.as_ref().map(|n| n.ip.as_str()), &ctx)
}

fn ns_matches(item_ns: &str, namespace: Option<&str>, all: bool) -> bool {
    all || item_ns == namespace.unwrap_or(skiff_manifests::DEFAULT_NAMESPACE)
}

fn object_json(snap: &Snapshot, key: &ObjectKey, object: &Valid<Object>) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or_else(|_| json!({}));
    if let Some(t) = snap.first_seen.get(key) {
        v["metadata"]["creationTimestamp"] = json!(rfc3339(*t));
    }
    if key.kind == Kind::Secret
        && let Some(data) = v.get_mut("data").and_then(Value::as_object_mut)
    {
        // `get secrets` shows keys, never values.
        for value in data.values_mut() {
            *value = json!("<redacted>");
        }
    }
    v
}

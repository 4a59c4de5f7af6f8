//! Kubernetes-shaped JSON for what the CLI shows: pods with their status, deployments with
//! replica counts. Container states follow kubelet's reasons (ContainerCreating,
//! CrashLoopBackOff, ImagePullBackOff, ErrImagePull, OOMKilled, Completed, ...).

use crate::cluster::keys::PodReport;
use crate::pod::{
    ContainerPlanSpec, ContainerStatus, Millis, Phase, PodRecord, PullPolicy, rfc3339,
};
use crate::reconciler::plan::ImageState;
use serde_json::{Map, Value, json};
use skiff_manifests::{Kind, ObjectKey};

/// What rendering needs to know besides the pod itself.
pub struct RenderContext<'a> {
    pub node_name: &'a str,
    pub now: Millis,
    pub image: &'a dyn Fn(&str) -> (ImageState, u32),
}

fn terminated(c: &ContainerStatus) -> Option<Value> {
    c.last.as_ref().map(|t| {
        let mut v = json!({
            "exitCode": t.exit_code,
            "reason": t.reason,
            "startedAt": rfc3339(t.started_at),
            "finishedAt": rfc3339(t.finished_at),
        });
        if let Some(s) = t.signal {
            v["signal"] = json!(s);
        }
        json!({ "terminated": v })
    })
}

fn waiting(reason: &str, message: &str) -> Value {
    let mut w = json!({ "reason": reason });
    if !message.is_empty() {
        w["message"] = json!(message);
    }
    json!({ "waiting": w })
}

fn container_status(
    spec: &ContainerPlanSpec,
    c: &ContainerStatus,
    blocked_by_init: bool,
    ctx: &RenderContext<'_>,
) -> Value {
    let state = if let Some(i) = &c.current {
        json!({ "running": { "startedAt": rfc3339(i.started_at) } })
    } else if c.done {
        terminated(c).unwrap_or_else(|| waiting("ContainerCreating", ""))
    } else if let Some(w) = &c.waiting {
        waiting(&w.reason, &w.message)
    } else if c.failures > 0 && c.next_start_at.is_some_and(|t| t > ctx.now) {
        let secs = c.next_start_at.unwrap_or(ctx.now).saturating_sub(ctx.now) / 1000;
        waiting(
            "CrashLoopBackOff",
            &format!("back-off {secs}s restarting failed container={}", c.name),
        )
    } else if blocked_by_init {
        waiting("PodInitializing", "")
    } else {
        match (ctx.image)(&spec.image) {
            (ImageState::Failed { message, .. }, failures) if failures > 1 => waiting(
                "ImagePullBackOff",
                &format!("back-off pulling image {:?}: {message}", spec.image),
            ),
            (ImageState::Failed { message, .. }, _) => waiting("ErrImagePull", &message),
            (ImageState::Missing, _) if spec.pull_policy == PullPolicy::Never => waiting(
                "ErrImageNeverPull",
                &format!(
                    "image {:?} is not present and imagePullPolicy is Never",
                    spec.image
                ),
            ),
            _ => waiting("ContainerCreating", ""),
        }
    };
    let mut v = json!({
        "name": c.name,
        "image": spec.image,
        "ready": container_ready(c),
        "started": c.current.as_ref().is_some_and(|i| i.probes.started()),
        "restartCount": c.restart_count,
        "state": state,
    });
    if (c.current.is_some() || !c.done)
        && let Some(last) = terminated(c)
    {
        v["lastState"] = last;
    }
    v
}

/// A pod as `kubectl get pod -o json` would show it.
pub fn pod(p: &PodRecord, ip: Option<&str>, ctx: &RenderContext<'_>) -> Value {
    let mut v = serde_json::to_value(&p.manifest).unwrap_or_else(|_| json!({}));
    let meta = v
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut meta: Map<String, Value> = meta;
    meta.insert("uid".into(), json!(p.uid));
    meta.insert("creationTimestamp".into(), json!(rfc3339(p.created_at)));
    if let Some(o) = &p.owner {
        meta.insert(
            "ownerReferences".into(),
            json!([{ "apiVersion": o.kind.api_version(), "kind": o.kind, "name": o.name, "controller": true }]),
        );
    }
    if let Some(d) = p.deleting_since {
        meta.insert("deletionTimestamp".into(), json!(rfc3339(d)));
    }
    v["metadata"] = Value::Object(meta);
    v["spec"]["nodeName"] = json!(ctx.node_name);
    let init_pending = !(0..p.status.init_containers.len()).all(|i| p.init_finished(i));
    // An init container waits for every earlier one to finish (kubelet: PodInitializing).
    let init: Vec<Value> = p
        .plan
        .init_containers
        .iter()
        .zip(&p.status.init_containers)
        .enumerate()
        .map(|(i, (s, c))| {
            let blocked = !(0..i).all(|e| p.init_finished(e));
            container_status(s, c, blocked, ctx)
        })
        .collect();
    let containers: Vec<Value> = p
        .plan
        .containers
        .iter()
        .zip(&p.status.containers)
        .map(|(s, c)| container_status(s, c, init_pending, ctx))
        .collect();
    let phase = p.phase();
    let ready = phase == Phase::Running && p.status.containers.iter().all(container_ready);
    let mut status = json!({
        "phase": format!("{phase:?}"),
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "Initialized", "status": if init_pending { "False" } else { "True" } },
            { "type": "ContainersReady", "status": if ready { "True" } else { "False" } },
            { "type": "Ready", "status": if ready { "True" } else { "False" } },
        ],
        "containerStatuses": containers,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    if let Some(t) = p.status.started_at {
        status["startTime"] = json!(rfc3339(t));
    }
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    if let Some(w) = &p.status.sandbox_error {
        status["reason"] = json!(w.reason);
        status["message"] = json!(w.message);
    }
    if let Some(f) = &p.status.failure {
        status["reason"] = json!(f.reason);
        status["message"] = json!(f.message);
    }
    v["status"] = status;
    v
}

/// Whether a rendered pod counts as ready (all containers ready).
pub fn pod_ready(p: &PodRecord) -> bool {
    p.deleting_since.is_none()
        && p.phase() == Phase::Running
        && p.status.containers.iter().all(container_ready)
}

/// A container is ready when it runs, is not being stopped for a failed probe, and its
/// startup and readiness probes (if any) pass.
pub fn container_ready(c: &crate::pod::ContainerStatus) -> bool {
    c.current
        .as_ref()
        .is_some_and(|i| i.stop_reason.is_none() && i.probes.ready())
}

/// What replica counts need to know about one pod, wherever it runs.
pub struct PodSummary<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub owner: Option<&'a crate::pod::Owner>,
    pub template_hash: &'a str,
    pub running: bool,
    pub ready: bool,
    pub created_ms: Millis,
    pub deleting: bool,
}

impl<'a> PodSummary<'a> {
    pub fn of_record(p: &'a PodRecord) -> PodSummary<'a> {
        PodSummary {
            namespace: &p.namespace,
            name: &p.name,
            owner: p.owner.as_ref(),
            template_hash: &p.spec_hash,
            running: p.status.any_running(),
            ready: pod_ready(p),
            created_ms: p.created_at,
            deleting: p.deleting_since.is_some(),
        }
    }

    pub fn of_report(namespace: &'a str, name: &'a str, r: &'a PodReport) -> PodSummary<'a> {
        PodSummary {
            namespace,
            name,
            owner: r.owner.as_ref(),
            template_hash: &r.template_hash,
            running: r.running,
            ready: r.ready && !r.deleting,
            created_ms: r.created_ms,
            deleting: r.deleting,
        }
    }

    /// Whether this pod belongs to the workload `key` (a bare Pod: itself).
    pub fn belongs_to(&self, key: &ObjectKey) -> bool {
        self.namespace == key.namespace
            && !self.deleting
            && match self.owner {
                Some(o) => o.kind == key.kind && o.name == key.name,
                None => key.kind == Kind::Pod && self.name == key.name,
            }
    }
}

/// A pod another node runs, Kubernetes-shaped from its report.
pub fn reported_pod(namespace: &str, name: &str, node: &str, r: &PodReport) -> Value {
    let mut meta = json!({
        "name": name,
        "namespace": namespace,
        "uid": r.uid,
        "creationTimestamp": rfc3339(r.created_ms),
    });
    if !r.labels.is_empty() {
        meta["labels"] = json!(r.labels);
    }
    if let Some(o) = &r.owner {
        meta["ownerReferences"] = json!([{ "apiVersion": o.kind.api_version(), "kind": o.kind, "name": o.name, "controller": true }]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": { "nodeName": node },
        "status": r.status,
    })
}

/// A Deployment with replica counts from the pods of the whole cluster.
pub fn deployment(
    object: &Value,
    name: &str,
    namespace: &str,
    pods: &[PodSummary<'_>],
    template_hash: &str,
    rollout: Option<(&crate::cluster::rollouts::RolloutView, u32)>,
) -> Value {
    let owned: Vec<&PodSummary<'_>> = pods
        .iter()
        .filter(|p| p.belongs_to(&ObjectKey::new(Kind::Deployment, namespace, name)))
        .collect();
    let updated = owned
        .iter()
        .filter(|p| p.template_hash == template_hash)
        .count();
    let ready = owned.iter().filter(|p| p.ready).count();
    let created = owned.iter().map(|p| p.created_ms).min();
    let mut v = object.clone();
    if let Some(t) = created {
        v["metadata"]["creationTimestamp"] = json!(rfc3339(t));
    }
    v["status"] = json!({
        "replicas": owned.len(),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
    });
    // With the rollout this node follows: available as minReadySeconds counts it, and
    // Kubernetes' two conditions. `min_available`: replicas - maxUnavailable.
    if let Some((r, min_available)) = rollout {
        use crate::cluster::rollouts::Progress;
        v["status"]["availableReplicas"] = json!(r.available);
        let (status, reason, message) = match r.progress {
            Progress::Complete => ("True", "NewReplicaSetAvailable", "the rollout is complete"),
            Progress::Progressing => ("True", "ReplicaSetUpdated", "the rollout is progressing"),
            Progress::DeadlineExceeded => (
                "False",
                "ProgressDeadlineExceeded",
                "the rollout made no progress within progressDeadlineSeconds",
            ),
            Progress::Paused => ("Unknown", "DeploymentPaused", "Deployment is paused"),
        };
        let up = r.available >= min_available;
        v["status"]["conditions"] = json!([
            {
                "type": "Available",
                "status": if up { "True" } else { "False" },
                "reason": if up { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            },
            {
                "type": "Progressing",
                "status": status,
                "reason": reason,
                "message": format!("deployment {name:?}: {message}"),
                "lastUpdateTime": rfc3339(r.since_ms),
            },
        ]);
    }
    v
}

/// A Service as `get services -o json` shows it: the object with the address and node ports the
/// leader's book gave it (a refusal is a condition), and its load balancer status empty.
pub fn service(
    object: &skiff_manifests::Valid<skiff_manifests::Object>,
    view: &crate::services::ServiceView,
    created: Option<Millis>,
) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or_else(|_| json!({}));
    if let Some(t) = created {
        v["metadata"]["creationTimestamp"] = json!(rfc3339(t));
    }
    let alloc = &view.allocation;
    let spec = &view.service.spec;
    if spec.type_ != skiff_manifests::ServiceType::ExternalName && !spec.is_headless() {
        let ip = alloc
            .cluster_ip
            .map_or_else(|| "<pending>".to_string(), |ip| ip.to_string());
        v["spec"]["clusterIP"] = json!(ip);
        v["spec"]["clusterIPs"] = json!([ip]);
    }
    if let Some(ports) = v["spec"]["ports"].as_array_mut() {
        for (port, p) in ports.iter_mut().zip(&spec.ports) {
            let key = crate::services::alloc::port_key(&p.name, p.protocol.as_str());
            if let Some(np) = alloc.node_ports.get(&key) {
                port["nodePort"] = json!(np);
            }
        }
    }
    let mut status = json!({ "loadBalancer": {} });
    if !alloc.refused.is_empty() {
        status["conditions"] = json!([{
            "type": "AddressAllocated",
            "status": "False",
            "reason": "Refused",
            "message": alloc.refused.join("; "),
        }]);
    }
    v["status"] = status;
    v
}

/// A Service's endpoints in the shape of a Kubernetes `Endpoints` object (one subset).
pub fn endpoints(view: &crate::services::ServiceView, created: Option<Millis>) -> Value {
    let address = |e: &crate::services::Endpoint| {
        json!({
            "ip": e.ip().to_string(),
            "nodeName": e.node(),
            "targetRef": { "kind": "Pod", "namespace": view.namespace(), "name": e.name() },
        })
    };
    // With publishNotReadyAddresses every endpoint is served, so it is listed as ready (as
    // Kubernetes' Endpoints controller lists it).
    let (ready, not_ready): (Vec<_>, Vec<_>) = view
        .endpoints
        .iter()
        .partition(|e| e.serving(&view.service));
    let (ready, not_ready): (Vec<Value>, Vec<Value>) = (
        ready.into_iter().map(address).collect(),
        not_ready.into_iter().map(address).collect(),
    );
    // The pod port of the first endpoint for each Service port (pods may differ by name).
    let ports: Vec<Value> = view
        .service
        .spec
        .ports
        .iter()
        .filter_map(|p| {
            let port = view.endpoints.iter().find_map(|e| e.port(p))?;
            let mut out = json!({ "port": port, "protocol": p.protocol.as_str() });
            if !p.name.is_empty() {
                out["name"] = json!(p.name);
            }
            Some(out)
        })
        .collect();
    let mut subsets = Vec::new();
    if !ready.is_empty() || !not_ready.is_empty() {
        let mut subset = json!({ "ports": ports });
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        subsets.push(subset);
    }
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": { "name": view.name(), "namespace": view.namespace() },
        "subsets": subsets,
    });
    if let Some(t) = created {
        v["metadata"]["creationTimestamp"] = json!(rfc3339(t));
    }
    v
}

/// kubectl's spelling: `deployment.apps/web`, `pod/x`.
pub fn describe_key(key: &skiff_manifests::ObjectKey) -> String {
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

#[cfg(test)]
mod tests {
    use crate::services::dns::tests::{endpoint, service};
    use crate::services::{Allocation, ServiceView};

    #[test]
    fn endpoints_list_what_the_service_serves_as_ready() {
        let view = |spec: &str| ServiceView {
            service: service("db", spec),
            allocation: Allocation::default(),
            endpoints: vec![
                endpoint("db-0", "10.42.1.5", true),
                endpoint("db-1", "10.42.2.5", false),
            ],
            selected: 2,
        };
        let ips = |v: &serde_json::Value, field: &str| -> Vec<String> {
            v["subsets"][0][field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e["ip"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let plain = super::endpoints(
            &view("  selector: {app: db}\n  ports: [{port: 5432}]\n"),
            None,
        );
        assert_eq!(ips(&plain, "addresses"), ["10.42.1.5"]);
        assert_eq!(ips(&plain, "notReadyAddresses"), ["10.42.2.5"]);
        // publishNotReadyAddresses: both get traffic and DNS records, so both are ready here.
        let all = super::endpoints(
            &view(
                "  selector: {app: db}\n  publishNotReadyAddresses: true\n  ports: [{port: 5432}]\n",
            ),
            None,
        );
        assert_eq!(ips(&all, "addresses"), ["10.42.1.5", "10.42.2.5"]);
        assert!(ips(&all, "notReadyAddresses").is_empty(), "{all}");
    }
}

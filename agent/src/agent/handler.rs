//! Answers API requests: reads come from the loop's latest snapshot, changes go to the loop as
//! commands, image import/pull and logs are served here directly.

use super::core::{Command, Snapshot, describe_key};
use super::status::{placed, status, summaries};
use crate::api::server::{Handler, Reply};
use crate::api::{ApplyFile, DeleteTarget, Request, ResourceKind, Response};
use crate::cluster::ClusterState;
use crate::config::AgentConfig;
use crate::pod::{PodRecord, now_millis, rfc3339};
use crate::render::PodSummary;
use crate::render::{self, RenderContext};
use serde_json::{Value, json};
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use skiff_runtime::image::{ImageInfo, ImageStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Shared {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub commands: mpsc::Sender<Command>,
    pub images: ImageStore,
    pub config: AgentConfig,
    pub cancel: CancellationToken,
    /// Every node of the cluster, from gossip.
    pub nodes: watch::Receiver<Vec<skiff_gossip::NodeStatus>>,
    /// Reaches the node running a pod this node does not (`logs`, `describe pod`); `None` off QUIC.
    pub remote: Option<super::rpc::Remote>,
    /// The cluster as this node sees it (leader, term, every node's pods, pending work).
    pub cluster: watch::Receiver<Arc<crate::cluster::ClusterState>>,
    /// This node's metadata writer (runtime labels).
    pub node_meta: super::membership::NodeMeta,
    /// `node remove` (carried out on the node that issues certificates); `None` off QUIC.
    pub remover: Option<skiff_gossip::NodeRemover>,
}

pub fn handler(shared: Shared) -> Handler {
    Arc::new(move |request| {
        let shared = shared.clone();
        Box::pin(async move { handle(shared, request).await })
    })
}

fn ok(value: Value) -> Reply {
    Reply::One(Response::Ok { value })
}

fn err(message: impl Into<String>) -> Reply {
    Reply::One(Response::Error {
        message: message.into(),
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

async fn handle(shared: Shared, request: Request) -> Reply {
    let snap = shared.snapshot.borrow().clone();
    match request {
        Request::Get {
            kind: ResourceKind::Nodes,
            name,
            ..
        } => {
            let nodes = shared.nodes.borrow().clone();
            let items: Vec<Value> = nodes
                .iter()
                .filter(|n| name.as_deref().is_none_or(|x| x == n.name))
                .map(node_json)
                .collect();
            match name {
                Some(n) if items.is_empty() => err(format!("node {n:?} not found")),
                Some(_) => ok(items.into_iter().next().unwrap_or_default()),
                None => ok(list(items)),
            }
        }
        Request::Get {
            kind,
            name,
            namespace,
            all_namespaces,
        } => get(
            &snap,
            &shared.cluster.borrow().clone(),
            kind,
            name.as_deref(),
            namespace.as_deref(),
            all_namespaces,
        ),
        Request::Describe {
            kind: ResourceKind::Nodes,
            name,
            ..
        } => {
            let nodes = shared.nodes.borrow().clone();
            match nodes.iter().find(|n| n.name == name) {
                Some(n) => {
                    let mut v = node_json(n);
                    if n.is_self {
                        v["status"]["pods"] = json!(snap.pods.len());
                    }
                    ok(v)
                }
                None => err(format!("node {name:?} not found")),
            }
        }
        Request::Describe {
            kind,
            name,
            namespace,
        } => {
            let ns = namespace
                .as_deref()
                .unwrap_or(skiff_manifests::DEFAULT_NAMESPACE);
            if kind == ResourceKind::Pods
                && let Some(v) =
                    super::pending::describe(&snap, &shared.cluster.borrow().clone(), ns, &name)
            {
                return ok(v);
            }
            match &shared.remote {
                // A pod this node does not run: ask the node that reports it.
                Some(remote)
                    if kind == ResourceKind::Pods && find_pod(&snap, &name, Some(ns)).is_none() =>
                {
                    remote.describe_pod(ns, &name).await
                }
                _ => describe(&snap, kind, &name, namespace.as_deref()),
            }
        }
        Request::Logs {
            pod,
            namespace,
            container,
            follow,
            tail,
        } => {
            let ns = namespace
                .clone()
                .unwrap_or_else(|| skiff_manifests::DEFAULT_NAMESPACE.to_string());
            match &shared.remote {
                Some(remote) if find_pod(&snap, &pod, Some(&ns)).is_none() => {
                    let request = super::rpc::NodeRequest::Logs {
                        namespace: ns.clone(),
                        pod: pod.clone(),
                        container,
                        tail,
                        follow,
                    };
                    remote.logs(request, &pod, &ns, shared.cancel.clone()).await
                }
                _ => logs(
                    &shared,
                    &snap,
                    &pod,
                    namespace.as_deref(),
                    container.as_deref(),
                    follow,
                    tail,
                ),
            }
        }
        Request::Apply { files, dry_run } => apply(&shared, &snap, files, dry_run).await,
        Request::Delete { target } => delete(&shared, target).await,
        Request::ImageImport { path } => {
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
        Request::ImagePull { reference } => {
            let opts = super::execute::pull_options(&shared.config);
            let pulled = shared.images.pull(&reference, &opts).await;
            crate::memory::release_free_memory();
            match pulled {
                Ok(info) => {
                    let _ = shared.commands.send(Command::ImagesChanged).await;
                    ok(images_json(&[info]))
                }
                Err(e) => err(e.to_string()),
            }
        }
        Request::ImageList => match shared.images.list() {
            Ok(infos) => ok(images_json(&infos)),
            Err(e) => err(e.to_string()),
        },
        Request::SetScheduling {
            node,
            cordoned,
            draining,
        } => {
            if node != shared.node_meta.node_name() {
                return match &shared.remote {
                    Some(remote) => remote.set_scheduling(&node, cordoned, draining).await,
                    None => err(format!("node {node:?} not found")),
                };
            }
            match shared.node_meta.set_scheduling(cordoned, draining).await {
                Ok(()) => ok(json!({ "name": node })),
                Err(e) => err(e),
            }
        }
        Request::Status => ok(status(&snap, &shared.cluster.borrow().clone())),
        Request::TokenCreate { ttl_secs } => {
            super::admin::token_create(&shared.config.data_dir, ttl_secs)
        }
        Request::TokenList => super::admin::token_list(&shared.config.data_dir),
        Request::TokenRevoke { id } => super::admin::token_revoke(&shared.config.data_dir, &id),
        Request::RemoveNode { name, force } => {
            super::admin::remove_node(&shared, &name, force).await
        }
        Request::LabelNode {
            node,
            set,
            remove,
            overwrite,
        } => {
            let change = super::membership::LabelChange {
                set,
                remove,
                overwrite,
            };
            match shared.node_meta.label(&node, &change).await {
                Ok(labels) => ok(json!({ "kind": "Node", "name": node, "labels": labels })),
                Err(e) => err(e),
            }
        }
    }
}

fn images_json(infos: &[ImageInfo]) -> Value {
    json!({ "items": infos.iter().map(|i| json!({
        "reference": i.reference, "digest": i.digest, "id": i.id, "size": i.size,
    })).collect::<Vec<_>>() })
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

fn get(
    snap: &Snapshot,
    cluster: &ClusterState,
    kind: ResourceKind,
    name: Option<&str>,
    namespace: Option<&str>,
    all: bool,
) -> Reply {
    let mut items: Vec<Value> = Vec::new();
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
            for pod in super::pending::unplaced(snap, cluster) {
                if ns_matches(&pod.key.namespace, namespace, all)
                    && name.is_none_or(|n| n == pod.key.name)
                {
                    let first_seen = snap.first_seen.get(pod.key).copied();
                    items.push(super::pending::pod_json(&pod, first_seen));
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
        ResourceKind::Services => {}
        other => {
            let want = match other {
                ResourceKind::Deployments => Kind::Deployment,
                ResourceKind::DaemonSets => Kind::DaemonSet,
                ResourceKind::Namespaces => Kind::Namespace,
                ResourceKind::ConfigMaps => Kind::ConfigMap,
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
                    v = render::deployment(
                        &v,
                        &key.name,
                        &key.namespace,
                        &pods,
                        &d.pod_template_hash(),
                    );
                    if let Some(t) = snap.first_seen.get(key) {
                        v["metadata"]["creationTimestamp"] = json!(rfc3339(*t));
                    }
                }
                if let Object::DaemonSet(d) = object.get() {
                    let hash = d.pod_template_hash();
                    let owned: Vec<&PodSummary<'_>> = pods
                        .iter()
                        .filter(|p| p.belongs_to("DaemonSet", &key.namespace, &key.name))
                        .collect();
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
    if name.is_some() && items.len() == 1 && kind != ResourceKind::Events {
        return ok(items.remove(0));
    }
    ok(list(items))
}

fn node_json(n: &skiff_gossip::NodeStatus) -> Value {
    let m = &n.metadata;
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n.name,
            "labels": m.labels,
            "creationTimestamp": rfc3339(n.started_at_unix_ms),
        },
        "spec": { "unschedulable": m.cordoned },
        "status": {
            "phase": n.condition.to_string(),
            "roles": "<none>",
            "generation": n.generation,
            "addresses": [{ "type": "InternalIP", "address": n.address.ip().to_string() }],
            "gossipAddress": n.address.to_string(),
            "capacity": {
                "cpu": format!("{}m", m.capacity.cpu_millis),
                "memory": m.capacity.memory_bytes.to_string(),
                "pods": m.capacity.pods.to_string(),
            },
            "nodeInfo": { "kubeletVersion": n.version() },
            "conditions": [{ "type": "Ready", "status": if n.condition == skiff_gossip::NodeCondition::Ready { "True" } else { "False" } }],
        },
    })
}

fn find_pod<'a>(snap: &'a Snapshot, name: &str, namespace: Option<&str>) -> Option<&'a PodRecord> {
    let ns = namespace.unwrap_or(skiff_manifests::DEFAULT_NAMESPACE);
    // Prefer the live pod over one being deleted under the same name.
    snap.pods
        .iter()
        .filter(|p| p.name == name && p.namespace == ns)
        .min_by_key(|p| p.deleting_since.is_some())
}

/// `describe` of what this node holds (the local API, and other nodes through rpc).
pub(super) fn describe(
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

/// `logs` of a pod this node runs (the local API, and other nodes through rpc).
pub(super) fn logs(
    shared: &Shared,
    snap: &Snapshot,
    pod: &str,
    namespace: Option<&str>,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Reply {
    let Some(p) = find_pod(snap, pod, namespace) else {
        return err(format!("pod {pod:?} not found"));
    };
    let names: Vec<&str> = p
        .plan
        .containers
        .iter()
        .chain(&p.plan.init_containers)
        .map(|c| c.name.as_str())
        .collect();
    let name = match container {
        Some(c) if names.contains(&c) => c.to_string(),
        Some(c) => {
            return err(format!(
                "container {c:?} is not in pod {pod:?} (containers: {})",
                names.join(", ")
            ));
        }
        None => names.first().map(|s| s.to_string()).unwrap_or_default(),
    };
    let path = shared.config.pod_paths(&p.uid).log_file(&name);
    let (lines, mut follower) = match skiff_runtime::container::follow_log(&path, tail) {
        Ok(x) => x,
        Err(e) => return err(e.to_string()),
    };
    let (tx, rx) = mpsc::channel(256);
    let cancel = shared.cancel.clone();
    let uid = p.uid.clone();
    let mut snapshots = shared.snapshot.clone();
    tokio::spawn(async move {
        for l in lines {
            if tx.send(Response::LogLine { text: l.text }).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {}
            }
            match follower.poll() {
                Ok(new) => {
                    for l in new {
                        if tx.send(Response::LogLine { text: l.text }).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Response::Error {
                            message: e.to_string(),
                        })
                        .await;
                    return;
                }
            }
            // Stop following once the pod is gone.
            let gone = !snapshots
                .borrow_and_update()
                .pods
                .iter()
                .any(|p| p.uid == uid);
            if gone {
                return;
            }
        }
    });
    Reply::Stream(rx)
}

fn parse_all(files: &[ApplyFile]) -> Result<(Vec<Valid<Object>>, Vec<String>), String> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        let parsed = skiff_manifests::parse_file(&f.name, f.content.as_bytes());
        errors.extend(parsed.errors().iter().map(|e| e.to_string()));
        warnings.extend(parsed.warnings().iter().map(|w| w.to_string()));
        objects.extend(parsed.objects().into_iter().cloned());
    }
    if errors.is_empty() {
        Ok((objects, warnings))
    } else {
        Err(errors.join("\n"))
    }
}

async fn apply(shared: &Shared, snap: &Snapshot, files: Vec<ApplyFile>, dry_run: bool) -> Reply {
    let (objects, warnings) = match parse_all(&files) {
        Ok(x) => x,
        Err(e) => return err(e),
    };
    if dry_run {
        let changes: Vec<String> = objects
            .iter()
            .map(|o| {
                let key = o.key();
                let verb = match snap.objects.get(&key) {
                    None => "created",
                    Some((_, cur)) if cur.content_hash() == o.content_hash() => "unchanged",
                    Some(_) => "configured",
                };
                format!("{} {verb} (dry run)", describe_key(&key))
            })
            .collect();
        return ok(json!({ "changes": changes, "warnings": warnings }));
    }
    let (reply, rx) = oneshot::channel();
    if shared
        .commands
        .send(Command::ApplyObjects { objects, reply })
        .await
        .is_err()
    {
        return err("the agent is shutting down");
    }
    match rx.await {
        Ok(Ok(changes)) => ok(json!({ "changes": changes, "warnings": warnings })),
        Ok(Err(e)) => err(e),
        Err(_) => err("the agent is shutting down"),
    }
}

async fn delete(shared: &Shared, target: DeleteTarget) -> Reply {
    let keys: Vec<ObjectKey> = match target {
        DeleteTarget::Files { files } => match parse_all(&files) {
            Ok((objects, _)) => objects.iter().map(|o| o.key()).collect(),
            Err(e) => return err(e),
        },
        DeleteTarget::Object {
            kind,
            name,
            namespace,
        } => {
            let Some(k) = kind
                .manifest_kind()
                .and_then(|k| Kind::ALL.into_iter().find(|x| x.as_str() == k))
            else {
                return err(format!("{kind:?} cannot be deleted").to_lowercase());
            };
            vec![ObjectKey::new(
                k,
                namespace.unwrap_or_else(|| skiff_manifests::DEFAULT_NAMESPACE.to_string()),
                name,
            )]
        }
    };
    let (reply, rx) = oneshot::channel();
    if shared
        .commands
        .send(Command::DeleteObjects { keys, reply })
        .await
        .is_err()
    {
        return err("the agent is shutting down");
    }
    match rx.await {
        Ok(Ok(changes)) => ok(json!({ "changes": changes })),
        Ok(Err(e)) => err(e),
        Err(_) => err("the agent is shutting down"),
    }
}

//! `logs [-f] [--tail N]`: a container's log read from its file and, when following, polled until
//! the caller or the pod goes away; a pod another node runs has its logs streamed from there.

use super::queries::find_pod;
use super::{Shared, err};
use crate::agent::core::Snapshot;
use crate::agent::node_request::NodeRequest;
use crate::api::Response;
use crate::api::server::Reply;
use std::time::Duration;
use tokio::sync::mpsc;

/// `logs` through the local API: of a pod this node runs, or forwarded to the node that does.
pub(super) async fn logs(
    shared: &Shared,
    snap: &Snapshot,
    pod: String,
    namespace: Option<String>,
    container: Option<String>,
    follow: bool,
    tail: Option<usize>,
) -> Reply {
    let ns = namespace
        .clone()
        .unwrap_or_else(|| skiff_manifests::DEFAULT_NAMESPACE.to_string());
    match &shared.remote {
        Some(remote) if find_pod(snap, &pod, Some(&ns)).is_none() => {
            let request = NodeRequest::Logs {
                namespace: ns.clone(),
                pod: pod.clone(),
                container,
                tail,
                follow,
            };
            remote
                .logs(request, &pod, &ns, shared.cancel.clone(), &shared.tracker)
                .await
        }
        _ => logs_here(
            shared,
            snap,
            &pod,
            namespace.as_deref(),
            container.as_deref(),
            follow,
            tail,
        ),
    }
}

/// `logs` of a pod this node runs (the local API, and other nodes through rpc).
pub(crate) fn logs_here(
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
    shared.tracker.spawn(async move {
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

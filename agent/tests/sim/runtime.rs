//! The fake runtime of a simulated node: its node loop runs exactly the pods the cluster task
//! assigns to it (whose owner object it holds), starts each after a fixed delay, and reports
//! them (running and ready once started). With no assignment known yet it keeps what it runs,
//! like the real node loop.

use skiff_agent::cluster::Desired;
use skiff_agent::cluster::keys::PodReport;
use skiff_agent::cluster::service::Clock;
use skiff_agent::pod::Owner;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One pod the fake runtime holds.
#[derive(Clone, Debug, PartialEq)]
pub struct FakePod {
    pub uid: String,
    pub owner: Owner,
    pub template_hash: String,
    pub created_ms: u64,
    /// When it starts running.
    pub starts_at: Instant,
    pub running: bool,
    /// Ready once running; never for an image whose name contains `unready` (a failed
    /// rollout).
    pub can_be_ready: bool,
}

type Reports = Arc<BTreeMap<(String, String), Arc<PodReport>>>;

pub struct LoopParts {
    pub me: String,
    pub desired: watch::Receiver<Desired>,
    pub reports: watch::Sender<Reports>,
    pub pods: Arc<Mutex<BTreeMap<(String, String), FakePod>>>,
    pub clock: Clock,
    pub start_delay: Duration,
    pub cancel: CancellationToken,
}

/// Runs until cancelled (or until the cluster task is gone).
pub async fn node_loop(mut parts: LoopParts) {
    let mut counter = 0u64;
    loop {
        let desired = parts.desired.borrow_and_update().clone();
        let next_start = {
            let mut pods = parts.pods.lock().unwrap_or_else(|p| p.into_inner());
            apply(&parts, &desired, &mut pods, &mut counter);
            let now = Instant::now();
            for pod in pods.values_mut() {
                if !pod.running && pod.starts_at <= now {
                    pod.running = true;
                }
            }
            let reports: BTreeMap<(String, String), Arc<PodReport>> = pods
                .iter()
                .map(|(key, pod)| (key.clone(), Arc::new(report(pod))))
                .collect();
            if **parts.reports.borrow() != reports {
                parts.reports.send_replace(Arc::new(reports));
            }
            pods.values()
                .filter(|p| !p.running)
                .map(|p| p.starts_at)
                .min()
        };
        tokio::select! {
            _ = parts.cancel.cancelled() => return,
            changed = parts.desired.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sleep_until(next_start) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Makes the pods match this node's assignment.
fn apply(
    parts: &LoopParts,
    desired: &Desired,
    pods: &mut BTreeMap<(String, String), FakePod>,
    counter: &mut u64,
) {
    let Some(assigned) = &desired.assigned else {
        return;
    };
    let known = |owner: &Owner, namespace: &str| {
        desired
            .objects
            .keys()
            .any(|k| k.kind == owner.kind && k.namespace == namespace && k.name == owner.name)
    };
    let wanted: BTreeMap<(String, String), (&Owner, &str)> = assigned
        .iter()
        .filter(|a| a.node == parts.me && known(&a.owner, &a.namespace))
        .map(|a| {
            (
                (a.namespace.clone(), a.name.clone()),
                (&a.owner, a.template_hash.as_str()),
            )
        })
        .collect();
    pods.retain(|key, pod| {
        wanted
            .get(key)
            .is_some_and(|(owner, hash)| **owner == pod.owner && *hash == pod.template_hash)
    });
    let can_be_ready = |owner: &Owner, namespace: &str, hash: &str| {
        let key = skiff_manifests::ObjectKey::new(owner.kind, namespace, owner.name.clone());
        !desired
            .objects
            .get(&key)
            .is_some_and(|(_, o)| match o.get() {
                skiff_manifests::Object::Deployment(d) => {
                    d.pod_template_hash() == hash
                        && d.spec
                            .template
                            .spec
                            .containers
                            .iter()
                            .any(|c| c.image.contains("unready"))
                }
                _ => false,
            })
    };
    for (key, (owner, hash)) in wanted {
        let can_be_ready = can_be_ready(owner, &key.0, hash);
        pods.entry(key).or_insert_with(|| {
            *counter += 1;
            FakePod {
                uid: format!("{}-{counter}", parts.me),
                owner: owner.clone(),
                template_hash: hash.to_string(),
                created_ms: (parts.clock)(),
                starts_at: Instant::now() + parts.start_delay,
                running: false,
                can_be_ready,
            }
        });
    }
}

fn report(pod: &FakePod) -> PodReport {
    let phase = if pod.running { "Running" } else { "Pending" };
    PodReport {
        uid: pod.uid.clone(),
        owner: (pod.owner.kind != skiff_manifests::Kind::Pod).then(|| pod.owner.clone()),
        template_hash: pod.template_hash.clone(),
        created_ms: pod.created_ms,
        deleting: false,
        running: pod.running,
        ready: pod.running && pod.can_be_ready,
        labels: BTreeMap::new(),
        status: serde_json::json!({ "phase": phase }),
        ports: Vec::new(),
        hostname: None,
        subdomain: None,
    }
}

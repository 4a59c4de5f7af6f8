//! The fake runtime of a simulated node: its node loop runs exactly the pods the cluster task
//! assigns to it (whose owner object it holds), starts each after a fixed delay, and reports
//! them (running and ready once started). With no assignment known yet it keeps what it runs,
//! like the real node loop. A Job's pod runs for a while and exits: its image says how long
//! and with which code (`job-3s-exit1`; default 1 s, exit 0); an attempt the leader ended is
//! never made again, and one it stopped (its Job failed) is killed (exit 137).

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
    /// A Job's pod: how long it runs and its exit code.
    pub runs: Option<(Duration, i32)>,
    /// When it exited and with which code.
    pub exited: Option<(Instant, i32)>,
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
    pub net: Arc<super::Net>,
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
                if !pod.running && pod.exited.is_none() && pod.starts_at <= now {
                    pod.running = true;
                }
                if let Some((run, code)) = pod.runs
                    && pod.running
                    && pod.starts_at + run <= now
                {
                    pod.running = false;
                    pod.exited = Some((now, code));
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
                .filter_map(|p| match (p.running, p.exited, p.runs) {
                    (false, None, _) => Some(p.starts_at),
                    (true, None, Some((run, _))) => Some(p.starts_at + run),
                    _ => None,
                })
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
    // Attempts the leader ended: never made again; one still running is stopped.
    let ended: Vec<(String, String)> = assigned
        .iter()
        .filter(|a| a.node == parts.me && a.job.as_ref().is_some_and(|m| m.end.is_some()))
        .map(|a| (a.namespace.clone(), a.name.clone()))
        .collect();
    for key in &ended {
        if let Some(pod) = pods.get_mut(key)
            && pod.exited.is_none()
        {
            pod.running = false;
            pod.exited = Some((Instant::now(), 137));
        }
    }
    let wanted: BTreeMap<(String, String), (&Owner, &str)> = wanted
        .into_iter()
        .filter(|(key, _)| pods.contains_key(key) || !ended.contains(key))
        .collect();
    let can_be_ready = |owner: &Owner, namespace: &str, hash: &str| {
        let key = skiff_manifests::ObjectKey::new(owner.kind, namespace, &owner.name);
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
    let runs = |owner: &Owner, namespace: &str| -> Option<(Duration, i32)> {
        let key = skiff_manifests::ObjectKey::new(owner.kind, namespace, &owner.name);
        let (_, object) = desired.objects.get(&key)?;
        let skiff_manifests::Object::Job(job) = object.get() else {
            return None;
        };
        let image = &job.spec.template.spec.containers[0].image;
        let secs = image
            .split('-')
            .find_map(|part| part.strip_suffix('s')?.parse::<u64>().ok())
            .unwrap_or(1);
        let code = image
            .split('-')
            .find_map(|part| part.strip_prefix("exit")?.parse::<i32>().ok())
            .unwrap_or(0);
        Some((Duration::from_secs(secs), code))
    };
    for (key, (owner, hash)) in wanted {
        let can_be_ready = can_be_ready(owner, &key.0, hash);
        let runs = runs(owner, &key.0);
        pods.entry(key.clone()).or_insert_with(|| {
            *counter += 1;
            parts
                .net
                .created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((
                    parts.me.clone(),
                    key.0.clone(),
                    key.1.clone(),
                    (parts.clock)(),
                ));
            FakePod {
                uid: format!("{}-{counter}", parts.me),
                owner: owner.clone(),
                template_hash: hash.to_string(),
                created_ms: (parts.clock)(),
                starts_at: Instant::now() + parts.start_delay,
                running: false,
                can_be_ready,
                runs,
                exited: None,
            }
        });
    }
}

fn report(pod: &FakePod) -> PodReport {
    let phase = match pod.exited {
        Some((_, 0)) => "Succeeded",
        Some(_) => "Failed",
        None if pod.running => "Running",
        None => "Pending",
    };
    let status = match pod.exited {
        Some((_, code)) => serde_json::json!({
            "phase": phase,
            "containerStatuses": [{"name": "main", "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}}],
        }),
        None => serde_json::json!({ "phase": phase }),
    };
    PodReport {
        uid: pod.uid.clone(),
        owner: (pod.owner.kind != skiff_manifests::Kind::Pod).then(|| pod.owner.clone()),
        template_hash: pod.template_hash.clone(),
        created_ms: pod.created_ms,
        deleting: false,
        running: pod.running,
        ready: pod.running && pod.can_be_ready,
        labels: BTreeMap::new(),
        status,
        ports: Vec::new(),
        hostname: None,
        subdomain: None,
    }
}

//! Folding what the executor reports back into a pod's record, pure: a finished job's
//! `Outcome`s update the sandbox and container state (attempts, crash and sandbox backoff,
//! waiting reasons) and say what the node loop must do besides. `now` is a parameter.

use super::backoff::Backoff;
use super::plan::{Noted, StopSignal};
use crate::pod::{ContainerStatus, Instance, Millis, PodNet, PodRecord, Waiting};
use std::time::{SystemTime, UNIX_EPOCH};

/// What one action of a job came to, reported by the executor to the node loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The sandbox (volumes, network namespace, pod network) is ready.
    SandboxReady { network: Option<PodNet> },
    /// The sandbox could not be made; it is tried again after the sandbox backoff.
    SandboxFailed { reason: String, message: String },
    /// Instance `id` of a container runs.
    Started {
        init: bool,
        index: usize,
        id: String,
        pid: i32,
        started_at: SystemTime,
    },
    /// Instance `id` of a container could not be started; it is tried again after the crash
    /// backoff.
    StartFailed {
        init: bool,
        index: usize,
        id: String,
        reason: String,
        message: String,
    },
    /// `signal` was sent to instance `id` (or it had stopped already).
    Signaled { id: String, signal: StopSignal },
    /// A lifecycle hook of instance `id` ran for `took_ms`; `error` says why it failed.
    HookRan {
        id: String,
        hook: HookKind,
        took_ms: Millis,
        error: Option<String>,
    },
    /// Instance `id`'s runtime state is gone.
    Removed { id: String },
    /// The sandbox is gone. `network_pending`: the pod network could not be released because
    /// the store refuses writes (a full disk); the node loop releases it once the store is back.
    TornDown { network_pending: Option<String> },
    /// The pod's object volumes were looked at again: the ones rewritten, and the ones that
    /// could not be (volume, why; they keep their previous files).
    VolumesRefreshed {
        written: Vec<String>,
        failed: Vec<(String, String)>,
    },
    /// An action failed in a way the record does not model (a teardown that cannot unmount,
    /// say); the pod is acted on again after the pull backoff.
    Failed { message: String },
}

/// Which lifecycle hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    PostStart,
    PreStop,
}

/// The backoffs a job's outcomes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoffs {
    /// After a container failed to start.
    pub crash: Backoff,
    /// After the sandbox could not be made.
    pub sandbox: Backoff,
}

/// What the node loop does besides the record change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Pod events to record, in order.
    pub events: Vec<Noted>,
    /// An action failed ([`Outcome::Failed`]): the pod waits for [`retry_failing`].
    pub action_failed: bool,
    /// The pod's network is to be released once the store takes writes again (why it was not).
    pub network_pending: Option<String>,
}

/// Folds a job's outcomes, in order, into `pod`'s record.
pub fn fold(
    pod: &mut PodRecord,
    outcomes: Vec<Outcome>,
    now: Millis,
    backoffs: &Backoffs,
) -> Folded {
    let mut folded = Folded::default();
    let note = |warning: bool, reason: &str, message: String| Noted {
        warning,
        reason: reason.to_string(),
        message,
    };
    for outcome in outcomes {
        match outcome {
            Outcome::SandboxReady { network } => {
                let s = &mut pod.status;
                s.network = network;
                s.sandbox_ready = true;
                s.sandbox_error = None;
                s.sandbox_failures = 0;
                s.sandbox_retry_at = None;
                s.started_at.get_or_insert(now);
            }
            Outcome::SandboxFailed { reason, message } => {
                let s = &mut pod.status;
                s.sandbox_failures += 1;
                s.sandbox_retry_at = Some(now + millis(backoffs.sandbox.delay(s.sandbox_failures)));
                folded.events.push(note(true, &reason, message.clone()));
                s.sandbox_error = Some(Waiting { reason, message });
            }
            Outcome::Started {
                init,
                index,
                id,
                pid,
                started_at,
            } => {
                let attempt = attempt_of(&id);
                let started_ms = to_millis(started_at);
                let probes = match (init, pod.manifest.get()) {
                    (false, skiff_manifests::Object::Pod(p)) => p
                        .spec
                        .containers
                        .get(index)
                        .map(|spec| super::probe::ContainerProbes::start(spec, started_ms))
                        .unwrap_or_default(),
                    _ => Default::default(),
                };
                let c = container_mut(pod, init, index);
                c.attempts = c.attempts.max(attempt);
                c.restart_count = c.attempts.saturating_sub(1);
                c.waiting = None;
                c.next_start_at = None;
                c.current = Some(Instance {
                    id,
                    pid,
                    started_at: started_ms,
                    term_sent_at: None,
                    kill_sent: false,
                    probes,
                    stop_reason: None,
                    stop_grace_ms: None,
                    pre_stop_at: None,
                });
                let message = format!("started container {}", c.name);
                folded.events.push(note(false, "Started", message));
            }
            Outcome::StartFailed {
                init,
                index,
                id,
                reason,
                message,
            } => {
                let attempt = attempt_of(&id);
                let c = container_mut(pod, init, index);
                c.attempts = c.attempts.max(attempt);
                c.failures += 1;
                c.next_start_at = Some(now + millis(backoffs.crash.delay(c.failures)));
                let event = format!("container {}: {reason}: {message}", c.name);
                c.waiting = Some(Waiting { reason, message });
                folded.events.push(note(true, "Failed", event));
            }
            Outcome::Signaled { id, signal } => {
                let s = &mut pod.status;
                for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
                    if let Some(i) = c.current.as_mut().filter(|i| i.id == id) {
                        match signal {
                            StopSignal::Term => i.term_sent_at = Some(now),
                            StopSignal::Kill => i.kill_sent = true,
                        }
                    }
                }
            }
            Outcome::HookRan {
                id,
                hook,
                took_ms,
                error,
            } => {
                let s = &mut pod.status;
                let name = s
                    .containers
                    .iter()
                    .zip(&pod.plan.containers)
                    .find(|(c, _)| c.current.as_ref().is_some_and(|i| i.id == id))
                    .map(|(_, spec)| spec.name.clone())
                    .unwrap_or_default();
                for c in s.containers.iter_mut() {
                    let Some(i) = c.current.as_mut().filter(|i| i.id == id) else {
                        continue;
                    };
                    match hook {
                        HookKind::PreStop => i.pre_stop_at = Some(now.saturating_sub(took_ms)),
                        HookKind::PostStart => {
                            if let Some(e) = &error
                                && i.stop_reason.is_none()
                            {
                                // As kubelet: a container whose postStart hook failed is
                                // killed, and restarts as its policy says.
                                i.stop_reason = Some(format!("PostStart hook failed: {e}"));
                            }
                        }
                    }
                }
                if let Some(e) = error {
                    let (reason, what) = match hook {
                        HookKind::PreStop => ("FailedPreStopHook", "PreStopHook"),
                        HookKind::PostStart => ("FailedPostStartHook", "PostStartHook"),
                    };
                    folded.events.push(note(
                        true,
                        reason,
                        format!("{what} failed for container {name}: {e}"),
                    ));
                }
            }
            Outcome::Removed { id } => pod.status.pending_removal.retain(|x| *x != id),
            Outcome::TornDown { network_pending } => {
                pod.status.sandbox_ready = false;
                pod.status.network = None;
                if network_pending.is_some() {
                    folded.network_pending = network_pending;
                }
            }
            Outcome::VolumesRefreshed { written, failed } => {
                if !written.is_empty() {
                    let message = format!("updated the files of volume(s) {}", written.join(", "));
                    folded.events.push(note(false, "VolumesUpdated", message));
                }
                for (volume, why) in failed {
                    let message = format!("volume {volume:?} keeps its files: {why}");
                    folded
                        .events
                        .push(note(true, "FailedVolumeUpdate", message));
                }
            }
            Outcome::Failed { message } => {
                folded.action_failed = true;
                folded.events.push(note(true, "FailedAction", message));
            }
        }
    }
    folded
}

/// After a job with a failed action: how many jobs of the pod failed in a row and when it is
/// next acted on (`previous` is what the last failure left, if any).
pub fn retry_failing(
    previous: Option<(u32, Millis)>,
    now: Millis,
    backoff: &Backoff,
) -> (u32, Millis) {
    let failures = previous.map_or(0, |(n, _)| n) + 1;
    (failures, now + millis(backoff.delay(failures)))
}

/// Milliseconds since the epoch (0 before it).
pub fn to_millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

fn millis(d: std::time::Duration) -> Millis {
    d.as_millis() as Millis
}

/// The attempt number an instance id ends with (`<uid>-c0-3`: the third start of container 0); 1 if none.
fn attempt_of(id: &str) -> u32 {
    id.rsplit('-')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
}

fn container_mut(pod: &mut PodRecord, init: bool, index: usize) -> &mut ContainerStatus {
    if init {
        &mut pod.status.init_containers[index]
    } else {
        &mut pod.status.containers[index]
    }
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;

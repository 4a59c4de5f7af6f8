//! The node reconciler's decisions, pure: fold what the runtime reports into a pod's record
//! (`observe`), then say what to do next (`plan`). No IO, no clock: `now` is a parameter.

use super::backoff::Backoff;
use crate::pod::{
    Instance, Millis, Phase, PodFailure, PodRecord, PullPolicy, RestartPolicy, Termination,
};

/// What the runtime says about one container instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Running,
    Exited {
        exit_code: i32,
        signal: Option<i32>,
        oom_killed: bool,
        /// Its shim died and the runtime stopped it (reason `ShimLost`).
        shim_lost: bool,
        finished_at: Millis,
    },
    /// No trace of it (the node rebooted, or its state was lost).
    Gone,
}

/// What the node knows about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageState {
    Present,
    Missing,
    Pulling,
    Failed { message: String, retry_at: Millis },
}

/// Signals the reconciler sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

/// One step for the executor. Every action is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    EnsureSandbox {
        uid: String,
    },
    PullImage {
        image: String,
    },
    StartContainer {
        uid: String,
        init: bool,
        index: usize,
        id: String,
    },
    Signal {
        uid: String,
        id: String,
        signal: StopSignal,
    },
    /// Run container `index`'s preStop hook (instance `id`), within `budget_ms`, before it is
    /// sent SIGTERM.
    PreStop {
        uid: String,
        id: String,
        index: usize,
        budget_ms: Millis,
    },
    /// Remove an exited instance's runtime state (its logs stay).
    RemoveContainer {
        uid: String,
        id: String,
    },
    TeardownSandbox {
        uid: String,
    },
    /// Rewrite the pod's ConfigMap, Secret, downwardAPI and projected volumes from the objects
    /// as they are now (each in one step; unchanged volumes are left alone).
    RefreshVolumes {
        uid: String,
    },
    /// Drop the record: the pod is gone.
    Forget {
        uid: String,
    },
}

/// Something worth an event, from `observe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noted {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// Folds runtime observations into the record: exits become terminations, the restart policy
/// decides whether the container runs again and when (crash backoff).
pub fn observe(
    pod: &mut PodRecord,
    observed: &dyn Fn(&str) -> Observed,
    now: Millis,
    backoff: &Backoff,
) -> Vec<Noted> {
    let mut noted = Vec::new();
    let policy = pod.plan.restart_policy;
    // A deleted or failed (evicted, past its deadline) pod's containers do not run again.
    let deleting = pod.deleting_since.is_some() || pod.status.failure.is_some();
    let n_init = pod.status.init_containers.len();
    let sidecars: Vec<bool> = pod.plan.init_containers.iter().map(|c| c.sidecar).collect();
    let main_finished = pod.main_finished();
    for (i, c) in pod
        .status
        .init_containers
        .iter_mut()
        .chain(pod.status.containers.iter_mut())
        .enumerate()
    {
        let init = i < n_init;
        let sidecar = init && sidecars.get(i).copied().unwrap_or(false);
        let Some(instance) = c.current.clone() else {
            continue;
        };
        let seen = observed(&instance.id);
        let gone = seen == Observed::Gone;
        let (exit_code, signal, oom, shim_lost, finished_at) = match seen {
            Observed::Running => continue,
            Observed::Exited {
                exit_code,
                signal,
                oom_killed,
                shim_lost,
                finished_at,
            } => (exit_code, signal, oom_killed, shim_lost, finished_at),
            Observed::Gone => (137, None, false, false, now),
        };
        let reason = if oom {
            "OOMKilled"
        } else if shim_lost {
            "ShimLost"
        } else if gone {
            "ContainerStatusUnknown"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        c.current = None;
        c.last = Some(Termination {
            exit_code,
            signal,
            reason: reason.to_string(),
            started_at: instance.started_at,
            finished_at,
        });
        pod.status.pending_removal.push(instance.id.clone());
        let ran_for =
            std::time::Duration::from_millis(finished_at.saturating_sub(instance.started_at));
        let success = exit_code == 0;
        // A container stopped by its failed liveness or startup probe restarts unless the
        // policy is Never, however it exited (as kubelet does).
        let probe_killed = instance.stop_reason.is_some();
        // A sidecar restarts whenever it exits, until the main containers are done.
        let restart = !deleting
            && match (init, policy) {
                (true, _) if sidecar => !main_finished,
                (true, _) if success => false,
                (true, RestartPolicy::Never) => false,
                (true, _) => true,
                (false, RestartPolicy::Always) => true,
                (false, RestartPolicy::OnFailure) => !success || probe_killed,
                (false, RestartPolicy::Never) => false,
            };
        if restart {
            c.failures = backoff.next_failures(c.failures, ran_for);
            c.next_start_at =
                Some(finished_at.max(now) + backoff.delay(c.failures).as_millis() as Millis);
        } else {
            c.done = true;
            c.next_start_at = None;
        }
        if !deleting {
            let what = if init { "init container" } else { "container" };
            if oom {
                noted.push(Noted {
                    warning: true,
                    reason: "OOMKilled".into(),
                    message: format!("{what} {} was killed: out of memory", c.name),
                });
            } else if shim_lost {
                noted.push(Noted {
                    warning: true,
                    reason: "ShimLost".into(),
                    message: format!(
                        "{what} {} lost its shim (its logs and exit status were untracked): stopped and {}",
                        c.name,
                        if restart { "restarted" } else { "not restarted (restart policy)" }
                    ),
                });
            } else if !success {
                noted.push(Noted {
                    warning: true,
                    reason: if restart { "BackOff" } else { "Failed" }.into(),
                    message: format!(
                        "{what} {} exited with code {exit_code}{}",
                        c.name,
                        if restart {
                            format!(
                                "; restarting in {}s",
                                backoff.delay(c.failures).as_secs_f64()
                            )
                        } else {
                            String::new()
                        }
                    ),
                });
            }
        }
    }
    noted
}

/// What to do next for one pod (none of its actions is in flight).
pub fn plan(pod: &PodRecord, image: &dyn Fn(&str) -> ImageState, now: Millis) -> Vec<Action> {
    let uid = &pod.uid;
    let mut actions: Vec<Action> = pod
        .status
        .pending_removal
        .iter()
        .map(|id| Action::RemoveContainer {
            uid: uid.clone(),
            id: id.clone(),
        })
        .collect();
    if let Some(_since) = pod.deleting_since {
        let grace = pod.plan.grace_period.as_millis() as Millis;
        let init = pod.status.init_containers.iter().map(|c| (None, c));
        let main = pod.status.containers.iter().enumerate();
        // Sidecars stop once the main containers have (they serve them to the end).
        let main_running = pod.status.containers.iter().any(|c| c.running());
        for (index, c) in init.chain(main.map(|(i, c)| (Some(i), c))) {
            let Some(i) = &c.current else { continue };
            if index.is_none() && main_running {
                continue;
            }
            stop(pod, index, i, grace, now, &mut actions);
        }
        // Signals first: a container without a hook gets SIGTERM at once, while the others'
        // hooks run (together, after the rest of the job).
        actions.sort_by_key(|a| matches!(a, Action::PreStop { .. }));
        if !pod.status.any_running() && pod.status.pending_removal.is_empty() {
            actions.push(if pod.status.sandbox_ready {
                Action::TeardownSandbox { uid: uid.clone() }
            } else {
                Action::Forget { uid: uid.clone() }
            });
        }
        return actions;
    }
    if pod.status.failure.is_some() {
        // Failed as a whole (evicted, past its deadline): every container stops for good
        // (within its grace period), then the sandbox goes (an evicted pod's volumes are what
        // filled the disk); the record stays, Failed.
        let grace = pod.plan.grace_period.as_millis() as Millis;
        let running = pod.status.init_containers.iter().map(|c| (None, c));
        let main = pod.status.containers.iter().enumerate();
        for (index, c) in running.chain(main.map(|(i, c)| (Some(i), c))) {
            if let Some(i) = &c.current {
                stop(pod, index, i, grace, now, &mut actions);
            }
        }
        actions.sort_by_key(|a| matches!(a, Action::PreStop { .. }));
        if !pod.status.any_running()
            && pod.status.pending_removal.is_empty()
            && pod.status.sandbox_ready
        {
            actions.push(Action::TeardownSandbox { uid: uid.clone() });
        }
        return actions;
    }
    if matches!(pod.phase(), Phase::Succeeded | Phase::Failed) && !pod.status.any_running() {
        // Finished for good (its restart policy starts nothing again): its network and
        // volumes go, as kubelet kills a finished pod's sandbox; the record and logs stay.
        if pod.status.sandbox_ready && pod.status.pending_removal.is_empty() {
            actions.push(Action::TeardownSandbox { uid: uid.clone() });
        }
        return actions;
    }
    if !pod.status.sandbox_ready {
        if pod.status.sandbox_retry_at.is_none_or(|t| t <= now) {
            actions.push(Action::EnsureSandbox { uid: uid.clone() });
        }
        return actions;
    }
    // Init containers run one at a time, in order, each to completion; a sidecar only has to
    // have started (it keeps running, and is started again whenever it exits). Once the main
    // containers are done for good, running sidecars are stopped.
    let main_finished = pod.main_finished();
    let initialized = (0..pod.status.init_containers.len()).all(|i| pod.init_finished(i));
    for (index, c) in pod.status.init_containers.iter().enumerate() {
        if pod
            .plan
            .init_containers
            .get(index)
            .is_some_and(|s| s.sidecar)
        {
            if main_finished {
                if let Some(i) = &c.current {
                    let grace = pod.plan.grace_period.as_millis() as Millis;
                    stop(pod, None, i, grace, now, &mut actions);
                }
                continue;
            }
            if !c.running() && !c.done {
                actions.extend(start_or_pull(pod, true, index, image, now));
                if !initialized {
                    return actions; // the next init container waits for it to start
                }
            }
            continue;
        }
        if c.done {
            if c.last.as_ref().is_some_and(|t| t.exit_code != 0) {
                return actions; // the pod failed
            }
            continue;
        }
        if !c.running() {
            actions.extend(start_or_pull(pod, true, index, image, now));
        }
        return actions;
    }
    for (index, c) in pod.status.containers.iter().enumerate() {
        if let Some(i) = c.current.as_ref().filter(|i| i.stop_reason.is_some()) {
            // A failed liveness or startup probe (or postStart hook): stop it within its grace
            // period.
            let grace = i
                .stop_grace_ms
                .unwrap_or(pod.plan.grace_period.as_millis() as Millis);
            stop(pod, Some(index), i, grace, now, &mut actions);
            continue;
        }
        if !c.running() && !c.done {
            actions.extend(start_or_pull(pod, false, index, image, now));
        }
    }
    actions
}

/// `activeDeadlineSeconds`: the failure of a pod active on its node for longer than its
/// deadline (counted from its start, as kubelet counts it), unless it has finished, is being
/// deleted or has failed already.
pub fn deadline_failure(pod: &PodRecord, now: Millis) -> Option<PodFailure> {
    let deadline = pod.plan.active_deadline?;
    let started = pod.status.started_at?;
    if pod.deleting_since.is_some()
        || pod.status.failure.is_some()
        || matches!(pod.phase(), Phase::Succeeded | Phase::Failed)
    {
        return None;
    }
    (now.saturating_sub(started) >= deadline.as_millis() as Millis).then(|| PodFailure {
        reason: "DeadlineExceeded".into(),
        message: format!(
            "Pod was active on the node longer than the specified deadline ({} s)",
            deadline.as_secs()
        ),
    })
}

/// How long SIGKILL waits after SIGTERM at least, when a preStop hook used the grace period
/// up (kubelet gives the same).
pub const MIN_TERM_MS: Millis = 2_000;

/// The next step of stopping instance `i` of container `index` (`None`: an init container):
/// its preStop hook first (main containers with one the node runs), then SIGTERM, then SIGKILL
/// once `grace` has passed since the hook started (or since SIGTERM).
fn stop(
    pod: &PodRecord,
    index: Option<usize>,
    i: &Instance,
    grace: Millis,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let uid = &pod.uid;
    let hook = index.filter(|&index| i.pre_stop_at.is_none() && pre_stop_runs(pod, index));
    match (i.term_sent_at, hook) {
        (None, Some(index)) => actions.push(Action::PreStop {
            uid: uid.clone(),
            id: i.id.clone(),
            index,
            budget_ms: grace,
        }),
        (None, None) => actions.push(signal(uid, i, StopSignal::Term)),
        (Some(t), _) if !i.kill_sent => {
            let kill_at = match i.pre_stop_at {
                Some(s) => s.saturating_add(grace).max(t.saturating_add(MIN_TERM_MS)),
                None => t.saturating_add(grace),
            };
            if now >= kill_at {
                actions.push(signal(uid, i, StopSignal::Kill));
            }
        }
        (Some(_), _) => {}
    }
}

/// Container `index` has a preStop hook.
pub fn pre_stop_runs(pod: &PodRecord, index: usize) -> bool {
    let skiff_manifests::Object::Pod(p) = pod.manifest.get() else {
        return false;
    };
    p.spec
        .containers
        .get(index)
        .is_some_and(|c| c.lifecycle.pre_stop.is_some())
}

fn signal(uid: &str, i: &Instance, signal: StopSignal) -> Action {
    Action::Signal {
        uid: uid.to_string(),
        id: i.id.clone(),
        signal,
    }
}

/// Starts the container if its backoff has passed and its image is ready, or pulls the image.
fn start_or_pull(
    pod: &PodRecord,
    init: bool,
    index: usize,
    image: &dyn Fn(&str) -> ImageState,
    now: Millis,
) -> Option<Action> {
    let (spec, c) = if init {
        (
            &pod.plan.init_containers[index],
            &pod.status.init_containers[index],
        )
    } else {
        (&pod.plan.containers[index], &pod.status.containers[index])
    };
    if c.next_start_at.is_some_and(|t| t > now) {
        return None;
    }
    let state = image(&spec.image);
    let need_pull = match spec.pull_policy {
        PullPolicy::Never => false,
        PullPolicy::IfNotPresent => state != ImageState::Present,
        PullPolicy::Always => !c.pulled,
    };
    if need_pull {
        return match state {
            ImageState::Pulling => None,
            ImageState::Failed { retry_at, .. } if retry_at > now => None,
            _ => Some(Action::PullImage {
                image: spec.image.clone(),
            }),
        };
    }
    if state != ImageState::Present {
        return None; // pull policy Never and no image: the status says ErrImageNeverPull
    }
    Some(Action::StartContainer {
        uid: pod.uid.clone(),
        init,
        index,
        id: format!(
            "{}-{}{}-{}",
            pod.uid,
            if init { "i" } else { "c" },
            index,
            c.attempts + 1
        ),
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

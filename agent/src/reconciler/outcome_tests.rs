//! Tables for folding executor outcomes into a pod record: each case gives the record before,
//! the outcomes, the whole record after and what the loop is told.

use super::*;
use crate::pod::{
    ContainerPlanSpec, PodPlanSpec, PodRuntime, PullPolicy, RestartPolicy, sample_manifest,
};
use std::time::Duration;

const SEC: Millis = 1000;
const NOW: Millis = 1_000 * SEC;

fn backoffs() -> Backoffs {
    Backoffs {
        crash: Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        },
        sandbox: Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        },
    }
}

/// A pod with init container `init` and containers `a` and `b`, its sandbox ready.
fn pod() -> PodRecord {
    let spec = |name: &str| ContainerPlanSpec {
        name: name.into(),
        image: format!("img-{name}"),
        pull_policy: PullPolicy::IfNotPresent,
        sidecar: false,
    };
    let plan = PodPlanSpec {
        init_containers: vec![spec("init")],
        containers: vec![spec("a"), spec("b")],
        restart_policy: RestartPolicy::Always,
        grace_period: Duration::from_secs(30),
        host_network: false,
        active_deadline: None,
    };
    let mut status = PodRuntime::for_plan(&plan);
    status.sandbox_ready = true;
    status.started_at = Some(SEC);
    PodRecord {
        uid: "u1".into(),
        namespace: "default".into(),
        name: "p".into(),
        owner: None,
        spec_hash: "h".into(),
        manifest: sample_manifest(),
        plan,
        created_at: 0,
        deleting_since: None,
        status,
    }
}

fn net(ip: &str) -> PodNet {
    PodNet {
        ip: ip.into(),
        hosts_file: "/run/skiff/u1/hosts".into(),
        resolv_file: "/run/skiff/u1/resolv.conf".into(),
    }
}

fn running(id: &str) -> Option<Instance> {
    Some(Instance {
        id: id.into(),
        pid: 7,
        started_at: 2 * SEC,
        term_sent_at: None,
        kill_sent: false,
        probes: Default::default(),
        stop_reason: None,
        stop_grace_ms: None,
        pre_stop_at: None,
    })
}

fn waiting(reason: &str, message: &str) -> Option<Waiting> {
    Some(Waiting {
        reason: reason.into(),
        message: message.into(),
    })
}

fn event(warning: bool, reason: &str, message: &str) -> Noted {
    Noted {
        warning,
        reason: reason.into(),
        message: message.into(),
    }
}

fn started(init: bool, index: usize, id: &str) -> Outcome {
    Outcome::Started {
        init,
        index,
        id: id.into(),
        pid: 42,
        started_at: UNIX_EPOCH + Duration::from_secs(999),
    }
}

fn start_failed(index: usize, id: &str) -> Outcome {
    Outcome::StartFailed {
        init: false,
        index,
        id: id.into(),
        reason: "RunContainerError".into(),
        message: "exec: no such file".into(),
    }
}

fn sandbox_failed() -> Outcome {
    Outcome::SandboxFailed {
        reason: "FailedCreatePodSandBox".into(),
        message: "no address".into(),
    }
}

struct Case {
    name: &'static str,
    /// The record before (changes to [`pod`]).
    before: fn(&mut PodRecord),
    outcomes: Vec<Outcome>,
    /// The record after (changes to the record before).
    after: fn(&mut PodRecord),
    folded: Folded,
}

fn unchanged(_: &mut PodRecord) {}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "first start: attempt 1, no restarts, waiting cleared",
            before: |p| p.status.containers[0].waiting = waiting("ContainerCreating", ""),
            outcomes: vec![started(false, 0, "u1-c0-1")],
            after: |p| {
                let c = &mut p.status.containers[0];
                c.attempts = 1;
                c.restart_count = 0;
                c.waiting = None;
                c.current = Some(Instance {
                    id: "u1-c0-1".into(),
                    pid: 42,
                    started_at: 999 * SEC,
                    term_sent_at: None,
                    kill_sent: false,
                    probes: Default::default(),
                    stop_reason: None,
                    stop_grace_ms: None,
                    pre_stop_at: None,
                });
            },
            folded: Folded {
                events: vec![event(false, "Started", "started container a")],
                ..Folded::default()
            },
        },
        Case {
            name: "a restart: attempts from the id, restart count one less, backoff cleared",
            before: |p| {
                let c = &mut p.status.containers[1];
                c.attempts = 2;
                c.restart_count = 1;
                c.failures = 2;
                c.next_start_at = Some(NOW);
                c.waiting = waiting("CrashLoopBackOff", "back-off");
            },
            outcomes: vec![started(false, 1, "u1-c1-3")],
            after: |p| {
                let c = &mut p.status.containers[1];
                c.attempts = 3;
                c.restart_count = 2;
                c.next_start_at = None;
                c.waiting = None;
                c.current = Some(Instance {
                    id: "u1-c1-3".into(),
                    pid: 42,
                    started_at: 999 * SEC,
                    term_sent_at: None,
                    kill_sent: false,
                    probes: Default::default(),
                    stop_reason: None,
                    stop_grace_ms: None,
                    pre_stop_at: None,
                });
            },
            folded: Folded {
                events: vec![event(false, "Started", "started container b")],
                ..Folded::default()
            },
        },
        Case {
            name: "an id older than the attempts does not lower them",
            before: |p| p.status.init_containers[0].attempts = 4,
            outcomes: vec![started(true, 0, "u1-i0-2")],
            after: |p| {
                let c = &mut p.status.init_containers[0];
                c.restart_count = 3;
                c.current = Some(Instance {
                    id: "u1-i0-2".into(),
                    pid: 42,
                    started_at: 999 * SEC,
                    term_sent_at: None,
                    kill_sent: false,
                    probes: Default::default(),
                    stop_reason: None,
                    stop_grace_ms: None,
                    pre_stop_at: None,
                });
            },
            folded: Folded {
                events: vec![event(false, "Started", "started container init")],
                ..Folded::default()
            },
        },
        Case {
            name: "first start failure: crash backoff base, waiting reason",
            before: unchanged,
            outcomes: vec![start_failed(0, "u1-c0-1")],
            after: |p| {
                let c = &mut p.status.containers[0];
                c.attempts = 1;
                c.failures = 1;
                c.next_start_at = Some(NOW + 10 * SEC);
                c.waiting = waiting("RunContainerError", "exec: no such file");
            },
            folded: Folded {
                events: vec![event(
                    true,
                    "Failed",
                    "container a: RunContainerError: exec: no such file",
                )],
                ..Folded::default()
            },
        },
        Case {
            name: "third start failure in a row: the crash backoff doubles twice",
            before: |p| {
                let c = &mut p.status.containers[0];
                c.attempts = 2;
                c.failures = 2;
                c.restart_count = 1;
            },
            outcomes: vec![start_failed(0, "u1-c0-3")],
            after: |p| {
                let c = &mut p.status.containers[0];
                c.attempts = 3;
                c.failures = 3;
                c.next_start_at = Some(NOW + 40 * SEC);
                c.waiting = waiting("RunContainerError", "exec: no such file");
            },
            folded: Folded {
                events: vec![event(
                    true,
                    "Failed",
                    "container a: RunContainerError: exec: no such file",
                )],
                ..Folded::default()
            },
        },
        Case {
            name: "sandbox ready: network kept, error and backoff cleared, start time kept",
            before: |p| {
                let s = &mut p.status;
                s.sandbox_ready = false;
                s.sandbox_error = waiting("FailedMount", "configmap late not found");
                s.sandbox_failures = 3;
                s.sandbox_retry_at = Some(NOW);
            },
            outcomes: vec![Outcome::SandboxReady {
                network: Some(net("10.42.0.7")),
            }],
            after: |p| {
                let s = &mut p.status;
                s.sandbox_ready = true;
                s.sandbox_error = None;
                s.sandbox_failures = 0;
                s.sandbox_retry_at = None;
                s.network = Some(net("10.42.0.7"));
            },
            folded: Folded::default(),
        },
        Case {
            name: "first sandbox ready sets the pod's start time",
            before: |p| {
                p.status.sandbox_ready = false;
                p.status.started_at = None;
            },
            outcomes: vec![Outcome::SandboxReady { network: None }],
            after: |p| {
                p.status.sandbox_ready = true;
                p.status.started_at = Some(NOW);
            },
            folded: Folded::default(),
        },
        Case {
            name: "sandbox failed: the sandbox backoff, not the crash backoff",
            before: |p| p.status.sandbox_ready = false,
            outcomes: vec![sandbox_failed()],
            after: |p| {
                let s = &mut p.status;
                s.sandbox_failures = 1;
                s.sandbox_retry_at = Some(NOW + SEC);
                s.sandbox_error = waiting("FailedCreatePodSandBox", "no address");
            },
            folded: Folded {
                events: vec![event(true, "FailedCreatePodSandBox", "no address")],
                ..Folded::default()
            },
        },
        Case {
            name: "sandbox failed again: its backoff doubles",
            before: |p| {
                p.status.sandbox_ready = false;
                p.status.sandbox_failures = 3;
            },
            outcomes: vec![sandbox_failed()],
            after: |p| {
                let s = &mut p.status;
                s.sandbox_failures = 4;
                s.sandbox_retry_at = Some(NOW + 8 * SEC);
                s.sandbox_error = waiting("FailedCreatePodSandBox", "no address");
            },
            folded: Folded {
                events: vec![event(true, "FailedCreatePodSandBox", "no address")],
                ..Folded::default()
            },
        },
        Case {
            name: "TERM sent: noted on the instance it went to only",
            before: |p| {
                p.status.containers[0].current = running("u1-c0-1");
                p.status.containers[1].current = running("u1-c1-1");
            },
            outcomes: vec![Outcome::Signaled {
                id: "u1-c1-1".into(),
                signal: StopSignal::Term,
            }],
            after: |p| {
                if let Some(i) = &mut p.status.containers[1].current {
                    i.term_sent_at = Some(NOW);
                }
            },
            folded: Folded::default(),
        },
        Case {
            name: "KILL sent: noted, the TERM time kept",
            before: |p| {
                p.status.init_containers[0].current = running("u1-i0-1");
                if let Some(i) = &mut p.status.init_containers[0].current {
                    i.term_sent_at = Some(5 * SEC);
                }
            },
            outcomes: vec![Outcome::Signaled {
                id: "u1-i0-1".into(),
                signal: StopSignal::Kill,
            }],
            after: |p| {
                if let Some(i) = &mut p.status.init_containers[0].current {
                    i.kill_sent = true;
                }
            },
            folded: Folded::default(),
        },
        Case {
            name: "a signal to an instance no longer current changes nothing",
            before: |p| p.status.containers[0].current = running("u1-c0-2"),
            outcomes: vec![Outcome::Signaled {
                id: "u1-c0-1".into(),
                signal: StopSignal::Kill,
            }],
            after: unchanged,
            folded: Folded::default(),
        },
        Case {
            name: "removed: only that instance leaves the removal list",
            before: |p| p.status.pending_removal = vec!["u1-c0-1".into(), "u1-c1-1".into()],
            outcomes: vec![Outcome::Removed {
                id: "u1-c0-1".into(),
            }],
            after: |p| p.status.pending_removal = vec!["u1-c1-1".into()],
            folded: Folded::default(),
        },
        Case {
            name: "torn down: sandbox and network gone",
            before: |p| p.status.network = Some(net("10.42.0.7")),
            outcomes: vec![Outcome::TornDown {
                network_pending: None,
            }],
            after: |p| {
                p.status.sandbox_ready = false;
                p.status.network = None;
            },
            folded: Folded::default(),
        },
        Case {
            name: "torn down while the store refuses writes: the network is released later",
            before: |p| p.status.network = Some(net("10.42.0.7")),
            outcomes: vec![Outcome::TornDown {
                network_pending: Some("store: disk full".into()),
            }],
            after: |p| {
                p.status.sandbox_ready = false;
                p.status.network = None;
            },
            folded: Folded {
                network_pending: Some("store: disk full".into()),
                ..Folded::default()
            },
        },
        Case {
            name: "a failed action: an event and the loop told, the record untouched",
            before: unchanged,
            outcomes: vec![Outcome::Failed {
                message: "unmount /x: busy".into(),
            }],
            after: unchanged,
            folded: Folded {
                events: vec![event(true, "FailedAction", "unmount /x: busy")],
                action_failed: true,
                network_pending: None,
            },
        },
        Case {
            name: "a whole job: sandbox, a start, a failed start, a failed removal; events in order",
            before: |p| {
                p.status.sandbox_ready = false;
                p.status.pending_removal = vec!["u1-c0-1".into()];
            },
            outcomes: vec![
                Outcome::SandboxReady {
                    network: Some(net("10.42.0.9")),
                },
                started(false, 0, "u1-c0-2"),
                start_failed(1, "u1-c1-1"),
                Outcome::Failed {
                    message: "remove u1-c0-1: busy".into(),
                },
            ],
            after: |p| {
                p.status.sandbox_ready = true;
                p.status.network = Some(net("10.42.0.9"));
                let a = &mut p.status.containers[0];
                a.attempts = 2;
                a.restart_count = 1;
                a.current = Some(Instance {
                    id: "u1-c0-2".into(),
                    pid: 42,
                    started_at: 999 * SEC,
                    term_sent_at: None,
                    kill_sent: false,
                    probes: Default::default(),
                    stop_reason: None,
                    stop_grace_ms: None,
                    pre_stop_at: None,
                });
                let b = &mut p.status.containers[1];
                b.attempts = 1;
                b.failures = 1;
                b.next_start_at = Some(NOW + 10 * SEC);
                b.waiting = waiting("RunContainerError", "exec: no such file");
            },
            folded: Folded {
                events: vec![
                    event(false, "Started", "started container a"),
                    event(
                        true,
                        "Failed",
                        "container b: RunContainerError: exec: no such file",
                    ),
                    event(true, "FailedAction", "remove u1-c0-1: busy"),
                ],
                action_failed: true,
                network_pending: None,
            },
        },
    ]
}

#[test]
fn every_outcome_folds_into_the_record() {
    for case in cases() {
        let mut before = pod();
        (case.before)(&mut before);
        let mut expected = before.clone();
        (case.after)(&mut expected);
        let mut record = before;
        let folded = fold(&mut record, case.outcomes, NOW, &backoffs());
        assert_eq!(record, expected, "{}: record", case.name);
        assert_eq!(folded, case.folded, "{}: what the loop is told", case.name);
    }
}

#[test]
fn an_instance_id_without_an_attempt_counts_as_the_first() {
    let mut p = pod();
    fold(&mut p, vec![started(false, 0, "odd")], NOW, &backoffs());
    assert_eq!(p.status.containers[0].attempts, 1);
    assert_eq!(p.status.containers[0].restart_count, 0);
}

#[test]
fn failed_jobs_in_a_row_wait_longer_each_time() {
    let pull = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(30),
        reset_after: Duration::from_secs(600),
    };
    let first = retry_failing(None, NOW, &pull);
    assert_eq!(first, (1, NOW + 10 * SEC));
    let second = retry_failing(Some(first), NOW + 10 * SEC, &pull);
    assert_eq!(second, (2, NOW + 30 * SEC));
    let third = retry_failing(Some(second), NOW + 30 * SEC, &pull);
    assert_eq!(third, (3, NOW + 60 * SEC), "capped at the max");
}

#[test]
fn times_before_the_epoch_are_zero() {
    assert_eq!(to_millis(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
    assert_eq!(to_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
}

#[test]
fn hooks_that_ran_mark_the_instance_and_failures_are_events() {
    let mut p = pod();
    p.status.containers[0].current = running("a1");
    p.status.containers[1].current = running("b1");
    let folded = fold(
        &mut p,
        vec![Outcome::HookRan {
            id: "a1".into(),
            hook: HookKind::PreStop,
            took_ms: 4 * SEC,
            error: None,
        }],
        10 * SEC,
        &backoffs(),
    );
    assert!(folded.events.is_empty());
    let a = p.status.containers[0].current.as_ref().unwrap();
    assert_eq!(a.pre_stop_at, Some(6 * SEC), "when the hook started");
    assert_eq!(a.stop_reason, None);

    let folded = fold(
        &mut p,
        vec![Outcome::HookRan {
            id: "b1".into(),
            hook: HookKind::PostStart,
            took_ms: 10,
            error: Some("dial tcp 10.42.0.5:9: connection refused".into()),
        }],
        11 * SEC,
        &backoffs(),
    );
    let b = p.status.containers[1].current.as_ref().unwrap();
    assert_eq!(
        b.stop_reason.as_deref(),
        Some("PostStart hook failed: dial tcp 10.42.0.5:9: connection refused"),
        "a failed postStart hook stops the container"
    );
    assert_eq!(folded.events.len(), 1);
    assert_eq!(folded.events[0].reason, "FailedPostStartHook");
    assert!(folded.events[0].warning);
    assert_eq!(
        folded.events[0].message,
        "PostStartHook failed for container b: dial tcp 10.42.0.5:9: connection refused"
    );
}

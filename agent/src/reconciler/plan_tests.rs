//! Tables for the reconciler's observe/plan decisions.

use super::*;
use crate::pod::*;
use std::time::Duration;

const SEC: Millis = 1000;

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
        reset_after: Duration::from_secs(600),
    }
}

fn spec(name: &str, policy: PullPolicy) -> ContainerPlanSpec {
    ContainerPlanSpec {
        name: name.into(),
        image: format!("img-{name}"),
        pull_policy: policy,
        sidecar: false,
    }
}

fn pod(init: &[&str], containers: &[&str], restart: RestartPolicy) -> PodRecord {
    let plan = PodPlanSpec {
        init_containers: init
            .iter()
            .map(|n| spec(n, PullPolicy::IfNotPresent))
            .collect(),
        containers: containers
            .iter()
            .map(|n| spec(n, PullPolicy::IfNotPresent))
            .collect(),
        restart_policy: restart,
        grace_period: Duration::from_secs(30),
        host_network: false,
        active_deadline: None,
    };
    let mut status = PodRuntime::for_plan(&plan);
    status.sandbox_ready = true;
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

fn present(_: &str) -> ImageState {
    ImageState::Present
}

fn run(c: &mut ContainerStatus, id: &str, at: Millis) {
    c.attempts += 1;
    c.current = Some(Instance {
        id: id.into(),
        pid: 42,
        started_at: at,
        term_sent_at: None,
        kill_sent: false,
        probes: Default::default(),
        stop_reason: None,
        stop_grace_ms: None,
        pre_stop_at: None,
    });
}

fn exited(code: i32, at: Millis) -> impl Fn(&str) -> Observed {
    move |_| Observed::Exited {
        exit_code: code,
        signal: None,
        oom_killed: false,
        shim_lost: false,
        finished_at: at,
    }
}

#[test]
fn new_pod_makes_its_sandbox_first() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    p.status.sandbox_ready = false;
    assert_eq!(
        plan(&p, &present, 0),
        vec![Action::EnsureSandbox { uid: "u1".into() }]
    );
    p.status.sandbox_retry_at = Some(5 * SEC);
    assert_eq!(
        plan(&p, &present, SEC),
        vec![],
        "sandbox retry is backed off"
    );
}

#[test]
fn starts_every_container_with_fresh_ids() {
    let p = pod(&[], &["a", "b"], RestartPolicy::Always);
    assert_eq!(
        plan(&p, &present, 0),
        vec![
            Action::StartContainer {
                uid: "u1".into(),
                init: false,
                index: 0,
                id: "u1-c0-1".into()
            },
            Action::StartContainer {
                uid: "u1".into(),
                init: false,
                index: 1,
                id: "u1-c1-1".into()
            },
        ]
    );
}

#[test]
fn missing_image_is_pulled_and_never_policy_waits() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    let missing = |_: &str| ImageState::Missing;
    assert_eq!(
        plan(&p, &missing, 0),
        vec![Action::PullImage {
            image: "img-a".into()
        }]
    );
    let pulling = |_: &str| ImageState::Pulling;
    assert_eq!(plan(&p, &pulling, 0), vec![]);
    let failed = |_: &str| ImageState::Failed {
        message: "x".into(),
        retry_at: 10 * SEC,
    };
    assert_eq!(plan(&p, &failed, 5 * SEC), vec![], "pull backoff");
    assert_eq!(plan(&p, &failed, 10 * SEC).len(), 1, "retry after backoff");
    p.plan.containers[0].pull_policy = PullPolicy::Never;
    assert_eq!(plan(&p, &missing, 0), vec![]);
    p.plan.containers[0].pull_policy = PullPolicy::Always;
    assert_eq!(
        plan(&p, &present, 0),
        vec![Action::PullImage {
            image: "img-a".into()
        }],
        "Always pulls even when present"
    );
    p.status.containers[0].pulled = true;
    assert!(matches!(
        plan(&p, &present, 0)[0],
        Action::StartContainer { .. }
    ));
}

#[test]
fn init_containers_run_in_order_before_the_rest() {
    let mut p = pod(&["i0", "i1"], &["a"], RestartPolicy::Always);
    let first = plan(&p, &present, 0);
    assert_eq!(
        first,
        vec![Action::StartContainer {
            uid: "u1".into(),
            init: true,
            index: 0,
            id: "u1-i0-1".into()
        }]
    );
    run(&mut p.status.init_containers[0], "u1-i0-1", 0);
    assert_eq!(
        plan(&p, &present, 0),
        vec![],
        "wait for the running init container"
    );
    observe(&mut p, &exited(0, SEC), SEC, &backoff());
    assert!(p.status.init_containers[0].done);
    let next = plan(&p, &present, SEC);
    assert_eq!(
        next[0],
        Action::RemoveContainer {
            uid: "u1".into(),
            id: "u1-i0-1".into()
        }
    );
    assert_eq!(
        next[1],
        Action::StartContainer {
            uid: "u1".into(),
            init: true,
            index: 1,
            id: "u1-i1-1".into()
        }
    );
}

#[test]
fn failed_init_with_never_fails_the_pod() {
    let mut p = pod(&["i0"], &["a"], RestartPolicy::Never);
    run(&mut p.status.init_containers[0], "x", 0);
    observe(&mut p, &exited(1, SEC), SEC, &backoff());
    p.status.pending_removal.clear();
    assert_eq!(p.phase(), Phase::Failed);
    // Finished for good: the sandbox goes (as kubelet's), nothing starts again.
    assert_eq!(
        plan(&p, &present, SEC),
        vec![Action::TeardownSandbox { uid: "u1".into() }]
    );
    p.status.sandbox_ready = false;
    assert_eq!(plan(&p, &present, SEC), vec![]);
}

#[test]
fn restart_policies_decide_restarts() {
    // (policy, exit code, restarts?)
    let table = [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::Always, 1, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 1, true),
        (RestartPolicy::Never, 0, false),
        (RestartPolicy::Never, 1, false),
    ];
    for (policy, code, restarts) in table {
        let mut p = pod(&[], &["a"], policy);
        run(&mut p.status.containers[0], "x", 0);
        observe(&mut p, &exited(code, SEC), SEC, &backoff());
        let c = &p.status.containers[0];
        assert_eq!(!c.done, restarts, "{policy:?} exit {code}");
        assert_eq!(c.last.as_ref().unwrap().exit_code, code);
    }
}

#[test]
fn a_probe_kill_restarts_unless_the_policy_is_never_however_it_exited() {
    // (policy, exit code, restarts?)
    let table = [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::OnFailure, 0, true),
        (RestartPolicy::OnFailure, 143, true),
        (RestartPolicy::Never, 0, false),
    ];
    for (policy, code, restarts) in table {
        let mut p = pod(&[], &["a"], policy);
        run(&mut p.status.containers[0], "x", 0);
        let i = p.status.containers[0].current.as_mut().unwrap();
        i.stop_reason = Some("Liveness probe failed: refused".into());
        // Stopped: TERM first, then KILL after the grace period.
        assert!(matches!(
            plan(&p, &present, 0).as_slice(),
            [Action::Signal {
                signal: StopSignal::Term,
                ..
            }]
        ));
        observe(&mut p, &exited(code, SEC), SEC, &backoff());
        assert_eq!(
            !p.status.containers[0].done, restarts,
            "{policy:?} exit {code}"
        );
    }
}

#[test]
fn crash_backoff_doubles_and_resets_after_a_long_run() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    let b = backoff();
    let mut t = 0;
    let mut delays = vec![];
    for attempt in 1..=4 {
        run(&mut p.status.containers[0], &format!("x{attempt}"), t);
        t += SEC;
        observe(&mut p, &exited(1, t), t, &b);
        let next = p.status.containers[0].next_start_at.unwrap();
        delays.push((next - t) / SEC);
        assert_eq!(
            plan(&p, &present, next - 1).len(),
            1,
            "only the removal before backoff ends"
        );
        p.status.pending_removal.clear();
        assert_eq!(
            plan(&p, &present, next - 1),
            vec![],
            "nothing before the backoff ends"
        );
        assert!(matches!(
            plan(&p, &present, next)[0],
            Action::StartContainer { .. }
        ));
        t = next;
    }
    assert_eq!(delays, vec![10, 20, 40, 80]);
    // A run of ten minutes resets the backoff.
    run(&mut p.status.containers[0], "long", t);
    t += 600 * SEC;
    observe(&mut p, &exited(1, t), t, &b);
    assert_eq!(p.status.containers[0].next_start_at.unwrap() - t, 10 * SEC);
}

#[test]
fn oom_and_lost_containers_get_their_reasons() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    run(&mut p.status.containers[0], "x", 0);
    let oom = |_: &str| Observed::Exited {
        exit_code: 137,
        signal: Some(9),
        oom_killed: true,
        shim_lost: false,
        finished_at: 5,
    };
    let noted = observe(&mut p, &oom, 5, &backoff());
    assert_eq!(
        p.status.containers[0].last.as_ref().unwrap().reason,
        "OOMKilled"
    );
    assert_eq!(noted[0].reason, "OOMKilled");
    run(&mut p.status.containers[0], "y", 0);
    observe(&mut p, &|_: &str| Observed::Gone, 5, &backoff());
    assert_eq!(
        p.status.containers[0].last.as_ref().unwrap().reason,
        "ContainerStatusUnknown"
    );
}

#[test]
fn running_containers_are_left_alone() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    run(&mut p.status.containers[0], "x", 0);
    let before = p.clone();
    let noted = observe(&mut p, &|_: &str| Observed::Running, SEC, &backoff());
    assert!(noted.is_empty());
    assert_eq!(p, before);
    assert_eq!(plan(&p, &present, SEC), vec![]);
}

#[test]
fn deletion_terms_then_kills_after_grace_then_tears_down() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    run(&mut p.status.containers[0], "x", 0);
    p.deleting_since = Some(SEC);
    let term = Action::Signal {
        uid: "u1".into(),
        id: "x".into(),
        signal: StopSignal::Term,
    };
    assert_eq!(plan(&p, &present, SEC), vec![term]);
    p.status.containers[0]
        .current
        .as_mut()
        .unwrap()
        .term_sent_at = Some(SEC);
    assert_eq!(
        plan(&p, &present, 30 * SEC),
        vec![],
        "within the grace period"
    );
    let kill = Action::Signal {
        uid: "u1".into(),
        id: "x".into(),
        signal: StopSignal::Kill,
    };
    assert_eq!(plan(&p, &present, 31 * SEC), vec![kill]);
    observe(&mut p, &exited(143, 32 * SEC), 32 * SEC, &backoff());
    assert!(
        p.status.containers[0].done,
        "a deleted pod's container does not restart"
    );
    assert_eq!(
        plan(&p, &present, 32 * SEC),
        vec![Action::RemoveContainer {
            uid: "u1".into(),
            id: "x".into()
        }]
    );
    p.status.pending_removal.clear();
    assert_eq!(
        plan(&p, &present, 32 * SEC),
        vec![Action::TeardownSandbox { uid: "u1".into() }]
    );
    p.status.sandbox_ready = false;
    assert_eq!(
        plan(&p, &present, 32 * SEC),
        vec![Action::Forget { uid: "u1".into() }]
    );
}

#[test]
fn an_evicted_pod_stops_for_good_and_loses_its_sandbox_but_stays() {
    let mut p = pod(&["setup"], &["a", "b"], RestartPolicy::Always);
    p.status.sandbox_ready = true;
    p.status.init_containers[0].done = true;
    p.status.init_containers[0].last = Some(Termination {
        exit_code: 0,
        signal: None,
        reason: "Completed".into(),
        started_at: 0,
        finished_at: 0,
    });
    run(&mut p.status.containers[0], "x", 0);
    run(&mut p.status.containers[1], "y", 0);
    assert_eq!(plan(&p, &present, SEC), vec![]);
    p.status.failure = Some(PodFailure {
        reason: "Evicted".into(),
        message: "Usage of EmptyDir volume \"v\" exceeds the limit \"1Mi\".".into(),
    });
    assert_eq!(p.phase(), Phase::Failed);
    assert_eq!(terms(&plan(&p, &present, SEC)), vec!["x", "y"]);
    // b exits at once; a is past its grace period and is killed; neither restarts.
    for c in &mut p.status.containers {
        c.current.as_mut().unwrap().term_sent_at = Some(SEC);
    }
    observe(
        &mut p,
        &|id: &str| {
            if id == "y" {
                exited(143, 2 * SEC)(id)
            } else {
                Observed::Running
            }
        },
        2 * SEC,
        &backoff(),
    );
    assert!(
        p.status.containers[1].done,
        "an evicted pod's container does not restart"
    );
    let kill = Action::Signal {
        uid: "u1".into(),
        id: "x".into(),
        signal: StopSignal::Kill,
    };
    assert!(plan(&p, &present, 40 * SEC).contains(&kill));
    observe(&mut p, &exited(137, 41 * SEC), 41 * SEC, &backoff());
    assert!(
        p.status
            .containers
            .iter()
            .all(|c| c.done && c.current.is_none())
    );
    p.status.pending_removal.clear();
    assert_eq!(
        plan(&p, &present, 41 * SEC),
        vec![Action::TeardownSandbox { uid: "u1".into() }]
    );
    p.status.sandbox_ready = false;
    assert_eq!(plan(&p, &present, 41 * SEC), vec![], "kept, not made again");
    assert_eq!(p.phase(), Phase::Failed);
    // Deleted later: forgotten.
    p.deleting_since = Some(50 * SEC);
    assert_eq!(
        plan(&p, &present, 50 * SEC),
        vec![Action::Forget { uid: "u1".into() }]
    );
}

#[test]
fn a_container_whose_shim_died_is_restarted_with_an_event() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    run(&mut p.status.containers[0], "x", 0);
    let lost = |_: &str| Observed::Exited {
        exit_code: 137,
        signal: Some(9),
        oom_killed: false,
        shim_lost: true,
        finished_at: 5,
    };
    let noted = observe(&mut p, &lost, 5, &backoff());
    assert_eq!(
        p.status.containers[0].last.as_ref().unwrap().reason,
        "ShimLost"
    );
    assert!(p.status.containers[0].next_start_at.is_some(), "restarted");
    assert_eq!(noted.len(), 1);
    assert_eq!(noted[0].reason, "ShimLost");
    assert!(
        noted[0].message.contains("restarted"),
        "{}",
        noted[0].message
    );
}

fn with_pre_stop(p: &mut PodRecord, hook: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: i\n    lifecycle:\n      preStop: {hook}\n"
    );
    p.manifest = skiff_manifests::parse_file("p.yaml", yaml.as_bytes())
        .objects()
        .into_iter()
        .next()
        .cloned()
        .expect("valid pod");
}

#[test]
fn deletion_runs_the_pre_stop_hook_then_terms_then_kills_after_the_grace_from_the_hook() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    with_pre_stop(&mut p, "{sleep: {seconds: 5}}");
    run(&mut p.status.containers[0], "x", 0);
    p.deleting_since = Some(SEC);
    assert_eq!(
        plan(&p, &present, SEC),
        vec![Action::PreStop {
            uid: "u1".into(),
            id: "x".into(),
            index: 0,
            budget_ms: 30 * SEC,
        }]
    );
    // The hook ran from 1 s to 6 s: SIGTERM next.
    let i = p.status.containers[0].current.as_mut().unwrap();
    i.pre_stop_at = Some(SEC);
    let term = Action::Signal {
        uid: "u1".into(),
        id: "x".into(),
        signal: StopSignal::Term,
    };
    assert_eq!(plan(&p, &present, 6 * SEC), vec![term]);
    p.status.containers[0]
        .current
        .as_mut()
        .unwrap()
        .term_sent_at = Some(6 * SEC);
    // The grace period counts from the hook's start: SIGKILL at 31 s, not 36 s.
    assert_eq!(plan(&p, &present, 30 * SEC), vec![]);
    let kill = Action::Signal {
        uid: "u1".into(),
        id: "x".into(),
        signal: StopSignal::Kill,
    };
    assert_eq!(plan(&p, &present, 31 * SEC), vec![kill.clone()]);
    // A hook that used the whole grace period still leaves SIGTERM 2 s before SIGKILL.
    let i = p.status.containers[0].current.as_mut().unwrap();
    i.term_sent_at = Some(31 * SEC);
    assert_eq!(plan(&p, &present, 32 * SEC), vec![]);
    assert_eq!(plan(&p, &present, 33 * SEC), vec![kill]);
}

#[test]
fn an_exec_pre_stop_hook_runs_like_the_others() {
    let mut p = pod(&[], &["a"], RestartPolicy::Always);
    with_pre_stop(&mut p, "{exec: {command: [sh, -c, 'true']}}");
    run(&mut p.status.containers[0], "x", 0);
    p.deleting_since = Some(SEC);
    assert!(matches!(
        plan(&p, &present, SEC).as_slice(),
        [Action::PreStop { index: 0, .. }]
    ));
}

fn starts(actions: &[Action]) -> Vec<(bool, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartContainer { init, index, .. } => Some((*init, *index)),
            _ => None,
        })
        .collect()
}

fn terms(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal {
                id,
                signal: StopSignal::Term,
                ..
            } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sidecar_starts_before_the_next_init_container_and_runs_beside_the_main_ones() {
    let mut p = pod(&["side", "setup"], &["a"], RestartPolicy::Always);
    p.plan.init_containers[0].sidecar = true;
    assert_eq!(
        starts(&plan(&p, &present, 0)),
        [(true, 0)],
        "the sidecar first"
    );
    run(&mut p.status.init_containers[0], "s1", 0);
    assert_eq!(p.phase(), Phase::Pending);
    // Started is enough: the next init container goes while the sidecar keeps running.
    assert_eq!(starts(&plan(&p, &present, SEC)), [(true, 1)]);
    run(&mut p.status.init_containers[1], "i1", SEC);
    observe(
        &mut p,
        &|id: &str| {
            if id == "i1" {
                exited(0, 2 * SEC)(id)
            } else {
                Observed::Running
            }
        },
        2 * SEC,
        &backoff(),
    );
    assert!(p.status.init_containers[1].done);
    assert!(
        !p.status.init_containers[0].done,
        "a sidecar is never done while the pod runs"
    );
    assert_eq!(starts(&plan(&p, &present, 2 * SEC)), [(false, 0)]);
    run(&mut p.status.containers[0], "a1", 2 * SEC);
    assert_eq!(p.phase(), Phase::Running);
    // The sidecar exits (even with 0): it is started again after its backoff, whatever the
    // pod's policy, and the main container is not held up meanwhile.
    observe(
        &mut p,
        &|id: &str| {
            if id == "s1" {
                exited(0, 3 * SEC)(id)
            } else {
                Observed::Running
            }
        },
        3 * SEC,
        &backoff(),
    );
    assert!(!p.status.init_containers[0].done);
    assert_eq!(
        starts(&plan(&p, &present, 3 * SEC)),
        [],
        "within its backoff"
    );
    assert_eq!(starts(&plan(&p, &present, 20 * SEC)), [(true, 0)]);
    assert_eq!(p.phase(), Phase::Running);
}

#[test]
fn a_sidecar_stops_after_the_main_containers() {
    let mut p = pod(&["side"], &["a"], RestartPolicy::Always);
    p.plan.init_containers[0].sidecar = true;
    run(&mut p.status.init_containers[0], "s1", 0);
    run(&mut p.status.containers[0], "a1", 0);
    p.deleting_since = Some(SEC);
    assert_eq!(
        terms(&plan(&p, &present, SEC)),
        ["a1"],
        "the main container first"
    );
    p.status.containers[0]
        .current
        .as_mut()
        .unwrap()
        .term_sent_at = Some(SEC);
    assert_eq!(terms(&plan(&p, &present, 2 * SEC)), Vec::<String>::new());
    observe(
        &mut p,
        &|id: &str| {
            if id == "a1" {
                exited(143, 2 * SEC)(id)
            } else {
                Observed::Running
            }
        },
        2 * SEC,
        &backoff(),
    );
    assert_eq!(
        terms(&plan(&p, &present, 2 * SEC)),
        ["s1"],
        "then the sidecar"
    );
}

#[test]
fn a_finished_pod_stops_its_sidecars() {
    let mut p = pod(&["side"], &["job"], RestartPolicy::Never);
    p.plan.init_containers[0].sidecar = true;
    run(&mut p.status.init_containers[0], "s1", 0);
    run(&mut p.status.containers[0], "j1", 0);
    observe(
        &mut p,
        &|id: &str| {
            if id == "j1" {
                exited(0, SEC)(id)
            } else {
                Observed::Running
            }
        },
        SEC,
        &backoff(),
    );
    assert_eq!(p.phase(), Phase::Succeeded);
    assert_eq!(terms(&plan(&p, &present, SEC)), ["s1"]);
    // Once stopped it is not started again.
    observe(
        &mut p,
        &|_: &str| exited(143, 2 * SEC)("s1"),
        2 * SEC,
        &backoff(),
    );
    assert!(p.status.init_containers[0].done);
    assert_eq!(starts(&plan(&p, &present, 60 * SEC)), []);
}

#[test]
fn a_pod_past_its_active_deadline_fails_once_unless_finished() {
    let mut p = pod(&[], &["a"], RestartPolicy::Never);
    assert_eq!(deadline_failure(&p, 100 * SEC), None, "no deadline");
    p.plan.active_deadline = Some(Duration::from_secs(10));
    assert_eq!(deadline_failure(&p, 100 * SEC), None, "not started yet");
    p.status.sandbox_ready = true;
    p.status.started_at = Some(SEC);
    run(&mut p.status.containers[0], "x", SEC);
    assert_eq!(deadline_failure(&p, 10 * SEC), None, "9 s in");
    let failed = deadline_failure(&p, 11 * SEC).expect("10 s in: over");
    assert_eq!(failed.reason, "DeadlineExceeded");
    assert_eq!(
        failed.message,
        "Pod was active on the node longer than the specified deadline (10 s)"
    );
    let mut over = p.clone();
    over.status.failure = Some(failed);
    assert_eq!(deadline_failure(&over, 12 * SEC), None, "failed once");
    assert_eq!(over.phase(), Phase::Failed);
    assert_eq!(terms(&plan(&over, &present, 12 * SEC)), vec!["x"]);
    let mut deleting = p.clone();
    deleting.deleting_since = Some(5 * SEC);
    assert_eq!(deadline_failure(&deleting, 12 * SEC), None, "being deleted");
    observe(&mut p, &exited(0, 5 * SEC), 5 * SEC, &backoff());
    assert_eq!(p.phase(), Phase::Succeeded);
    assert_eq!(
        deadline_failure(&p, 12 * SEC),
        None,
        "finished before its deadline"
    );
}

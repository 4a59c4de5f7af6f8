use super::*;
use skiff_manifests::Object;

fn job(spec: &str, policy: &str) -> Valid<Job> {
    let yaml = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n{spec}\n  template:\n    spec:\n      restartPolicy: {policy}\n      containers:\n      - name: main\n        image: busybox\n"
    );
    let parsed = skiff_manifests::parse_file("job.yaml", yaml.as_bytes());
    let objects = parsed.into_result().unwrap_or_else(|e| panic!("{e:?}"));
    let object: Valid<Object> = objects[0].clone();
    Valid::<Job>::try_from(object).unwrap_or_else(|_| panic!("not a job"))
}

/// A leader's view between passes: the table it published and what nodes report.
struct World {
    job: Valid<Job>,
    table: Vec<Placement>,
    pods: BTreeMap<String, PodSeen>,
    lost: BTreeSet<String>,
}

impl World {
    fn new(job: Valid<Job>) -> World {
        World {
            job,
            table: Vec::new(),
            pods: BTreeMap::new(),
            lost: BTreeSet::new(),
        }
    }

    /// One pass at `now`: new attempts go to node `n1`.
    fn pass(&mut self, now: u64) -> Step {
        let lost = self.lost.clone();
        let is_lost = move |n: &str| lost.contains(n);
        let step = step(
            &self.job,
            Inputs {
                entries: self.table.iter().collect(),
                pods: &self.pods,
                lost: &is_lost,
                taken: &|_| false,
                now,
            },
        );
        self.table = step.ended.clone();
        for a in &step.active {
            let node = if a.node.is_empty() {
                "n1".to_string()
            } else {
                a.node.clone()
            };
            self.table.push(Placement {
                namespace: "default".into(),
                name: a.name.clone(),
                owner: crate::pod::Owner {
                    kind: skiff_manifests::Kind::Job,
                    name: "pi".into(),
                },
                template_hash: self.job.pod_template_hash(),
                node,
                job: Some(a.mark.clone()),
            });
        }
        step
    }

    fn active_names(step: &Step) -> Vec<String> {
        step.active.iter().map(|a| a.name.clone()).collect()
    }

    /// Node `n1` reports pod `name` in `phase` (exit code `code` when it ended).
    fn report(&mut self, name: &str, phase: PodPhase, code: i32, restarts: u32) {
        let index = self
            .table
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.job.as_ref()?.index);
        let ended = matches!(phase, PodPhase::Succeeded | PodPhase::Failed);
        self.pods.insert(
            name.to_string(),
            PodSeen {
                node: "n1".into(),
                phase,
                exits: if ended {
                    vec![("main".into(), code)]
                } else {
                    vec![]
                },
                restarts,
                index,
                created_ms: 0,
                template_hash: self.job.pod_template_hash(),
                reason: None,
            },
        );
    }
}

#[test]
fn completions_run_parallelism_at_a_time_and_complete() {
    let mut w = World::new(job("  completions: 3\n  parallelism: 2", "Never"));
    let s = w.pass(1_000);
    let first = World::active_names(&s);
    assert_eq!(first.len(), 2, "{s:?}");
    assert_eq!(s.status.start_ms, Some(1_000));
    assert!(
        first.iter().all(|n| n.starts_with("pi-") && n.len() == 8),
        "{first:?}"
    );
    // The same pass again names the same attempts (another leader would too).
    let mut again = World::new(w.job.clone());
    assert_eq!(World::active_names(&again.pass(1_000)), first);

    w.report(&first[0], PodPhase::Succeeded, 0, 0);
    let s = w.pass(2_000);
    assert_eq!(s.status.succeeded, 1);
    assert_eq!(s.active.len(), 2, "one running, one new: {s:?}");
    assert!(s.active.iter().all(|a| a.name != first[0]));
    let names = World::active_names(&s);
    for n in &names {
        w.report(n, PodPhase::Succeeded, 0, 0);
    }
    let s = w.pass(3_000);
    assert_eq!(s.status.succeeded, 3);
    assert!(s.active.is_empty());
    let done = s.status.finished.clone().expect("complete");
    assert!(done.complete);
    assert_eq!(done.at_ms, 3_000);
    assert_eq!(
        s.ended.len(),
        3,
        "ended attempts stay in the table for their logs"
    );
}

#[test]
fn indexed_jobs_run_each_index_until_it_succeeds() {
    let mut w = World::new(job(
        "  completions: 3\n  parallelism: 2\n  completionMode: Indexed",
        "Never",
    ));
    let s = w.pass(0);
    let idx: Vec<Option<u32>> = s.active.iter().map(|a| a.mark.index).collect();
    assert_eq!(idx, vec![Some(0), Some(1)]);
    assert!(
        s.active[0].name.starts_with("pi-0-"),
        "{:?}",
        s.active[0].name
    );
    let (zero, one) = (s.active[0].name.clone(), s.active[1].name.clone());
    w.report(&zero, PodPhase::Succeeded, 0, 0);
    w.report(&one, PodPhase::Failed, 1, 0);
    let s = w.pass(1_000);
    assert_eq!(s.status.failed, 1);
    assert_eq!(s.status.completed_indexes, "0");
    // New attempts wait out the 10 s backoff (as Kubernetes delays the Job's next pods).
    assert!(s.active.is_empty(), "{s:?}");
    assert_eq!(s.wake_at_ms, Some(11_000));
    let s = w.pass(11_000);
    let mut idx: Vec<Option<u32>> = s.active.iter().map(|a| a.mark.index).collect();
    idx.sort();
    assert_eq!(idx, vec![Some(1), Some(2)]);
    let retry = s
        .active
        .iter()
        .find(|a| a.mark.index == Some(1))
        .expect("retry");
    assert_ne!(retry.name, one, "a retry is a new pod");
    for a in s.active.clone() {
        w.report(&a.name, PodPhase::Succeeded, 0, 0);
    }
    let s = w.pass(12_000);
    assert_eq!(s.status.completed_indexes, "0-2");
    assert!(s.status.finished.as_ref().is_some_and(|f| f.complete));
}

#[test]
fn failures_past_the_backoff_limit_fail_the_job_for_good() {
    let mut w = World::new(job("  backoffLimit: 1", "Never"));
    let s = w.pass(0);
    w.report(&s.active[0].name, PodPhase::Failed, 2, 0);
    let s = w.pass(1_000);
    assert_eq!(s.status.failed, 1);
    assert!(s.active.is_empty(), "backoff: {s:?}");
    assert_eq!(s.wake_at_ms, Some(11_000));
    let s = w.pass(11_000);
    w.report(&s.active[0].name, PodPhase::Failed, 2, 0);
    let s = w.pass(12_000);
    let failed = s.status.finished.clone().expect("failed");
    assert_eq!(
        (failed.complete, failed.reason.as_str()),
        (false, BACKOFF_LIMIT_EXCEEDED)
    );
    assert!(s.active.is_empty());
    // The reports vanish (nodes forgot the pods): the Job stays failed, nothing new runs.
    w.pods.clear();
    let s = w.pass(100_000);
    assert_eq!(
        s.status.finished.map(|f| f.reason),
        Some(BACKOFF_LIMIT_EXCEEDED.into())
    );
    assert!(s.active.is_empty());
}

#[test]
fn the_backoff_doubles_and_stops_at_six_minutes() {
    let failures = |n: usize| -> Vec<Placement> {
        (0..n)
            .map(|i| Placement {
                namespace: "default".into(),
                name: format!("p{i}"),
                owner: crate::pod::Owner {
                    kind: skiff_manifests::Kind::Job,
                    name: "pi".into(),
                },
                template_hash: "h".into(),
                node: "n1".into(),
                job: Some(JobMark {
                    index: None,
                    attempt: i as u32 + 1,
                    created_ms: 0,
                    end: Some(JobPodEnd {
                        succeeded: false,
                        at_ms: 1_000,
                        counted: true,
                        reason: "Error".into(),
                    }),
                }),
            })
            .collect()
    };
    let cases = [
        (0, None),
        (1, Some(11_000)),
        (2, Some(21_000)),
        (3, Some(41_000)),
        (6, Some(321_000)),
        (7, Some(361_000)),
        (30, Some(361_000)),
    ];
    for (n, want) in cases {
        assert_eq!(retry_at(&failures(n)), want, "{n} failures");
    }
}

#[test]
fn the_deadline_fails_the_job_and_stops_its_pods() {
    let mut w = World::new(job(
        "  activeDeadlineSeconds: 5\n  parallelism: 2\n  completions: 4",
        "Never",
    ));
    let s = w.pass(1_000);
    assert_eq!(s.wake_at_ms, Some(6_000));
    w.report(&s.active[0].name, PodPhase::Running, 0, 0);
    let s = w.pass(6_000);
    let failed = s.status.finished.clone().expect("failed");
    assert_eq!(failed.reason, DEADLINE_EXCEEDED);
    assert!(s.active.is_empty());
    assert_eq!(s.ended.len(), 2);
    assert!(
        s.ended.iter().all(|p| p
            .job
            .as_ref()
            .and_then(|m| m.end.as_ref())
            .is_some_and(|e| !e.counted && e.reason == DEADLINE_EXCEEDED)),
        "{:?}",
        s.ended
    );
    assert_eq!(s.status.failed, 0, "stopped pods are not failures");
    // A late success report does not change a recorded end.
    let name = s.ended[0].name.clone();
    w.report(&name, PodPhase::Succeeded, 0, 0);
    let s = w.pass(7_000);
    assert_eq!(s.status.succeeded, 0);
    assert_eq!(
        s.status.finished.map(|f| f.reason),
        Some(DEADLINE_EXCEEDED.into())
    );
}

#[test]
fn a_pod_on_a_lost_node_counts_failed_and_is_replaced_a_success_is_kept() {
    let mut w = World::new(job("  completions: 2\n  parallelism: 2", "Never"));
    let s = w.pass(0);
    let (a, b) = (s.active[0].name.clone(), s.active[1].name.clone());
    w.report(&a, PodPhase::Succeeded, 0, 0);
    let s = w.pass(1_000);
    assert_eq!(s.status.succeeded, 1);
    // n1 is lost with both pods: the success stays, the running one is a failure.
    w.lost.insert("n1".into());
    w.pods.clear();
    let s = w.pass(2_000);
    assert_eq!((s.status.succeeded, s.status.failed), (1, 1), "{s:?}");
    let lost = s.ended.iter().find(|p| p.name == b).expect("b ended");
    assert_eq!(
        lost.job
            .as_ref()
            .and_then(|m| m.end.as_ref())
            .map(|e| e.reason.as_str()),
        Some(NODE_LOST)
    );
    assert!(s.active.is_empty(), "waits out the backoff");
    let s = w.pass(12_000);
    assert_eq!(s.active.len(), 1, "one completion left: {s:?}");
    assert!(s.active[0].name != a && s.active[0].name != b);
}

#[test]
fn the_pod_failure_policy_ignores_or_fails_the_job() {
    let policy = "  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onExitCodes: {operator: In, values: [137]}\n    - action: FailJob\n      onExitCodes: {containerName: main, operator: In, values: [42]}";
    let mut w = World::new(job(policy, "Never"));
    let s = w.pass(0);
    w.report(&s.active[0].name, PodPhase::Failed, 137, 0);
    let s = w.pass(1_000);
    assert_eq!(s.status.failed, 0, "ignored");
    assert!(s.status.finished.is_none());
    assert_eq!(
        s.active.len(),
        1,
        "replaced at once (no backoff for an ignored failure)"
    );
    w.report(&s.active[0].name, PodPhase::Failed, 42, 0);
    let s = w.pass(2_000);
    let failed = s.status.finished.expect("failed");
    assert_eq!(failed.reason, POD_FAILURE_POLICY);
}

#[test]
fn on_failure_restarts_count_against_the_backoff_limit() {
    let mut w = World::new(job("  backoffLimit: 2", "OnFailure"));
    let s = w.pass(0);
    let name = s.active[0].name.clone();
    w.report(&name, PodPhase::Running, 0, 1);
    assert!(w.pass(1_000).status.finished.is_none());
    w.report(&name, PodPhase::Running, 0, 2);
    let s = w.pass(2_000);
    assert_eq!(
        s.status.finished.as_ref().map(|f| f.reason.as_str()),
        Some(BACKOFF_LIMIT_EXCEEDED)
    );
    assert!(s.active.is_empty(), "the pod is stopped");
    w.pods.clear();
    assert!(
        w.pass(3_000).status.finished.is_some_and(|f| !f.complete),
        "stays failed"
    );
}

#[test]
fn a_finished_job_expires_after_its_ttl() {
    let mut w = World::new(job("  ttlSecondsAfterFinished: 10", "Never"));
    let s = w.pass(0);
    w.report(&s.active[0].name, PodPhase::Succeeded, 0, 0);
    let s = w.pass(1_000);
    assert!(!s.expired);
    assert_eq!(s.wake_at_ms, Some(11_000));
    assert!(w.pass(10_999).expired.eq(&false));
    assert!(w.pass(11_000).expired);
}

#[test]
fn suspend_stops_running_attempts_without_counting_them() {
    let mut w = World::new(job("  parallelism: 2\n  completions: 2", "Never"));
    let s = w.pass(0);
    assert_eq!(s.active.len(), 2);
    w.job = job(
        "  parallelism: 2\n  completions: 2\n  suspend: true",
        "Never",
    );
    let s = w.pass(1_000);
    assert!(s.active.is_empty());
    assert_eq!(s.status.failed, 0);
    assert!(s.status.finished.is_none());
    w.job = job("  parallelism: 2\n  completions: 2", "Never");
    assert_eq!(w.pass(2_000).active.len(), 2);
}

#[test]
fn a_work_queue_completes_when_one_succeeded_and_none_runs() {
    let mut w = World::new(job("  parallelism: 2", "Never"));
    let s = w.pass(0);
    assert_eq!(s.active.len(), 2);
    let (a, b) = (s.active[0].name.clone(), s.active[1].name.clone());
    w.report(&a, PodPhase::Succeeded, 0, 0);
    let s = w.pass(1_000);
    assert_eq!(
        World::active_names(&s),
        vec![b.clone()],
        "no new pods after a success"
    );
    assert!(s.status.finished.is_none());
    w.report(&b, PodPhase::Succeeded, 0, 0);
    assert!(w.pass(2_000).status.finished.is_some_and(|f| f.complete));
}

#[test]
fn a_new_template_starts_over_and_taken_names_are_skipped() {
    let mut w = World::new(job("  completions: 1", "Never"));
    let s = w.pass(0);
    w.report(&s.active[0].name, PodPhase::Succeeded, 0, 0);
    assert!(w.pass(1_000).status.finished.is_some());
    // Same Job, another image: its template hash differs.
    let yaml = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: alpine\n";
    let parsed = skiff_manifests::parse_file("job.yaml", yaml.as_bytes());
    let object = parsed.into_result().unwrap_or_else(|e| panic!("{e:?}"))[0].clone();
    w.job = Valid::<Job>::try_from(object).unwrap_or_else(|_| panic!("job"));
    let s = w.pass(2_000);
    assert!(s.status.finished.is_none());
    assert_eq!(s.active.len(), 1);
    assert!(s.ended.is_empty());

    let first = w.job.pod_name(1, None);
    let taken = |n: &str| n == first;
    let s = step(
        &w.job,
        Inputs {
            entries: Vec::new(),
            pods: &BTreeMap::new(),
            lost: &|_| false,
            taken: &taken,
            now: 0,
        },
    );
    assert_eq!(s.active[0].mark.attempt, 2);
    assert_eq!(s.active[0].name, w.job.pod_name(2, None));
}

#[test]
fn a_pod_no_table_lists_is_adopted() {
    let mut w = World::new(job("  completions: 1", "Never"));
    w.pods.insert(
        "pi-zzzzz".into(),
        PodSeen {
            node: "n2".into(),
            phase: PodPhase::Running,
            exits: vec![],
            restarts: 0,
            index: None,
            created_ms: 5,
            template_hash: w.job.pod_template_hash(),
            reason: None,
        },
    );
    let s = w.pass(1_000);
    assert_eq!(World::active_names(&s), vec!["pi-zzzzz".to_string()]);
    assert_eq!(s.status.start_ms, Some(5));
}

#[test]
fn index_ranges_read_like_kubernetes() {
    let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
    assert_eq!(ranges(&set(&[])), "");
    assert_eq!(ranges(&set(&[0, 1, 2, 4, 6, 7])), "0-2,4,6-7");
    assert_eq!(ranges(&set(&[3])), "3");
}

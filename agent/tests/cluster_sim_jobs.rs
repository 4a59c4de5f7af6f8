//! In-process clusters (issue 15): Jobs through gossip, the leader's job step and scheduler and
//! the node loops (paused time, ChannelTransport, fake runtime whose Job pods run and exit as
//! their image says). A leader killed mid-job: every index completes exactly once and no
//! index that had succeeded runs again; a node lost with a running pod: the pod counts as a
//! failure and is replaced, the success already recorded stays; failures past the backoff
//! limit fail the Job after Kubernetes' 10 s retry delay; a finished Job is deleted after its
//! TTL, with its pods.

mod sim;

use sim::{Sim, SimOptions, wait_until};
use skiff_agent::jobs::{JobStatus, status_of};
use skiff_manifests::{Job, Kind, Object, ObjectKey, Valid};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn job(name: &str, spec: &str, image: &str) -> Valid<Object> {
    let yaml = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: {image}\n"
    );
    let parsed = skiff_manifests::parse_file("job.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    parsed.objects()[0].clone()
}

/// The Job's status as node `i` shows it (from the leader's table it sees).
fn status(sim: &Sim, i: usize, object: &Valid<Object>) -> JobStatus {
    let job = Valid::<Job>::try_from(object.clone()).unwrap_or_else(|_| panic!("a job"));
    let state = sim.state(i);
    let entries: Vec<&skiff_agent::scheduler::Placement> = state
        .table
        .iter()
        .filter(|p| p.owner.kind == Kind::Job && p.owner.name == job.metadata.name)
        .collect();
    status_of(&job, &entries, (sim.clock)())
}

/// Pod name -> completion index, from node `i`'s view of the table.
fn indexes(sim: &Sim, i: usize, job: &str) -> BTreeMap<String, Option<u32>> {
    sim.state(i)
        .table
        .iter()
        .filter(|p| p.owner.kind == Kind::Job && p.owner.name == job)
        .map(|p| (p.name.clone(), p.job.as_ref().and_then(|m| m.index)))
        .collect()
}

fn created(sim: &Sim, prefix: &str) -> Vec<(String, String, u64)> {
    sim.net
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, _, pod, _)| pod.starts_with(prefix))
        .map(|(node, _, pod, at)| (node.clone(), pod.clone(), *at))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_indexed_job_completes_each_index_once_through_a_leader_kill() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let object = job(
        "idx",
        "  completions: 3\n  parallelism: 2\n  completionMode: Indexed",
        "job-4s-exit0",
    );
    sim.declare(2, std::slice::from_ref(&object));
    wait_until("a first index to succeed", Duration::from_secs(30), || {
        std::future::ready(status(&sim, 1, &object).succeeded >= 1)
    })
    .await;
    let before = status(&sim, 1, &object);
    assert!(before.finished.is_none(), "mid-job: {before:?}");
    // What had succeeded when the leader died (from the pods' own reports).
    let done: BTreeSet<String> = sim
        .reported(1, "idx")
        .into_iter()
        .filter(|(_, (_, r))| r.status["phase"] == "Succeeded")
        .map(|(pod, _)| pod)
        .collect();
    let names = indexes(&sim, 1, "idx");
    let done_indexes: BTreeSet<u32> = done
        .iter()
        .filter_map(|p| names.get(p).copied().flatten())
        .collect();
    assert!(!done_indexes.is_empty());
    let killed_at = (sim.clock)();
    sim.kill(0).await;

    wait_until(
        "the Job complete on the survivors",
        Duration::from_secs(90),
        || {
            std::future::ready([1, 2].iter().all(|&i| {
                status(&sim, i, &object)
                    .finished
                    .is_some_and(|f| f.complete)
            }))
        },
    )
    .await;
    let after = status(&sim, 1, &object);
    assert_eq!(after.succeeded, 3, "{after:?}");
    assert_eq!(after.completed_indexes, "0-2");
    let names = indexes(&sim, 1, "idx");
    let table = sim.state(1).table.clone();
    for index in 0..3u32 {
        let successes = table
            .iter()
            .filter(|p| p.owner.name == "idx")
            .filter_map(|p| p.job.as_ref())
            .filter(|m| m.index == Some(index) && m.end.as_ref().is_some_and(|e| e.succeeded))
            .count();
        assert_eq!(successes, 1, "index {index} succeeded once: {table:?}");
    }
    // No index that had succeeded before the kill got a new pod afterwards.
    for (node, pod, at) in created(&sim, "idx-") {
        let index = names.get(&pod).copied().flatten();
        assert!(
            !(at > killed_at && index.is_some_and(|i| done_indexes.contains(&i))),
            "{pod} (index {index:?}) made on {node} after the kill, though its index had succeeded"
        );
    }
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_on_a_lost_node_is_counted_failed_and_replaced() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let object = job(
        "lost",
        "  completions: 3\n  parallelism: 2\n  backoffLimit: 3",
        "job-6s-exit0",
    );
    sim.declare(1, std::slice::from_ref(&object));
    // Both first pods running, at least one of them away from the leader (node 0).
    let victim = {
        let mut victim = None;
        wait_until("two pods running", Duration::from_secs(30), || {
            let running = sim.running("Job", "lost");
            victim = running.iter().map(|(n, _, _)| *n).find(|n| *n != 0);
            std::future::ready(running.len() == 2 && victim.is_some())
        })
        .await;
        victim.expect("a node")
    };
    sim.kill(victim).await;
    let observer = if victim == 1 { 2 } else { 1 };
    wait_until("the Job complete", Duration::from_secs(120), || {
        std::future::ready(
            status(&sim, observer, &object)
                .finished
                .is_some_and(|f| f.complete),
        )
    })
    .await;
    let s = status(&sim, observer, &object);
    assert_eq!(s.succeeded, 3, "{s:?}");
    assert!(s.failed >= 1, "the lost pod counts as failed: {s:?}");
    let lost = sim
        .state(observer)
        .table
        .iter()
        .filter(|p| p.owner.name == "lost")
        .filter_map(|p| p.job.as_ref()?.end.clone())
        .filter(|e| e.reason == skiff_agent::jobs::NODE_LOST)
        .count();
    assert!(lost >= 1);
    assert_eq!(
        created(&sim, "lost-").len() as u32,
        3 + s.failed,
        "one new pod per failure"
    );
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_past_the_backoff_limit_fail_the_job_after_the_retry_delay() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let object = job("bad", "  backoffLimit: 1", "job-1s-exit3");
    sim.declare(2, std::slice::from_ref(&object));
    wait_until("the Job failed", Duration::from_secs(60), || {
        std::future::ready(status(&sim, 1, &object).finished.is_some())
    })
    .await;
    let s = status(&sim, 1, &object);
    let f = s.finished.clone().expect("finished");
    assert!(!f.complete);
    assert_eq!(f.reason, "BackoffLimitExceeded");
    assert_eq!(s.failed, 2);
    let made = created(&sim, "bad-");
    assert_eq!(made.len(), 2, "{made:?}");
    // The retry came after the first failure plus Kubernetes' 10 s delay (the pod runs 1 s).
    assert!(made[1].2 >= made[0].2 + 11_000, "{made:?}");
    // Nothing more is made.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(created(&sim, "bad-").len(), 2);
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_finished_job_is_deleted_with_its_pods_after_its_ttl() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let object = job("short", "  ttlSecondsAfterFinished: 5", "job-1s-exit0");
    sim.declare(1, std::slice::from_ref(&object));
    wait_until("the Job complete", Duration::from_secs(30), || {
        std::future::ready(
            status(&sim, 2, &object)
                .finished
                .is_some_and(|f| f.complete),
        )
    })
    .await;
    assert_eq!(
        sim.held("Job", "short").len(),
        1,
        "the finished pod is kept for its logs"
    );
    let key = ObjectKey::new(Kind::Job, "default", "short");
    let took = wait_until(
        "the Job gone from every node",
        Duration::from_secs(30),
        || {
            std::future::ready(
                sim.alive()
                    .iter()
                    .all(|&i| !sim.desired(i).objects.contains_key(&key)),
            )
        },
    )
    .await;
    assert!(
        took >= Duration::from_secs(4),
        "not before its TTL: {took:?}"
    );
    wait_until("its pod gone", Duration::from_secs(10), || {
        std::future::ready(sim.held("Job", "short").is_empty())
    })
    .await;
    // The declaring node still has it in its files; it does not come back.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!sim.desired(1).objects.contains_key(&key));
    sim.stop().await;
}

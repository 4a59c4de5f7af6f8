//! In-process clusters (issue 15): CronJobs through the leader's cron step, the replica, the
//! job step and the node loops (paused time, fake runtime whose Job pods run as their image
//! says). Runs are made at their minute under `<cronjob>-<minute>` names with their pods
//! started within a second, the history limits delete old Jobs; Forbid never runs two at
//! once and starts the waiting run when the active one ends; a leader killed right after it
//! made a run's Job does not make that minute run twice.

mod sim;

use sim::{Sim, SimOptions, wait_until};
use skiff_agent::jobs::cron::{job_name, scheduled_of};
use skiff_manifests::{Kind, Object, Valid};
use std::collections::BTreeSet;
use std::time::Duration;

fn cron(name: &str, extra: &str, image: &str) -> Valid<Object> {
    let yaml = format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\nspec:\n  schedule: \"* * * * *\"\n  timeZone: UTC\n{extra}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: main\n            image: {image}\n"
    );
    let parsed = skiff_manifests::parse_file("cron.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    parsed.objects()[0].clone()
}

/// The Jobs of `cron` node `i` holds, by scheduled time.
fn jobs(sim: &Sim, i: usize, cron: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = sim
        .desired(i)
        .objects
        .keys()
        .filter(|k| k.kind == Kind::Job)
        .filter_map(|k| Some((scheduled_of(cron, &k.name)?, k.name.to_string())))
        .collect();
    out.sort();
    out
}

/// (pod, wall ms) of every pod made for `cron`'s Jobs.
fn made(sim: &Sim, cron: &str) -> Vec<(String, u64)> {
    sim.net
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, _, pod, _)| pod.starts_with(&format!("{cron}-")))
        .map(|(_, _, pod, at)| (pod.clone(), *at))
        .collect()
}

/// The scheduled time of the Job a pod `<cron>-<minute>-<suffix>` belongs to.
fn run_of(cron: &str, pod: &str) -> Option<u64> {
    let (job, _) = pod.rsplit_once('-')?;
    scheduled_of(cron, job)
}

#[tokio::test(start_paused = true)]
async fn runs_start_at_their_minute_and_old_ones_are_deleted() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    sim.declare(
        1,
        &[cron(
            "tick",
            "  successfulJobsHistoryLimit: 2\n",
            "job-1s-exit0",
        )],
    );
    wait_until("four runs made", Duration::from_secs(5 * 60), || {
        std::future::ready(made(&sim, "tick").len() >= 4)
    })
    .await;
    let pods = made(&sim, "tick");
    let mut runs = BTreeSet::new();
    for (pod, at) in &pods {
        let scheduled = run_of("tick", pod).unwrap_or_else(|| panic!("{pod} is not a run's pod"));
        assert_eq!(scheduled % 60_000, 0, "{pod}");
        let late = at - scheduled;
        assert!(late < 1_000, "{pod} made {late} ms after its minute");
        assert!(runs.insert(scheduled), "one pod per run: {pods:?}");
    }
    let runs: Vec<u64> = runs.into_iter().collect();
    assert!(
        runs.windows(2).all(|w| w[1] - w[0] == 60_000),
        "every minute: {runs:?}"
    );
    // Two finished Jobs are kept (the newest always); the rest are deleted on every node.
    wait_until("old runs deleted", Duration::from_secs(30), || {
        std::future::ready(sim.alive().iter().all(|&i| {
            let held = jobs(&sim, i, "tick");
            held.len() <= 3 && held.iter().all(|(at, _)| *at >= runs[1])
        }))
    })
    .await;
    assert!(
        jobs(&sim, 2, "tick")
            .iter()
            .any(|(_, n)| *n == job_name("tick", runs[3]))
    );
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn forbid_never_runs_two_at_once_and_starts_the_waiting_run_late() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    // Each run takes 90 s: the next minute's run waits for it.
    sim.declare(
        1,
        &[cron(
            "slow",
            "  concurrencyPolicy: Forbid\n",
            "job-90s-exit0",
        )],
    );
    let mut most = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(6 * 60) {
        let now_running: usize = sim
            .alive()
            .iter()
            .map(|&i| {
                sim.node(i)
                    .pods
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .filter(|p| p.running && p.owner.name.starts_with("slow-"))
                    .count()
            })
            .sum();
        most = most.max(now_running);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most, 1, "Forbid: at most one run at a time");
    let pods = made(&sim, "slow");
    assert!(pods.len() >= 3, "{pods:?}");
    // A waiting run starts when the active one ends (90 s after it started), not at a minute.
    let late: Vec<u64> = pods
        .iter()
        .filter_map(|(pod, at)| Some(at - run_of("slow", pod)?))
        .collect();
    assert!(
        late.iter().any(|l| *l >= 20_000),
        "some run started late: {late:?}"
    );
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_killed_after_making_a_run_does_not_make_it_twice() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    sim.declare(2, &[cron("once", "", "job-20s-exit0")]);
    // The leader (node 0) makes the first run's Job; kill it right after.
    wait_until("the first run's Job made", Duration::from_secs(90), || {
        std::future::ready(!jobs(&sim, 0, "once").is_empty())
    })
    .await;
    let first = jobs(&sim, 0, "once")[0].0;
    sim.kill(0).await;
    wait_until("three more runs", Duration::from_secs(5 * 60), || {
        std::future::ready(
            jobs(&sim, 1, "once")
                .iter()
                .filter(|(at, _)| *at > first)
                .count()
                >= 3,
        )
    })
    .await;
    let held = jobs(&sim, 1, "once");
    let names: BTreeSet<&String> = held.iter().map(|(_, n)| n).collect();
    assert_eq!(names.len(), held.len(), "one Job per minute: {held:?}");
    assert!(
        held.iter().any(|(at, _)| *at == first),
        "the first run is kept: {held:?}"
    );
    // Each minute's Job succeeded once.
    let state = sim.state(1);
    for (at, name) in &held {
        let successes = state
            .table
            .iter()
            .filter(|p| p.owner.kind == Kind::Job && p.owner.name == *name)
            .filter_map(|p| p.job.as_ref()?.end.as_ref())
            .filter(|e| e.succeeded)
            .count();
        assert!(successes <= 1, "{name} ({at}) succeeded {successes} times");
    }
    sim.stop().await;
}

/// Node `i`'s pods made for `cron`'s runs after `after` (wall ms): (pod, scheduled run).
fn made_on(sim: &Sim, i: usize, cron: &str, after: u64) -> Vec<(String, u64)> {
    sim.net
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(node, _, pod, at)| {
            *node == sim::name(i) && *at > after && pod.starts_with(&format!("{cron}-"))
        })
        .filter_map(|(_, _, pod, _)| Some((pod.clone(), run_of(cron, pod)?)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_node_cut_off_keeps_firing_node_local_cron_jobs_it_ran_last() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let local = cron("edge", "", "job-5s-exit0");
    // Only the annotation differs: the same CronJob with `skiff.dev/node-local-cron: "true"`.
    let yaml = serde_json::to_string(&local).expect("json");
    let local: Valid<Object> = {
        let mut v: serde_json::Value = serde_json::from_str(&yaml).expect("value");
        v["metadata"]["annotations"] = serde_json::json!({"skiff.dev/node-local-cron": "true"});
        serde_json::from_value(v).expect("a valid CronJob")
    };
    let plain = cron("plain", "", "job-5s-exit0");
    sim.declare(1, &[local, plain]);
    // The first runs, and where they ran.
    let mut ran = None;
    wait_until("the first runs", Duration::from_secs(90), || {
        let edge = made(&sim, "edge");
        let plain = made(&sim, "plain");
        ran = edge.first().map(|(pod, _)| pod.clone());
        std::future::ready(!edge.is_empty() && !plain.is_empty())
    })
    .await;
    let pod = ran.expect("a pod");
    let node = sim
        .alive()
        .into_iter()
        .find(|&i| sim.held_on(i).contains(&pod))
        .expect("the node that ran the first edge run");
    let plain_node = sim
        .alive()
        .into_iter()
        .find(|&i| sim.held_on(i).iter().any(|p| p.starts_with("plain-")));
    let others: Vec<usize> = sim.alive().into_iter().filter(|&i| i != node).collect();
    let cut_at = (sim.clock)();
    sim.cut(&[node], &others).await;
    // Two more minutes cut off: the lone node keeps firing `edge` (and runs its pods), never
    // `plain`.
    tokio::time::sleep(Duration::from_secs(150)).await;
    let local_runs = made_on(&sim, node, "edge", cut_at);
    let minutes: BTreeSet<u64> = local_runs.iter().map(|(_, at)| *at).collect();
    assert!(
        minutes.len() >= 2,
        "node {node} fired while cut off: {local_runs:?}"
    );
    if plain_node != Some(node) {
        assert!(
            made_on(&sim, node, "plain", cut_at).is_empty(),
            "a CronJob without the annotation is not fired on the cut-off node"
        );
    }
    let events = sim
        .node(node)
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        events
            .iter()
            .any(|e| e.reason == "NodeLocalRun" && e.object_name == "edge"),
        "{events:?}"
    );
    // Heal: one Job per minute everywhere, and the cluster goes on.
    sim.heal(&[node], &others).await;
    let healed_at = (sim.clock)();
    wait_until("runs after the heal", Duration::from_secs(150), || {
        std::future::ready(
            jobs(&sim, others[0], "edge")
                .iter()
                .any(|(at, _)| *at > healed_at + 60_000),
        )
    })
    .await;
    for i in sim.alive() {
        let held = jobs(&sim, i, "edge");
        let names: BTreeSet<&String> = held.iter().map(|(_, n)| n).collect();
        assert_eq!(
            names.len(),
            held.len(),
            "node {i}: one Job per minute: {held:?}"
        );
    }
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_partition_during_a_run_replaces_the_cut_off_pod_and_makes_no_minute_twice() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    // Runs stay off the leader (node 0), so that cutting their node leaves the leader with
    // the majority.
    sim.set_metadata(0, |m| {
        m.taints.push(skiff_gossip::NodeTaint {
            key: "leader".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
            added_ms: 0,
        })
    })
    .await;
    sim.declare(0, &[cron("part", "", "job-40s-exit0")]);
    let mut victim = None;
    wait_until("a run on a follower", Duration::from_secs(5 * 60), || {
        victim = [1, 2].into_iter().find(|&i| {
            sim.node(i)
                .pods
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .any(|p| p.running && p.owner.name.starts_with("part-"))
        });
        std::future::ready(victim.is_some())
    })
    .await;
    let victim = victim.expect("a node");
    let job = sim
        .node(victim)
        .pods
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .find(|p| p.running && p.owner.name.starts_with("part-"))
        .map(|p| p.owner.name.clone())
        .expect("the run's Job");
    let others: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let cut_at = (sim.clock)();
    sim.cut(&[victim], &others).await;
    // The majority counts the cut-off pod as lost and runs the Job again there; the cut-off
    // node (no annotation) fires nothing of its own.
    let observer = others[0];
    wait_until(
        "the run complete on the majority",
        Duration::from_secs(120),
        || {
            let state = sim.state(observer);
            let done = state
                .table
                .iter()
                .filter(|p| p.owner.name == job)
                .filter_map(|p| p.job.as_ref()?.end.as_ref())
                .any(|e| e.succeeded);
            std::future::ready(done)
        },
    )
    .await;
    let lost = sim
        .state(observer)
        .table
        .iter()
        .filter(|p| p.owner.name == job)
        .filter_map(|p| p.job.as_ref()?.end.clone())
        .filter(|e| e.reason == skiff_agent::jobs::NODE_LOST)
        .count();
    assert_eq!(lost, 1, "the cut-off pod counted once as lost");
    let minority_jobs: Vec<(String, u64)> = sim
        .net
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(node, _, pod, at)| {
            *node == sim::name(victim) && *at > cut_at && pod.starts_with("part-")
        })
        .map(|(_, _, pod, at)| (pod.clone(), *at))
        .collect();
    assert!(
        minority_jobs.is_empty(),
        "the cut-off node made no run: {minority_jobs:?}"
    );
    sim.heal(&[victim], &others).await;
    let healed_at = (sim.clock)();
    wait_until("a run after the heal", Duration::from_secs(150), || {
        std::future::ready(
            jobs(&sim, victim, "part")
                .iter()
                .any(|(at, _)| *at > healed_at),
        )
    })
    .await;
    for i in sim.alive() {
        let held = jobs(&sim, i, "part");
        let names: BTreeSet<&String> = held.iter().map(|(_, n)| n).collect();
        assert_eq!(
            names.len(),
            held.len(),
            "node {i}: one Job per minute: {held:?}"
        );
    }
    sim.stop().await;
}

//! Jobs in real containers on one node (issue 15): an Indexed Job runs each index once with
//! `JOB_COMPLETION_INDEX` and the hostname `<job>-<index>`, completes, shows in `get jobs`
//! and `describe job`, keeps its pods' logs (`logs job/NAME`) while their sandboxes are gone,
//! and `delete job` takes its pods; a Job whose pod fails past `backoffLimit` fails with
//! BackoffLimitExceeded without another pod; a Job past its `activeDeadlineSeconds` fails
//! with DeadlineExceeded and its running pod is stopped.
//!
//! Run as root: `cargo test -p skiff-agent --test jobs`.

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT};

fn job(name: &str, spec: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {TEST_IMAGE}\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, {script:?}]\n"
    )
}

fn condition(agent: &TestAgent, name: &str) -> Option<serde_json::Value> {
    let out = agent.skiff(&["get", "jobs", name, "-o", "json"]);
    if !out.status.success() {
        return None; // not replicated yet
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let c = v.pointer("/status/conditions/0")?.clone();
    (c["type"] == "Complete" || c["type"] == "Failed").then_some(v)
}

fn pods_of(agent: &TestAgent, job: &str) -> Vec<serde_json::Value> {
    agent
        .pods()
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == job)
        .collect()
}

#[test]
fn jobs_run_to_completion_fail_past_their_limits_and_clean_up() {
    let agent = TestAgent::start();
    // idx through the API (so that `delete job` may remove it), the others from a file.
    let applied = agent.dir.join("idx.yaml");
    std::fs::write(
        &applied,
        job(
            "idx",
            "  completions: 3\n  parallelism: 2\n  completionMode: Indexed\n",
            "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
        ),
    )
    .expect("write idx.yaml");
    agent.skiff_ok(&["apply", "-f", &applied.display().to_string()]);
    let manifests = [
        job("bad", "  backoffLimit: 0\n", "echo failing; exit 3"),
        job(
            "slow",
            "  activeDeadlineSeconds: 3\n",
            "echo started; exec sleep 3600",
        ),
    ]
    .join("---\n");
    agent.write_manifest("jobs.yaml", &manifests);

    let idx = agent.wait_until(WAIT, "idx complete", || condition(&agent, "idx"));
    assert_eq!(idx["status"]["conditions"][0]["type"], "Complete", "{idx}");
    assert_eq!(idx["status"]["succeeded"], 3, "{idx}");
    assert_eq!(idx["status"]["completedIndexes"], "0-2", "{idx}");
    // A finished pod's sandbox goes: its address is released.
    let pods = agent.wait_until(WAIT, "idx's pods without addresses", || {
        let pods = pods_of(&agent, "idx");
        pods.iter()
            .all(|p| p["status"]["podIP"].as_str().is_none_or(str::is_empty))
            .then_some(pods)
    });
    assert_eq!(pods.len(), 3, "one pod per index: {pods:#?}");
    let mut seen = Vec::new();
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
        let name = p["metadata"]["name"].as_str().expect("name");
        let index = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .expect("index label")
            .to_string();
        let logs = agent.skiff_ok(&["logs", name]);
        assert!(
            logs.contains(&format!("index={index} host=idx-{index}")),
            "{name}: {logs}"
        );
        seen.push(index);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    assert!(agent.skiff_ok(&["logs", "job/idx"]).contains("index="));
    let table = agent.skiff_ok(&["get", "jobs"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("idx "))
        .expect("idx row");
    assert!(row.contains("Complete") && row.contains("3/3"), "{table}");
    let described = agent.skiff_ok(&["describe", "job", "idx"]);
    assert!(described.contains("Completed"), "{described}");

    let bad = agent.wait_until(WAIT, "bad failed", || condition(&agent, "bad"));
    assert_eq!(bad["status"]["conditions"][0]["type"], "Failed", "{bad}");
    assert_eq!(
        bad["status"]["conditions"][0]["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(bad["status"]["failed"], 1);
    assert_eq!(pods_of(&agent, "bad").len(), 1, "no retry past the limit");

    let slow = agent.wait_until(WAIT, "slow failed", || condition(&agent, "slow"));
    assert_eq!(
        slow["status"]["conditions"][0]["reason"], "DeadlineExceeded",
        "{slow}"
    );
    let stopped = agent.wait_until(WAIT, "slow's pod stopped", || {
        let p = pods_of(&agent, "slow").into_iter().next()?;
        let c = support::container_status(&p, "main");
        c["state"]["terminated"].is_object().then_some(p)
    });
    assert_eq!(stopped["status"]["phase"], "Failed", "{stopped}");
    assert_eq!(stopped["status"]["reason"], "DeadlineExceeded", "{stopped}");

    agent.skiff_ok(&["delete", "job", "idx"]);
    agent.wait_until(WAIT, "idx's pods gone", || {
        pods_of(&agent, "idx").is_empty().then_some(())
    });
    assert!(!agent.skiff(&["get", "jobs", "idx"]).status.success());
}

#[test]
fn a_cron_job_runs_at_its_minute_and_on_demand() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "cron.yaml",
        &format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"* * * * *\"\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          terminationGracePeriodSeconds: 1\n          containers:\n          - name: main\n            image: {TEST_IMAGE}\n            imagePullPolicy: IfNotPresent\n            command: [sh, -c, \"echo tick\"]\n"
        ),
    );
    // On demand: a Job from the template, at once.
    agent.wait_until(WAIT, "the CronJob known", || {
        agent
            .skiff(&["get", "cronjobs", "tick"])
            .status
            .success()
            .then_some(())
    });
    agent.skiff_ok(&["create", "job", "manual", "--from=cronjob/tick"]);
    let manual = agent.wait_until(WAIT, "manual complete", || condition(&agent, "manual"));
    assert_eq!(
        manual["status"]["conditions"][0]["type"], "Complete",
        "{manual}"
    );
    assert!(agent.skiff_ok(&["logs", "job/manual"]).contains("tick"));

    // On time: the next minute's run, named after its minute, its pod started within 2 s.
    let run = agent.wait_until(
        std::time::Duration::from_secs(100),
        "a scheduled run",
        || {
            let jobs = agent.get_json(&["jobs"]);
            jobs["items"].as_array()?.iter().find_map(|j| {
                let name = j["metadata"]["name"].as_str()?;
                let minutes: u64 = name.strip_prefix("tick-")?.parse().ok()?;
                (j["status"]["conditions"][0]["type"] == "Complete")
                    .then(|| (name.to_string(), minutes))
            })
        },
    );
    let (name, minutes) = run;
    let pod = pods_of(&agent, &name)
        .into_iter()
        .next()
        .expect("the run's pod");
    let started =
        humantime::parse_rfc3339_weak(pod["status"]["startTime"].as_str().expect("startTime"))
            .expect("a time")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs();
    let late = started.saturating_sub(minutes * 60);
    assert!(late <= 2, "{name}'s pod started {late} s after its minute");
    let described = agent.skiff_ok(&["describe", "cronjob", "tick"]);
    assert!(
        described.contains(&name) && described.contains("SuccessfulCreate"),
        "{described}"
    );
    let table = agent.skiff_ok(&["get", "cronjobs"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("tick "))
        .expect("tick row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // NAME, the schedule's 5 fields, TIMEZONE, SUSPEND, ACTIVE, LAST SCHEDULE, AGE.
    assert_eq!(cells[1..6].join(" "), "* * * * *", "{table}");
    assert_eq!(cells[7], "False", "{table}");
    assert_ne!(cells[9], "<none>", "a last schedule: {table}");
}

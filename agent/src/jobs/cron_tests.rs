use super::*;

/// 2026-06-01T10:00:00Z.
const T0: u64 = 1_780_308_000_000;
const MIN: u64 = 60_000;

fn cron(spec: &str) -> Valid<CronJob> {
    let yaml = format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n{spec}\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: main\n            image: busybox\n"
    );
    let parsed = skiff_manifests::parse_file("cron.yaml", yaml.as_bytes());
    let object = parsed.into_result().unwrap_or_else(|e| panic!("{e:?}"))[0].clone();
    Valid::<CronJob>::try_from(object).unwrap_or_else(|_| panic!("a cronjob"))
}

fn utc() -> TimeZone {
    TimeZone::UTC
}

fn child(at: u64, live: bool, outcome: Option<bool>) -> Child {
    Child {
        name: job_name("tick", at),
        scheduled_ms: at,
        live,
        outcome,
    }
}

fn run(c: &Valid<CronJob>, children: &[Child], created: u64, now: u64) -> CronStep {
    step(c, children, created, Ok(&utc()), now)
}

#[test]
fn names_carry_the_scheduled_minute() {
    assert_eq!(job_name("tick", T0), format!("tick-{}", T0 / MIN));
    assert_eq!(scheduled_of("tick", &job_name("tick", T0)), Some(T0));
    for other in [
        "tick",
        "tick-",
        "tick-x1",
        "ticker-5",
        "tick-extra-5",
        "tock-5",
    ] {
        assert_eq!(scheduled_of("tick", other), None, "{other}");
    }
}

#[test]
fn a_run_is_made_at_its_minute_once_under_a_deterministic_name() {
    let c = cron("  schedule: \"* * * * *\"");
    let s = run(&c, &[], T0 + 30_000, T0 + MIN + 200);
    assert_eq!(s.create, Some((job_name("tick", T0 + MIN), T0 + MIN)));
    assert_eq!(s.wake_at_ms, Some(T0 + 2 * MIN));
    assert_eq!(s.last_schedule_ms, Some(T0 + MIN));
    // Another leader in the same minute, with or without seeing the Job: the same name.
    let again = run(&c, &[], T0 + 30_000, T0 + MIN + 900);
    assert_eq!(again.create, s.create);
    let made = [child(T0 + MIN, true, None)];
    assert_eq!(run(&c, &made, T0 + 30_000, T0 + MIN + 900).create, None);
    // Deleted since (its tombstone): not made again.
    let deleted = [child(T0 + MIN, false, None)];
    assert_eq!(run(&c, &deleted, T0 + 30_000, T0 + MIN + 900).create, None);
    // Nothing before the CronJob existed.
    assert_eq!(run(&c, &[], T0 + 30_000, T0 + 40_000).create, None);
}

#[test]
fn missed_runs_start_only_the_latest_and_more_than_100_start_none() {
    let c = cron("  schedule: \"*/5 * * * *\"");
    let last = [child(T0, true, Some(true))];
    let s = run(&c, &last, 0, T0 + 27 * MIN);
    assert_eq!(s.create.map(|(_, at)| at), Some(T0 + 25 * MIN));

    let every = cron("  schedule: \"* * * * *\"");
    let last = [child(T0, true, Some(true))];
    let s = run(&every, &last, 0, T0 + 100 * MIN + 1);
    assert_eq!(
        s.create.map(|(_, at)| at),
        Some(T0 + 100 * MIN),
        "100 missed: the latest"
    );
    let s = run(&every, &last, 0, T0 + 101 * MIN + 1);
    assert_eq!(s.create, None, "101 missed: none");
    assert_eq!(s.note.map(|n| n.0), Some("TooManyMissedTimes".into()));
    // A starting deadline bounds the count.
    let bounded = cron("  schedule: \"* * * * *\"\n  startingDeadlineSeconds: 200");
    let s = run(&bounded, &last, 0, T0 + 101 * MIN + 1);
    assert_eq!(s.create.map(|(_, at)| at), Some(T0 + 101 * MIN));
}

#[test]
fn a_run_past_its_starting_deadline_is_skipped() {
    let c = cron("  schedule: \"0 * * * *\"\n  startingDeadlineSeconds: 10");
    let last = [child(T0, true, Some(true))];
    assert!(run(&c, &last, 0, T0 + 60 * MIN + 5_000).create.is_some());
    assert_eq!(run(&c, &last, 0, T0 + 60 * MIN + 11_000).create, None);
}

#[test]
fn concurrency_policies() {
    let now = T0 + MIN + 100;
    let active = [child(T0, true, None)];
    let done = [child(T0, true, Some(true))];
    let allow = cron("  schedule: \"* * * * *\"");
    assert!(run(&allow, &active, 0, now).create.is_some());
    let forbid = cron("  schedule: \"* * * * *\"\n  concurrencyPolicy: Forbid");
    let s = run(&forbid, &active, 0, now);
    assert_eq!(s.create, None);
    assert_eq!(s.wake_at_ms, Some(T0 + 2 * MIN));
    assert!(run(&forbid, &done, 0, now).create.is_some());
    // The waiting run starts once the active one ended, late, if still due.
    assert_eq!(
        run(&forbid, &done, 0, now + 30_000)
            .create
            .map(|(_, at)| at),
        Some(T0 + MIN)
    );
    let replace = cron("  schedule: \"* * * * *\"\n  concurrencyPolicy: Replace");
    let s = run(&replace, &active, 0, now);
    assert!(s.create.is_some());
    assert_eq!(s.delete, vec![job_name("tick", T0)]);
}

#[test]
fn history_limits_keep_the_newest_finished_jobs() {
    let c = cron(
        "  schedule: \"* * * * *\"\n  successfulJobsHistoryLimit: 2\n  failedJobsHistoryLimit: 1",
    );
    let children: Vec<Child> = (0..5)
        .map(|i| child(T0 + i * MIN, true, Some(true)))
        .chain((5..8).map(|i| child(T0 + i * MIN, true, Some(false))))
        .chain([child(T0 + 8 * MIN, true, None)])
        .collect();
    let mut gone = run(&c, &children, 0, T0 + 8 * MIN + 1).delete;
    gone.sort();
    let mut want: Vec<String> = [0, 1, 2, 5, 6]
        .iter()
        .map(|i| job_name("tick", T0 + i * MIN))
        .collect();
    want.sort();
    assert_eq!(gone, want);
    // A limit of 0 still keeps the newest Job: it holds the last scheduled time.
    let none = cron("  schedule: \"* * * * *\"\n  successfulJobsHistoryLimit: 0");
    let one = [child(T0, true, Some(true))];
    assert!(run(&none, &one, 0, T0 + 1).delete.is_empty());
    let two = [
        child(T0, true, Some(true)),
        child(T0 + MIN, true, Some(true)),
    ];
    assert_eq!(
        run(&none, &two, 0, T0 + MIN + 1).delete,
        vec![job_name("tick", T0)]
    );
}

#[test]
fn suspended_unsynchronised_or_zoneless_cron_jobs_fire_nothing() {
    let c = cron("  schedule: \"* * * * *\"\n  suspend: true");
    let s = run(&c, &[], 0, T0 + 1);
    assert_eq!(s.create, None);
    assert_eq!(s.wake_at_ms, Some(T0 + MIN));
    let c = cron("  schedule: \"* * * * *\"");
    // A board that booted without a real-time clock: 1970.
    let s = run(&c, &[], 0, 5 * MIN + 1);
    assert_eq!(s.create, None);
    assert_eq!(s.note.map(|n| n.0), Some("ClockNotSynchronised".into()));
    let s = step(
        &c,
        &[],
        0,
        Err("spec.timeZone \"Mars/Olympus\" unknown"),
        T0 + 1,
    );
    assert_eq!(s.create, None);
    assert_eq!(s.note.map(|n| n.0), Some("UnknownTimeZone".into()));
}

#[test]
fn schedules_follow_their_time_zone_across_daylight_saving_changes() {
    let c = cron("  schedule: \"30 2 * * *\"\n  timeZone: Europe/Berlin");
    let berlin = zone(&c).expect("Europe/Berlin in the zone database");
    let at =
        |s: &str| -> u64 { s.parse::<Timestamp>().expect("timestamp").as_millisecond() as u64 };
    // Spring forward (2026-03-29: 02:00 -> 03:00, so 02:30 does not exist): one run that day,
    // not two and not none.
    let runs = times_between(
        &c,
        &berlin,
        at("2026-03-28T00:00:00Z"),
        at("2026-03-31T00:00:00Z"),
        10,
    );
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0], at("2026-03-28T01:30:00Z"), "02:30 CET");
    assert_eq!(runs[2], at("2026-03-30T00:30:00Z"), "02:30 CEST");
    // Fall back (2026-10-25: 02:30 happens twice): one run that day.
    let runs = times_between(
        &c,
        &berlin,
        at("2026-10-24T00:00:00Z"),
        at("2026-10-27T00:00:00Z"),
        10,
    );
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0], at("2026-10-24T00:30:00Z"));
    assert_eq!(runs[2], at("2026-10-26T01:30:00Z"));
    // The same schedule in UTC.
    let u = cron("  schedule: \"30 2 * * *\"\n  timeZone: UTC");
    let runs = times_between(
        &u,
        &zone(&u).expect("UTC"),
        at("2026-03-28T00:00:00Z"),
        at("2026-03-29T00:00:00Z"),
        10,
    );
    assert_eq!(runs, vec![at("2026-03-28T02:30:00Z")]);
    assert!(zone(&cron("  schedule: \"@daily\"\n  timeZone: Mars/Olympus")).is_err());
}

#[test]
fn names_days_and_macros_read_like_vixie_cron() {
    let at =
        |s: &str| -> u64 { s.parse::<Timestamp>().expect("timestamp").as_millisecond() as u64 };
    // From a Monday's midnight (excluded) for a week (its last millisecond included).
    let from = at("2026-06-01T00:00:00Z");
    let cases = [
        ("0 9 * * MON-FRI", "2026-06-01T09:00:00Z", 5),
        ("0 0 1 * *", "2026-07-01T00:00:00Z", 1),
        ("@hourly", "2026-06-01T01:00:00Z", 167),
        ("@weekly", "2026-06-07T00:00:00Z", 1),
        ("@midnight", "2026-06-02T00:00:00Z", 6),
        ("0 12 * * 0", "2026-06-07T12:00:00Z", 1),
        ("0 12 * * 7", "2026-06-07T12:00:00Z", 1),
        // Day of month OR day of week when both are restricted (Vixie cron).
        ("0 0 13 * FRI", "2026-06-05T00:00:00Z", 1),
    ];
    for (schedule, first, in_a_week) in cases {
        let c = cron(&format!("  schedule: \"{schedule}\"\n  timeZone: UTC"));
        let tz = zone(&c).expect("UTC");
        assert_eq!(next_after(&c, &tz, from), Some(at(first)), "{schedule}");
        let week = times_between(&c, &tz, from, from + 7 * 24 * 60 * MIN - 1, 500);
        let month_first = schedule == "0 0 1 * *";
        if !month_first {
            assert_eq!(week.len(), in_a_week, "{schedule}: {week:?}");
        }
    }
    // 2026-07-13 is a Monday: it fires as the 13th, before the next Friday.
    let c = cron("  schedule: \"0 0 13 * FRI\"\n  timeZone: UTC");
    let tz = zone(&c).expect("UTC");
    assert_eq!(
        next_after(&c, &tz, at("2026-07-10T00:00:01Z")),
        Some(at("2026-07-13T00:00:00Z"))
    );
}

#[test]
fn a_run_is_a_valid_job_named_and_annotated() {
    let c = cron("  schedule: \"@hourly\"");
    let job = job_object(&c, T0).expect("a job");
    assert_eq!(job.metadata().name, job_name("tick", T0));
    assert_eq!(job.metadata().annotations[CRONJOB_ANNOTATION], "tick");
    assert_eq!(
        job.metadata().annotations[SCHEDULED_ANNOTATION],
        "2026-06-01T10:00:00Z"
    );
    let Object::Job(j) = job.get() else {
        panic!("{job:?}")
    };
    assert_eq!(*j.spec, c.spec.job_template.spec);
}

//! Validation of Job objects: counts, completion mode, backoff, deadlines, the pod failure
//! policy; the pod template is checked in `validate::pod` (restartPolicy OnFailure or Never).

use serde_json::Value;

use crate::error::{FieldPath, Problems};
use crate::model::jobs::{
    CompletionMode, ConcurrencyPolicy, CronJob, CronJobSpec, DEFAULT_BACKOFF_LIMIT,
    DEFAULT_FAILED_HISTORY, DEFAULT_SUCCESSFUL_HISTORY, ExitCodeOperator, ExitCodeRule,
    FailureAction, Job, JobSpec, JobTemplate, MAX_CRONJOB_NAME, PodFailurePolicy, PodFailureRule,
};
use crate::model::object::Kind;
use crate::model::pod::RestartPolicy;
use crate::model::workloads::TemplateMetadata;
use crate::raw::{RawCronJob, RawJob, RawJobSpec, RawPodFailurePolicy};

use super::workloads::pod_template;
use super::{annotations, labels, object_meta, one_of, required};

/// Most pods a Job may ask for (Kubernetes caps Indexed Jobs at 100,000 completions).
const MAX_COUNT: i64 = 100_000;

pub(crate) fn validate_job(raw: RawJob, problems: &mut Problems) -> Option<Job> {
    let metadata = object_meta(raw.metadata, Kind::Job, problems);
    let spec_path = FieldPath::root().child("spec");
    let spec = job_spec(
        required(raw.spec, &spec_path, problems)?,
        &spec_path,
        problems,
    )?;
    if metadata.name.len() > 63 {
        // Pod names carry the Job's name, and its `job-name` label must be a label value.
        problems.error(
            &FieldPath::root().child("metadata").child("name"),
            format!(
                "must be at most 63 characters for a Job (got {})",
                metadata.name.len()
            ),
        );
        return None;
    }
    Some(Job {
        metadata,
        spec: Box::new(spec),
    })
}

pub(crate) fn validate_cron_job(raw: RawCronJob, problems: &mut Problems) -> Option<CronJob> {
    let metadata = object_meta(raw.metadata, Kind::CronJob, problems);
    let spec_path = FieldPath::root().child("spec");
    let spec = required(raw.spec, &spec_path, problems)?;
    if metadata.name.len() > MAX_CRONJOB_NAME {
        problems.error(
            &FieldPath::root().child("metadata").child("name"),
            format!(
                "must be at most {MAX_CRONJOB_NAME} characters for a CronJob (its Jobs add 11; got {})",
                metadata.name.len()
            ),
        );
    }
    let schedule = schedule(spec.schedule, &spec_path.child("schedule"), problems);
    let zone_path = spec_path.child("timeZone");
    let time_zone = match spec.time_zone {
        None => Some(None),
        Some(zone) if zone_name_ok(&zone) => Some(Some(zone)),
        Some(zone) => {
            problems.error(
                &zone_path,
                format!("must be an IANA time zone name such as \"Europe/Berlin\" (got {zone:?})"),
            );
            None
        }
    };
    let policy_path = spec_path.child("concurrencyPolicy");
    let concurrency_policy = match spec.concurrency_policy {
        None => Some(ConcurrencyPolicy::Allow),
        Some(text) => one_of(
            &text,
            &[
                ("Allow", ConcurrencyPolicy::Allow),
                ("Forbid", ConcurrencyPolicy::Forbid),
                ("Replace", ConcurrencyPolicy::Replace),
            ],
            &policy_path,
            problems,
        ),
    };
    let mut count =
        |value: Option<i64>, field: &str, default: Option<u64>| -> Option<Option<u64>> {
            match value {
                None => Some(default),
                Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Some(Some(v as u64)),
                Some(v) => {
                    problems.error(
                        &spec_path.child(field),
                        format!("must be between 0 and {} (got {v})", i32::MAX),
                    );
                    None
                }
            }
        };
    let deadline = count(
        spec.starting_deadline_seconds,
        "startingDeadlineSeconds",
        None,
    );
    let successful = count(
        spec.successful_jobs_history_limit,
        "successfulJobsHistoryLimit",
        Some(u64::from(DEFAULT_SUCCESSFUL_HISTORY)),
    );
    let failed = count(
        spec.failed_jobs_history_limit,
        "failedJobsHistoryLimit",
        Some(u64::from(DEFAULT_FAILED_HISTORY)),
    );
    let template_path = spec_path.child("jobTemplate");
    let job_template = required(spec.job_template, &template_path, problems).and_then(|t| {
        let meta_path = template_path.child("metadata");
        let meta = t.metadata.unwrap_or_default();
        let metadata = TemplateMetadata {
            labels: labels(meta.labels, &meta_path.child("labels"), problems),
            annotations: annotations(meta.annotations, &meta_path.child("annotations"), problems),
        };
        let job_path = template_path.child("spec");
        let spec = job_spec(required(t.spec, &job_path, problems)?, &job_path, problems)?;
        Some(JobTemplate { metadata, spec })
    });
    if problems.has_errors() {
        return None;
    }
    Some(CronJob {
        metadata,
        spec: Box::new(CronJobSpec {
            schedule: schedule?,
            time_zone: time_zone?,
            concurrency_policy: concurrency_policy?,
            starting_deadline_seconds: deadline?,
            suspend: spec.suspend.unwrap_or(false),
            successful_jobs_history_limit: successful?.unwrap_or(0) as u32,
            failed_jobs_history_limit: failed?.unwrap_or(0) as u32,
            job_template: job_template?,
        }),
    })
}

/// A CronJob's schedule in Kubernetes' syntax: 5 fields (minute, hour, day of month, month,
/// day of week) with ranges, steps, lists and names, or `@yearly`, `@annually`, `@monthly`,
/// `@weekly`, `@daily`, `@midnight`, `@hourly`.
fn schedule(raw: Option<String>, path: &FieldPath, problems: &mut Problems) -> Option<String> {
    let text = required(raw, path, problems)?;
    let trimmed = text.trim();
    let refuse = |problems: &mut Problems, why: &str| {
        problems.error(path, why.to_string());
        None
    };
    if trimmed.is_empty() {
        return refuse(problems, "must not be empty");
    }
    if trimmed.starts_with("CRON_TZ=") || trimmed.starts_with("TZ=") {
        return refuse(
            problems,
            "a time zone in the schedule is not supported: set spec.timeZone (as Kubernetes requires)",
        );
    }
    if trimmed.starts_with("@every") {
        return refuse(
            problems,
            "@every is not supported: write the interval as a cron schedule (\"*/5 * * * *\")",
        );
    }
    let pattern = if trimmed == "@midnight" {
        "@daily"
    } else {
        trimmed
    };
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    match parser.parse(pattern) {
        Ok(_) => Some(trimmed.to_string()),
        Err(e) => refuse(
            problems,
            &format!(
                "not a cron schedule ({e}): 5 fields (minute hour day-of-month month \
                 day-of-week) or @hourly, @daily, @midnight, @weekly, @monthly, @yearly"
            ),
        ),
    }
}

/// An IANA zone name's shape (`UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`,
/// `Etc/GMT+5`); whether the node knows it is checked when the schedule is evaluated.
fn zone_name_ok(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 64
        && !zone.starts_with('/')
        && !zone
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

/// A Job's spec (also a CronJob's `jobTemplate.spec`), at `spec_path`.
pub(crate) fn job_spec(
    spec: RawJobSpec,
    spec_path: &FieldPath,
    problems: &mut Problems,
) -> Option<JobSpec> {
    refuse_unmodelled(&spec, spec_path, problems);
    let mut count =
        |value: Option<i64>, field: &str, least: i64, most: i64| -> Option<Option<u64>> {
            match value {
                None => Some(None),
                Some(v) if (least..=most).contains(&v) => Some(Some(v as u64)),
                Some(v) => {
                    problems.error(
                        &spec_path.child(field),
                        format!("must be between {least} and {most} (got {v})"),
                    );
                    None
                }
            }
        };
    let completions = count(spec.completions, "completions", 0, MAX_COUNT);
    let parallelism = count(spec.parallelism, "parallelism", 0, MAX_COUNT);
    let backoff_limit = count(spec.backoff_limit, "backoffLimit", 0, i64::from(i32::MAX));
    let deadline = count(
        spec.active_deadline_seconds,
        "activeDeadlineSeconds",
        1,
        i64::MAX,
    );
    let ttl = count(
        spec.ttl_seconds_after_finished,
        "ttlSecondsAfterFinished",
        0,
        i64::from(i32::MAX),
    );
    let mode_path = spec_path.child("completionMode");
    let completion_mode = match spec.completion_mode {
        None => Some(CompletionMode::NonIndexed),
        Some(text) => one_of(
            &text,
            &[
                ("NonIndexed", CompletionMode::NonIndexed),
                ("Indexed", CompletionMode::Indexed),
            ],
            &mode_path,
            problems,
        ),
    };
    let completions = completions?.map(|c| c as u32);
    if completion_mode == Some(CompletionMode::Indexed) && completions.is_none() {
        problems.error(
            &spec_path.child("completions"),
            "required when completionMode is Indexed",
        );
    }
    let template = pod_template(
        spec.template,
        Kind::Job,
        &spec_path.child("template"),
        problems,
    );
    let policy_path = spec_path.child("podFailurePolicy");
    let pod_failure_policy = match spec.pod_failure_policy {
        None => Some(None),
        Some(raw) => failure_policy(raw, &policy_path, problems).map(Some),
    };
    if let (Some(Some(_)), Some(template)) = (&pod_failure_policy, &template)
        && template.spec.restart_policy != RestartPolicy::Never
    {
        problems.error(
            &policy_path,
            "needs the pod template's restartPolicy to be \"Never\" (as in Kubernetes)",
        );
    }
    Some(JobSpec {
        completions,
        parallelism: parallelism?.map_or(1, |p| p as u32),
        completion_mode: completion_mode?,
        backoff_limit: backoff_limit?.map_or(DEFAULT_BACKOFF_LIMIT, |b| b as u32),
        active_deadline_seconds: deadline?,
        ttl_seconds_after_finished: ttl?,
        suspend: spec.suspend.unwrap_or(false),
        pod_failure_policy: pod_failure_policy?,
        template: template?,
    })
}

/// Job fields skiff does not model: refused with what to do instead (only a default value is
/// accepted where one exists).
fn refuse_unmodelled(spec: &RawJobSpec, path: &FieldPath, problems: &mut Problems) {
    let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
    if set(&spec.selector) {
        problems.error(
            &path.child("selector"),
            "not supported: skiff finds a Job's pods by the Job's name (remove the selector)",
        );
    }
    if spec
        .manual_selector
        .as_ref()
        .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)))
    {
        problems.error(
            &path.child("manualSelector"),
            "not supported: skiff finds a Job's pods by the Job's name",
        );
    }
    for (value, field) in [
        (&spec.backoff_limit_per_index, "backoffLimitPerIndex"),
        (&spec.max_failed_indexes, "maxFailedIndexes"),
        (&spec.success_policy, "successPolicy"),
        (&spec.managed_by, "managedBy"),
    ] {
        if set(value) {
            problems.error(&path.child(field), "not supported by skiff yet");
        }
    }
    match &spec.pod_replacement_policy {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "TerminatingOrFailed" => {}
        Some(_) => problems.error(
            &path.child("podReplacementPolicy"),
            "only \"TerminatingOrFailed\" is supported (a failed pod is replaced once its node \
             reports it failed or is lost)",
        ),
    }
}

fn failure_policy(
    raw: RawPodFailurePolicy,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<PodFailurePolicy> {
    let rules_path = path.child("rules");
    let raw_rules = required(raw.rules, &rules_path, problems)?;
    let mut rules = Vec::new();
    let mut ok = true;
    for (i, rule) in raw_rules.into_iter().enumerate() {
        let rule_path = rules_path.index(i);
        let Some(rule) = rule else {
            ok = false;
            continue;
        };
        if rule
            .on_pod_conditions
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            problems.error(
                &rule_path.child("onPodConditions"),
                "not supported by skiff yet: use onExitCodes (a pod on a lost node counts as \
                 failed)",
            );
            ok = false;
        }
        let action_path = rule_path.child("action");
        let action = match required(rule.action, &action_path, problems) {
            Some(text) if text == "FailIndex" => {
                problems.error(
                    &action_path,
                    "FailIndex needs backoffLimitPerIndex, which skiff does not support yet",
                );
                None
            }
            Some(text) => one_of(
                &text,
                &[
                    ("FailJob", FailureAction::FailJob),
                    ("Ignore", FailureAction::Ignore),
                    ("Count", FailureAction::Count),
                ],
                &action_path,
                problems,
            ),
            None => None,
        };
        let codes_path = rule_path.child("onExitCodes");
        let Some(codes) = required(rule.on_exit_codes, &codes_path, problems) else {
            ok = false;
            continue;
        };
        let operator =
            required(codes.operator, &codes_path.child("operator"), problems).and_then(|text| {
                one_of(
                    &text,
                    &[
                        ("In", ExitCodeOperator::In),
                        ("NotIn", ExitCodeOperator::NotIn),
                    ],
                    &codes_path.child("operator"),
                    problems,
                )
            });
        let values_path = codes_path.child("values");
        let values = required(codes.values, &values_path, problems).and_then(|values| {
            if values.is_empty() {
                problems.error(&values_path, "must not be empty");
                return None;
            }
            let mut out = Vec::new();
            for (j, v) in values.into_iter().enumerate() {
                match i32::try_from(v) {
                    Ok(0) if operator == Some(ExitCodeOperator::In) => {
                        problems.error(
                            &values_path.index(j),
                            "0 is not allowed with operator In (a container that exits 0 \
                             succeeded)",
                        );
                        return None;
                    }
                    Ok(v) => out.push(v),
                    Err(_) => {
                        problems.error(&values_path.index(j), format!("out of range (got {v})"));
                        return None;
                    }
                }
            }
            Some(out)
        });
        match (action, operator, values) {
            (Some(action), Some(operator), Some(values)) => rules.push(PodFailureRule {
                action,
                on_exit_codes: ExitCodeRule {
                    container_name: codes.container_name.filter(|n| !n.is_empty()),
                    operator,
                    values,
                },
            }),
            _ => ok = false,
        }
    }
    ok.then_some(PodFailurePolicy { rules })
}

#[cfg(test)]
mod tests {
    use crate::model::jobs::{CompletionMode, FailureAction};
    use crate::{Object, parse_file};

    fn job(spec: &str) -> Result<crate::Job, Vec<String>> {
        let yaml = format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n{spec}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n"
        );
        let parsed = parse_file("job.yaml", yaml.as_bytes());
        match parsed.into_result() {
            Ok(objects) => match objects[0].get() {
                Object::Job(job) => Ok(job.clone()),
                other => panic!("{other:?}"),
            },
            Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn defaults_are_kubernetes_defaults() {
        let job = job("  completions: 3").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(job.spec.completions, Some(3));
        assert_eq!(job.spec.parallelism, 1);
        assert_eq!(job.spec.backoff_limit, 6);
        assert_eq!(job.spec.completion_mode, CompletionMode::NonIndexed);
        assert!(!job.spec.suspend);
    }

    #[test]
    fn a_failure_policy_is_read() {
        let job = job(
            "  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n    - action: Ignore\n      onExitCodes:\n        operator: In\n        values: [137]",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let policy = job.spec.pod_failure_policy.expect("policy");
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(
            policy.action_for(&[("main".into(), 42)]),
            Some(FailureAction::FailJob)
        );
    }

    #[test]
    fn bad_jobs_name_the_field() {
        let cases = [
            ("  completions: -1", "spec.completions"),
            (
                "  completionMode: Indexed",
                "spec.completions: required when completionMode is Indexed",
            ),
            ("  completionMode: Sparse", "spec.completionMode"),
            (
                "  selector:\n    matchLabels: {a: b}",
                "spec.selector: not supported",
            ),
            ("  backoffLimitPerIndex: 1", "spec.backoffLimitPerIndex"),
            (
                "  podReplacementPolicy: Failed",
                "spec.podReplacementPolicy",
            ),
            ("  activeDeadlineSeconds: 0", "spec.activeDeadlineSeconds"),
            (
                "  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: [1]}",
                "spec.podFailurePolicy.rules[0].action: FailIndex needs backoffLimitPerIndex",
            ),
            (
                "  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onPodConditions: [{type: DisruptionTarget}]\n      onExitCodes: {operator: In, values: [1]}",
                "spec.podFailurePolicy.rules[0].onPodConditions",
            ),
            (
                "  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onExitCodes: {operator: In, values: [0]}",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
            ),
        ];
        for (spec, want) in cases {
            let errors = job(spec).err().unwrap_or_else(|| panic!("{spec} accepted"));
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(want) && e.contains("job.yaml")),
                "{spec}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_job_template_must_not_restart_always() {
        let yaml = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  template:\n    spec:\n      containers:\n      - name: main\n        image: busybox\n";
        let errors: Vec<String> = parse_file("job.yaml", yaml.as_bytes())
            .errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("spec.template.spec.restartPolicy") && e.contains("OnFailure")),
            "{errors:?}"
        );
    }

    fn cron(spec: &str) -> Result<crate::CronJob, Vec<String>> {
        let yaml = format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n{spec}\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: main\n            image: busybox\n"
        );
        let parsed = parse_file("cron.yaml", yaml.as_bytes());
        match parsed.into_result() {
            Ok(objects) => match objects[0].get() {
                Object::CronJob(c) => Ok(c.clone()),
                other => panic!("{other:?}"),
            },
            Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn cron_schedules_in_kubernetes_syntax_are_accepted() {
        for schedule in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "30 2 1,15 * *",
            "0 0 * JAN,JUL SUN",
            "0 12 * * 7",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            let c = cron(&format!("  schedule: \"{schedule}\""))
                .unwrap_or_else(|e| panic!("{schedule}: {e:?}"));
            assert_eq!(c.spec.schedule, schedule);
            assert_eq!(c.spec.successful_jobs_history_limit, 3);
            assert_eq!(c.spec.failed_jobs_history_limit, 1);
            assert_eq!(c.spec.concurrency_policy, crate::ConcurrencyPolicy::Allow);
        }
        assert_eq!(
            cron("  schedule: \"@midnight\"").map(|c| c.spec.cron_pattern().to_string()),
            Ok("@daily".to_string())
        );
    }

    #[test]
    fn bad_cron_jobs_name_the_field() {
        let cases = [
            (
                "  schedule: \"* * * *\"",
                "spec.schedule: not a cron schedule",
            ),
            (
                "  schedule: \"0 0 * * * *\"",
                "spec.schedule: not a cron schedule",
            ),
            (
                "  schedule: \"61 * * * *\"",
                "spec.schedule: not a cron schedule",
            ),
            (
                "  schedule: \"CRON_TZ=UTC 0 * * * *\"",
                "spec.schedule: a time zone",
            ),
            ("  schedule: \"@every 5m\"", "spec.schedule: @every"),
            (
                "  schedule: \"@hourly\"\n  timeZone: \"../etc\"",
                "spec.timeZone",
            ),
            (
                "  schedule: \"@hourly\"\n  concurrencyPolicy: Sometimes",
                "spec.concurrencyPolicy",
            ),
            (
                "  schedule: \"@hourly\"\n  successfulJobsHistoryLimit: -1",
                "spec.successfulJobsHistoryLimit",
            ),
            (
                "  schedule: \"@hourly\"\n  startingDeadlineSeconds: -5",
                "spec.startingDeadlineSeconds",
            ),
        ];
        for (spec, want) in cases {
            let errors = cron(spec)
                .err()
                .unwrap_or_else(|| panic!("{spec} accepted"));
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(want) && e.contains("cron.yaml")),
                "{spec}: {errors:?}"
            );
        }
        let long = format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {}\nspec:\n  schedule: \"@hourly\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: main\n            image: busybox\n",
            "a".repeat(53)
        );
        let errors: Vec<String> = parse_file("cron.yaml", long.as_bytes())
            .errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("metadata.name") && e.contains("52")),
            "{errors:?}"
        );
    }
}

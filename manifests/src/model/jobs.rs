//! Validated batch objects: a Job (pods that run to completion, counted, retried within a
//! backoff limit) and a CronJob (a Job made on a schedule).

use serde::Serialize;

use super::object::ObjectMeta;
use super::workloads::{PodTemplate, TemplateMetadata};

/// Kubernetes' default `backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub metadata: ObjectMeta,
    /// Boxed: see [`crate::Pod`]'s spec.
    pub spec: Box<JobSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Successful pods needed; `None` is a work queue (done once any pod succeeded and none
    /// runs any more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completions: Option<u32>,
    /// Most pods running at once.
    pub parallelism: u32,
    pub completion_mode: CompletionMode,
    /// Failed pods (and, under `OnFailure`, container restarts) tolerated before the Job fails.
    pub backoff_limit: u32,
    /// The Job fails (`DeadlineExceeded`) once it has been active this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    /// A finished Job (and its pods) is deleted this long after it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
    /// No new pods; running ones are stopped (and not counted as failed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_failure_policy: Option<PodFailurePolicy>,
    pub template: PodTemplate,
}

/// Kubernetes' default history limits of a CronJob.
pub const DEFAULT_SUCCESSFUL_HISTORY: u32 = 3;
pub const DEFAULT_FAILED_HISTORY: u32 = 1;
/// Longest CronJob name: its Jobs are named `<cronjob>-<minutes since the epoch>` (11 more).
pub const MAX_CRONJOB_NAME: usize = 52;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronJob {
    pub metadata: ObjectMeta,
    /// Boxed: see [`crate::Pod`]'s spec.
    pub spec: Box<CronJobSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobSpec {
    /// As written (validated: 5 fields, names, ranges, steps, `@hourly`...).
    pub schedule: String,
    /// The IANA zone the schedule is read in; the node's local zone when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run not started within this long of its time is skipped (missed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    pub successful_jobs_history_limit: u32,
    pub failed_jobs_history_limit: u32,
    pub job_template: JobTemplate,
}

impl CronJobSpec {
    /// The schedule as the cron parser takes it: `@midnight` is `@daily`.
    pub fn cron_pattern(&self) -> &str {
        match self.schedule.trim() {
            "@midnight" => "@daily",
            other => other,
        }
    }
}

/// The Job a CronJob makes: its labels and annotations, and its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobTemplate {
    pub metadata: TemplateMetadata,
    pub spec: JobSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// A run is not started while the previous one is active (it starts once that finished,
    /// if still within its starting deadline).
    Forbid,
    /// A new run replaces the active one.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompletionMode {
    /// Any `completions` successes complete the Job.
    NonIndexed,
    /// Each index in `0..completions` must succeed once; its pods see `JOB_COMPLETION_INDEX`.
    Indexed,
}

/// `podFailurePolicy`: what a failed pod means, decided by its containers' exit codes before it
/// is counted against `backoffLimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodFailurePolicy {
    pub rules: Vec<PodFailureRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailureRule {
    pub action: FailureAction,
    pub on_exit_codes: ExitCodeRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureAction {
    /// The whole Job fails at once (`PodFailurePolicy`).
    FailJob,
    /// The failure is not counted; the pod is replaced.
    Ignore,
    /// Counted as usual.
    Count,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeRule {
    /// Only this container's exit code; every container's when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    pub operator: ExitCodeOperator,
    pub values: Vec<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExitCodeOperator {
    In,
    NotIn,
}

impl PodFailurePolicy {
    /// The action of the first rule that matches a failed pod whose containers ended with
    /// `exits` (container name, exit code); `None` when no rule matches (counted as usual).
    /// As in Kubernetes, a rule matches when some container (the named one, if any) exited
    /// with a non-zero code the operator accepts.
    pub fn action_for(&self, exits: &[(String, i32)]) -> Option<FailureAction> {
        self.rules.iter().find_map(|rule| {
            let on = &rule.on_exit_codes;
            let hit = exits.iter().any(|(name, code)| {
                *code != 0
                    && on.container_name.as_ref().is_none_or(|n| n == name)
                    && match on.operator {
                        ExitCodeOperator::In => on.values.contains(code),
                        ExitCodeOperator::NotIn => !on.values.contains(code),
                    }
            });
            hit.then_some(rule.action)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        action: FailureAction,
        container: Option<&str>,
        op: ExitCodeOperator,
        values: &[i32],
    ) -> PodFailureRule {
        PodFailureRule {
            action,
            on_exit_codes: ExitCodeRule {
                container_name: container.map(str::to_string),
                operator: op,
                values: values.to_vec(),
            },
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_zero_never_matches() {
        let policy = PodFailurePolicy {
            rules: vec![
                rule(
                    FailureAction::FailJob,
                    Some("main"),
                    ExitCodeOperator::In,
                    &[42],
                ),
                rule(
                    FailureAction::Ignore,
                    None,
                    ExitCodeOperator::In,
                    &[137, 143],
                ),
                rule(FailureAction::Count, None, ExitCodeOperator::NotIn, &[0, 1]),
            ],
        };
        let exits = |list: &[(&str, i32)]| -> Vec<(String, i32)> {
            list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
        };
        type Case<'a> = (&'a [(&'a str, i32)], Option<FailureAction>);
        let cases: [Case; 6] = [
            (&[("main", 42)], Some(FailureAction::FailJob)),
            (&[("side", 42)], Some(FailureAction::Count)),
            (&[("main", 137)], Some(FailureAction::Ignore)),
            (&[("main", 1)], None),
            (&[("main", 0), ("side", 143)], Some(FailureAction::Ignore)),
            (&[("main", 0)], None),
        ];
        for (given, want) in cases {
            assert_eq!(policy.action_for(&exits(given)), want, "{given:?}");
        }
    }
}

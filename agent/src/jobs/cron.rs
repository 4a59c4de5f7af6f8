//! CronJobs, pure: the scheduling leader's step for one CronJob (whether a run is due now, the
//! Job it makes, which of its Jobs go) and the Job object of a run.
//!
//! A run's Job is named `<cronjob>-<minutes since the epoch of its scheduled time>`, as in
//! Kubernetes, so a leader that takes over within the same minute makes the same object (the
//! replica's merge keeps one). A CronJob keeps no state of its own: its last scheduled time is
//! the newest of its Jobs, live or deleted (a deleted object's tombstone keeps its name), and
//! its newest Job is never deleted by the history limits, so that the time is not lost.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use skiff_manifests::{ConcurrencyPolicy, CronJob, Object, Valid};

/// Annotation on a Job a CronJob made: the CronJob's name.
pub const CRONJOB_ANNOTATION: &str = "skiff.dev/cronjob";
/// Kubernetes' annotation with the run's scheduled time (RFC 3339).
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed runs than this and none is started (Kubernetes' rule).
pub const MAX_MISSED: usize = 100;
/// A clock before this (2025-01-01) is not synchronised yet (a board without a real-time
/// clock boots in 1970): no schedule fires until it is.
pub const CLOCK_SANE_MS: u64 = 1_735_689_600_000;

/// One of the CronJob's Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub name: String,
    /// From its name.
    pub scheduled_ms: u64,
    /// False for a deleted one (its tombstone).
    pub live: bool,
    /// `Some(true)` complete, `Some(false)` failed, `None` still active.
    pub outcome: Option<bool>,
}

/// What the leader should do for one CronJob now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CronStep {
    /// The Job to make: its name and scheduled time.
    pub create: Option<(String, u64)>,
    /// Jobs to delete (replaced, or past the history limits).
    pub delete: Vec<String>,
    /// When to look again (the next scheduled time).
    pub wake_at_ms: Option<u64>,
    /// Why a due run was not made (a Warning event on the CronJob): reason and message.
    pub note: Option<(String, String)>,
    /// The newest scheduled time of its Jobs (LAST SCHEDULE).
    pub last_schedule_ms: Option<u64>,
}

/// The Job name of the run scheduled at `scheduled_ms`.
pub fn job_name(cron: &str, scheduled_ms: u64) -> String {
    format!("{cron}-{}", scheduled_ms / 60_000)
}

/// The scheduled time of Job `job` if it is named like a run of `cron`.
pub fn scheduled_of(cron: &str, job: &str) -> Option<u64> {
    let minutes = job.strip_prefix(cron)?.strip_prefix('-')?;
    if minutes.is_empty() || !minutes.bytes().all(|b| b.is_ascii_digit()) || minutes.len() > 12 {
        return None;
    }
    minutes.parse::<u64>().ok()?.checked_mul(60_000)
}

/// The time zone a CronJob's schedule is read in: its `timeZone`, else the node's.
pub fn zone(cron: &CronJob) -> Result<TimeZone, String> {
    match &cron.spec.time_zone {
        Some(name) => TimeZone::get(name)
            .map_err(|e| format!("spec.timeZone {name:?} is not a time zone this node knows: {e}")),
        None => Ok(TimeZone::system()),
    }
}

/// The scheduled times after `after_ms` up to `now_ms`, at most `limit + 1` of them (oldest
/// first), read in `tz`.
pub fn times_between(
    cron: &CronJob,
    tz: &TimeZone,
    after_ms: u64,
    now_ms: u64,
    limit: usize,
) -> Vec<u64> {
    let Some(parsed) = parse(cron) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = zoned(after_ms, tz);
    while out.len() <= limit {
        let Ok(next) = parsed.find_next_occurrence(&at, false) else {
            break;
        };
        let ms = next.timestamp().as_millisecond().max(0) as u64;
        if ms > now_ms {
            break;
        }
        out.push(ms);
        at = next;
    }
    out
}

/// The first scheduled time after `after_ms`.
pub fn next_after(cron: &CronJob, tz: &TimeZone, after_ms: u64) -> Option<u64> {
    let parsed = parse(cron)?;
    let next = parsed
        .find_next_occurrence(&zoned(after_ms, tz), false)
        .ok()?;
    Some(next.timestamp().as_millisecond().max(0) as u64)
}

fn parse(cron: &CronJob) -> Option<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(cron.spec.cron_pattern())
        .ok()
}

fn zoned(ms: u64, tz: &TimeZone) -> jiff::Zoned {
    let ts = Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH);
    ts.to_zoned(tz.clone())
}

/// The leader's step for one CronJob. `created_ms`: when the CronJob's current version
/// appeared (runs before it never count); `tz`: its zone, or why it has none.
pub fn step(
    cron: &Valid<CronJob>,
    children: &[Child],
    created_ms: u64,
    tz: Result<&TimeZone, &str>,
    now: u64,
) -> CronStep {
    let spec = &cron.spec;
    let name = &cron.metadata.name;
    let mut out = CronStep {
        last_schedule_ms: children.iter().map(|c| c.scheduled_ms).max(),
        ..CronStep::default()
    };
    out.delete = past_history(cron, children);
    let tz = match tz {
        Ok(tz) => tz,
        Err(why) => {
            out.note = Some(("UnknownTimeZone".into(), why.to_string()));
            return out;
        }
    };
    if now < CLOCK_SANE_MS {
        out.note = Some((
            "ClockNotSynchronised".into(),
            format!(
                "the node's clock reads {} (before 2025): no schedule fires until it is set",
                Timestamp::from_millisecond(now as i64).unwrap_or(Timestamp::UNIX_EPOCH)
            ),
        ));
        return out;
    }
    out.wake_at_ms = next_after(cron, tz, now);
    if spec.suspend {
        return out;
    }
    let mut earliest = out.last_schedule_ms.unwrap_or(0).max(created_ms);
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(now.saturating_sub(deadline * 1000));
    }
    let due = times_between(cron, tz, earliest, now, MAX_MISSED);
    if due.len() > MAX_MISSED {
        out.note = Some((
            "TooManyMissedTimes".into(),
            format!(
                "more than {MAX_MISSED} runs were missed since {}: none is started (set \
                 startingDeadlineSeconds to bound the count)",
                Timestamp::from_millisecond(earliest as i64).unwrap_or(Timestamp::UNIX_EPOCH)
            ),
        ));
        return out;
    }
    let Some(&latest) = due.last() else {
        return out;
    };
    let job = job_name(name, latest);
    if children.iter().any(|c| c.name == job) {
        return out; // made already (by this leader or an earlier one)
    }
    let active: Vec<&Child> = children
        .iter()
        .filter(|c| c.live && c.outcome.is_none())
        .collect();
    match spec.concurrency_policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            // Not made, not forgotten: it starts once the active run ends, if still within
            // its starting deadline (as Kubernetes does).
            return out;
        }
        ConcurrencyPolicy::Replace => {
            for c in active {
                if !out.delete.contains(&c.name) {
                    out.delete.push(c.name.clone());
                }
            }
        }
        _ => {}
    }
    out.create = Some((job, latest));
    out.last_schedule_ms = Some(latest);
    out
}

/// Finished Jobs beyond the history limits (oldest first), never the newest Job.
fn past_history(cron: &CronJob, children: &[Child]) -> Vec<String> {
    let newest = children.iter().map(|c| c.scheduled_ms).max();
    let mut out = Vec::new();
    for (complete, limit) in [
        (true, cron.spec.successful_jobs_history_limit),
        (false, cron.spec.failed_jobs_history_limit),
    ] {
        let mut finished: Vec<&Child> = children
            .iter()
            .filter(|c| c.live && c.outcome == Some(complete))
            .collect();
        finished.sort_by_key(|c| std::cmp::Reverse(c.scheduled_ms));
        out.extend(
            finished
                .into_iter()
                .skip(limit as usize)
                .filter(|c| Some(c.scheduled_ms) != newest)
                .map(|c| c.name.clone()),
        );
    }
    out
}

/// The Job object of the run scheduled at `scheduled_ms`: the template's labels and spec,
/// its annotations plus which CronJob made it and when the run was scheduled.
pub fn job_object(cron: &Valid<CronJob>, scheduled_ms: u64) -> Result<Valid<Object>, String> {
    let template = &cron.spec.job_template;
    let mut annotations = template.metadata.annotations.clone();
    annotations.insert(CRONJOB_ANNOTATION.into(), cron.metadata.name.clone());
    annotations.insert(
        SCHEDULED_ANNOTATION.into(),
        crate::pod::rfc3339(scheduled_ms),
    );
    let mut value = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(&cron.metadata.name, scheduled_ms),
            "namespace": cron.metadata.namespace,
            "labels": template.metadata.labels,
            "annotations": annotations,
        },
        "spec": template.spec,
    });
    // The model writes defaults out; these are what a manifest would say.
    if let Some(spec) = value.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.retain(|_, v| !v.is_null());
    }
    serde_json::from_value::<Valid<Object>>(value).map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;

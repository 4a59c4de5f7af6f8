//! Jobs, pure: the leader's step for one Job (which attempts end, which pods run, the Job's
//! condition) and the Job's status as any node shows it.
//!
//! The Job's progress is its entries in the assignment table: every attempt the leader placed
//! carries a [`JobMark`] (index, attempt number, and once it ended, how). A leader reads the
//! previous table (its own or an earlier leader's), records the ends its pods' reports show,
//! and never changes an end once recorded: a success stays counted through leader changes,
//! partitions and node losses, and a completed index never runs again. Ended attempts stay in
//! the table (their pods keep their logs on their node) until the Job is deleted.
//!
//! Guarantee: at least once per completion (as Kubernetes). A pod's success counts once its
//! node's report reached a leader that recorded it; an attempt whose node is lost before that
//! is counted failed and run again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use skiff_manifests::{CompletionMode, FailureAction, Job, Valid};

use crate::scheduler::{JobMark, JobPodEnd, Placement};

pub mod cron;

#[cfg(test)]
mod tests;

/// A Job pod's phase, from its node's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// What the leader reads of one of the Job's pods in its node's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSeen {
    pub node: String,
    pub phase: PodPhase,
    /// Every container that ended: (name, exit code).
    pub exits: Vec<(String, i32)>,
    /// Container restarts (counted against `backoffLimit` under `OnFailure`).
    pub restarts: u32,
    /// Its completion index label (adopting a pod no table lists).
    pub index: Option<u32>,
    pub created_ms: u64,
    /// The template it was made from.
    pub template_hash: String,
    /// Why its node failed it as a whole (`Evicted`, `DeadlineExceeded`), if it did.
    pub reason: Option<String>,
}

/// Reasons a Job fails (its `Failed` condition).
pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const POD_FAILURE_POLICY: &str = "PodFailurePolicy";
/// An attempt whose node was lost.
pub const NODE_LOST: &str = "NodeLost";

/// Kubernetes' retry delays after failed pods: 10 s doubling, at most 6 minutes.
const BACKOFF_BASE_MS: u64 = 10_000;
const BACKOFF_MAX_MS: u64 = 360_000;

/// One attempt of the Job that should run: kept where it is (`node`) or placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub name: String,
    /// Where it runs; empty for a new attempt.
    pub node: String,
    pub mark: JobMark,
}

/// The leader's step for one Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Attempts that ended: stay in the table on their node as they are.
    pub ended: Vec<Placement>,
    /// Attempts that run or should: the scheduler keeps or places each.
    pub active: Vec<Attempt>,
    pub status: JobStatus,
    /// When this Job needs a pass whatever else changes (a backoff, a deadline, its TTL).
    pub wake_at_ms: Option<u64>,
    /// Finished and past `ttlSecondsAfterFinished`: the Job is to be deleted.
    pub expired: bool,
}

/// A Job's condition once it finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub complete: bool,
    /// `Completed`, `BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`.
    pub reason: String,
    pub message: String,
    pub at_ms: u64,
}

/// What `get jobs` and `describe job` show, derived from the table's marks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub active: u32,
    pub succeeded: u32,
    /// Failures counted against `backoffLimit`.
    pub failed: u32,
    /// Indexed Jobs: the succeeded indexes as Kubernetes writes them (`0-2,4`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_indexes: String,
    /// When the first attempt was placed (wall clock ms).
    pub start_ms: Option<u64>,
    pub finished: Option<Finished>,
}

/// Everything the step reads besides the Job.
pub struct Inputs<'a> {
    /// The Job's entries in the previous table (any order, stale duplicates allowed).
    pub entries: Vec<&'a Placement>,
    /// The Job's pods as their nodes report them, by name.
    pub pods: &'a BTreeMap<String, PodSeen>,
    /// True for a node whose pods are placed elsewhere (`scheduler::node_gone`), or unknown.
    pub lost: &'a dyn Fn(&str) -> bool,
    /// True for a pod name something else in the namespace holds.
    pub taken: &'a dyn Fn(&str) -> bool,
    pub now: u64,
}

/// The step: records the ends the reports show, decides whether the Job finished, and which
/// attempts should run.
pub fn step(job: &Valid<Job>, input: Inputs<'_>) -> Step {
    let spec = &job.spec;
    let hash = job.pod_template_hash();
    let now = input.now;
    // The table's attempts of the current template, one per name (an ended copy wins).
    let mut attempts: BTreeMap<String, Placement> = BTreeMap::new();
    for entry in &input.entries {
        if entry.template_hash != hash || entry.job.is_none() {
            continue; // a new template starts the Job over
        }
        let ended = |p: &Placement| p.job.as_ref().is_some_and(|m| m.end.is_some());
        match attempts.get(&entry.name) {
            Some(kept) if ended(kept) || !ended(entry) => {}
            _ => {
                attempts.insert(entry.name.clone(), (*entry).clone());
            }
        }
    }
    // A pod a node runs that no table lists (the table that placed it was lost): adopted.
    for (name, seen) in input.pods {
        if !attempts.contains_key(name) && seen.template_hash == hash {
            attempts.insert(
                name.clone(),
                entry(
                    job,
                    name,
                    &seen.node,
                    JobMark {
                        index: seen.index,
                        attempt: 0,
                        created_ms: seen.created_ms,
                        end: None,
                    },
                ),
            );
        }
    }
    // Ends the reports (and lost nodes) show.
    for placed in attempts.values_mut() {
        let Some(mark) = placed.job.as_mut() else {
            continue;
        };
        if mark.end.is_some() {
            continue;
        }
        let seen = input
            .pods
            .get(&placed.name)
            .filter(|s| s.node == placed.node);
        mark.end = match seen {
            Some(s) if s.phase == PodPhase::Succeeded => Some(JobPodEnd {
                succeeded: true,
                at_ms: now,
                counted: false,
                reason: String::new(),
            }),
            Some(s) if s.phase == PodPhase::Failed => {
                let action = spec
                    .pod_failure_policy
                    .as_ref()
                    .and_then(|p| p.action_for(&s.exits));
                Some(JobPodEnd {
                    succeeded: false,
                    at_ms: now,
                    counted: action != Some(FailureAction::Ignore),
                    reason: match action {
                        Some(FailureAction::FailJob) => POD_FAILURE_POLICY.to_string(),
                        _ => s.reason.clone().unwrap_or_else(|| "Error".to_string()),
                    },
                })
            }
            _ if (input.lost)(&placed.node) => Some(JobPodEnd {
                succeeded: false,
                at_ms: now,
                counted: true,
                reason: NODE_LOST.to_string(),
            }),
            _ => None,
        };
    }

    let restarts: u32 = attempts
        .values()
        .filter(|p| p.job.as_ref().is_some_and(|m| m.end.is_none()))
        .filter_map(|p| input.pods.get(&p.name))
        .map(|s| s.restarts)
        .sum();
    let marks: Vec<&Placement> = attempts.values().collect();
    let mut status = status_of(job, &marks, now);
    // A Job that fails now: its running attempts stop (not counted), and the reason stays
    // on them, so the Job stays failed however the counts move afterwards.
    if status.finished.is_none() {
        let on_failure =
            spec.template.spec.restart_policy == skiff_manifests::RestartPolicy::OnFailure;
        let reason = if on_failure && restarts > 0 && restarts >= spec.backoff_limit {
            Some(BACKOFF_LIMIT_EXCEEDED)
        } else {
            None
        };
        if let Some(reason) = reason {
            for placed in attempts.values_mut() {
                if let Some(mark) = placed.job.as_mut().filter(|m| m.end.is_none()) {
                    mark.end = Some(JobPodEnd {
                        succeeded: false,
                        at_ms: now,
                        counted: false,
                        reason: reason.to_string(),
                    });
                }
            }
            let marks: Vec<&Placement> = attempts.values().collect();
            status = status_of(job, &marks, now);
        }
    }
    if let Some(finished) = status.finished.as_ref().filter(|f| !f.complete) {
        for placed in attempts.values_mut() {
            if let Some(mark) = placed.job.as_mut().filter(|m| m.end.is_none()) {
                mark.end = Some(JobPodEnd {
                    succeeded: false,
                    at_ms: now,
                    counted: false,
                    reason: finished.reason.clone(),
                });
            }
        }
    }

    let mut wake_at_ms = None;
    let mut wake = |at: u64| {
        if at > now {
            wake_at_ms = Some(wake_at_ms.map_or(at, |w: u64| w.min(at)));
        }
    };
    let (mut ended, mut active): (Vec<Placement>, Vec<Placement>) = attempts
        .into_values()
        .partition(|p| p.job.as_ref().is_some_and(|m| m.end.is_some()));

    let mut expired = false;
    if let Some(finished) = &status.finished {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let due = finished.at_ms.saturating_add(ttl.saturating_mul(1000));
            expired = now >= due;
            wake(due);
        }
    } else if spec.suspend {
        // Suspended: running attempts stop and are forgotten (not counted).
        active.clear();
    } else {
        let want = wanted_active(job, &status);
        // Extra attempts (parallelism or completions lowered): the newest leave. A work
        // queue's running pods finish their work.
        let keep = if spec.completions.is_none() && status.succeeded > 0 {
            spec.parallelism
        } else {
            want
        };
        active.sort_by_key(|p| p.job.as_ref().map_or(0, |m| m.attempt));
        active.truncate(keep as usize);
        let due = retry_at(&ended);
        if (active.len() as u32) < want && due.is_some_and(|at| at > now) {
            wake(due.unwrap_or(now));
        } else {
            add_attempts(job, &ended, &mut active, want, &input, now);
        }
        status.start_ms = ended
            .iter()
            .chain(active.iter())
            .filter_map(|p| p.job.as_ref().map(|m| m.created_ms))
            .min();
        if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, status.start_ms) {
            wake(start.saturating_add(deadline.saturating_mul(1000)));
        }
    }
    ended.sort_by(|a, b| a.name.cmp(&b.name));
    status.active = active.len() as u32;
    Step {
        ended,
        active: active
            .into_iter()
            .filter_map(|p| {
                Some(Attempt {
                    mark: p.job?,
                    name: p.name,
                    node: p.node,
                })
            })
            .collect(),
        status,
        wake_at_ms,
        expired,
    }
}

/// How many attempts should run now.
fn wanted_active(job: &Valid<Job>, status: &JobStatus) -> u32 {
    let spec = &job.spec;
    match spec.completions {
        // A work queue: no new pods once one succeeded.
        None if status.succeeded > 0 => 0,
        None => spec.parallelism,
        Some(completions) => spec
            .parallelism
            .min(completions.saturating_sub(status.succeeded)),
    }
}

/// When the next attempt may start after counted failures: 10 s doubling per failure, at
/// most 6 minutes, from the last one.
fn retry_at(ended: &[Placement]) -> Option<u64> {
    let failures: Vec<u64> = ended
        .iter()
        .filter_map(|p| p.job.as_ref()?.end.as_ref())
        .filter(|e| !e.succeeded && e.counted)
        .map(|e| e.at_ms)
        .collect();
    let last = failures.iter().copied().max()?;
    let shift = (failures.len() - 1).min(16) as u32;
    Some(last.saturating_add((BACKOFF_BASE_MS << shift).min(BACKOFF_MAX_MS)))
}

fn add_attempts(
    job: &Valid<Job>,
    ended: &[Placement],
    active: &mut Vec<Placement>,
    want: u32,
    input: &Inputs<'_>,
    now: u64,
) {
    let mut next = ended
        .iter()
        .chain(active.iter())
        .filter_map(|p| p.job.as_ref())
        .map(|m| m.attempt)
        .max()
        .unwrap_or(0);
    let used: BTreeSet<String> = ended
        .iter()
        .chain(active.iter())
        .map(|p| p.name.clone())
        .collect();
    // Indexed: the lowest indexes with neither a success nor a running attempt.
    let mut free_indexes: Vec<u32> = match (job.spec.completion_mode, job.spec.completions) {
        (CompletionMode::Indexed, Some(completions)) => {
            let busy: BTreeSet<u32> = ended
                .iter()
                .filter(|p| {
                    p.job
                        .as_ref()
                        .is_some_and(|m| m.end.as_ref().is_some_and(|e| e.succeeded))
                })
                .chain(active.iter())
                .filter_map(|p| p.job.as_ref()?.index)
                .collect();
            (0..completions)
                .filter(|i| !busy.contains(i))
                .rev()
                .collect()
        }
        _ => Vec::new(),
    };
    let indexed = job.spec.completion_mode == CompletionMode::Indexed;
    while (active.len() as u32) < want {
        let index = if indexed {
            match free_indexes.pop() {
                Some(i) => Some(i),
                None => break,
            }
        } else {
            None
        };
        // The attempt's name is derived from its number; skip numbers whose name is held.
        let name = loop {
            next += 1;
            let name = job.pod_name(next, index);
            if !used.contains(&name) && !(input.taken)(&name) {
                break name;
            }
        };
        active.push(entry(
            job,
            &name,
            "",
            JobMark {
                index,
                attempt: next,
                created_ms: now,
                end: None,
            },
        ));
    }
}

fn entry(job: &Valid<Job>, name: &str, node: &str, mark: JobMark) -> Placement {
    Placement {
        namespace: job.metadata.namespace.clone(),
        name: name.to_string(),
        owner: crate::pod::Owner {
            kind: skiff_manifests::Kind::Job,
            name: job.metadata.name.clone(),
        },
        template_hash: job.pod_template_hash(),
        node: node.to_string(),
        job: Some(mark),
    }
}

/// The Job's status from its entries in a table (any node can compute it from the leader's
/// table). `now` decides the deadline.
pub fn status_of(job: &Valid<Job>, entries: &[&Placement], now: u64) -> JobStatus {
    let spec = &job.spec;
    let hash = job.pod_template_hash();
    let marks: Vec<&JobMark> = entries
        .iter()
        .filter(|p| p.template_hash == hash)
        .filter_map(|p| p.job.as_ref())
        .collect();
    let ends = || marks.iter().filter_map(|m| m.end.as_ref().map(|e| (*m, e)));
    let active = marks.iter().filter(|m| m.end.is_none()).count() as u32;
    let failed = ends().filter(|(_, e)| !e.succeeded && e.counted).count() as u32;
    let successes: Vec<(&JobMark, &JobPodEnd)> = ends().filter(|(_, e)| e.succeeded).collect();
    let indexes: BTreeSet<u32> = successes.iter().filter_map(|(m, _)| m.index).collect();
    let indexed = spec.completion_mode == CompletionMode::Indexed;
    let succeeded = if indexed {
        indexes.len() as u32
    } else {
        successes.len() as u32
    };
    let start_ms = marks.iter().map(|m| m.created_ms).min();
    let last_success = successes.iter().map(|(_, e)| e.at_ms).max();
    let complete = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    };
    let failure_reasons = [
        POD_FAILURE_POLICY,
        BACKOFF_LIMIT_EXCEEDED,
        DEADLINE_EXCEEDED,
    ];
    // A failure recorded on an attempt (the step stopped it for this reason) stays.
    let recorded = ends()
        .filter(|(_, e)| !e.succeeded && failure_reasons.contains(&e.reason.as_str()))
        .filter(|(_, e)| !e.counted || e.reason == POD_FAILURE_POLICY)
        .min_by_key(|(_, e)| e.at_ms);
    let finished = if complete {
        Some(Finished {
            complete: true,
            reason: "Completed".into(),
            message: "Reached expected number of succeeded pods".into(),
            at_ms: last_success.unwrap_or(now),
        })
    } else if let Some((_, e)) = recorded {
        Some(failure(&e.reason, e.at_ms, spec))
    } else if failed > spec.backoff_limit {
        let at = ends()
            .filter(|(_, e)| !e.succeeded && e.counted)
            .map(|(_, e)| e.at_ms)
            .max()
            .unwrap_or(now);
        Some(failure(BACKOFF_LIMIT_EXCEEDED, at, spec))
    } else {
        match (spec.active_deadline_seconds, start_ms) {
            (Some(deadline), Some(start))
                if !spec.suspend && now >= start.saturating_add(deadline * 1000) =>
            {
                Some(failure(DEADLINE_EXCEEDED, start + deadline * 1000, spec))
            }
            _ => None,
        }
    };
    JobStatus {
        active,
        succeeded,
        failed,
        completed_indexes: if indexed {
            ranges(&indexes)
        } else {
            String::new()
        },
        start_ms,
        finished,
    }
}

fn failure(reason: &str, at_ms: u64, spec: &skiff_manifests::JobSpec) -> Finished {
    let message = match reason {
        BACKOFF_LIMIT_EXCEEDED => "Job has reached the specified backoff limit".to_string(),
        DEADLINE_EXCEEDED => format!(
            "Job was active longer than specified deadline ({} s)",
            spec.active_deadline_seconds.unwrap_or(0)
        ),
        POD_FAILURE_POLICY => {
            "Container exited with a code matching a FailJob rule of the pod failure policy"
                .to_string()
        }
        other => other.to_string(),
    };
    Finished {
        complete: false,
        reason: reason.to_string(),
        message,
        at_ms,
    }
}

/// `0-2,4,6-7`.
pub fn ranges(indexes: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &i in indexes {
        run = match run {
            Some((a, b)) if b + 1 == i => Some((a, i)),
            Some((a, b)) => {
                out.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        out.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    out.join(",")
}

/// The Job pod's phase and details from its node's report (`status` as `get pods -o json`
/// renders it).
pub fn pod_seen(node: &str, report: &crate::cluster::keys::PodReport) -> PodSeen {
    let status = &report.status;
    let phase = match status.get("phase").and_then(|p| p.as_str()) {
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Running") => PodPhase::Running,
        _ => PodPhase::Pending,
    };
    let mut exits = Vec::new();
    let mut restarts = 0u32;
    for list in ["initContainerStatuses", "containerStatuses"] {
        for c in status
            .get(list)
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            restarts += c.get("restartCount").and_then(|n| n.as_u64()).unwrap_or(0) as u32;
            let code = c
                .get("state")
                .and_then(|s| s.get("terminated"))
                .and_then(|t| t.get("exitCode"))
                .and_then(|e| e.as_i64());
            if let Some(code) = code {
                exits.push((name.to_string(), code as i32));
            }
        }
    }
    PodSeen {
        node: node.to_string(),
        phase,
        exits,
        restarts,
        index: report
            .labels
            .get(skiff_manifests::JOB_INDEX_LABEL)
            .and_then(|i| i.parse().ok()),
        created_ms: report.created_ms,
        template_hash: report.template_hash.clone(),
        reason: status
            .get("reason")
            .and_then(|r| r.as_str())
            .map(str::to_string),
    }
}

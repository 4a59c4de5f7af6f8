//! Where the time of one measured change went, from the agents' own log lines (tracing's UTC
//! timestamps, one clock: every agent runs on this machine): the origin's ManifestApplied
//! (the watcher took the file), each node's `Scheduled: assigned to` (its assignment from the
//! leader reached its node loop) and `Started` (the container's process runs).

use crate::demo::DemoAgent;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since midnight UTC, now (the scale of [`log_time`]).
pub fn now_of_day() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() % 86_400.0)
}

/// Seconds since midnight UTC of a log line starting `2026-11-22T05:02:42.907418Z`.
pub fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let hms = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = hms.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Marks after `since`, in seconds after it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    pub applied: Option<f64>,
    pub first_scheduled: Option<f64>,
    pub last_scheduled: Option<f64>,
    pub last_started: Option<f64>,
}

fn min(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn max(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.max(b)))
}

/// The marks of workload `name` (pods `name-...`, manifest `name.yaml`) in every agent's
/// current log, after `since` (from [`now_of_day`]).
pub fn marks(agents: &[DemoAgent], name: &str, since: f64) -> Marks {
    let pod = format!("Pod default/{name}-");
    let manifest = format!("Manifest {name}.yaml: ManifestApplied");
    let mut m = Marks::default();
    for a in agents {
        let Ok(log) = std::fs::read_to_string(a.log_path()) else {
            continue;
        };
        for line in log.lines() {
            let Some(t) = log_time(line).map(|t| t - since).filter(|t| *t >= 0.0) else {
                continue;
            };
            if line.contains(&manifest) {
                m.applied = min(m.applied, t);
            } else if line.contains(&pod) && line.contains(": Scheduled: assigned to") {
                m.first_scheduled = min(m.first_scheduled, t);
                m.last_scheduled = max(m.last_scheduled, t);
            } else if line.contains(&pod) && line.contains(": Started: ") {
                m.last_started = max(m.last_started, t);
            }
        }
    }
    m
}

/// `label +1.234` for each mark present.
pub fn describe(parts: &[(&str, Option<f64>)]) -> String {
    parts
        .iter()
        .filter_map(|(label, t)| t.map(|t| format!("{label} +{t:.3}")))
        .collect::<Vec<_>>()
        .join(", ")
}

//! Where a skiff pod start's time went, from the agent's `skiff::path` debug lines (tracing's
//! UTC timestamps; the agent runs on this machine, one clock): for each timed pod, the first
//! line of each stage after the previous one, within the pod's own window (pods are started one
//! after another, so windows do not overlap).

use crate::bench_cluster_real::timeline::log_time;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// The stages in order: the line that ends each one (`pod`: the line names the pod).
const STAGES: &[(&str, &str, bool)] = &[
    ("watcher (file written -> node loop)", "file event", false),
    ("node loop -> cluster task", "declared ingested", false),
    (
        "cluster step (replica, schedule, follow)",
        "desired sent",
        false,
    ),
    ("cluster task -> node loop", "desired received", false),
    ("plan -> job dispatched", "job dispatched", true),
    ("sandbox (volumes, network)", "action done", true),
    ("container start (shim, libcontainer)", "action done", true),
];

/// Per-stage samples (ms) over the timed pods.
#[derive(Default)]
pub struct Stages {
    samples: Vec<Vec<f64>>,
    /// Pods whose every stage was found in the log.
    complete: usize,
}

impl Stages {
    /// `timed`: (pod name, when its marker was seen, its latency).
    pub fn from_log(log: &Path, timed: &[(String, f64, Duration)]) -> Result<Stages> {
        let text = std::fs::read_to_string(log)
            .with_context(|| format!("read the agent log {}", log.display()))?;
        let lines: Vec<(f64, &str)> = text
            .lines()
            .filter(|l| l.contains(" DEBUG "))
            .filter_map(|l| Some((log_time(l)?, l)))
            .collect();
        let mut stages = Stages {
            samples: vec![Vec::new(); STAGES.len() + 1],
            complete: 0,
        };
        for (pod, end, latency) in timed {
            let start = end - latency.as_secs_f64();
            let names_pod = |l: &str| {
                l.split_whitespace()
                    .any(|t| t.strip_prefix("pod=") == Some(pod.as_str()))
            };
            let mut at = start;
            // Each stage's line comes after the previous stage's line (two stages can end on
            // lines with the same message).
            let mut from = lines.partition_point(|(t, _)| *t < start);
            let mut found = Vec::new();
            for (_, message, pod_line) in STAGES {
                let next = lines[from..].iter().position(|(t, l)| {
                    *t <= *end && l.contains(message) && (!pod_line || names_pod(l))
                });
                let Some(offset) = next else { break };
                let t = lines[from + offset].0;
                found.push((t - at) * 1000.0);
                at = t;
                from += offset + 1;
            }
            if found.len() == STAGES.len() {
                found.push((end - at) * 1000.0);
                for (i, ms) in found.into_iter().enumerate() {
                    stages.samples[i].push(ms);
                }
                stages.complete += 1;
            }
        }
        Ok(stages)
    }

    pub fn print(&self, what: &str) {
        println!("  {what} ({} pods traced):", self.complete);
        let names = STAGES
            .iter()
            .map(|(name, _, _)| *name)
            .chain(["process running -> marker seen (harness poll)"]);
        for (name, samples) in names.zip(&self.samples) {
            let mut v = samples.clone();
            v.sort_by(f64::total_cmp);
            let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
            println!("    {name:<48} {median:>7.1} ms");
        }
    }
}

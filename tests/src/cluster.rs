//! A skiff cluster of real agents on a [`TestBed`]: node 0 starts the cluster, the others join
//! it with a token; helpers to wait for what every node reports.

use crate::agent::{Agent, NodeRow, PodOptions, phase_of};
use crate::bed::TestBed;
use crate::poll::{wait_for, wait_until};
use anyhow::{Result, bail};
use std::time::Duration;

/// Poll interval of the cluster waits.
pub const POLL: Duration = Duration::from_millis(100);

/// Agents first, bed second: fields drop in order, so processes die before their namespaces go.
pub struct Cluster {
    pub agents: Vec<Agent>,
    pub token: String,
    pub bed: TestBed,
}

/// Node names `n0`, `n1`, ...
pub fn node_name(i: usize) -> String {
    format!("n{i}")
}

impl Cluster {
    /// Starts `n` agents on the first `n` nodes of `bed` and waits until all are Ready on all.
    pub fn start(bed: TestBed, n: usize, timeout: Duration) -> Result<Cluster> {
        Self::start_with(bed, n, None, timeout)
    }

    /// [`Cluster::start`] with agents that run real pods when `pods` is given.
    pub fn start_with(
        bed: TestBed,
        n: usize,
        pods: Option<PodOptions>,
        timeout: Duration,
    ) -> Result<Cluster> {
        Self::start_configured(bed, n, |agent| agent.pods = pods.clone(), timeout)
    }

    /// [`Cluster::start`] with each agent set up by `configure` before it first starts (real
    /// pods, [`Agent::extra_args`], ...); restarts of the same [`Agent`] keep the settings.
    pub fn start_configured(
        bed: TestBed,
        n: usize,
        configure: impl Fn(&mut Agent),
        timeout: Duration,
    ) -> Result<Cluster> {
        if bed.nodes.len() < n {
            bail!("bed has {} nodes, {n} wanted", bed.nodes.len());
        }
        let mut agents = Vec::with_capacity(n);
        let mut first = Agent::new(&bed, 0, &node_name(0))?;
        configure(&mut first);
        first.start(None)?;
        wait_api(&mut first, timeout)?;
        let token = first.token()?;
        let seed = first.gossip_addr();
        agents.push(first);
        for i in 1..n {
            let mut agent = Agent::new(&bed, i, &node_name(i))?;
            configure(&mut agent);
            agent.start(Some((seed, Some(&token))))?;
            agents.push(agent);
        }
        let cluster = Cluster { agents, token, bed };
        let everyone: Vec<String> = (0..n).map(node_name).collect();
        cluster.wait_phase(&(0..n).collect::<Vec<_>>(), &everyone, "Ready", timeout)?;
        Ok(cluster)
    }

    /// Waits until every agent in `observers` lists every name in `targets` with `phase`.
    pub fn wait_phase(
        &self,
        observers: &[usize],
        targets: &[String],
        phase: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let what = format!("{targets:?} {phase} on nodes {observers:?}");
        wait_until(&what, timeout, POLL, || {
            for o in observers {
                let rows = self.agents[*o].nodes()?;
                if !targets.iter().all(|t| phase_of(&rows, t) == Some(phase)) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .map_err(|e| e.context(self.describe(observers)))
    }

    /// Every observer's current node list, for failure messages.
    pub fn describe(&self, observers: &[usize]) -> String {
        observers
            .iter()
            .map(|o| match self.agents[*o].nodes() {
                Ok(rows) => format!("{}: {}", self.agents[*o].name, summary(&rows)),
                Err(e) => format!("{}: {e:#}", self.agents[*o].name),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `name=Phase/generation` for each row.
pub fn summary(rows: &[NodeRow]) -> String {
    rows.iter()
        .map(|r| format!("{}={}/{}", r.name, r.phase, r.generation))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until the agent answers on its API socket (fails early if it exits).
pub fn wait_api(agent: &mut Agent, timeout: Duration) -> Result<()> {
    wait_for(&format!("{} to answer", agent.name), timeout, POLL, || {
        if let Some(status) = agent.try_exit()? {
            bail!("agent {} exited ({status}): {}", agent.name, agent.log());
        }
        Ok(agent.nodes().ok().map(|_| ()))
    })
    .map(|_| ())
}

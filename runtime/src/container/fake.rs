//! `FakeRuntime`: an in-memory `ContainerRuntime` for the agent's unit tests. Starts are
//! recorded, exits are scripted, time is whatever the test says.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use super::error::ContainerError;
use super::spec::ContainerSpec;
use super::{ContainerRuntime, ContainerState, StartedContainer};

#[derive(Debug)]
struct FakeContainer {
    spec: ContainerSpec,
    state: ContainerState,
    /// When true, SIGTERM is ignored (like a process that traps it); SIGKILL always works.
    ignores_sigterm: bool,
}

#[derive(Debug, Default)]
struct Inner {
    containers: BTreeMap<String, FakeContainer>,
    next_pid: i32,
    start_failures: VecDeque<String>,
    started: Vec<ContainerSpec>,
    signals: Vec<(String, i32)>,
    now: Option<SystemTime>,
    clock: Option<FakeClock>,
}

/// A clock the fake reads its times from (a simulation's paused time).
#[derive(Clone)]
pub struct FakeClock(pub std::sync::Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl std::fmt::Debug for FakeClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeClock")
    }
}

impl Inner {
    fn now(&self) -> SystemTime {
        match (&self.clock, self.now) {
            (Some(clock), _) => (clock.0)(),
            (None, Some(now)) => now,
            (None, None) => SystemTime::now(),
        }
    }
}

/// In-memory runtime. Every method is synchronous and never blocks.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the clock used for started/finished times (default: `SystemTime::now()`).
    pub fn set_now(&self, now: SystemTime) {
        self.lock().now = Some(now);
    }

    /// Reads started/finished times from `clock` from now on (overrides `set_now`).
    pub fn set_clock(&self, clock: FakeClock) {
        self.lock().clock = Some(clock);
    }

    /// Makes the next `start` fail with `message` (queued, one per call).
    pub fn fail_next_start(&self, message: &str) {
        self.lock().start_failures.push_back(message.to_string());
    }

    /// Every spec passed to a successful or failed `start`, in order.
    pub fn started(&self) -> Vec<ContainerSpec> {
        self.lock().started.clone()
    }

    /// Every `(id, signal)` passed to `kill`, in order.
    pub fn signals(&self) -> Vec<(String, i32)> {
        self.lock().signals.clone()
    }

    /// Makes a running container ignore SIGTERM.
    pub fn ignore_sigterm(&self, id: &str) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.ignores_sigterm = true;
        }
    }

    /// Scripts an exit of a running container. Returns false when it is not running.
    pub fn exit(&self, id: &str, exit_code: i32, oom_killed: bool) -> bool {
        let mut inner = self.lock();
        let now = inner.now();
        let Some(c) = inner.containers.get_mut(id) else {
            return false;
        };
        let ContainerState::Running { started_at, .. } = c.state else {
            return false;
        };
        let reason = match (oom_killed, exit_code) {
            (true, _) => "OOMKilled",
            (false, 0) => "Completed",
            _ => "Error",
        };
        c.state = ContainerState::Exited {
            exit_code,
            signal: (exit_code > 128).then_some(exit_code - 128),
            oom_killed,
            started_at: Some(started_at),
            finished_at: now,
            reason: reason.to_string(),
            message: None,
        };
        true
    }

    /// Makes a container look like its shim crashed (`ContainerState::Unknown`).
    pub fn lose(&self, id: &str) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.state = ContainerState::Unknown;
        }
    }

    /// The spec a container was started with.
    pub fn spec(&self, id: &str) -> Option<ContainerSpec> {
        self.lock().containers.get(id).map(|c| c.spec.clone())
    }
}

impl ContainerRuntime for FakeRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<StartedContainer, ContainerError> {
        spec.validate()?;
        let mut inner = self.lock();
        if inner.containers.contains_key(&spec.id) {
            return Err(ContainerError::AlreadyExists {
                id: spec.id.clone(),
            });
        }
        inner.started.push(spec.clone());
        let now = inner.now();
        if let Some(message) = inner.start_failures.pop_front() {
            let state = ContainerState::Exited {
                exit_code: 128,
                signal: None,
                oom_killed: false,
                started_at: None,
                finished_at: now,
                reason: "StartError".into(),
                message: Some(message.clone()),
            };
            inner.containers.insert(
                spec.id.clone(),
                FakeContainer {
                    spec: spec.clone(),
                    state,
                    ignores_sigterm: false,
                },
            );
            return Err(ContainerError::StartFailed {
                id: spec.id.clone(),
                message,
            });
        }
        inner.next_pid += 1;
        let pid = 1000 + inner.next_pid;
        let state = ContainerState::Running {
            pid,
            started_at: now,
        };
        inner.containers.insert(
            spec.id.clone(),
            FakeContainer {
                spec: spec.clone(),
                state,
                ignores_sigterm: false,
            },
        );
        Ok(StartedContainer {
            pid,
            shim_pid: pid - 500,
            started_at: now,
        })
    }

    fn state(&self, id: &str) -> Result<ContainerState, ContainerError> {
        Ok(self
            .lock()
            .containers
            .get(id)
            .map_or(ContainerState::NotFound, |c| c.state.clone()))
    }

    fn list(&self) -> Result<Vec<String>, ContainerError> {
        Ok(self.lock().containers.keys().cloned().collect())
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        let ignores = {
            let mut inner = self.lock();
            inner.signals.push((id.to_string(), signal));
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| ContainerError::NotFound { id: id.to_string() })?;
            if !matches!(c.state, ContainerState::Running { .. }) {
                return Err(ContainerError::NotRunning { id: id.to_string() });
            }
            c.ignores_sigterm
        };
        let fatal = signal == libc::SIGKILL || (signal == libc::SIGTERM && !ignores);
        if fatal {
            self.exit(id, 128 + signal, false);
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), ContainerError> {
        self.lock().containers.remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            layers: vec!["/l".into()],
            process: super::super::ProcessSpec {
                args: vec!["sh".into()],
                ..Default::default()
            },
            cgroups_path: "/skiff/p/c".into(),
            log: super::super::LogConfig {
                path: "/tmp/x.log".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn scripted_lifecycle() {
        let rt = FakeRuntime::new();
        let t0 = SystemTime::UNIX_EPOCH;
        rt.set_now(t0);
        let started = rt.start(&spec("a")).unwrap();
        assert!(matches!(
            rt.start(&spec("a")),
            Err(ContainerError::AlreadyExists { .. })
        ));
        assert_eq!(
            rt.state("a").unwrap(),
            ContainerState::Running {
                pid: started.pid,
                started_at: t0
            }
        );
        rt.ignore_sigterm("a");
        rt.kill("a", libc::SIGTERM).unwrap();
        assert!(matches!(
            rt.state("a").unwrap(),
            ContainerState::Running { .. }
        ));
        rt.kill("a", libc::SIGKILL).unwrap();
        assert!(matches!(
            rt.state("a").unwrap(),
            ContainerState::Exited {
                exit_code: 137,
                signal: Some(9),
                ..
            }
        ));
        assert!(matches!(
            rt.kill("a", libc::SIGTERM),
            Err(ContainerError::NotRunning { .. })
        ));
        rt.fail_next_start("no such binary");
        assert!(matches!(
            rt.start(&spec("b")),
            Err(ContainerError::StartFailed { .. })
        ));
        assert_eq!(rt.list().unwrap(), ["a", "b"]);
        rt.remove("a").unwrap();
        rt.remove("a").unwrap();
        assert_eq!(rt.state("a").unwrap(), ContainerState::NotFound);
        assert_eq!(rt.started().len(), 2);
    }
}

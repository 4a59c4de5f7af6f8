//! Probes as kubelet runs them, pure: when each of a container's probes is due, and what a
//! result does to its verdict. A startup probe holds the other two back until it succeeds
//! once (then it is not run again); liveness starts passing and readiness failing; a verdict
//! changes after `successThreshold` successes or `failureThreshold` failures in a row; a
//! failed liveness or startup verdict kills the container (it restarts through the crash
//! backoff with fresh probes). The node loop runs the checks and folds the results in; the
//! state lives in the container's status, so readiness survives an agent restart.

use serde::{Deserialize, Serialize};
use skiff_manifests::{Container, Probe};

use crate::pod::Millis;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// One probe's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// The verdict (`None`: none yet, a startup probe's start).
    pub passing: Option<bool>,
    /// The last check's result and how many in a row gave it.
    pub last: Option<bool>,
    pub run: u32,
    /// When the next check is due.
    pub next_at: Millis,
    /// What the last failed check said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A container instance's probes (only those its manifest has).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerProbes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<ProbeStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<ProbeStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ProbeStatus>,
}

/// What a result makes of the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Nothing,
    /// Readiness (or, with a startup probe, being started) changed.
    Ready(bool),
    /// Stop the container: `<Kind> probe failed: <message>`.
    Kill(String),
}

fn millis(seconds: u32) -> Millis {
    Millis::from(seconds) * 1000
}

impl ContainerProbes {
    /// The probes of a container instance started at `started_at`: each first due after its
    /// initial delay.
    pub fn start(c: &Container, started_at: Millis) -> ContainerProbes {
        let fresh = |kind: ProbeKind, passing: Option<bool>| {
            kind.of(c).map(|p| ProbeStatus {
                passing,
                last: None,
                run: 0,
                next_at: started_at + millis(p.initial_delay_seconds),
                message: String::new(),
            })
        };
        ContainerProbes {
            startup: fresh(ProbeKind::Startup, None),
            liveness: fresh(ProbeKind::Liveness, Some(true)),
            readiness: fresh(ProbeKind::Readiness, Some(false)),
        }
    }

    /// These probes with every verdict passing (a container that already ran before it was
    /// probed: it keeps counting as started and ready until its checks say otherwise).
    pub fn assumed_passing(mut self) -> ContainerProbes {
        for s in [&mut self.startup, &mut self.liveness, &mut self.readiness]
            .into_iter()
            .flatten()
        {
            s.passing = Some(true);
        }
        self
    }

    fn slot(&mut self, kind: ProbeKind) -> Option<&mut ProbeStatus> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    /// Whether the startup probe (if any) has succeeded.
    pub fn started(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|s| s.passing == Some(true))
    }

    /// Started, and the readiness probe (if any) passes.
    pub fn ready(&self) -> bool {
        self.started()
            && self
                .readiness
                .as_ref()
                .is_none_or(|s| s.passing == Some(true))
    }

    /// The probes due at `now`: the startup probe until it succeeds, then the other two.
    pub fn due(&self, now: Millis) -> Vec<ProbeKind> {
        let due = |s: &Option<ProbeStatus>| s.as_ref().is_some_and(|s| s.next_at <= now);
        if !self.started() {
            return if due(&self.startup) {
                vec![ProbeKind::Startup]
            } else {
                Vec::new()
            };
        }
        let mut out = Vec::new();
        if due(&self.liveness) {
            out.push(ProbeKind::Liveness);
        }
        if due(&self.readiness) {
            out.push(ProbeKind::Readiness);
        }
        out
    }

    /// The earliest time a probe is due (for the loop's next wake-up).
    pub fn next_due(&self) -> Option<Millis> {
        let started = self.started();
        [
            if started { None } else { self.startup.as_ref() },
            if started {
                self.liveness.as_ref()
            } else {
                None
            },
            if started {
                self.readiness.as_ref()
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        .map(|s| s.next_at)
        .min()
    }

    /// Folds one check of `kind` (`probe` is its spec) finished at `now`.
    pub fn record(
        &mut self,
        kind: ProbeKind,
        probe: &Probe,
        ok: bool,
        message: &str,
        now: Millis,
    ) -> Verdict {
        let was_ready = self.ready();
        let Some(s) = self.slot(kind) else {
            return Verdict::Nothing;
        };
        s.next_at = now + millis(probe.period_seconds);
        if !ok {
            s.message = message.to_string();
        }
        if s.last == Some(ok) {
            s.run = s.run.saturating_add(1);
        } else {
            s.last = Some(ok);
            s.run = 1;
        }
        let threshold = if ok {
            probe.success_threshold
        } else {
            probe.failure_threshold
        };
        if s.run < threshold || s.passing == Some(ok) {
            return Verdict::Nothing;
        }
        s.passing = Some(ok);
        if !ok && kind != ProbeKind::Readiness {
            return Verdict::Kill(format!("{} probe failed: {}", kind.title(), s.message));
        }
        let ready = self.ready();
        if ready != was_ready {
            Verdict::Ready(ready)
        } else {
            Verdict::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_manifests::{Object, parse_file};

    fn container(probes: &str) -> Container {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n{probes}"
        );
        let parsed = parse_file("p.yaml", yaml.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.errors());
        match parsed.objects()[0].get() {
            Object::Pod(p) => p.spec.containers[0].clone(),
            _ => unreachable!(),
        }
    }

    /// Steps of (time in s, probe, result) and what each must give.
    type Step = (u64, ProbeKind, bool, Verdict);

    fn run(c: &Container, steps: &[Step]) -> ContainerProbes {
        let mut probes = ContainerProbes::start(c, 0);
        for (i, (at, kind, ok, want)) in steps.iter().enumerate() {
            let now = at * 1000;
            assert!(
                probes.due(now).contains(kind),
                "step {i}: {kind:?} not due at {at}s: {probes:?}"
            );
            let spec = kind.of(c).unwrap();
            let got = probes.record(*kind, spec, *ok, "connection refused", now);
            assert_eq!(&got, want, "step {i}");
        }
        probes
    }

    #[test]
    fn readiness_needs_its_thresholds_in_a_row() {
        let c = container(
            "    readinessProbe:\n      tcpSocket: {port: 80}\n      initialDelaySeconds: 5\n      periodSeconds: 2\n      successThreshold: 2\n      failureThreshold: 2\n",
        );
        let probes = ContainerProbes::start(&c, 0);
        assert!(!probes.ready(), "readiness starts failing");
        assert!(probes.due(4_999).is_empty(), "not before the initial delay");
        use ProbeKind::Readiness as R;
        let probes = run(
            &c,
            &[
                (5, R, true, Verdict::Nothing),
                (7, R, false, Verdict::Nothing),
                (9, R, true, Verdict::Nothing),
                (11, R, true, Verdict::Ready(true)),
                (13, R, false, Verdict::Nothing),
                (15, R, true, Verdict::Nothing),
                (17, R, false, Verdict::Nothing),
                (19, R, false, Verdict::Ready(false)),
            ],
        );
        assert!(!probes.ready());
        assert_eq!(
            probes.readiness.as_ref().unwrap().message,
            "connection refused"
        );
        assert_eq!(probes.next_due(), Some(21_000));
    }

    #[test]
    fn liveness_starts_passing_and_kills_after_its_failure_threshold() {
        let c =
            container("    livenessProbe:\n      httpGet: {port: 80}\n      periodSeconds: 1\n");
        let probes = ContainerProbes::start(&c, 0);
        assert!(probes.ready(), "no readiness probe: ready once it runs");
        use ProbeKind::Liveness as L;
        run(
            &c,
            &[
                (0, L, false, Verdict::Nothing),
                (1, L, false, Verdict::Nothing),
                (2, L, true, Verdict::Nothing),
                (3, L, false, Verdict::Nothing),
                (4, L, false, Verdict::Nothing),
                (
                    5,
                    L,
                    false,
                    Verdict::Kill("Liveness probe failed: connection refused".into()),
                ),
            ],
        );
    }

    #[test]
    fn a_startup_probe_holds_the_others_back_until_it_succeeds_once() {
        let c = container(
            "    startupProbe:\n      tcpSocket: {port: 80}\n      periodSeconds: 1\n      failureThreshold: 3\n    livenessProbe:\n      tcpSocket: {port: 80}\n    readinessProbe:\n      tcpSocket: {port: 80}\n",
        );
        let mut probes = ContainerProbes::start(&c, 0);
        assert_eq!(
            probes.due(0),
            [ProbeKind::Startup],
            "only the startup probe"
        );
        assert!(!probes.ready());
        use ProbeKind::{Liveness as L, Readiness as R, Startup as S};
        let after = run(
            &c,
            &[
                (0, S, false, Verdict::Nothing),
                (1, S, true, Verdict::Nothing),
                (2, R, true, Verdict::Ready(true)),
                (2, L, true, Verdict::Nothing),
            ],
        );
        assert!(after.started() && after.ready());
        assert!(
            !after.due(100_000).contains(&S),
            "a startup probe that succeeded is not run again"
        );
        // Failing its threshold kills the container.
        for at in 0..2 {
            assert_eq!(
                probes.record(
                    S,
                    c.startup_probe.as_ref().unwrap(),
                    false,
                    "refused",
                    at * 1000
                ),
                Verdict::Nothing
            );
        }
        assert_eq!(
            probes.record(S, c.startup_probe.as_ref().unwrap(), false, "refused", 2000),
            Verdict::Kill("Startup probe failed: refused".into())
        );
    }

    #[test]
    fn the_state_reads_back_from_an_older_record() {
        let probes: ContainerProbes = serde_json::from_str("{}").unwrap();
        assert_eq!(probes, ContainerProbes::default());
        assert!(probes.ready());
    }
}

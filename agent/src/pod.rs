//! What the node knows about each pod it runs: the record (identity, spec, owner) and the
//! runtime status of every container, persisted so a restarted agent re-adopts instead of
//! restarting. Also renders pods in Kubernetes' shape for the CLI.

use serde::{Deserialize, Serialize};
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use std::fmt;
use std::time::Duration;

/// Wall-clock milliseconds since the UNIX epoch (persisted, so not `Instant`).
pub type Millis = u64;

/// Where a loop reads the time (ms since the epoch): the wall clock in the agent, a clock that
/// follows tokio's paused time in simulations.
pub type Clock = std::sync::Arc<dyn Fn() -> Millis + Send + Sync>;

/// The wall clock as a `Clock`.
pub fn wall_clock() -> Clock {
    std::sync::Arc::new(now_millis)
}

/// The current wall-clock time in `Millis`.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// RFC 3339 (seconds) for Kubernetes-shaped output.
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// What the reconciler needs to know about one container (the rest stays in the manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerPlanSpec {
    pub name: String,
    pub image: String,
    pub pull_policy: PullPolicy,
    /// An init container with `restartPolicy: Always`: started before the next init container,
    /// restarted whenever it exits, stopped after the main containers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sidecar: bool,
}

/// What the reconciler needs to know about a pod.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodPlanSpec {
    pub init_containers: Vec<ContainerPlanSpec>,
    pub containers: Vec<ContainerPlanSpec>,
    pub restart_policy: RestartPolicy,
    pub grace_period: Duration,
    pub host_network: bool,
    /// `activeDeadlineSeconds`: how long the pod may be active (from its start) before the
    /// node fails it with reason DeadlineExceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline: Option<Duration>,
}

/// The object that made this pod (a Deployment or DaemonSet; a bare Pod names itself), in the
/// pod's namespace, for listing and for scaling. Serialized as `{"kind": "Deployment", "name": ..}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Owner {
    pub kind: Kind,
    pub name: String,
}

/// A workload named with its namespace: `Deployment/default/web`. Serialized as that string
/// (the leader gossips it in the pending list), so stored and gossiped values keep their form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct OwnerRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl OwnerRef {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> OwnerRef {
        OwnerRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Whether this names the object `key`.
    pub fn is(&self, key: &ObjectKey) -> bool {
        self.kind == key.kind && self.namespace == key.namespace && self.name == key.name
    }
}

impl fmt::Display for OwnerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

impl From<OwnerRef> for String {
    fn from(owner: OwnerRef) -> String {
        owner.to_string()
    }
}

/// An owner string that is not `Kind/namespace/name` with a kind skiff knows.
#[derive(Debug, thiserror::Error)]
#[error("owner {0:?}: expected Kind/namespace/name with a known kind")]
pub struct BadOwnerRef(String);

impl std::str::FromStr for OwnerRef {
    type Err = BadOwnerRef;

    fn from_str(text: &str) -> Result<OwnerRef, BadOwnerRef> {
        OwnerRef::try_from(text.to_string())
    }
}

impl TryFrom<String> for OwnerRef {
    type Error = BadOwnerRef;

    fn try_from(text: String) -> Result<OwnerRef, BadOwnerRef> {
        let mut parts = text.splitn(3, '/');
        let (Some(kind), Some(namespace), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(BadOwnerRef(text));
        };
        let Some(kind) = Kind::from_name(kind) else {
            return Err(BadOwnerRef(text));
        };
        Ok(OwnerRef::new(kind, namespace, name))
    }
}

/// One pod on this node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PodRecord {
    /// Short random id: names the pod's netns, cgroup, directory and containers.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<Owner>,
    /// Hash of what the pod runs: a different hash means "replace the pod".
    pub spec_hash: String,
    /// The validated pod (always `Object::Pod`), as the manifest or the Deployment made it.
    pub manifest: Valid<Object>,
    pub plan: PodPlanSpec,
    pub created_at: Millis,
    /// Set when the pod is to be stopped and removed.
    pub deleting_since: Option<Millis>,
    pub status: PodRuntime,
}

/// The pod's sandbox (network namespace, volumes) and containers as last observed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PodRuntime {
    pub sandbox_ready: bool,
    /// Why the sandbox could not be made, and when to try again.
    pub sandbox_error: Option<Waiting>,
    pub sandbox_failures: u32,
    pub sandbox_retry_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub init_containers: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    /// Exited instances whose runtime state is still to be removed.
    pub pending_removal: Vec<String>,
    /// The pod's network once its sandbox is ready (none for host-network pods).
    #[serde(default)]
    pub network: Option<PodNet>,
    /// Why the node failed the pod as a whole (`Evicted`: a storage limit; `DeadlineExceeded`:
    /// activeDeadlineSeconds): its containers are stopped for good and its sandbox torn down;
    /// the pod is Failed with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<PodFailure>,
}

/// Why a pod failed as a whole (Kubernetes' `status.reason` and `status.message`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodFailure {
    pub reason: String,
    pub message: String,
}

/// What pod networking gave a pod.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodNet {
    pub ip: String,
    /// Files bind-mounted as the containers' /etc/hosts and /etc/resolv.conf.
    pub hosts_file: std::path::PathBuf,
    pub resolv_file: std::path::PathBuf,
}

/// A container instance that was started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    /// The runtime's container id: `<pod uid>-<init|c><index>-<attempt>`.
    pub id: String,
    pub pid: i32,
    pub started_at: Millis,
    /// When SIGTERM was sent (SIGKILL follows after the grace period).
    pub term_sent_at: Option<Millis>,
    pub kill_sent: bool,
    /// Its probes' progress (kept across agent restarts, so readiness does not flap).
    #[serde(default, skip_serializing_if = "is_default_probes")]
    pub probes: crate::reconciler::probe::ContainerProbes,
    /// A failed liveness or startup probe asked to stop it (`<Kind> probe failed: ...`); it
    /// restarts through the crash backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Its grace period when stopped for that reason (the probe's own, else the pod's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_ms: Option<Millis>,
    /// When its preStop hook started (it has run; SIGTERM comes next, and SIGKILL once the
    /// grace period counted from here has passed, at least 2 s after SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop_at: Option<Millis>,
}

fn is_default_probes(p: &crate::reconciler::probe::ContainerProbes) -> bool {
    *p == crate::reconciler::probe::ContainerProbes::default()
}

/// How an instance ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Completed, Error, OOMKilled, ContainerStatusUnknown.
    pub reason: String,
    pub started_at: Millis,
    pub finished_at: Millis,
}

/// Why a container is not running (Kubernetes' waiting reasons).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// One container's status and history on this node.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerStatus {
    pub name: String,
    /// Starts so far (the next instance id uses `attempts + 1`).
    pub attempts: u32,
    pub restart_count: u32,
    /// Consecutive failed runs, for the crash backoff.
    pub failures: u32,
    pub current: Option<Instance>,
    pub last: Option<Termination>,
    pub waiting: Option<Waiting>,
    /// Not before this time (crash or start-error backoff).
    pub next_start_at: Option<Millis>,
    /// Will not run again (restart policy says so, or an init container succeeded).
    pub done: bool,
    /// The image was pulled for this container (pull policy Always pulls once per pod).
    pub pulled: bool,
}

impl ContainerStatus {
    pub fn new(name: &str) -> Self {
        ContainerStatus {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn running(&self) -> bool {
        self.current.is_some()
    }
}

impl PodRuntime {
    pub fn for_plan(plan: &PodPlanSpec) -> Self {
        PodRuntime {
            init_containers: plan
                .init_containers
                .iter()
                .map(|c| ContainerStatus::new(&c.name))
                .collect(),
            containers: plan
                .containers
                .iter()
                .map(|c| ContainerStatus::new(&c.name))
                .collect(),
            ..Default::default()
        }
    }

    /// Every container, init first.
    pub fn all(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.init_containers.iter().chain(self.containers.iter())
    }

    /// Makes the next attempt immediate for what waits on configuration (a ConfigMap or
    /// Secret that was missing): called when such objects change, so a pod whose configuration
    /// arrives late starts at once instead of after its backoff.
    pub fn retry_config_waits(&mut self) -> bool {
        let mut any = false;
        if self
            .sandbox_error
            .as_ref()
            .is_some_and(|w| w.reason == "FailedMount")
        {
            self.sandbox_retry_at = None;
            any = true;
        }
        for c in self
            .init_containers
            .iter_mut()
            .chain(self.containers.iter_mut())
        {
            if c.current.is_none()
                && c.waiting
                    .as_ref()
                    .is_some_and(|w| w.reason == "CreateContainerConfigError")
            {
                c.next_start_at = None;
                any = true;
            }
        }
        any
    }

    pub fn any_running(&self) -> bool {
        self.all().any(ContainerStatus::running)
    }
}

/// Pod phase as Kubernetes reports it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodRecord {
    /// Init container `i` no longer holds the next one back: it ran to completion, or it is a
    /// sidecar that has started.
    pub fn init_finished(&self, i: usize) -> bool {
        let Some(c) = self.status.init_containers.get(i) else {
            return true;
        };
        if self.plan.init_containers.get(i).is_some_and(|p| p.sidecar) {
            c.done || c.current.is_some() || c.last.is_some()
        } else {
            c.done
        }
    }

    /// Every main container has finished for good (a pod whose restart policy lets them), or
    /// an init container failed for good (the main containers never start): sidecars stop.
    pub fn main_finished(&self) -> bool {
        let init_failed = self
            .status
            .init_containers
            .iter()
            .zip(&self.plan.init_containers)
            .any(|(c, p)| !p.sidecar && c.done && !succeeded(c));
        init_failed
            || (!self.status.containers.is_empty() && self.status.containers.iter().all(|c| c.done))
    }

    /// Kubernetes' phase rules: Pending until every container has started once; Succeeded or
    /// Failed when all are done; otherwise Running.
    pub fn phase(&self) -> Phase {
        let s = &self.status;
        if s.failure.is_some() {
            return Phase::Failed;
        }
        let sidecar = |i: usize| self.plan.init_containers.get(i).is_some_and(|c| c.sidecar);
        if s.init_containers
            .iter()
            .enumerate()
            .any(|(i, c)| !sidecar(i) && c.done && !succeeded(c))
        {
            return Phase::Failed;
        }
        if !(0..s.init_containers.len()).all(|i| self.init_finished(i)) {
            return Phase::Pending;
        }
        if s.containers.iter().all(|c| c.done) && !s.containers.is_empty() {
            return if s.containers.iter().all(succeeded) {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
        }
        if s.containers
            .iter()
            .all(|c| c.running() || c.last.is_some() || c.done)
        {
            Phase::Running
        } else {
            Phase::Pending
        }
    }
}

/// A minimal valid pod, for tests.
#[cfg(test)]
pub fn sample_manifest() -> Valid<Object> {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: i\n";
    skiff_manifests::parse_file("sample.yaml", yaml.as_bytes())
        .objects()
        .into_iter()
        .next()
        .cloned()
        .expect("sample pod is valid")
}

fn succeeded(c: &ContainerStatus) -> bool {
    c.last.as_ref().is_some_and(|t| t.exit_code == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(containers: &[&str]) -> PodPlanSpec {
        PodPlanSpec {
            init_containers: vec![],
            containers: containers
                .iter()
                .map(|n| ContainerPlanSpec {
                    name: n.to_string(),
                    image: "i".into(),
                    pull_policy: PullPolicy::IfNotPresent,
                    sidecar: false,
                })
                .collect(),
            restart_policy: RestartPolicy::Always,
            grace_period: Duration::from_secs(30),
            host_network: false,
            active_deadline: None,
        }
    }

    fn record(containers: &[&str]) -> PodRecord {
        let plan = plan(containers);
        PodRecord {
            uid: "u".into(),
            namespace: "default".into(),
            name: "p".into(),
            owner: None,
            spec_hash: "h".into(),
            manifest: sample_manifest(),
            status: PodRuntime::for_plan(&plan),
            plan,
            created_at: 0,
            deleting_since: None,
        }
    }

    fn term(code: i32) -> Termination {
        Termination {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            started_at: 0,
            finished_at: 1,
        }
    }

    #[test]
    fn phases() {
        let mut p = record(&["a", "b"]);
        assert_eq!(p.phase(), Phase::Pending);
        p.status.containers[0].current = Some(Instance {
            id: "x".into(),
            pid: 1,
            started_at: 0,
            term_sent_at: None,
            kill_sent: false,
            probes: Default::default(),
            stop_reason: None,
            stop_grace_ms: None,
            pre_stop_at: None,
        });
        assert_eq!(p.phase(), Phase::Pending, "b has not started yet");
        p.status.containers[1].last = Some(term(1));
        assert_eq!(p.phase(), Phase::Running, "b is restarting");
        for c in &mut p.status.containers {
            c.current = None;
            c.done = true;
            c.last = Some(term(0));
        }
        assert_eq!(p.phase(), Phase::Succeeded);
        p.status.containers[1].last = Some(term(2));
        assert_eq!(p.phase(), Phase::Failed);
    }

    #[test]
    fn owners_keep_their_serialized_form() {
        let owner = Owner {
            kind: Kind::DaemonSet,
            name: "agent".into(),
        };
        let text = serde_json::to_string(&owner).unwrap();
        assert_eq!(text, r#"{"kind":"DaemonSet","name":"agent"}"#);
        assert_eq!(serde_json::from_str::<Owner>(&text).unwrap(), owner);

        let reference = OwnerRef::new(Kind::Deployment, "default", "web");
        let text = serde_json::to_string(&reference).unwrap();
        assert_eq!(text, r#""Deployment/default/web""#);
        assert_eq!(serde_json::from_str::<OwnerRef>(&text).unwrap(), reference);
        for bad in [
            r#""Deployment/default""#,
            r#""StatefulSet/default/x""#,
            r#""""#,
        ] {
            assert!(serde_json::from_str::<OwnerRef>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_output() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01Z");
    }
}

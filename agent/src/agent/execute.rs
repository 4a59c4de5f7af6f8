//! Carrying out one pod's actions off the node loop: sandbox, container start (on the blocking
//! pool: the runtime is synchronous), signals, removal, teardown. Every outcome goes back to
//! the loop, which is the only writer of pod records.

use crate::config::AgentConfig;
use crate::desired::Source;
use crate::pod::PodRecord;
use crate::reconciler::container::{self, StartRequest};
use crate::reconciler::plan::{Action, StopSignal};
use crate::reconciler::sandbox::{self, PodPaths};
use skiff_manifests::model::workloads::Pod;
use skiff_manifests::{Object, ObjectKey, Valid};
use skiff_runtime::container::{ContainerError, ContainerRuntime};
use skiff_runtime::image::{ImageStore, PullOptions, RegistryAuth};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One pod's batch of actions and what they need.
pub struct Job {
    pub pod: PodRecord,
    pub actions: Vec<Action>,
    pub objects: Arc<BTreeMap<ObjectKey, (Source, Valid<Object>)>>,
    pub config: AgentConfig,
    pub images: ImageStore,
    pub runtime: Arc<dyn ContainerRuntime>,
}

pub struct JobResult {
    pub uid: String,
    pub outcomes: Vec<Outcome>,
}

pub enum Outcome {
    SandboxReady,
    SandboxFailed {
        reason: String,
        message: String,
    },
    Started {
        init: bool,
        index: usize,
        id: String,
        pid: i32,
        started_at: SystemTime,
    },
    StartFailed {
        init: bool,
        index: usize,
        id: String,
        reason: String,
        message: String,
    },
    Signaled {
        id: String,
        signal: StopSignal,
    },
    Removed {
        id: String,
    },
    TornDown,
    Failed {
        message: String,
    },
}

pub struct PullResult {
    pub key: String,
    pub image: String,
    pub result: Result<(), String>,
    pub took: Duration,
}

pub fn pull_options(config: &AgentConfig) -> PullOptions {
    PullOptions {
        insecure_registries: config.insecure_registries.clone(),
        auth: config
            .registry_auth
            .iter()
            .map(|(host, a)| {
                (
                    host.clone(),
                    RegistryAuth {
                        username: a.username.clone(),
                        password: a.password.clone(),
                    },
                )
            })
            .collect(),
    }
}

fn netns_name(config: &AgentConfig, uid: &str) -> String {
    format!("{}{uid}", config.netns_prefix)
}

/// Runs the job's actions in order on the blocking pool.
pub async fn run_job(job: Job) -> JobResult {
    let uid = job.pod.uid.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for action in &job.actions {
            out.push(run_action(&job, action));
        }
        out
    })
    .await
    .unwrap_or_else(|e| {
        vec![Outcome::Failed {
            message: format!("executor task failed: {e}"),
        }]
    });
    JobResult { uid, outcomes }
}

fn objects_of(job: &Job) -> container::Objects {
    job.objects
        .iter()
        .map(|(k, (_, o))| (k.clone(), o.clone()))
        .collect()
}

fn run_action(job: &Job, action: &Action) -> Outcome {
    let pod = &job.pod;
    let config = &job.config;
    let paths = PodPaths::new(&config.pods_dir(), &pod.uid);
    let netns = netns_name(config, &pod.uid);
    let netns_arg = (!pod.plan.host_network).then_some((config.netns_dir.as_path(), netns.as_str()));
    match action {
        Action::EnsureSandbox { .. } => {
            let Ok(manifest) = Valid::<Pod>::try_from(pod.manifest.clone()) else {
                return Outcome::SandboxFailed {
                    reason: "InvalidPod".into(),
                    message: "stored pod record is not a pod".into(),
                };
            };
            match sandbox::prepare(&manifest, &paths, &objects_of(job), netns_arg) {
                Ok(_) => Outcome::SandboxReady,
                Err(e @ sandbox::SandboxError::Volume { .. }) => Outcome::SandboxFailed {
                    reason: "FailedMount".into(),
                    message: e.to_string(),
                },
                Err(e) => Outcome::SandboxFailed {
                    reason: "FailedCreatePodSandBox".into(),
                    message: e.to_string(),
                },
            }
        }
        Action::StartContainer { init, index, id, .. } => start(job, &paths, netns_arg, *init, *index, id),
        Action::Signal { id, signal, .. } => {
            let sig = match signal {
                StopSignal::Term => libc::SIGTERM,
                StopSignal::Kill => libc::SIGKILL,
            };
            match job.runtime.kill(id, sig) {
                Ok(()) | Err(ContainerError::NotRunning { .. }) => Outcome::Signaled {
                    id: id.clone(),
                    signal: *signal,
                },
                Err(e) => Outcome::Failed {
                    message: format!("signal container {id}: {e}"),
                },
            }
        }
        Action::RemoveContainer { id, .. } => match job.runtime.remove(id) {
            Ok(()) => Outcome::Removed { id: id.clone() },
            Err(e) => Outcome::Failed {
                message: format!("remove container {id}: {e}"),
            },
        },
        Action::TeardownSandbox { .. } => match sandbox::teardown(&paths, netns_arg) {
            Ok(()) => Outcome::TornDown,
            Err(e) => Outcome::Failed {
                message: format!("tear down pod sandbox: {e}"),
            },
        },
        Action::PullImage { .. } | Action::Forget { .. } => Outcome::Failed {
            message: "internal: action handled by the loop".into(),
        },
    }
}

fn start(
    job: &Job,
    paths: &PodPaths,
    netns: Option<(&std::path::Path, &str)>,
    init: bool,
    index: usize,
    id: &str,
) -> Outcome {
    let fail = |reason: &str, message: String| Outcome::StartFailed {
        init,
        index,
        id: id.to_string(),
        reason: reason.to_string(),
        message,
    };
    let pod = &job.pod;
    let Ok(manifest) = Valid::<Pod>::try_from(pod.manifest.clone()) else {
        return fail("CreateContainerConfigError", "stored pod record is not a pod".into());
    };
    let list = if init {
        &manifest.spec.init_containers
    } else {
        &manifest.spec.containers
    };
    let Some(c) = list.get(index) else {
        return fail("CreateContainerConfigError", format!("no container at index {index}"));
    };
    let info = match job.images.resolve(&c.image) {
        Ok(Some(info)) => info,
        Ok(None) => return fail("ErrImageNeverPull", format!("image {:?} is not present", c.image)),
        Err(e) => return fail("CreateContainerError", e.to_string()),
    };
    let layers = match job.images.layer_dirs(&info) {
        Ok(l) => l,
        Err(e) => return fail("CreateContainerError", e.to_string()),
    };
    let objects = objects_of(job);
    let spec = match container::container_spec(StartRequest {
        id,
        pod_uid: &pod.uid,
        pod: &manifest,
        container: c,
        image: &info.config,
        layers,
        objects: &objects,
        paths,
        netns: netns.map(|(dir, name)| dir.join(name)),
        cgroup_parent: &job.config.cgroup_parent,
        log_max_bytes: job.config.log_max_bytes,
        log_max_files: job.config.log_max_files,
    }) {
        Ok(s) => s,
        Err(e) => return fail("CreateContainerConfigError", e.0),
    };
    match job.runtime.start(&spec) {
        Ok(started) => Outcome::Started {
            init,
            index,
            id: id.to_string(),
            pid: started.pid,
            started_at: started.started_at,
        },
        Err(e) => {
            // Leave nothing half-made behind; the next attempt uses a new id.
            let _ = job.runtime.remove(id);
            fail("RunContainerError", e.to_string())
        }
    }
}

//! Carrying out one pod's actions off the node loop: sandbox, container start (on the blocking
//! pool: the runtime is synchronous), signals, removal, teardown. Every outcome goes back to
//! the loop, which is the only writer of pod records.

use crate::config::AgentConfig;
use crate::desired::Source;
use crate::pod::{Millis, PodNet, PodRecord};
use crate::reconciler::container::{self, StartRequest};
use crate::reconciler::outcome::{HookKind, Outcome};
use crate::reconciler::plan::{Action, StopSignal};
use crate::reconciler::sandbox::{self, PodPaths};
use skiff_cni::{HostPortMapping, PodNetRequest, PodNetwork, Protocol};
use skiff_manifests::model::workloads::Pod;
use skiff_manifests::{Object, ObjectKey, Valid};
use skiff_runtime::container::{ContainerError, ContainerRuntime};
use skiff_runtime::image::{ImageStore, PullOptions, RegistryAuth};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One pod's batch of actions and what they need.
pub struct Job<N> {
    pub pod: PodRecord,
    pub actions: Vec<Action>,
    pub objects: Arc<BTreeMap<ObjectKey, (Source, Valid<Object>)>>,
    /// The Services with a ClusterIP when the job was made (the containers' environment).
    pub service_links: Arc<crate::services::ServiceLinks>,
    pub config: AgentConfig,
    pub images: ImageStore,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Pod networking; `None` when it is turned off (loopback-only namespaces).
    pub network: Option<Arc<N>>,
    /// The network a sandbox action of this job just made (used by the starts that follow).
    pub sandbox_network: std::sync::Mutex<Option<PodNet>>,
}

pub struct JobResult {
    pub uid: String,
    pub outcomes: Vec<Outcome>,
}

pub struct PullResult {
    pub key: String,
    pub image: String,
    pub result: Result<(), skiff_runtime::image::ImageError>,
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

/// Runs the job's actions in order: pod networking on the async runtime, everything else
/// (filesystem, runtime calls) on the blocking pool.
pub async fn run_job<N: PodNetwork + 'static>(job: Job<N>) -> JobResult {
    let uid = job.pod.uid.clone();
    let job = Arc::new(job);
    let mut outcomes = Vec::new();
    // The preStop hooks of a pod's containers run at the same time (as kubelet runs them),
    // after every other action of the job (the planner puts them last).
    let hooks: Vec<(String, usize, Millis)> = job
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::PreStop {
                id,
                index,
                budget_ms,
                ..
            } => Some((id.clone(), *index, *budget_ms)),
            _ => None,
        })
        .collect();
    for index in 0..job.actions.len() {
        if matches!(job.actions[index], Action::PreStop { .. }) {
            continue;
        }
        let sandbox_failed = outcomes
            .iter()
            .any(|o| matches!(o, Outcome::SandboxFailed { .. }));
        if sandbox_failed && matches!(job.actions[index], Action::StartContainer { .. }) {
            continue;
        }
        let outcome = match (&job.actions[index], job.network.clone()) {
            (Action::EnsureSandbox { .. }, Some(net)) if !job.pod.plan.host_network => {
                ensure_networked_sandbox(job.clone(), &net).await
            }
            (Action::TeardownSandbox { .. }, Some(net)) if !job.pod.plan.host_network => {
                match net.teardown_pod(&job.pod.uid).await {
                    Ok(()) => blocking(job.clone(), index).await,
                    // A deleted pod is not kept for want of disk: what the network holds (its
                    // address, links) is released once the store takes writes again.
                    Err(e @ skiff_cni::CniError::Store { .. }) => {
                        match blocking(job.clone(), index).await {
                            Outcome::TornDown { .. } => Outcome::TornDown {
                                network_pending: Some(e.to_string()),
                            },
                            other => other,
                        }
                    }
                    Err(e) => Outcome::Failed {
                        message: format!("tear down pod network: {e}"),
                    },
                }
            }
            (Action::StartContainer { init: false, .. }, _) => {
                let started = blocking(job.clone(), index).await;
                // A postStart hook runs right after the start; the container counts as running
                // once it is done (the outcomes are folded together).
                if let Outcome::Started {
                    index: container,
                    id,
                    ..
                } = &started
                    && post_start_runs(&job.pod, *container)
                {
                    let ran =
                        hook(&job, id, *container, HookKind::PostStart, POST_START_BUDGET).await;
                    outcomes.push(started);
                    ran
                } else {
                    started
                }
            }
            _ => blocking(job.clone(), index).await,
        };
        tracing::debug!(target: "skiff::path", pod = %job.pod.name, action = index, "action done");
        if let Outcome::SandboxReady { network } = &outcome
            && let Ok(mut slot) = job.sandbox_network.lock()
        {
            *slot = network.clone();
        }
        outcomes.push(outcome);
    }
    if !hooks.is_empty() {
        let started = std::time::Instant::now();
        let ran = futures::future::join_all(hooks.iter().map(|(id, container, budget_ms)| {
            hook(
                &job,
                id,
                *container,
                HookKind::PreStop,
                Duration::from_millis(*budget_ms),
            )
        }))
        .await;
        // All started together: each one's start is when the batch started.
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcomes.extend(ran.into_iter().map(|o| match o {
            Outcome::HookRan {
                id, hook, error, ..
            } => Outcome::HookRan {
                id,
                hook,
                took_ms,
                error,
            },
            other => other,
        }));
    }
    JobResult { uid, outcomes }
}

/// The longest a postStart hook may run (kubelet has no bound; a hook that hangs would keep
/// the container from ever counting as running).
const POST_START_BUDGET: Duration = Duration::from_secs(120);

fn post_start_runs(pod: &PodRecord, index: usize) -> bool {
    let Object::Pod(p) = pod.manifest.get() else {
        return false;
    };
    p.spec
        .containers
        .get(index)
        .is_some_and(|c| c.lifecycle.post_start.is_some())
}

/// Runs a lifecycle hook of container `index` (instance `id`) within `budget`.
async fn hook<N>(
    job: &Job<N>,
    id: &str,
    index: usize,
    kind: HookKind,
    budget: Duration,
) -> Outcome {
    let started = std::time::Instant::now();
    // The record as this job left it: a sandbox it just made is ready, with its network.
    let mut pod = job.pod.clone();
    if pod.status.network.is_none()
        && let Ok(slot) = job.sandbox_network.lock()
    {
        pod.status.network = slot.clone();
    }
    if kind == HookKind::PostStart {
        pod.status.sandbox_ready = true;
    }
    let error = match job.pod.manifest.get() {
        Object::Pod(p) => match p.spec.containers.get(index) {
            Some(c) => {
                let hook = match kind {
                    HookKind::PreStop => c.lifecycle.pre_stop.as_ref(),
                    HookKind::PostStart => c.lifecycle.post_start.as_ref(),
                };
                match hook {
                    Some(h) => crate::agent::core::probes::run_hook(
                        &job.config,
                        job.runtime.as_ref(),
                        id,
                        &pod,
                        c,
                        h,
                        budget,
                    )
                    .await
                    .err(),
                    None => None,
                }
            }
            None => None,
        },
        _ => None,
    };
    Outcome::HookRan {
        id: id.to_string(),
        hook: kind,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        error,
    }
}

async fn blocking<N: PodNetwork + 'static>(job: Arc<Job<N>>, index: usize) -> Outcome {
    tokio::task::spawn_blocking(move || run_action(&job, &job.actions[index]))
        .await
        .unwrap_or_else(|e| Outcome::Failed {
            message: format!("executor task failed: {e}"),
        })
}

/// Volumes first (a missing ConfigMap should not leave a wired pod behind), then the network.
async fn ensure_networked_sandbox<N: PodNetwork + 'static>(job: Arc<Job<N>>, net: &N) -> Outcome {
    let volumes = {
        let job = job.clone();
        tokio::task::spawn_blocking(move || prepare_volumes(&job, None))
            .await
            .unwrap_or_else(|e| Outcome::Failed {
                message: format!("executor task failed: {e}"),
            })
    };
    if !matches!(volumes, Outcome::SandboxReady { .. }) {
        return volumes;
    }
    let request = pod_net_request(&job.config, &job.pod);
    let setup = async {
        net.ensure_bridge().await?;
        net.setup_pod(&request).await
    };
    match setup.await {
        Ok(status) => Outcome::SandboxReady {
            network: Some(PodNet {
                ip: status.ip.to_string(),
                hosts_file: status.hosts_file,
                resolv_file: status.resolv_file,
            }),
        },
        Err(e) => Outcome::SandboxFailed {
            reason: "FailedCreatePodSandBox".into(),
            message: e.to_string(),
        },
    }
}

/// What the cni crate needs to wire `pod` (the same on every call: setup is idempotent).
pub fn pod_net_request(config: &AgentConfig, pod: &PodRecord) -> PodNetRequest {
    let paths = config.pod_paths(&pod.uid);
    let (hostname, hosts, dns) = pod_names(config, pod);
    PodNetRequest {
        id: pod.uid.clone(),
        netns_name: netns_name(config, &pod.uid),
        hostname,
        files_dir: paths.dir.join("net"),
        ports: host_ports(pod),
        cluster_dns: Some(dns),
        hosts,
    }
}

/// A host-network pod's /etc/hosts (the node's, then its host aliases) and /etc/resolv.conf
/// (the node's for `Default`, the cluster DNS for `ClusterFirstWithHostNet`, with `dnsConfig`
/// merged), written beside its state and bind-mounted as kubelet does.
fn host_network_files(
    config: &AgentConfig,
    pod: &PodRecord,
    paths: &PodPaths,
) -> Result<Vec<skiff_runtime::container::BindMount>, String> {
    let (_, hosts, dns) = pod_names(config, pod);
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut hosts_text = node_hosts;
    if !hosts_text.is_empty() && !hosts_text.ends_with('\n') {
        hosts_text.push('\n');
    }
    if !hosts.aliases.is_empty() {
        hosts_text.push_str("# Entries added by HostAliases.\n");
        for (ip, names) in &hosts.aliases {
            hosts_text.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    let node_resolv = std::fs::read_to_string(&config.resolv_conf).unwrap_or_default();
    let plain = dns.base == skiff_cni::DnsBase::Node
        && dns.nameservers.is_empty()
        && dns.extra_searches.is_empty()
        && dns.options.is_empty();
    let resolv = if plain {
        // The pod shares the node's network: its loopback resolvers work.
        node_resolv
    } else {
        let gateway = skiff_cni::config::first_host(config.pod_subnet);
        skiff_cni::files::cluster_resolv_content(&node_resolv, gateway, &dns)
    };
    let dir = paths.dir.join("net");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut mounts = Vec::new();
    for (file, text, target) in [
        ("hosts", hosts_text, "/etc/hosts"),
        ("resolv.conf", resolv, "/etc/resolv.conf"),
    ] {
        let path = dir.join(file);
        // Rewritten only when it changed: other containers of the pod have it bind-mounted,
        // and an in-place rewrite is briefly empty.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        mounts.push(skiff_runtime::container::BindMount {
            source: path,
            destination: target.into(),
            read_only: false,
        });
    }
    Ok(mounts)
}

/// The pod's hostname, its /etc/hosts extras and its resolver settings, from `hostname`,
/// `subdomain`, `hostAliases`, `dnsPolicy` and `dnsConfig` as kubelet reads them.
pub fn pod_names(
    config: &AgentConfig,
    pod: &PodRecord,
) -> (String, skiff_cni::PodHosts, skiff_cni::ClusterDns) {
    let spec = match pod.manifest.get() {
        skiff_manifests::Object::Pod(p) => Some(&p.spec),
        _ => None,
    };
    let hostname: String = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.name.chars().take(63).collect());
    let domain = &config.cluster_domain;
    let hosts = skiff_cni::PodHosts {
        // As kubelet writes it: with a subdomain, the pod's line has its full name (its
        // hostname defaulting to the pod name); DNS names it only with an explicit hostname.
        domain: spec
            .and_then(|s| s.subdomain.as_ref())
            .map(|sub| format!("{sub}.{}.svc.{domain}", pod.namespace)),
        aliases: spec
            .map(|s| {
                s.host_aliases
                    .iter()
                    .map(|a| (a.ip.clone(), a.hostnames.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let policy = spec.map(|s| s.dns_policy).unwrap_or_default();
    let host_network = spec.is_some_and(|s| s.host_network);
    let mut dns = if policy.uses_cluster_dns(host_network) {
        skiff_cni::ClusterDns::cluster(crate::services::dns::searches(&pod.namespace, domain))
    } else {
        let mut d = skiff_cni::ClusterDns::cluster(Vec::new());
        d.base = match policy {
            skiff_manifests::DnsPolicy::None => skiff_cni::DnsBase::Empty,
            _ => skiff_cni::DnsBase::Node,
        };
        d
    };
    if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
        dns.nameservers = c.nameservers.clone();
        dns.extra_searches = c.searches.clone();
        dns.options = c
            .options
            .iter()
            .map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            })
            .collect();
    }
    (hostname, hosts, dns)
}

/// The pod's hostPort mappings.
fn host_ports(pod: &PodRecord) -> Vec<HostPortMapping> {
    let Ok(manifest) = Valid::<Pod>::try_from(pod.manifest.clone()) else {
        return Vec::new();
    };
    manifest
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            Some(HostPortMapping {
                protocol: match p.protocol {
                    skiff_manifests::model::pod::Protocol::Udp => Protocol::Udp,
                    _ => Protocol::Tcp,
                },
                host_port: p.host_port?,
                container_port: p.container_port,
            })
        })
        .collect()
}

/// Pod directory and volumes, and (when given) a loopback-only network namespace.
fn prepare_volumes<N>(job: &Job<N>, netns: Option<(&std::path::Path, &str)>) -> Outcome {
    let pod = &job.pod;
    let paths = job.config.pod_paths(&pod.uid);
    let Ok(manifest) = Valid::<Pod>::try_from(pod.manifest.clone()) else {
        return Outcome::SandboxFailed {
            reason: "InvalidPod".into(),
            message: "stored pod record is not a pod".into(),
        };
    };
    let downward = container::Downward::of_pod(manifest.get(), &pod.uid, node_capacity(job));
    match sandbox::prepare(&manifest, &paths, &objects_of(job), &downward, netns) {
        Ok(_) => Outcome::SandboxReady { network: None },
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

/// Rewrites the pod's object volumes whose files changed.
fn refresh_volumes<N>(job: &Job<N>) -> Outcome {
    let pod = &job.pod;
    let Ok(manifest) = Valid::<Pod>::try_from(pod.manifest.clone()) else {
        return Outcome::Failed {
            message: "stored pod record is not a pod".into(),
        };
    };
    let paths = job.config.pod_paths(&pod.uid);
    let downward = container::Downward::of_pod(manifest.get(), &pod.uid, node_capacity(job));
    let (written, failed) = sandbox::refresh(&manifest, &paths, &objects_of(job), &downward);
    Outcome::VolumesRefreshed { written, failed }
}

/// The node's cpu (millis) and memory (bytes), what an absent limit means.
fn node_capacity<N>(job: &Job<N>) -> (u64, u64) {
    let c = crate::agent::membership::metadata(&job.config).capacity;
    (c.cpu_millis, c.memory_bytes)
}

fn objects_of<N>(job: &Job<N>) -> container::Objects {
    job.objects
        .iter()
        .map(|(k, (_, o))| (k.clone(), o.clone()))
        .collect()
}

fn run_action<N>(job: &Job<N>, action: &Action) -> Outcome {
    let pod = &job.pod;
    let config = &job.config;
    let paths = config.pod_paths(&pod.uid);
    let netns = netns_name(config, &pod.uid);
    let in_netns = (!pod.plan.host_network).then_some((config.netns_dir.as_path(), netns.as_str()));
    // With pod networking the cni crate owns the namespace; without, the sandbox makes it.
    let owned_netns = in_netns.filter(|_| job.network.is_none());
    match action {
        Action::EnsureSandbox { .. } => prepare_volumes(job, owned_netns),
        Action::StartContainer {
            init, index, id, ..
        } => start(job, &paths, in_netns, *init, *index, id),
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
        // Run on the async side (`run_job`); never handed to the blocking pool.
        Action::PreStop { id, .. } => Outcome::HookRan {
            id: id.clone(),
            hook: HookKind::PreStop,
            took_ms: 0,
            error: Some("not run".into()),
        },
        Action::RemoveContainer { id, .. } => match job.runtime.remove(id) {
            Ok(()) => Outcome::Removed { id: id.clone() },
            Err(e) => Outcome::Failed {
                message: format!("remove container {id}: {e}"),
            },
        },
        // A pod torn down without being deleted failed (evicted, past its deadline): its
        // logs stay until it is deleted.
        Action::TeardownSandbox { .. } => {
            match sandbox::teardown(&paths, owned_netns, job.pod.deleting_since.is_none()) {
                Ok(()) => Outcome::TornDown {
                    network_pending: None,
                },
                Err(e) => Outcome::Failed {
                    message: format!("tear down pod sandbox: {e}"),
                },
            }
        }
        Action::RefreshVolumes { .. } => refresh_volumes(job),
        Action::PullImage { .. } | Action::Forget { .. } => Outcome::Failed {
            message: "internal: action handled by the loop".into(),
        },
    }
}

fn start<N>(
    job: &Job<N>,
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
        return fail(
            "CreateContainerConfigError",
            "stored pod record is not a pod".into(),
        );
    };
    let list = if init {
        &manifest.spec.init_containers
    } else {
        &manifest.spec.containers
    };
    let Some(c) = list.get(index) else {
        return fail(
            "CreateContainerConfigError",
            format!("no container at index {index}"),
        );
    };
    let info = match job.images.resolve(&c.image) {
        Ok(Some(info)) => info,
        Ok(None) => {
            return fail(
                "ErrImageNeverPull",
                format!("image {:?} is not present", c.image),
            );
        }
        Err(e) => return fail("CreateContainerError", e.to_string()),
    };
    let layers = match job.images.layer_dirs(&info) {
        Ok(l) => l,
        Err(e) => return fail("CreateContainerError", e.to_string()),
    };
    let objects = objects_of(job);
    let host_ip = Some(crate::agent::membership::advertise_addr(&job.config).ip())
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string());
    let pod_ip = if pod.plan.host_network {
        host_ip.clone()
    } else {
        pod.status
            .network
            .clone()
            .or_else(|| job.sandbox_network.lock().ok().and_then(|n| n.clone()))
            .map(|n| n.ip)
    };
    let spec = match container::container_spec(StartRequest {
        id,
        pod_uid: &pod.uid,
        pod: &manifest,
        container: c,
        image: &info.config,
        layers,
        objects: &objects,
        service_links: if manifest.get().spec.enable_service_links {
            job.service_links
                .get(&manifest.get().metadata.namespace)
                .map_or(&[][..], Vec::as_slice)
        } else {
            &[]
        },
        paths,
        netns: netns.map(|(dir, name)| dir.join(name)),
        cgroup_parent: &job.config.cgroup_parent,
        log_max_bytes: job.config.log_max_bytes,
        log_max_files: job.config.log_max_files,
        log_min_free_bytes: job.config.log_min_free_bytes,
        seccomp_dir: &job
            .config
            .data_dir
            .join(crate::reconciler::security::SECCOMP_DIR),
        pod_pids_limit: job.config.pod_pids_limit,
        node_name: &job.config.node_name,
        pod_ip,
        host_ip,
        node_capacity: node_capacity(job),
    }) {
        Ok(s) => s,
        Err(e) => return fail("CreateContainerConfigError", e.0),
    };
    let mut spec = spec;
    let just_made = job.sandbox_network.lock().ok().and_then(|n| n.clone());
    if pod.plan.host_network {
        match host_network_files(&job.config, pod, paths) {
            Ok(files) => spec.mounts.extend(files),
            Err(e) => return fail("CreateContainerConfigError", e),
        }
    } else if let Some(net) = just_made.as_ref().or(pod.status.network.as_ref()) {
        for (file, target) in [
            (&net.hosts_file, "/etc/hosts"),
            (&net.resolv_file, "/etc/resolv.conf"),
        ] {
            spec.mounts.push(skiff_runtime::container::BindMount {
                source: file.clone(),
                destination: target.into(),
                read_only: false,
            });
        }
    }
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

//! Turning a manifest's container into the runtime's `ContainerSpec`: argv from image and
//! manifest (Kubernetes' command/args rules), env from values, ConfigMaps and Secrets, volume
//! mounts, resources, cgroup path, log file, and (through `security`) user and confinement.

use super::sandbox::{PodPaths, volume_source_dir};
use super::security;
use skiff_manifests::model::pod::{Container, EnvFromRef, EnvValue, EnvVarSource, PodSpec};
use skiff_manifests::model::workloads::Pod;
use skiff_manifests::{Kind, Object, ObjectKey, Valid};
use skiff_runtime::container::{BindMount, ContainerSpec, LogConfig, ProcessSpec, Resources};
use skiff_runtime::image::ImageConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The desired objects a container may refer to (ConfigMaps and Secrets).
pub type Objects = BTreeMap<ObjectKey, Valid<Object>>;

/// A container that cannot be configured (Kubernetes' CreateContainerConfigError).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Kubernetes' rule: `command` replaces the entrypoint (and drops the image cmd), `args`
/// replaces the cmd.
///
/// `$(VAR)` references in the manifest's command and args are expanded with `vars` (the
/// container's environment as Kubernetes defines it); the image's entrypoint and cmd are not.
pub fn argv(image: &ImageConfig, c: &Container, vars: &BTreeMap<String, String>) -> Vec<String> {
    let expanded = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|a| super::expand::expand(a, vars))
            .collect()
    };
    match (c.command.is_empty(), c.args.is_empty()) {
        (false, _) => expanded(&c.command)
            .into_iter()
            .chain(expanded(&c.args))
            .collect(),
        (true, false) => image
            .entrypoint
            .iter()
            .cloned()
            .chain(expanded(&c.args))
            .collect(),
        (true, true) => image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect(),
    }
}

fn lookup<'a>(objects: &'a Objects, kind: Kind, namespace: &str, name: &str) -> Option<&'a Object> {
    objects
        .get(&ObjectKey::new(kind, namespace, name))
        .map(|o| o.get())
}

/// One key of a ConfigMap or Secret; `Ok(None)` for a missing optional reference.
/// What `fieldRef` environment values read: the pod's own fields, known when a container
/// starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Downward {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_name: String,
    /// `None`: the node runs without pod networking (loopback-only pods).
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    /// For `resourceFieldRef`: every container's resources by name, the container the
    /// variables are for, and the node's capacity (what an absent limit means).
    pub resources: BTreeMap<String, skiff_manifests::ResourceRequirements>,
    pub container: String,
    pub node_cpu_millis: u64,
    pub node_memory_bytes: u64,
}

impl Downward {
    /// The pod's own fields and every container's resources (what downwardAPI volumes read);
    /// the node's name, the addresses and the container are left empty.
    pub fn of_pod(pod: &Pod, uid: &str, node_capacity: (u64, u64)) -> Downward {
        Downward {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: uid.to_string(),
            labels: pod.metadata.labels.clone(),
            annotations: pod.metadata.annotations.clone(),
            resources: pod
                .spec
                .init_containers
                .iter()
                .chain(&pod.spec.containers)
                .map(|c| (c.name.clone(), c.resources.clone()))
                .collect(),
            node_cpu_millis: node_capacity.0,
            node_memory_bytes: node_capacity.1,
            ..Downward::default()
        }
    }

    /// The content of a downwardAPI volume file for `field`: a value as it is, a whole label
    /// or annotation map as sorted `key="value"` lines (Go's quoting, as kubelet writes them).
    pub fn volume_value(&self, field: &skiff_manifests::model::pod::VolumeField) -> String {
        use skiff_manifests::model::pod::VolumeField as F;
        match field {
            F::Name => self.name.clone(),
            F::Namespace => self.namespace.clone(),
            F::Uid => self.uid.clone(),
            F::Label(k) => self.labels.get(k).cloned().unwrap_or_default(),
            F::Annotation(k) => self.annotations.get(k).cloned().unwrap_or_default(),
            F::Labels => format_map(&self.labels),
            F::Annotations => format_map(&self.annotations),
        }
    }

    /// The value of `field` (a missing label or annotation is empty, as in Kubernetes).
    pub fn value(&self, field: &skiff_manifests::PodField) -> Result<String, ConfigError> {
        use skiff_manifests::PodField as F;
        let missing = |what: &str| ConfigError(format!("fieldRef {}: {what}", field.path()));
        Ok(match field {
            F::Name => self.name.clone(),
            F::Namespace => self.namespace.clone(),
            F::Uid => self.uid.clone(),
            F::Label(k) => self.labels.get(k).cloned().unwrap_or_default(),
            F::Annotation(k) => self.annotations.get(k).cloned().unwrap_or_default(),
            F::NodeName => self.node_name.clone(),
            F::PodIp | F::PodIps => self.pod_ip.clone().ok_or_else(|| {
                missing("the pod has no address (the node runs without pod networking)")
            })?,
            F::HostIp | F::HostIps => self
                .host_ip
                .clone()
                .ok_or_else(|| missing("the node's address is not known"))?,
        })
    }
}

impl Downward {
    /// A container's request or limit divided by the divisor, rounded up (as Kubernetes); an
    /// absent limit is the node's capacity, an absent request the limit (or 0).
    pub fn resource(&self, r: &skiff_manifests::ResourceFieldRef) -> Result<String, ConfigError> {
        let name = r.container_name.as_deref().unwrap_or(&self.container);
        let c = self.resources.get(name).ok_or_else(|| {
            ConfigError(format!(
                "resourceFieldRef {}: no container named {name:?} in the pod",
                r.resource
            ))
        })?;
        let (cpu, memory) = match r.resource.as_str() {
            "limits.cpu" | "limits.memory" => (
                c.limits.cpu_millis().unwrap_or(self.node_cpu_millis),
                c.limits.memory_bytes().unwrap_or(self.node_memory_bytes),
            ),
            _ => (
                c.requests
                    .cpu_millis()
                    .or(c.limits.cpu_millis())
                    .unwrap_or(0),
                c.requests
                    .memory_bytes()
                    .or(c.limits.memory_bytes())
                    .unwrap_or(0),
            ),
        };
        let millis: u128 = if r.resource.ends_with(".cpu") {
            u128::from(cpu)
        } else {
            u128::from(memory) * 1000
        };
        let divisor = u128::from(r.divisor.to_millis().unwrap_or(1000).max(1));
        Ok(millis.div_ceil(divisor).to_string())
    }
}

fn key_value(
    objects: &Objects,
    namespace: &str,
    source: &EnvVarSource,
    downward: &Downward,
) -> Result<Option<String>, ConfigError> {
    let (kind, sel) = match source {
        EnvVarSource::ConfigMapKeyRef(s) => (Kind::ConfigMap, s),
        EnvVarSource::SecretKeyRef(s) => (Kind::Secret, s),
        EnvVarSource::FieldRef(field) => return downward.value(field).map(Some),
        EnvVarSource::ResourceFieldRef(r) => return downward.resource(r).map(Some),
    };
    let what = kind.as_str().to_ascii_lowercase();
    let bytes: Option<Vec<u8>> = match lookup(objects, kind, namespace, &sel.name) {
        None if sel.optional => return Ok(None),
        None => return Err(ConfigError(format!("{what} {:?} not found", sel.name))),
        Some(Object::ConfigMap(cm)) => cm.get(&sel.key).map(<[u8]>::to_vec),
        Some(Object::Secret(s)) => s.get(&sel.key).map(|b| b.expose().to_vec()),
        Some(_) => None,
    };
    match bytes {
        Some(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        None if sel.optional => Ok(None),
        None => Err(ConfigError(format!(
            "key {:?} not found in {what} {:?}",
            sel.key, sel.name
        ))),
    }
}

/// Every key of a ConfigMap or Secret, for `envFrom`.
fn all_keys(
    objects: &Objects,
    namespace: &str,
    r: &EnvFromRef,
) -> Result<Vec<(String, String)>, ConfigError> {
    let (kind, name) = match r {
        EnvFromRef::ConfigMapRef(n) => (Kind::ConfigMap, n),
        EnvFromRef::SecretRef(n) => (Kind::Secret, n),
    };
    match lookup(objects, kind, namespace, &name.name) {
        None if name.optional => Ok(vec![]),
        None => Err(ConfigError(format!(
            "{} {:?} not found",
            kind.as_str().to_ascii_lowercase(),
            name.name
        ))),
        Some(Object::ConfigMap(cm)) => Ok(cm
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(
                cm.binary_data
                    .iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())),
            )
            .collect()),
        Some(Object::Secret(s)) => Ok(s
            .data
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v.expose()).into_owned()))
            .collect()),
        Some(_) => Ok(vec![]),
    }
}

/// What the runtime adds to every container's environment: `HOSTNAME` (the pod's hostname)
/// and the service variables of `links`.
pub fn runtime_vars(
    hostname: &str,
    links: &[crate::services::ServiceLink],
) -> Vec<(String, String)> {
    let mut vars = vec![(
        "HOSTNAME".to_string(),
        hostname.chars().take(63).collect::<String>(),
    )];
    vars.extend(crate::services::links::env_vars(links));
    vars
}

/// The environment: image env, then `runtime` (HOSTNAME and service variables), then envFrom,
/// then env (later entries win), as `NAME=value`.
pub fn environment(
    image: &ImageConfig,
    c: &Container,
    namespace: &str,
    objects: &Objects,
    runtime: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let downward = Downward {
        namespace: namespace.to_string(),
        ..Downward::default()
    };
    environment_and_vars(image, c, &downward, objects, runtime).map(|(env, _)| env)
}

/// [`environment`], and the variables `$(VAR)` references see once every env entry is set:
/// the service variables, envFrom and env, as kubelet has them (not the image's nor
/// `HOSTNAME`). Each `env[].value` is expanded with the variables defined before it.
pub fn environment_and_vars(
    image: &ImageConfig,
    c: &Container,
    downward: &Downward,
    objects: &Objects,
    runtime: &[(String, String)],
) -> Result<(Vec<String>, BTreeMap<String, String>), ConfigError> {
    let namespace = downward.namespace.as_str();
    let mut known: BTreeMap<String, String> = runtime
        .iter()
        .filter(|(k, _)| k != "HOSTNAME")
        .cloned()
        .collect();
    let mut vars: Vec<(String, String)> = image
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect();
    let set = |k: String, v: String, vars: &mut Vec<(String, String)>| {
        if let Some(slot) = vars.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    for (k, v) in runtime {
        set(k.clone(), v.clone(), &mut vars);
    }
    for from in &c.env_from {
        for (k, v) in all_keys(objects, namespace, &from.source)? {
            let k = format!("{}{k}", from.prefix.as_deref().unwrap_or(""));
            known.insert(k.clone(), v.clone());
            set(k, v, &mut vars);
        }
    }
    for e in &c.env {
        let value = match &e.value {
            EnvValue::Value(v) => Some(super::expand::expand(v, &known)),
            EnvValue::ValueFrom(source) => key_value(objects, namespace, source, downward)?,
        };
        if let Some(v) = value {
            known.insert(e.name.clone(), v.clone());
            set(e.name.clone(), v, &mut vars);
        }
    }
    let env = vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok((env, known))
}

/// Bind mounts for the container's volumeMounts (volumes were prepared by the sandbox).
pub fn mounts(
    spec: &PodSpec,
    c: &Container,
    paths: &PodPaths,
) -> Result<Vec<BindMount>, ConfigError> {
    let mut out = Vec::new();
    for m in &c.volume_mounts {
        let volume = spec
            .volume(&m.name)
            .ok_or_else(|| ConfigError(format!("volume {:?} not found", m.name)))?;
        let mut source = volume_source_dir(volume, paths);
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| ConfigError(format!("subPath {sub:?}: {e}")))?;
            }
        }
        // The agent's files (ConfigMap, Secret, downwardAPI, projected) are read-only.
        let read_only = m.read_only || volume.source.is_projection();
        out.push(BindMount {
            source,
            destination: PathBuf::from(&m.mount_path),
            read_only,
        });
    }
    Ok(out)
}

/// Cgroup limits from `resources` (a CPU request defaults to the limit, as in Kubernetes), and
/// the node's pids limit for the pod (0: none), also applied to each container.
pub fn resources(c: &Container, pod_pids_limit: u64) -> Resources {
    let pids = (pod_pids_limit > 0).then(|| i64::try_from(pod_pids_limit).unwrap_or(i64::MAX));
    let limits = &c.resources.limits;
    let requests = &c.resources.requests;
    Resources {
        memory_limit_bytes: limits.memory_bytes(),
        cpu_limit_millis: limits.cpu_millis(),
        cpu_request_millis: requests.cpu_millis().or(limits.cpu_millis()),
        pids_limit: pids,
        pod_pids_limit: pids,
    }
}

/// Everything the runtime needs to start one container of a pod.
pub struct StartRequest<'a> {
    pub id: &'a str,
    pub pod_uid: &'a str,
    pub pod: &'a Valid<Pod>,
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    pub layers: Vec<PathBuf>,
    pub objects: &'a Objects,
    /// The Services of the pod's namespace whose variables the containers get (empty with
    /// `enableServiceLinks: false`).
    pub service_links: &'a [crate::services::ServiceLink],
    pub paths: &'a PodPaths,
    pub netns: Option<PathBuf>,
    pub cgroup_parent: &'a str,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub log_min_free_bytes: u64,
    /// Localhost seccomp profiles (`<data-dir>/seccomp`).
    pub seccomp_dir: &'a Path,
    /// The node's pids limit per pod; 0 means none.
    pub pod_pids_limit: u64,
    /// For `fieldRef` values: the node's name, the pod's and the node's addresses.
    pub node_name: &'a str,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    /// The node's cpu (millis) and memory (bytes).
    pub node_capacity: (u64, u64),
}

pub fn container_spec(r: StartRequest<'_>) -> Result<ContainerSpec, ConfigError> {
    let pod = r.pod.get();
    let c = r.container;
    let hostname: String = pod
        .spec
        .hostname
        .as_deref()
        .unwrap_or(&pod.metadata.name)
        .chars()
        .take(63)
        .collect();
    let downward = Downward {
        node_name: r.node_name.to_string(),
        pod_ip: r.pod_ip.clone(),
        host_ip: r.host_ip.clone(),
        container: c.name.clone(),
        ..Downward::of_pod(pod, r.pod_uid, r.node_capacity)
    };
    let (env, vars) = environment_and_vars(
        r.image,
        c,
        &downward,
        r.objects,
        &runtime_vars(&hostname, r.service_links),
    )?;
    let args = argv(r.image, c, &vars);
    if args.is_empty() {
        return Err(ConfigError(format!(
            "container {:?}: no command: the image has no entrypoint or cmd and the manifest sets none",
            c.name
        )));
    }
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| r.image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    let effective = security::effective(&pod.spec, c, r.image, r.seccomp_dir)?;
    let mut labels = pod.metadata.labels.clone();
    labels.insert("skiff.io/pod".into(), pod.metadata.name.clone());
    labels.insert("skiff.io/namespace".into(), pod.metadata.namespace.clone());
    labels.insert("skiff.io/container".into(), c.name.clone());
    Ok(ContainerSpec {
        id: r.id.to_string(),
        layers: r.layers,
        process: ProcessSpec {
            args,
            env,
            cwd,
            user: effective.user,
        },
        hostname: Some(hostname),
        mounts: mounts(&pod.spec, c, r.paths)?,
        resources: resources(c, r.pod_pids_limit),
        network_namespace: r.netns,
        cgroups_path: Path::new(r.cgroup_parent).join(r.pod_uid).join(r.id),
        log: LogConfig {
            path: r.paths.log_file(&c.name),
            max_size_bytes: r.log_max_bytes,
            max_files: r.log_max_files,
            min_free_bytes: r.log_min_free_bytes,
        },
        labels,
        annotations: pod.metadata.annotations.clone(),
        security: effective.security,
    })
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;

/// A label or annotation map as a downwardAPI file holds it: one `key="value"` line per entry,
/// sorted by key, no newline after the last.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `v` in double quotes with Go's `%q` escapes (`\"`, `\\`, `\n`, `\t`, `\xNN` for other
/// control bytes); printable text, non-ASCII included, stays as it is.
fn go_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for ch in v.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

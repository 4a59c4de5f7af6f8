//! Local storage limits, as kubelet's eviction manager enforces them: a disk `emptyDir` over its
//! `sizeLimit`, a container whose writable layer and logs outgrow its
//! `limits.ephemeral-storage`, or a pod whose volumes and containers together outgrow the sum of
//! its containers' limits (when every container has one) is evicted. Pure: the node loop
//! measures the paths named here on the blocking pool and asks [`verdict`].

use skiff_manifests::model::volume::{StorageMedium, VolumeSource};
use skiff_manifests::model::workloads::Pod;
use std::path::PathBuf;

/// A limit as bytes and as the manifest wrote it (for the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub text: String,
}

/// One thing to measure: its files and, if it has one, its own limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub limit: Option<Limit>,
    /// Bytes the paths take, filled in by the measurement.
    pub used: u64,
}

/// What to measure of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodStorage {
    pub uid: String,
    /// Disk emptyDir volumes.
    pub volumes: Vec<Measured>,
    /// Running containers: the overlay's upper directory and the container's log files.
    pub containers: Vec<Measured>,
    /// The sum of the containers' limits, when every container has one.
    pub pod_limit: Option<u64>,
}

/// Where a running container's files are: its writable layer and its log files.
pub struct ContainerFiles {
    pub name: String,
    pub paths: Vec<PathBuf>,
}

/// What of `pod` has a storage limit to watch, `None` if nothing: `volume_dir` names a volume's
/// directory; `running` are the containers running now with their files. A Memory emptyDir is
/// left out (its tmpfs is its size).
pub fn watched(
    uid: &str,
    pod: &Pod,
    volume_dir: impl Fn(&str) -> PathBuf,
    running: Vec<ContainerFiles>,
) -> Option<PodStorage> {
    let limit_of = |c: &skiff_manifests::model::pod::Container| {
        let q = c.resources.limits.get("ephemeral-storage")?;
        Some(Limit {
            bytes: c.resources.limits.ephemeral_storage_bytes()?,
            text: q.to_string(),
        })
    };
    let all = pod.spec.init_containers.iter().chain(&pod.spec.containers);
    let limits: Vec<Option<Limit>> = pod.spec.containers.iter().map(limit_of).collect();
    let pod_limit = if limits.iter().all(Option::is_some) && !limits.is_empty() {
        Some(limits.iter().flatten().map(|l| l.bytes).sum())
    } else {
        None
    };
    let volumes: Vec<Measured> = pod
        .spec
        .volumes
        .iter()
        .filter_map(|v| match &v.source {
            VolumeSource::EmptyDir(e) if e.medium == StorageMedium::Default => Some(Measured {
                name: v.name.clone(),
                paths: vec![volume_dir(&v.name)],
                limit: e.size_limit.as_ref().and_then(|q| {
                    Some(Limit {
                        bytes: e.size_limit_bytes()?,
                        text: q.to_string(),
                    })
                }),
                used: 0,
            }),
            _ => None,
        })
        .filter(|m| m.limit.is_some() || pod_limit.is_some())
        .collect();
    let containers: Vec<Measured> = running
        .into_iter()
        .filter_map(|f| {
            let limit = all.clone().find(|c| c.name == f.name).and_then(limit_of);
            (limit.is_some() || pod_limit.is_some()).then_some(Measured {
                name: f.name,
                paths: f.paths,
                limit,
                used: 0,
            })
        })
        .collect();
    (!volumes.is_empty() || !containers.is_empty()).then(|| PodStorage {
        uid: uid.to_string(),
        volumes,
        containers,
        pod_limit,
    })
}

/// Why the measured pod is to be evicted (kubelet's words, with the bytes used), or `None`.
/// An emptyDir over its limit first, then a container, then the pod as a whole.
pub fn verdict(pod: &PodStorage) -> Option<String> {
    let over = |m: &&Measured| m.limit.as_ref().is_some_and(|l| m.used > l.bytes);
    if let Some(v) = pod.volumes.iter().find(over) {
        let limit = v
            .limit
            .as_ref()
            .map(|l| l.text.as_str())
            .unwrap_or_default();
        return Some(format!(
            "Usage of EmptyDir volume {:?} exceeds the limit {limit:?} ({} bytes used).",
            v.name, v.used
        ));
    }
    if let Some(c) = pod.containers.iter().find(over) {
        let limit = c
            .limit
            .as_ref()
            .map(|l| l.text.as_str())
            .unwrap_or_default();
        return Some(format!(
            "Container {} exceeded its local ephemeral storage limit {limit:?} ({} bytes used).",
            c.name, c.used
        ));
    }
    let total: u64 = pod
        .volumes
        .iter()
        .chain(&pod.containers)
        .map(|m| m.used)
        .sum();
    match pod.pod_limit {
        Some(limit) if total > limit => Some(format!(
            "Pod ephemeral local storage usage exceeds the total limit of containers {limit} bytes ({total} bytes used)."
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_manifests::{Object, parse_file};

    fn pod(spec: &str) -> Pod {
        let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}");
        let parsed = parse_file("p.yaml", yaml.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.errors());
        match parsed.objects()[0].get() {
            Object::Pod(p) => p.clone(),
            other => panic!("not a pod: {other:?}"),
        }
    }

    fn files(name: &str) -> ContainerFiles {
        ContainerFiles {
            name: name.into(),
            paths: vec![PathBuf::from(format!("/c/{name}/upper"))],
        }
    }

    fn measured(mut s: PodStorage, volumes: &[u64], containers: &[u64]) -> PodStorage {
        for (m, used) in s.volumes.iter_mut().zip(volumes) {
            m.used = *used;
        }
        for (m, used) in s.containers.iter_mut().zip(containers) {
            m.used = *used;
        }
        s
    }

    const MI: u64 = 1024 * 1024;

    #[test]
    fn only_what_has_a_limit_is_watched() {
        let dir = |v: &str| PathBuf::from(format!("/p/volumes/{v}"));
        // No limit anywhere: nothing to measure.
        let plain =
            pod("  volumes: [{name: d, emptyDir: {}}]\n  containers: [{name: a, image: i}]\n");
        assert_eq!(watched("u", &plain, dir, vec![files("a")]), None);
        // A Memory emptyDir's size is its tmpfs: not measured.
        let memory = pod(
            "  volumes: [{name: m, emptyDir: {medium: Memory, sizeLimit: 1Mi}}]\n  containers: [{name: a, image: i}]\n",
        );
        assert_eq!(watched("u", &memory, dir, vec![files("a")]), None);
        // A disk emptyDir with a limit: that volume only.
        let disk = pod(
            "  volumes: [{name: d, emptyDir: {sizeLimit: 1Mi}}, {name: e, emptyDir: {}}]\n  containers: [{name: a, image: i}]\n",
        );
        let s = watched("u", &disk, dir, vec![files("a")]).unwrap();
        assert_eq!(s.volumes.len(), 1);
        assert_eq!(s.volumes[0].paths, vec![PathBuf::from("/p/volumes/d")]);
        assert_eq!(s.volumes[0].limit.as_ref().unwrap().bytes, MI);
        assert!(s.containers.is_empty());
        assert_eq!(s.pod_limit, None);
        // Every container limited: the pod's sum too, and every disk volume counts for it.
        let limited = pod(
            "  volumes: [{name: e, emptyDir: {}}]\n  containers:\n  - {name: a, image: i, resources: {limits: {ephemeral-storage: 2Mi}}}\n  - {name: b, image: i, resources: {limits: {ephemeral-storage: 1Mi}}}\n",
        );
        let s = watched("u", &limited, dir, vec![files("a"), files("b")]).unwrap();
        assert_eq!(s.pod_limit, Some(3 * MI));
        assert_eq!(s.volumes.len(), 1);
        assert_eq!(s.containers.len(), 2);
        assert_eq!(s.containers[1].limit.as_ref().unwrap().text, "1Mi");
        // One container without a limit: no pod sum; the limited one alone is watched.
        let partly = pod(
            "  containers:\n  - {name: a, image: i, resources: {limits: {ephemeral-storage: 2Mi}}}\n  - {name: b, image: i}\n",
        );
        let s = watched("u", &partly, dir, vec![files("a"), files("b")]).unwrap();
        assert_eq!(s.pod_limit, None);
        assert_eq!(s.containers.len(), 1);
        assert_eq!(s.containers[0].name, "a");
    }

    #[test]
    fn verdicts() {
        let dir = |v: &str| PathBuf::from(format!("/p/volumes/{v}"));
        let spec = pod(
            "  volumes: [{name: scratch, emptyDir: {sizeLimit: 1Mi}}]\n  containers:\n  - {name: a, image: i, resources: {limits: {ephemeral-storage: 2Mi}}}\n  - {name: b, image: i, resources: {limits: {ephemeral-storage: 2Mi}}}\n",
        );
        let s = watched("u", &spec, dir, vec![files("a"), files("b")]).unwrap();
        let cases: &[(&[u64], &[u64], Option<&str>)] = &[
            (&[MI], &[MI, 2 * MI], None),
            (
                &[MI + 1],
                &[0, 0],
                Some(
                    "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\" (1048577 bytes used).",
                ),
            ),
            (
                &[0],
                &[0, 2 * MI + 4096],
                Some(
                    "Container b exceeded its local ephemeral storage limit \"2Mi\" (2101248 bytes used).",
                ),
            ),
            // Each within its own limit, together over the pod's 4 MiB.
            (
                &[MI],
                &[2 * MI, 2 * MI],
                Some(
                    "Pod ephemeral local storage usage exceeds the total limit of containers 4194304 bytes (5242880 bytes used).",
                ),
            ),
            // The volume is named first when both are over.
            (
                &[2 * MI],
                &[3 * MI, 0],
                Some(
                    "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\" (2097152 bytes used).",
                ),
            ),
        ];
        for (volumes, containers, want) in cases {
            let got = verdict(&measured(s.clone(), volumes, containers));
            assert_eq!(got.as_deref(), *want, "{volumes:?} {containers:?}");
        }
    }
}

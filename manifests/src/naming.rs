//! Names of pods made by a Deployment, like Kubernetes: `<deployment>-<pod-template-hash>-<suffix>`,
//! with a 5-character random suffix from Kubernetes' alphabet (randomness comes from the caller),
//! and by a DaemonSet: `<daemonset>-<suffix>`, the suffix derived from the node's name.

use std::fmt;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::model::jobs::Job;
use crate::model::object::ObjectMeta;
use crate::model::pod::{EnvValue, EnvVar};
use crate::model::workloads::{DaemonSet, Deployment, Pod, PodTemplate};
use crate::valid::Valid;

/// Kubernetes' alphabet for generated names: no vowels (no words), no look-alike characters.
pub const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated suffix.
pub const SUFFIX_LEN: usize = 5;
/// Label carrying the template hash on every pod a Deployment or DaemonSet makes.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Generated names are at most 63 characters, so the prefix is cut to this length.
const MAX_PREFIX_LEN: usize = 63 - SUFFIX_LEN;

/// The random tail of a generated pod name: 1 to 10 lowercase letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodSuffix(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod name suffix must be 1 to 10 lowercase letters or digits (got {0:?})")]
pub struct InvalidPodSuffix(pub String);

impl PodSuffix {
    /// Accepts a suffix chosen elsewhere (for example one read back from a pod name).
    pub fn new(text: &str) -> Result<PodSuffix, InvalidPodSuffix> {
        let ok = (1..=10).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(PodSuffix(text.to_string()))
        } else {
            Err(InvalidPodSuffix(text.to_string()))
        }
    }

    /// Five characters from [`SUFFIX_ALPHABET`] drawn from `rng`.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> PodSuffix {
        let text = (0..SUFFIX_LEN)
            .map(|_| char::from(SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())]))
            .collect();
        PodSuffix(text)
    }

    /// Five characters from [`SUFFIX_ALPHABET`] derived from a node's name: a DaemonSet's pod
    /// on that node always gets the same name. Different nodes may (rarely) share a suffix.
    pub fn for_node(node_name: &str) -> PodSuffix {
        PodSuffix::derived(node_name)
    }

    /// Five characters from [`SUFFIX_ALPHABET`] derived from `seed` (the same seed, the same
    /// suffix).
    pub fn derived(seed: &str) -> PodSuffix {
        let digest = Sha256::digest(seed.as_bytes());
        let text = digest
            .iter()
            .take(SUFFIX_LEN)
            .map(|b| char::from(SUFFIX_ALPHABET[usize::from(*b) % SUFFIX_ALPHABET.len()]))
            .collect();
        PodSuffix(text)
    }

    /// Deterministic suffix for a seed (tests, simulations).
    pub fn from_seed(seed: u64) -> PodSuffix {
        PodSuffix::random(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PodSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `<deployment>-<hash>-<suffix>`; like Kubernetes' generated names, the `<deployment>-<hash>-`
/// prefix is cut to 58 characters so the name stays within 63.
pub fn deployment_pod_name(
    deployment_name: &str,
    pod_template_hash: &str,
    suffix: &PodSuffix,
) -> String {
    generated_name(format!("{deployment_name}-{pod_template_hash}-"), suffix)
}

/// `<daemonset>-<suffix>`, the `<daemonset>-` prefix cut to 58 characters. The scheduler passes
/// [`PodSuffix::for_node`] (or a random suffix when two nodes' suffixes collide).
pub fn daemon_set_pod_name(daemon_set_name: &str, suffix: &PodSuffix) -> String {
    generated_name(format!("{daemon_set_name}-"), suffix)
}

fn generated_name(mut prefix: String, suffix: &PodSuffix) -> String {
    if prefix.len() > MAX_PREFIX_LEN {
        // Names are ASCII (validated), so any byte index is a char boundary.
        let mut cut = MAX_PREFIX_LEN;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    format!("{prefix}{suffix}")
}

/// A pod of `template` named `name` in `namespace`: the template's labels plus
/// `pod-template-hash`, and its annotations.
fn template_pod(template: &PodTemplate, name: String, namespace: &str) -> Valid<Pod> {
    let mut labels = template.metadata.labels.clone();
    labels.insert(POD_TEMPLATE_HASH_LABEL.to_string(), template.hash());
    let pod = Pod {
        metadata: ObjectMeta {
            name,
            namespace: namespace.to_string(),
            labels,
            annotations: template.metadata.annotations.clone(),
        },
        spec: template.spec.clone(),
    };
    // The name is a valid subdomain (a valid name, hex, a lowercase suffix), the hash is a
    // valid label value, and the spec was validated as part of its workload.
    Valid::new_unchecked(pod)
}

impl Valid<Deployment> {
    /// The name of a new pod of this Deployment's current template.
    pub fn pod_name(&self, suffix: &PodSuffix) -> String {
        deployment_pod_name(&self.metadata.name, &self.pod_template_hash(), suffix)
    }

    /// A pod of the current template: named by [`Valid::pod_name`], in the Deployment's
    /// namespace, with the template's labels plus `pod-template-hash` and its annotations.
    pub fn new_pod(&self, suffix: &PodSuffix) -> Valid<Pod> {
        template_pod(
            &self.spec.template,
            self.pod_name(suffix),
            &self.metadata.namespace,
        )
    }
}

impl Valid<DaemonSet> {
    /// The name of this DaemonSet's pod on `node_name`: `<daemonset>-<suffix>`, the same every
    /// time for the same node.
    pub fn pod_name(&self, node_name: &str) -> String {
        daemon_set_pod_name(&self.metadata.name, &PodSuffix::for_node(node_name))
    }

    /// The pod of the current template for `node_name`: named by [`Valid::<DaemonSet>::pod_name`],
    /// in the DaemonSet's namespace, with the template's labels plus `pod-template-hash`.
    pub fn new_pod(&self, node_name: &str) -> Valid<Pod> {
        template_pod(
            &self.spec.template,
            self.pod_name(node_name),
            &self.metadata.namespace,
        )
    }
}

/// Labels every pod of a Job carries (Kubernetes sets both).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// The completion index of an Indexed Job's pod: a label and an annotation.
pub const JOB_INDEX_LABEL: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read their index from.
pub const JOB_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

impl Valid<Job> {
    /// The name of attempt `attempt` (of completion index `index`, in an Indexed Job):
    /// `<job>-<suffix>` or `<job>-<index>-<suffix>`, the suffix derived from the Job's name,
    /// its template hash and the attempt, so that every leader names an attempt alike.
    pub fn pod_name(&self, attempt: u32, index: Option<u32>) -> String {
        let job = &self.metadata.name;
        let suffix = PodSuffix::derived(&format!("{job}/{}/{attempt}", self.pod_template_hash()));
        match index {
            Some(index) => generated_name(format!("{job}-{index}-"), &suffix),
            None => generated_name(format!("{job}-"), &suffix),
        }
    }

    /// The pod `name` of this Job: the template's labels plus the `job-name` labels, and for
    /// an Indexed Job's `index` the completion index (label, annotation, `JOB_COMPLETION_INDEX`
    /// in every container) and the hostname `<job>-<index>` unless the template sets one.
    pub fn new_pod(&self, name: String, index: Option<u32>) -> Valid<Pod> {
        let template = &self.spec.template;
        let mut labels = template.metadata.labels.clone();
        labels.insert(JOB_NAME_LABEL.to_string(), self.metadata.name.clone());
        labels.insert(
            LEGACY_JOB_NAME_LABEL.to_string(),
            self.metadata.name.clone(),
        );
        let mut annotations = template.metadata.annotations.clone();
        let mut spec = template.spec.clone();
        if let Some(index) = index {
            labels.insert(JOB_INDEX_LABEL.to_string(), index.to_string());
            annotations.insert(JOB_INDEX_LABEL.to_string(), index.to_string());
            let var = EnvVar {
                name: JOB_INDEX_ENV.to_string(),
                value: EnvValue::Value(index.to_string()),
            };
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut())
            {
                c.env.retain(|e| e.name != JOB_INDEX_ENV);
                c.env.insert(0, var.clone());
            }
            if spec.hostname.is_none() {
                // A Job name is at most 63 characters; the hostname is cut to a label's 63.
                let mut host = format!("{}-{index}", self.metadata.name);
                if host.len() > 63 {
                    host = format!(
                        "{}-{index}",
                        &self.metadata.name[..63 - 1 - index.to_string().len()]
                    );
                }
                spec.hostname = Some(host.trim_end_matches('-').to_string());
            }
        }
        let pod = Pod {
            metadata: ObjectMeta {
                name,
                namespace: self.metadata.namespace.clone(),
                labels,
                annotations,
            },
            spec,
        };
        // The name is a generated valid subdomain, the labels are a valid name and a number,
        // and the spec was validated as part of the Job.
        Valid::new_unchecked(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_use_the_kubernetes_alphabet_and_replay_from_a_seed() {
        for seed in 0..200 {
            let suffix = PodSuffix::from_seed(seed);
            assert_eq!(suffix.as_str().len(), SUFFIX_LEN);
            assert!(
                suffix
                    .as_str()
                    .bytes()
                    .all(|b| SUFFIX_ALPHABET.contains(&b)),
                "{suffix}"
            );
            assert_eq!(suffix, PodSuffix::from_seed(seed));
        }
        assert_ne!(PodSuffix::from_seed(1), PodSuffix::from_seed(2));
    }

    #[test]
    fn names_follow_the_kubernetes_pattern_and_stay_short() {
        let suffix = PodSuffix::new("x7k2p").map_err(|e| e.to_string());
        let Ok(suffix) = suffix else {
            panic!("{suffix:?}")
        };
        assert_eq!(
            deployment_pod_name("web", "5d4f8c9b7a", &suffix),
            "web-5d4f8c9b7a-x7k2p"
        );
        let long = "a".repeat(70);
        let name = deployment_pod_name(&long, "5d4f8c9b7a", &suffix);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("x7k2p"));
        assert!(crate::names::check_dns1123_subdomain(&name).is_ok());
        let ds = daemon_set_pod_name(&long, &suffix);
        assert_eq!(ds.len(), 63);
        assert!(ds.ends_with("x7k2p"), "{ds}");
        assert_eq!(daemon_set_pod_name("agent", &suffix), "agent-x7k2p");
        assert!(PodSuffix::new("").is_err());
        assert!(PodSuffix::new("ABCDE").is_err());
        assert!(PodSuffix::new("a-b").is_err());
    }

    #[test]
    fn node_suffixes_are_stable_per_node_and_use_the_alphabet() {
        let names = ["edge-1", "edge-2", "edge-3", "a", ""];
        let suffixes: Vec<PodSuffix> = names.iter().map(|n| PodSuffix::for_node(n)).collect();
        for (name, suffix) in names.iter().zip(&suffixes) {
            assert_eq!(suffix.as_str().len(), SUFFIX_LEN);
            assert!(PodSuffix::new(suffix.as_str()).is_ok(), "{suffix}");
            assert!(
                suffix
                    .as_str()
                    .bytes()
                    .all(|b| SUFFIX_ALPHABET.contains(&b))
            );
            assert_eq!(&PodSuffix::for_node(name), suffix);
        }
        let distinct: std::collections::BTreeSet<&str> =
            suffixes.iter().map(PodSuffix::as_str).collect();
        assert_eq!(distinct.len(), names.len());
    }
}

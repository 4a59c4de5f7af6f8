//! Names of pods made by a Deployment, like Kubernetes: `<deployment>-<pod-template-hash>-<suffix>`,
//! with a 5-character random suffix from Kubernetes' alphabet. Randomness comes from the caller.

use std::fmt;

use rand::{Rng, SeedableRng};

use crate::model::object::ObjectMeta;
use crate::model::workloads::{Deployment, Pod};
use crate::valid::Valid;

/// Kubernetes' alphabet for generated names: no vowels (no words), no look-alike characters.
pub const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated suffix.
pub const SUFFIX_LEN: usize = 5;
/// Label carrying the template hash on every pod a Deployment makes.
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
    let mut prefix = format!("{deployment_name}-{pod_template_hash}-");
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

impl Valid<Deployment> {
    /// The name of a new pod of this Deployment's current template.
    pub fn pod_name(&self, suffix: &PodSuffix) -> String {
        deployment_pod_name(&self.metadata.name, &self.pod_template_hash(), suffix)
    }

    /// A pod of the current template: named by [`Valid::pod_name`], in the Deployment's
    /// namespace, with the template's labels plus `pod-template-hash` and its annotations.
    pub fn new_pod(&self, suffix: &PodSuffix) -> Valid<Pod> {
        let template = &self.spec.template;
        let mut labels = template.metadata.labels.clone();
        labels.insert(POD_TEMPLATE_HASH_LABEL.to_string(), template.hash());
        let pod = Pod {
            metadata: ObjectMeta {
                name: self.pod_name(suffix),
                namespace: self.metadata.namespace.clone(),
                labels,
                annotations: template.metadata.annotations.clone(),
            },
            spec: template.spec.clone(),
        };
        // The name is a valid subdomain (a valid name, hex, a lowercase suffix), the hash is a
        // valid label value, and the spec was validated as part of the Deployment.
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
        assert!(PodSuffix::new("").is_err());
        assert!(PodSuffix::new("ABCDE").is_err());
        assert!(PodSuffix::new("a-b").is_err());
    }
}

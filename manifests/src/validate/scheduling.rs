//! Validation of where a pod may run: `affinity` (node, pod, pod anti-affinity),
//! `tolerations` and `topologySpreadConstraints`. What skiff cannot honour (namespace
//! selectors, matchLabelKeys, minDomains, non-default node policies) is refused by name.

use crate::error::{FieldPath, Problems};
use crate::model::scheduling::{
    Affinity, NodeAffinity, NodeSelectorTerm, Operator, PodAffinity, PodAffinityTerm, PodSelector,
    PreferredTerm, Requirement, TaintEffect, Toleration, TolerationOperator,
    TopologySpreadConstraint, WeightedPodAffinityTerm, WhenUnsatisfiable,
};
use crate::names;
use crate::raw::{
    List, RawAffinity, RawNodeSelectorTerm, RawPodAffinity, RawPodAffinityTerm, RawPodSelector,
    RawRequirement, RawSpreadConstraint, RawToleration,
};

use super::{check, elements, labels, one_of, required_string};

pub(crate) fn affinity(
    raw: Option<RawAffinity>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Affinity {
    let Some(raw) = raw else {
        return Affinity::default();
    };
    let node_affinity = raw.node_affinity.map(|n| {
        let node_path = path.child("nodeAffinity");
        let required = n.required.map(|r| {
            let req_path = node_path.child("requiredDuringSchedulingIgnoredDuringExecution");
            let terms_path = req_path.child("nodeSelectorTerms");
            if r.node_selector_terms.as_ref().is_none_or(Vec::is_empty) {
                problems.error(&terms_path, "must list at least one term");
            }
            elements(r.node_selector_terms, &terms_path, problems)
                .into_iter()
                .map(|(_, p, t)| node_term(t, &p, problems))
                .collect()
        });
        let preferred = elements(
            n.preferred,
            &node_path.child("preferredDuringSchedulingIgnoredDuringExecution"),
            problems,
        )
        .into_iter()
        .filter_map(|(_, p, t)| {
            let weight = weight(t.weight, &p.child("weight"), problems);
            let pref_path = p.child("preference");
            let preference = match t.preference {
                Some(term) => node_term(term, &pref_path, problems),
                None => {
                    problems.error(&pref_path, "required");
                    return None;
                }
            };
            Some(PreferredTerm {
                weight: weight?,
                preference,
            })
        })
        .collect();
        NodeAffinity {
            required,
            preferred,
        }
    });
    let affinity_of_pods = raw
        .pod_affinity
        .map(|a| pod_affinity(a, &path.child("podAffinity"), problems));
    let anti_affinity = raw
        .pod_anti_affinity
        .map(|a| pod_affinity(a, &path.child("podAntiAffinity"), problems));
    Affinity {
        node_affinity,
        pod_affinity: affinity_of_pods,
        pod_anti_affinity: anti_affinity,
    }
}

/// 1-100, as in Kubernetes.
fn weight(raw: Option<i64>, path: &FieldPath, problems: &mut Problems) -> Option<u32> {
    match raw {
        None => {
            problems.error(path, "required");
            None
        }
        Some(w @ 1..=100) => u32::try_from(w).ok(),
        Some(w) => {
            problems.error(path, format!("must be between 1 and 100 (got {w})"));
            None
        }
    }
}

fn node_term(
    raw: RawNodeSelectorTerm,
    path: &FieldPath,
    problems: &mut Problems,
) -> NodeSelectorTerm {
    let match_expressions = requirements(
        raw.match_expressions,
        &path.child("matchExpressions"),
        true,
        problems,
    );
    let fields_path = path.child("matchFields");
    let match_fields = requirements(raw.match_fields, &fields_path, true, problems);
    for (i, r) in match_fields.iter().enumerate() {
        if r.key != "metadata.name" {
            problems.error(
                &fields_path.index(i).child("key"),
                format!("must be metadata.name (got {:?})", r.key),
            );
        } else if !matches!(r.operator, Operator::In | Operator::NotIn) || r.values.len() != 1 {
            problems.error(
                &fields_path.index(i),
                "metadata.name takes In or NotIn with exactly one value",
            );
        }
    }
    NodeSelectorTerm {
        match_expressions,
        match_fields,
    }
}

/// `key operator values` entries; `numeric` allows Gt and Lt (node selectors only).
fn requirements(
    list: Option<List<RawRequirement>>,
    path: &FieldPath,
    numeric: bool,
    problems: &mut Problems,
) -> Vec<Requirement> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let key_path = item_path.child("key");
        let key = required_string(raw.key, &key_path, problems);
        let op_path = item_path.child("operator");
        let table: &[(&str, Operator)] = if numeric {
            &Operator::ALL
        } else {
            &Operator::ALL[..4]
        };
        let operator = match raw.operator {
            None => {
                problems.error(&op_path, "required");
                None
            }
            Some(text) => one_of(&text, table, &op_path, problems),
        };
        let values: Vec<String> = raw
            .values
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        let values_path = item_path.child("values");
        let ok = match operator {
            Some(Operator::In | Operator::NotIn) if values.is_empty() => {
                problems.error(&values_path, "must not be empty with In or NotIn");
                false
            }
            Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
                problems.error(&values_path, "must be empty with Exists or DoesNotExist");
                false
            }
            Some(Operator::Gt | Operator::Lt)
                if values.len() != 1 || values[0].parse::<i64>().is_err() =>
            {
                problems.error(&values_path, "must be one integer with Gt or Lt");
                false
            }
            _ => true,
        };
        if let (Some(key), Some(operator), true) = (key, operator, ok) {
            out.push(Requirement {
                key,
                operator,
                values,
            });
        }
    }
    out
}

fn pod_affinity(raw: RawPodAffinity, path: &FieldPath, problems: &mut Problems) -> PodAffinity {
    let required = elements(
        raw.required,
        &path.child("requiredDuringSchedulingIgnoredDuringExecution"),
        problems,
    )
    .into_iter()
    .filter_map(|(_, p, t)| pod_term(t, &p, problems))
    .collect();
    let preferred = elements(
        raw.preferred,
        &path.child("preferredDuringSchedulingIgnoredDuringExecution"),
        problems,
    )
    .into_iter()
    .filter_map(|(_, p, t)| {
        let weight = weight(t.weight, &p.child("weight"), problems);
        let term_path = p.child("podAffinityTerm");
        let term = match t.pod_affinity_term {
            Some(term) => pod_term(term, &term_path, problems),
            None => {
                problems.error(&term_path, "required");
                None
            }
        };
        Some(WeightedPodAffinityTerm {
            weight: weight?,
            pod_affinity_term: term?,
        })
    })
    .collect();
    PodAffinity {
        required,
        preferred,
    }
}

fn pod_term(
    raw: RawPodAffinityTerm,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<PodAffinityTerm> {
    for (field, present) in [
        ("namespaceSelector", raw.namespace_selector.is_some()),
        ("matchLabelKeys", raw.match_label_keys.is_some()),
        ("mismatchLabelKeys", raw.mismatch_label_keys.is_some()),
    ] {
        if present {
            problems.error(
                &path.child(field),
                "not supported yet (use labelSelector and namespaces)",
            );
        }
    }
    let topology_path = path.child("topologyKey");
    let topology_key = required_string(raw.topology_key, &topology_path, problems)
        .filter(|k| check(names::check_label_key(k), &topology_path, problems));
    let label_selector = pod_selector(raw.label_selector, &path.child("labelSelector"), problems);
    let ns_path = path.child("namespaces");
    let namespaces: Vec<String> = elements(raw.namespaces, &ns_path, problems)
        .into_iter()
        .filter(|(_, p, ns)| check(names::check_dns1123_label(ns), p, problems))
        .map(|(_, _, ns)| ns)
        .collect();
    Some(PodAffinityTerm {
        label_selector,
        namespaces,
        topology_key: topology_key?,
    })
}

/// An absent selector matches no pod in Kubernetes' affinity terms; skiff keeps it empty and
/// the scheduler treats an absent one as matching nothing (see `PodSelector::matches`).
fn pod_selector(
    raw: Option<RawPodSelector>,
    path: &FieldPath,
    problems: &mut Problems,
) -> PodSelector {
    let Some(raw) = raw else {
        problems.error(path, "required (a term without a selector matches no pod)");
        return PodSelector::default();
    };
    PodSelector {
        match_labels: labels(raw.match_labels, &path.child("matchLabels"), problems),
        match_expressions: requirements(
            raw.match_expressions,
            &path.child("matchExpressions"),
            false,
            problems,
        ),
    }
}

pub(crate) fn tolerations(
    list: Option<List<RawToleration>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<Toleration> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        let key = raw.key.unwrap_or_default();
        if !key.is_empty() {
            check(
                names::check_label_key(&key),
                &item_path.child("key"),
                problems,
            );
        }
        let op_path = item_path.child("operator");
        let operator = match raw.operator.as_deref() {
            None | Some("") => Some(TolerationOperator::Equal),
            Some(text) => one_of(
                text,
                &[
                    ("Equal", TolerationOperator::Equal),
                    ("Exists", TolerationOperator::Exists),
                ],
                &op_path,
                problems,
            ),
        };
        let value = raw.value.unwrap_or_default();
        match operator {
            Some(TolerationOperator::Exists) if !value.is_empty() => {
                problems.error(&item_path.child("value"), "must be empty with Exists");
            }
            Some(TolerationOperator::Equal) if key.is_empty() => {
                problems.error(&item_path.child("key"), "required with operator Equal");
            }
            _ => {}
        }
        let effect = match raw.effect.as_deref() {
            None | Some("") => Some(None),
            Some(text) => one_of(
                text,
                &TaintEffect::ALL,
                &item_path.child("effect"),
                problems,
            )
            .map(Some),
        };
        let seconds_path = item_path.child("tolerationSeconds");
        if raw.toleration_seconds.is_some() && !matches!(effect, Some(Some(TaintEffect::NoExecute)))
        {
            problems.error(&seconds_path, "only with effect NoExecute");
        }
        if let (Some(operator), Some(effect)) = (operator, effect) {
            out.push(Toleration {
                key,
                operator,
                value,
                effect,
                toleration_seconds: raw.toleration_seconds,
            });
        }
    }
    out
}

pub(crate) fn spread_constraints(
    list: Option<List<RawSpreadConstraint>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<TopologySpreadConstraint> {
    let mut out = Vec::new();
    for (_, item_path, raw) in elements(list, path, problems) {
        for (field, present) in [
            ("minDomains", raw.min_domains.is_some()),
            ("matchLabelKeys", raw.match_label_keys.is_some()),
        ] {
            if present {
                problems.error(&item_path.child(field), "not supported yet");
            }
        }
        for (field, value, default) in [
            ("nodeAffinityPolicy", &raw.node_affinity_policy, "Honor"),
            ("nodeTaintsPolicy", &raw.node_taints_policy, "Ignore"),
        ] {
            if let Some(v) = value.as_deref().filter(|v| *v != default) {
                problems.error(
                    &item_path.child(field),
                    format!("only {default:?}, the default, is supported (got {v:?})"),
                );
            }
        }
        let skew_path = item_path.child("maxSkew");
        let max_skew = match raw.max_skew {
            None => {
                problems.error(&skew_path, "required");
                None
            }
            Some(n) if n >= 1 => u32::try_from(n).ok(),
            Some(n) => {
                problems.error(&skew_path, format!("must be at least 1 (got {n})"));
                None
            }
        };
        let topology_path = item_path.child("topologyKey");
        let topology_key = required_string(raw.topology_key, &topology_path, problems)
            .filter(|k| check(names::check_label_key(k), &topology_path, problems));
        let when_path = item_path.child("whenUnsatisfiable");
        let when_unsatisfiable = match raw.when_unsatisfiable {
            None => {
                problems.error(&when_path, "required");
                None
            }
            Some(text) => one_of(
                &text,
                &[
                    ("DoNotSchedule", WhenUnsatisfiable::DoNotSchedule),
                    ("ScheduleAnyway", WhenUnsatisfiable::ScheduleAnyway),
                ],
                &when_path,
                problems,
            ),
        };
        let label_selector = pod_selector(
            raw.label_selector,
            &item_path.child("labelSelector"),
            problems,
        );
        if let (Some(max_skew), Some(topology_key), Some(when_unsatisfiable)) =
            (max_skew, topology_key, when_unsatisfiable)
        {
            out.push(TopologySpreadConstraint {
                max_skew,
                topology_key,
                when_unsatisfiable,
                label_selector,
            });
        }
    }
    out
}

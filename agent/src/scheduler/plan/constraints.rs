//! Placement constraints beyond room and node selector, as Kubernetes' scheduler has them:
//! required node affinity, taints and tolerations, required pod affinity and anti-affinity
//! (the incoming pod's terms and the placed pods' anti-affinity terms), topology spread with
//! DoNotSchedule (filters); preferred node and pod affinity, PreferNoSchedule taints and
//! ScheduleAnyway spread (the ordering of candidate nodes). Pods are counted from the table
//! being built, so a pass places replicas one after another against each other.

use skiff_manifests::model::pod::{
    PodAffinityTerm, PodSelector, TaintEffect, Toleration, WhenUnsatisfiable,
};

use super::super::reason::Misfit;
use super::*;

/// Whether `tolerations` tolerate every taint of `node` with an effect in `effects`; for
/// NoExecute, a toleration with tolerationSeconds counts until that long after the taint was
/// set.
pub(crate) fn tolerated(
    node: &SchedNode,
    tolerations: &[Toleration],
    effects: &[TaintEffect],
    now_ms: u64,
) -> bool {
    node.taints
        .iter()
        .filter(|t| effects.contains(&t.taint.effect))
        .all(|t| {
            tolerations.iter().any(|tol| {
                tol.tolerates(&t.taint)
                    && match (t.taint.effect, tol.toleration_seconds) {
                        (TaintEffect::NoExecute, Some(seconds)) => {
                            let until = t
                                .added_ms
                                .saturating_add(u64::try_from(seconds.max(0)).unwrap_or(0) * 1000);
                            now_ms < until
                        }
                        _ => true,
                    }
            })
        })
}

/// Whether `node` matches the workload's required node affinity (one of its terms), if any.
pub(crate) fn node_affinity_fits(w: &Workload, node: &SchedNode) -> bool {
    match w
        .affinity
        .node_affinity
        .as_ref()
        .and_then(|n| n.required.as_ref())
    {
        Some(terms) => terms.iter().any(|t| t.matches(&node.name, &node.labels)),
        None => true,
    }
}

/// The namespaces a pod affinity term looks in: its own list, or the pod's namespace.
fn term_namespaces<'t>(term: &'t PodAffinityTerm, own: &'t str) -> Vec<&'t str> {
    if term.namespaces.is_empty() {
        vec![own]
    } else {
        term.namespaces.iter().map(String::as_str).collect()
    }
}

fn selects(selector: &PodSelector, namespaces: &[&str], pod: &Workload) -> bool {
    namespaces.contains(&pod.namespace.as_str()) && selector.matches(&pod.pod_labels)
}

impl Pass<'_> {
    /// Whether `w` or a placed pod has a constraint that looks at other pods (the table is
    /// only scanned then).
    fn looks_at_pods(&self, w: &Workload) -> bool {
        w.affinity.pod_affinity.is_some()
            || w.affinity.pod_anti_affinity.is_some()
            || !w.spread.is_empty()
            || self.any_anti_affinity
    }

    /// The nodes and workloads of the pods in the table.
    fn placed_pods(&self) -> impl Iterator<Item = (usize, &Workload)> {
        self.table
            .iter()
            .flatten()
            .map(|p| (p.node, &self.input.workloads[p.workload]))
    }

    /// Whether nodes `a` and `b` share the value of `key` (a node without it shares nothing).
    fn same_domain(&self, a: usize, b: usize, key: &str) -> bool {
        match (self.nodes[a].labels.get(key), self.nodes[b].labels.get(key)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    /// The first constraint (after the node selector) that keeps a new pod of `w` off `node`.
    pub(super) fn constraint_misfit(&self, w: &Workload, node: usize) -> Option<Misfit> {
        let n = self.nodes[node];
        if !node_affinity_fits(w, n) {
            return Some(Misfit::NodeAffinity);
        }
        if !tolerated(
            n,
            &w.tolerations,
            &[TaintEffect::NoSchedule, TaintEffect::NoExecute],
            self.now_ms,
        ) {
            return Some(Misfit::Taint);
        }
        if !self.looks_at_pods(w) {
            return None;
        }
        if let Some(affinity) = &w.affinity.pod_affinity {
            for term in &affinity.required {
                let namespaces = term_namespaces(term, &w.namespace);
                let mut anywhere = false;
                let mut here = false;
                for (at, pod) in self.placed_pods() {
                    if selects(&term.label_selector, &namespaces, pod) {
                        anywhere = true;
                        here |= self.same_domain(node, at, &term.topology_key);
                    }
                }
                // Kubernetes' exception: the first pod of a group that selects itself may go
                // anywhere its node has the topology key.
                let first_of_its_group = !anywhere
                    && selects(&term.label_selector, &namespaces, w)
                    && n.labels.contains_key(&term.topology_key);
                if !here && !first_of_its_group {
                    return Some(Misfit::PodAffinity);
                }
            }
        }
        if let Some(anti) = &w.affinity.pod_anti_affinity {
            for term in &anti.required {
                let namespaces = term_namespaces(term, &w.namespace);
                if self.placed_pods().any(|(at, pod)| {
                    selects(&term.label_selector, &namespaces, pod)
                        && self.same_domain(node, at, &term.topology_key)
                }) {
                    return Some(Misfit::PodAntiAffinity);
                }
            }
        }
        // The placed pods' own required anti-affinity keeps `w` away too (symmetry).
        if self.any_anti_affinity
            && self.placed_pods().any(|(at, pod)| {
                pod.affinity.pod_anti_affinity.as_ref().is_some_and(|anti| {
                    anti.required.iter().any(|term| {
                        selects(
                            &term.label_selector,
                            &term_namespaces(term, &pod.namespace),
                            w,
                        ) && self.same_domain(node, at, &term.topology_key)
                    })
                })
            })
        {
            return Some(Misfit::PodAntiAffinity);
        }
        for c in &w.spread {
            if c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule
                && self
                    .skew_with_one_more(w, node, c)
                    .is_none_or(|skew| skew > c.max_skew)
            {
                return Some(Misfit::TopologySpread);
            }
        }
        None
    }

    /// The skew of constraint `c` if one more pod of `w` went to `node`: pods it selects in
    /// `node`'s domain plus one, less the fewest in any domain of the nodes `w` may use.
    /// `None` when `node` lacks the topology key.
    fn skew_with_one_more(
        &self,
        w: &Workload,
        node: usize,
        c: &skiff_manifests::model::pod::TopologySpreadConstraint,
    ) -> Option<u32> {
        let mine = self.nodes[node].labels.get(&c.topology_key)?;
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for n in &self.nodes {
            if n.condition == NodeCondition::Left || !w.fits_node(n) || !node_affinity_fits(w, n) {
                continue;
            }
            if let Some(domain) = n.labels.get(&c.topology_key) {
                counts.entry(domain.as_str()).or_default();
            }
        }
        let namespaces = [w.namespace.as_str()];
        for (at, pod) in self.placed_pods() {
            if let Some(domain) = self.nodes[at].labels.get(&c.topology_key)
                && let Some(count) = counts.get_mut(domain.as_str())
                && selects(&c.label_selector, &namespaces, pod)
            {
                *count += 1;
            }
        }
        let here = counts.get(mine.as_str()).copied().unwrap_or(0) + 1;
        let least = counts.values().copied().min().unwrap_or(0);
        Some(here.saturating_sub(least))
    }

    /// How much `w` would rather not go to `node` (lower is better): untolerated
    /// PreferNoSchedule taints first, then preferred node and pod affinity and anti-affinity
    /// (their weights), then ScheduleAnyway spread (the skew it would make).
    pub(super) fn dislike(&self, w: &Workload, node: usize) -> (bool, i64, u32) {
        let n = self.nodes[node];
        let tainted = !tolerated(
            n,
            &w.tolerations,
            &[TaintEffect::PreferNoSchedule],
            self.now_ms,
        );
        let mut liking: i64 = 0;
        if let Some(na) = &w.affinity.node_affinity {
            for p in &na.preferred {
                if p.preference.matches(&n.name, &n.labels) {
                    liking += i64::from(p.weight);
                }
            }
        }
        let pod_terms = w
            .affinity
            .pod_affinity
            .iter()
            .flat_map(|a| a.preferred.iter().map(|t| (t, 1)))
            .chain(
                w.affinity
                    .pod_anti_affinity
                    .iter()
                    .flat_map(|a| a.preferred.iter().map(|t| (t, -1))),
            );
        for (weighted, sign) in pod_terms {
            let term = &weighted.pod_affinity_term;
            let namespaces = term_namespaces(term, &w.namespace);
            if self.placed_pods().any(|(at, pod)| {
                selects(&term.label_selector, &namespaces, pod)
                    && self.same_domain(node, at, &term.topology_key)
            }) {
                liking += sign * i64::from(weighted.weight);
            }
        }
        let skew = w
            .spread
            .iter()
            .filter(|c| c.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway)
            .map(|c| self.skew_with_one_more(w, node, c).unwrap_or(u32::MAX / 2))
            .sum();
        (tainted, -liking, skew)
    }
}

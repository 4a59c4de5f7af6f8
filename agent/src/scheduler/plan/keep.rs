//! The keep phase of a scheduling pass: which pods of the previous table (or reported
//! running) stay where they are, per workload kind, and what each workload still needs.

use super::*;

impl Pass<'_> {
    /// Candidates per owner, keyed by pod name and node: previous-table entries, joined with
    /// what nodes report, plus pods reported running that the table does not list.
    pub(super) fn gather(&mut self) -> BTreeMap<OwnerKey, BTreeMap<(String, usize), Candidate>> {
        let mut out: BTreeMap<OwnerKey, BTreeMap<(String, usize), Candidate>> = BTreeMap::new();
        for entry in &self.input.previous {
            self.taken_names
                .insert((entry.namespace.clone(), entry.name.clone()));
            let Some(node) = self.node_index(&entry.node) else {
                continue;
            };
            let key = ObjectKey::new(entry.owner.kind, &entry.namespace, &entry.owner.name);
            out.entry(key).or_default().insert(
                (entry.name.clone(), node),
                Candidate {
                    name: entry.name.clone(),
                    node,
                    template_hash: entry.template_hash.clone(),
                    in_previous: true,
                    running: false,
                    ready: false,
                    ready_since_ms: None,
                    started_ms: None,
                },
            );
        }
        for pod in &self.input.reported {
            self.taken_names
                .insert((pod.namespace.clone(), pod.name.clone()));
            let key = match &pod.owner {
                Some(owner) => ObjectKey::new(owner.kind, &pod.namespace, &owner.name),
                None => ObjectKey::new(Kind::Pod, &pod.namespace, &pod.name),
            };
            let node = self.node_index(&pod.node);
            if pod.deleting {
                // Only a node that is still there is stopping it (a dead node's last report
                // must not hold a Recreate rollout for good).
                if node.is_some_and(|n| self.fates[n] != Fate::Gone) {
                    self.terminating
                        .entry(key)
                        .or_default()
                        .insert(pod.template_hash.clone());
                }
                continue;
            }
            let Some(node) = node else {
                continue;
            };
            let slot = out.entry(key).or_default().entry((pod.name.clone(), node));
            match slot {
                std::collections::btree_map::Entry::Occupied(mut known) => {
                    let known = known.get_mut();
                    let same = pod.template_hash == known.template_hash;
                    known.running = pod.running && same;
                    known.ready = pod.ready && same;
                    known.ready_since_ms = pod.ready_since_ms;
                    known.started_ms = pod.started_ms;
                }
                std::collections::btree_map::Entry::Vacant(free) if pod.running => {
                    free.insert(Candidate {
                        name: pod.name.clone(),
                        node,
                        template_hash: pod.template_hash.clone(),
                        in_previous: false,
                        running: true,
                        ready: pod.ready,
                        ready_since_ms: pod.ready_since_ms,
                        started_ms: pod.started_ms,
                    });
                }
                std::collections::btree_map::Entry::Vacant(_) => {}
            }
        }
        out
    }

    pub(super) fn keep_deployment(&mut self, workload: usize, mine: Vec<Candidate>) -> Need {
        let w = &self.input.workloads[workload];
        let WorkloadKind::Deployment {
            replicas,
            max_unavailable,
            max_surge,
            min_ready_ms,
            recreate,
            paused,
        } = w.kind
        else {
            unreachable!("keep_deployment is called for Deployments")
        };
        let (mut current, mut outgoing): (Vec<Candidate>, Vec<Candidate>) = mine
            .into_iter()
            .filter(|c| self.fate(c.node, w) != Fate::Gone)
            .partition(|c| {
                self.fate(c.node, w) == Fate::Keep && c.template_hash == w.template_hash
            });
        current.sort_by(|a, b| {
            let key =
                |c: &Candidate| (!c.in_previous, !c.running, c.started_ms.unwrap_or(u64::MAX));
            key(a)
                .cmp(&key(b))
                .then_with(|| (&a.name, a.node).cmp(&(&b.name, b.node)))
        });
        let hash = w.template_hash.clone();
        let stopping_old = self
            .terminating
            .get(&owner_key(w))
            .is_some_and(|hashes| hashes.iter().any(|h| *h != hash));
        let (mut kept, mut available_current) = (0u32, 0u32);
        // With more copies than replicas (a healed partition, two leaders' tables), listed
        // copies still come first (a node stops what its table does not list, so keeping an
        // unlisted copy races its removal); among those the spread decides: the best-ranked
        // copy on the node holding the fewest kept so far, so dropping the extras does not pile
        // the workload onto one side of the old cut.
        let mut on_node: BTreeMap<usize, u32> = BTreeMap::new();
        let mut left: Vec<&Candidate> = current.iter().collect();
        while kept < replicas {
            let Some(pick) = (0..left.len()).min_by_key(|&i| {
                let c = left[i];
                (
                    !c.in_previous,
                    on_node.get(&c.node).copied().unwrap_or(0),
                    i,
                )
            }) else {
                break;
            };
            let candidate = left.remove(pick);
            let available = self.available(candidate, min_ready_ms);
            if self.keep(workload, candidate, &hash, false) {
                kept += 1;
                available_current += u32::from(available);
                *on_node.entry(candidate.node).or_default() += 1;
            }
        }
        // Old pods (an older template, or on a node they must leave), the best first: available,
        // listed, running, oldest. Kubernetes' arithmetic decides how many may go now: never
        // below `replicas - max_unavailable` available pods, counting new pods that are not
        // available yet as missing; unavailable old pods go first, they serve nobody.
        outgoing.sort_by(|a, b| {
            let key = |c: &Candidate| {
                (
                    !self.available(c, min_ready_ms),
                    !c.in_previous,
                    !c.running,
                    c.started_ms.unwrap_or(u64::MAX),
                )
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| (&a.name, a.node).cmp(&(&b.name, b.node)))
        });
        // One copy per name (the best), and none whose name is already kept as current.
        let mut names: BTreeSet<String> = BTreeSet::new();
        outgoing.retain(|c| {
            !self
                .kept_names
                .contains(&(w.namespace.clone(), c.name.clone()))
                && names.insert(c.name.clone())
        });
        if paused {
            // A paused rollout: old pods on nodes they may stay on are kept as they are, up
            // to the replica count; only what is still missing is made.
            let mut old_kept = 0u32;
            for candidate in &outgoing {
                if kept + old_kept >= replicas {
                    break;
                }
                if self.fate(candidate.node, w) == Fate::Keep
                    && self.keep(workload, candidate, &candidate.template_hash.clone(), true)
                {
                    old_kept += 1;
                }
            }
            return Need::Deployment {
                workload,
                count: replicas.saturating_sub(kept + old_kept),
                available_current,
            };
        }
        let old_total = u32::try_from(outgoing.len()).unwrap_or(u32::MAX);
        let old_available = u32::try_from(
            outgoing
                .iter()
                .filter(|c| self.available(c, min_ready_ms))
                .count(),
        )
        .unwrap_or(u32::MAX);
        let min_available = replicas.saturating_sub(max_unavailable);
        let unavailable_current = kept - available_current;
        let mut may_drop = (kept + old_total).saturating_sub(min_available + unavailable_current);
        let drop_unavailable = may_drop.min(old_total - old_available);
        may_drop -= drop_unavailable;
        let drop_available = may_drop
            .min((available_current + old_available).saturating_sub(min_available))
            .min(old_available);
        let (mut keep_available, mut keep_unavailable) = (
            old_available - drop_available,
            old_total - old_available - drop_unavailable,
        );
        let mut old_kept = 0u32;
        for candidate in &outgoing {
            let quota = if self.available(candidate, min_ready_ms) {
                &mut keep_available
            } else {
                &mut keep_unavailable
            };
            if *quota == 0 {
                continue;
            }
            *quota -= 1;
            if self.keep(workload, candidate, &candidate.template_hash.clone(), true) {
                old_kept += 1;
            }
        }
        // New pods while the total stays within the surge; Recreate waits until no node
        // reports an old pod any more, stopping ones included.
        let mut count =
            (replicas - kept).min((replicas + max_surge).saturating_sub(kept + old_kept));
        if recreate && (!outgoing.is_empty() || stopping_old) {
            count = 0;
        }
        Need::Deployment {
            workload,
            count,
            available_current,
        }
    }

    pub(super) fn keep_daemon_set(&mut self, workload: usize, mine: Vec<Candidate>) -> Need {
        let w = &self.input.workloads[workload];
        let WorkloadKind::DaemonSet { max_unavailable } = w.kind else {
            unreachable!("keep_daemon_set is called for DaemonSets")
        };
        let hash = w.template_hash.clone();
        let mut per_node: BTreeMap<usize, Vec<Candidate>> = BTreeMap::new();
        for candidate in mine {
            per_node.entry(candidate.node).or_default().push(candidate);
        }
        // Each node's best copy: current template, listed, running, oldest.
        let mut best: Vec<(usize, Vec<Candidate>)> = Vec::new();
        let (mut nodes, mut targets) = (Vec::new(), 0u32);
        for node in 0..self.nodes.len() {
            if self.fate(node, w) != Fate::Keep {
                continue;
            }
            let mut here = per_node.remove(&node).unwrap_or_default();
            here.sort_by(|a, b| {
                let key = |c: &Candidate| {
                    let stale = c.template_hash != hash;
                    (
                        stale,
                        !c.in_previous,
                        !c.running,
                        c.started_ms.unwrap_or(u64::MAX),
                    )
                };
                key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
            });
            if !here.is_empty() {
                targets += 1;
                best.push((node, here));
            } else if self.takes_new(node, w) {
                targets += 1;
                nodes.push(node);
            }
        }
        // Nodes without an available pod now: new ones, and copies not (yet) ready.
        let unavailable = nodes.len()
            + best
                .iter()
                .filter(|(_, here)| !self.available(&here[0], 0))
                .count();
        let mut budget = max_unavailable
            .of(targets)
            .saturating_sub(u32::try_from(unavailable).unwrap_or(u32::MAX));
        for (node, here) in best {
            let first = &here[0];
            let stale = first.template_hash != hash;
            // A stale copy that serves is replaced only within the budget; one that does not
            // serve is replaced at once (it costs no availability).
            let update = !stale || !self.available(first, 0) || {
                let take = budget > 0;
                budget = budget.saturating_sub(1);
                take
            };
            let kept = here.iter().any(|c| {
                let as_hash = if update {
                    hash.clone()
                } else {
                    c.template_hash.clone()
                };
                self.keep(workload, c, &as_hash, false)
            });
            if !kept && self.takes_new(node, w) {
                nodes.push(node);
            }
        }
        Need::DaemonSet {
            workload,
            nodes,
            targets,
        }
    }

    pub(super) fn keep_pod(&mut self, workload: usize, mine: Vec<Candidate>) -> Need {
        let w = &self.input.workloads[workload];
        let hash = w.template_hash.clone();
        let mut mine: Vec<Candidate> = mine
            .into_iter()
            .filter(|c| c.name == w.single_pod_name() && self.fate(c.node, w) != Fate::Gone)
            .collect();
        mine.sort_by_key(|c| {
            let moving = self.fate(c.node, w) == Fate::MoveOff;
            (
                moving,
                !c.in_previous,
                !c.running,
                c.started_ms.unwrap_or(u64::MAX),
                c.node,
            )
        });
        let mut fallback = None;
        for candidate in mine {
            if self.fate(candidate.node, w) == Fate::Keep {
                if self.keep(workload, &candidate, &hash, false) {
                    return Need::Pod {
                        workload,
                        fallback: None,
                    };
                }
            } else if fallback.is_none() {
                fallback = Some(candidate);
            }
        }
        Need::Pod { workload, fallback }
    }
}

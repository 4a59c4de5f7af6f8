//! The place phase of a scheduling pass: new pods for Deployments (spread, then least
//! requested), DaemonSets (their own node) and bare Pods; pending reasons; the final table.

use super::super::reason::{Misfit, pod_capacity};
use super::*;

impl Pass<'_> {
    pub(super) fn place_deployment(
        &mut self,
        workload: usize,
        count: u32,
        available_current: u32,
        suffix: &mut dyn FnMut() -> PodSuffix,
    ) {
        let w = &self.input.workloads[workload];
        let mut spread = vec![0u32; self.nodes.len()];
        for placed in self.table.iter().flatten() {
            if placed.workload == workload {
                spread[placed.node] += 1;
            }
        }
        let open = self.open_nodes(workload);
        // Bounded work: the pass stops at the first replica no node takes (nothing changes
        // between attempts, so no later one would fit either), and never tries more than the
        // open nodes' free pod slots plus the outgoing pods `make_room` may stop. A Deployment
        // asking for a billion replicas costs what the cluster can hold, not a billion steps.
        let attempts = count.min(self.free_slots(workload, &open));
        let mut placed = 0u32;
        let mut why = None;
        for _ in 0..attempts {
            let node = match self.best_node(workload, &open, Some(&spread)) {
                Some(node) => Some(node),
                None => self.make_room(workload, available_current),
            };
            let Some(node) = node else {
                break;
            };
            let made = self.fresh_name(&w.namespace, || {
                deployment_pod_name(&w.name, &w.template_hash, &suffix())
            });
            let Some(name) = made else {
                why = Some("no unused pod name could be generated".to_string());
                break;
            };
            self.place_new(workload, node, name);
            spread[node] += 1;
            placed += 1;
        }
        let unplaced = count - placed;
        if unplaced > 0 {
            let reason = why.unwrap_or_else(|| self.tally(workload).describe("nodes"));
            self.pending.push(Pending {
                owner: w.owner_ref(),
                count: unplaced,
                reason,
            });
        }
    }

    /// How many new pods of `workload` the `open` nodes could take at most: their free pod
    /// slots, plus its outgoing pods (each one `make_room` stops frees a slot for a new one).
    fn free_slots(&self, workload: usize, open: &[usize]) -> u32 {
        let free = open
            .iter()
            .map(|&n| u64::from(pod_capacity(self.nodes[n]).saturating_sub(self.usage[n].pods)));
        let outgoing = self
            .table
            .iter()
            .flatten()
            .filter(|p| p.workload == workload && p.outgoing)
            .count();
        let total = free.sum::<u64>().saturating_add(outgoing as u64);
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// Stops one outgoing pod of a Deployment early when that lets a replacement fit on its
    /// node, as far as `max_unavailable` allows (an outgoing pod that is not available costs
    /// nothing). Returns the node that now has room.
    fn make_room(&mut self, workload: usize, available_current: u32) -> Option<usize> {
        let w = &self.input.workloads[workload];
        let WorkloadKind::Deployment {
            replicas,
            max_unavailable,
            paused: false,
            ..
        } = w.kind
        else {
            return None;
        };
        let mut outgoing: Vec<(bool, usize)> = self
            .table
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
            .filter(|(_, p)| p.workload == workload && p.outgoing)
            .map(|(i, p)| (p.available, i))
            .collect();
        let available_outgoing = outgoing.iter().filter(|(available, _)| *available).count();
        let available = u64::from(available_current) + available_outgoing as u64;
        // Stopping one more available pod leaves `available - 1`: at most `max_unavailable`
        // short.
        let may_stop_running = u64::from(replicas) < available + u64::from(max_unavailable);
        // Pods that do not run first, then the most recently listed.
        outgoing.sort_by_key(|&(running, i)| (running, std::cmp::Reverse(i)));
        for (running, index) in outgoing {
            if running && !may_stop_running {
                continue;
            }
            let Some(node) = self.table[index].as_ref().map(|p| p.node) else {
                continue;
            };
            if !self.takes_new(node, w) {
                continue;
            }
            let mut freed = self.usage[node];
            freed.remove(w);
            if misfit(self.nodes[node], &freed, w).is_none() {
                self.usage[node] = freed;
                if let Some(placed) = self.table[index].take() {
                    self.kept_names
                        .remove(&(placed.entry.namespace, placed.entry.name));
                }
                return Some(node);
            }
        }
        None
    }

    pub(super) fn place_daemon_set(
        &mut self,
        workload: usize,
        nodes: &[usize],
        targets: u32,
        suffix: &mut dyn FnMut() -> PodSuffix,
    ) {
        let w = &self.input.workloads[workload];
        let mut missing = Tally {
            available: targets,
            ..Tally::default()
        };
        for &node in nodes {
            let problem = misfit(self.nodes[node], &self.usage[node], w);
            let name = match problem {
                Some(_) => None,
                None => {
                    let mut first = Some(PodSuffix::for_node(&self.nodes[node].name));
                    self.fresh_name(&w.namespace, || {
                        let tail = first.take().unwrap_or_else(&mut *suffix);
                        daemon_set_pod_name(&w.name, &tail)
                    })
                }
            };
            match name {
                Some(name) => self.place_new(workload, node, name),
                None => {
                    missing.available -= 1;
                    missing.count(Some(problem.unwrap_or(Misfit::NameTaken)));
                }
            }
        }
        let unplaced = missing.total() - missing.available;
        if unplaced > 0 {
            self.pending.push(Pending {
                owner: w.owner_ref(),
                count: unplaced,
                reason: missing.describe("matching nodes"),
            });
        }
    }

    pub(super) fn place_pod(&mut self, workload: usize, fallback: Option<Candidate>) {
        let w = &self.input.workloads[workload];
        let name = w.single_pod_name().to_string();
        if self
            .kept_names
            .contains(&(w.namespace.clone(), name.clone()))
        {
            return; // kept where it runs (a full cluster must not call it pending)
        }
        // A Job's pods spread over nodes like a Deployment's (fewest of the Job's first).
        let spread = matches!(w.kind, WorkloadKind::JobPod { .. }).then(|| {
            let mut spread = vec![0u32; self.nodes.len()];
            for placed in self.table.iter().flatten() {
                let other = &self.input.workloads[placed.workload];
                if matches!(other.kind, WorkloadKind::JobPod { .. })
                    && other.name == w.name
                    && other.namespace == w.namespace
                {
                    spread[placed.node] += 1;
                }
            }
            spread
        });
        if let Some(node) = self.best_node(workload, &self.open_nodes(workload), spread.as_deref())
        {
            self.place_new(workload, node, name);
            return;
        }
        let reason = self.tally(workload).describe("nodes");
        if let Some(old) = fallback {
            // Stays on the node it must leave until another node has room.
            let hash = old.template_hash.clone();
            self.keep(workload, &old, &hash, true);
        }
        self.pending.push(Pending {
            owner: w.owner_ref(),
            count: 1,
            reason,
        });
    }

    pub(super) fn finish(self) -> SchedOutput {
        let mut assignments: Vec<Placement> =
            self.table.into_iter().flatten().map(|p| p.entry).collect();
        assignments.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.node).cmp(&(&b.namespace, &b.name, &b.node))
        });
        let busy: BTreeSet<&str> = assignments.iter().map(|a| a.node.as_str()).collect();
        let drained = self
            .nodes
            .iter()
            .filter(|n| n.draining && !busy.contains(n.name.as_str()))
            .map(|n| n.name.clone())
            .collect();
        let mut pending = self.pending;
        pending.sort_by_cached_key(|p| p.owner.to_string());
        // A Job's pods are placed one by one: one entry per owner and reason, counted.
        pending.dedup_by(|next, kept| {
            let same = next.owner == kept.owner && next.reason == kept.reason;
            if same {
                kept.count += next.count;
            }
            same
        });
        SchedOutput {
            assignments,
            pending,
            drained,
        }
    }
}

//! What the cluster task publishes: the leader's assignment tables and pending list, this
//! node's pod reports, its pod subnet claim (and, leading, the subnet table), and the routes to
//! the other nodes' subnets.

use super::*;

impl ClusterService {
    /// The leader's subnet table; every node's routes to the others' subnets.
    pub(super) async fn subnets(&mut self, nodes: &[NodeStatus], leading: bool) -> Vec<PeerRoute> {
        let Some((mine, cidr)) = self.subnet else {
            return Vec::new();
        };
        let claims = self.view.claims();
        let me = self.gossip.node_name().to_string();
        if claims.get(&me) != Some(&mine)
            && let Err(e) = self
                .gossip
                .set_key(subnets::CLAIM_KEY, &mine.to_string())
                .await
        {
            tracing::warn!("cannot claim pod subnet {mine}: {e}");
        }
        if leading {
            let previous: BTreeMap<String, ipnet::Ipv4Net> = self
                .view
                .nodes()
                .filter_map(|(_, k)| k.subnet_table.clone())
                .flatten()
                .collect();
            let live: BTreeSet<String> = nodes
                .iter()
                .filter(|n| n.condition != NodeCondition::Left)
                .map(|n| n.name.clone())
                .collect();
            let table = subnets::allocate(cidr, &live, &claims, &previous);
            let json = serde_json::to_string(&table).unwrap_or_default();
            if json != self.published_subnets {
                if let Err(e) = self.gossip.set_key(subnets::TABLE_KEY, &json).await {
                    tracing::warn!("cannot publish the pod subnet table: {e}");
                }
                self.published_subnets = json;
            }
        }
        let mut routes: Vec<PeerRoute> = nodes
            .iter()
            .filter(|n| n.name != me && n.condition != NodeCondition::Left)
            .filter_map(|n| {
                let net = claims.get(&n.name)?;
                match n.address.ip() {
                    std::net::IpAddr::V4(via) if *net != mine => {
                        Some(PeerRoute { subnet: *net, via })
                    }
                    _ => None,
                }
            })
            .collect();
        routes.sort_by_key(|r| (r.subnet, r.via));
        routes
    }

    pub(super) async fn publish_tables(
        &mut self,
        nodes: &[NodeStatus],
        table: Vec<AssignedPod>,
        pending: Vec<PendingWorkload>,
    ) -> Option<Assignment> {
        let me = self.gossip.node_name().to_string();
        let mut mine = None;
        let mut by_node: BTreeMap<String, Vec<AssignedPod>> = nodes
            .iter()
            .filter(|n| n.condition != NodeCondition::Left)
            .map(|n| (n.name.clone(), Vec::new()))
            .collect();
        for pod in table {
            by_node.entry(pod.node.clone()).or_default().push(pod);
        }
        let changed = by_node.iter().any(|(node, pods)| {
            let body = serde_json::to_string(pods).unwrap_or_default();
            self.published_tables.get(node) != Some(&body)
        }) || self
            .published_tables
            .keys()
            .any(|n| !by_node.contains_key(n));
        if changed || self.generation == Generation(0) {
            self.generation = self.generation.next();
        }
        let mut next = BTreeMap::new();
        for (node, pods) in by_node {
            let body = serde_json::to_string(&pods).unwrap_or_default();
            let doc = Assignment {
                term: self.term,
                generation: self.generation,
                pods,
                parts: 1,
            };
            if node == me {
                mine = Some(doc.clone());
            }
            let had = self.published_parts.get(&node).copied().unwrap_or(0);
            if changed || self.published_term != self.term {
                match split_assignment(&doc, skiff_gossip::MAX_VALUE_BYTES) {
                    Ok(values) => {
                        let parts = values.len() as u32;
                        // Later parts first: a reader sees part 0's new generation last.
                        for (index, value) in values.iter().enumerate().rev() {
                            let key = assignment_key(&node, index as u32);
                            if let Err(e) = self.gossip.set_key(&key, value).await {
                                tracing::error!(
                                    "cannot publish the assignment of node {node}: {e}"
                                );
                            }
                        }
                        for index in parts..had {
                            let _ = self.gossip.delete_key(&assignment_key(&node, index)).await;
                        }
                        self.published_parts.insert(node.clone(), parts);
                    }
                    Err(size) => tracing::error!(
                        "cannot publish the assignment of node {node}: one pod's entry is {size} bytes, more than a gossip value holds"
                    ),
                }
            }
            next.insert(node, body);
        }
        for gone in self
            .published_tables
            .keys()
            .filter(|n| !next.contains_key(*n))
        {
            let had = self.published_parts.remove(gone).unwrap_or(1);
            for index in 0..had.max(1) {
                let _ = self.gossip.delete_key(&assignment_key(gone, index)).await;
            }
        }
        self.published_tables = next;
        self.published_term = self.term;
        let pending_json = serde_json::to_string(&pending).unwrap_or_default();
        if pending_json != self.published_pending {
            if let Err(e) = self.gossip.set_key(PENDING_KEY, &pending_json).await {
                tracing::warn!("cannot publish pending workloads: {e}");
            }
            self.published_pending = pending_json;
        }
        mine
    }

    pub(super) async fn publish_reports(&mut self, reports: &OwnReports) {
        for ((ns, name), report) in reports {
            // The node loop hands on the same `Arc` for a pod whose report did not change.
            if self
                .published_reports
                .get(&(ns.clone(), name.clone()))
                .is_some_and(|p| Arc::ptr_eq(p, report) || p == report)
            {
                continue;
            }
            match serde_json::to_string(report) {
                Ok(value) => {
                    if let Err(e) = self.gossip.set_key(&pod_key(ns, name), &value).await {
                        tracing::warn!("cannot report pod {ns}/{name}: {e}");
                        continue;
                    }
                }
                Err(_) => continue,
            }
            self.published_reports
                .insert((ns.clone(), name.clone()), report.clone());
        }
        let gone: BTreeSet<(String, String)> = self
            .published_reports
            .keys()
            .filter(|k| !reports.contains_key(*k))
            .cloned()
            .collect();
        for (ns, name) in gone {
            let _ = self.gossip.delete_key(&pod_key(&ns, &name)).await;
            self.published_reports.remove(&(ns, name));
        }
    }
}

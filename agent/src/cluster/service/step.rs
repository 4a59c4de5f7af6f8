//! One step of the cluster task, as its named sub-steps in the order they run: read gossip,
//! sync the replica, read the node list, decide leadership, exchange pod reports, schedule (as
//! a leader with the majority) or follow the leader's table, route to the other nodes' subnets,
//! and hand the results on.

use super::*;

/// What the placement looks like this step: the pods the leader could not place and the
/// leader's whole table.
#[derive(Clone, Default)]
pub(super) struct Placement {
    pending: Vec<PendingWorkload>,
    table: Arc<Vec<AssignedPod>>,
}

/// The inputs of the last scheduling pass and its placement. A pass over the same inputs
/// places the same pods (the previous table keeps every name), so it is skipped: on a quiet
/// cluster the leader no longer runs the scheduler and serializes its tables ten times a
/// second. Rules that depend on time (eviction delay, restart grace) only apply while a node
/// is not Ready, and then every step runs a pass; a pass also runs at least every
/// [`PASS_AT_LEAST_EVERY_MS`].
pub(super) struct LastPass {
    nodes: Arc<Vec<NodeStatus>>,
    objects: Arc<crate::desired::Objects>,
    pods: Arc<PodReports>,
    term: Term,
    at_ms: u64,
    placement: Placement,
}

/// Where a step's time went, for the `skiff::loop` trace of slow steps.
struct Laps {
    started: std::time::Instant,
    last: std::time::Instant,
    laps: Vec<(&'static str, u128)>,
}

impl Laps {
    fn start() -> Self {
        let now = std::time::Instant::now();
        Laps {
            started: now,
            last: now,
            laps: Vec::with_capacity(12),
        }
    }

    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, (now - self.last).as_micros()));
        self.last = now;
    }

    /// A step over 1 ms is traced with its sub-steps (microseconds each).
    fn log_if_slow(&self) {
        let took = self.started.elapsed();
        if took > std::time::Duration::from_millis(1) {
            let laps: Vec<String> = self
                .laps
                .iter()
                .map(|(n, us)| format!("{n}={us}"))
                .collect();
            tracing::debug!(
                target: "skiff::loop",
                us = took.as_micros() as u64,
                laps = %laps.join(" "),
                "slow step"
            );
        }
    }
}

/// The longest a leader goes without a scheduling pass.
const PASS_AT_LEAST_EVERY_MS: u64 = 5_000;

impl ClusterService {
    /// One step: the sub-steps below, in order; the store is written last.
    pub(super) async fn step(
        &mut self,
        inputs: &ClusterInputs,
        outputs: &ClusterOutputs,
        fetched_tx: &mpsc::Sender<Fetched>,
    ) {
        let now = (self.timings.clock)();
        let mut laps = Laps::start();
        let view_changed = self.read_gossip_keys().await;
        laps.lap("gossip");
        self.sync_replica(now, view_changed, fetched_tx).await;
        laps.lap("replica");
        self.read_node_list(now).await;
        let leadership = self.leadership(now).await;
        let pods = self.exchange_reports(inputs, view_changed).await;
        laps.lap("reports");
        let scheduled = if leadership.scheduling {
            let pass = self.scheduling_pass_if_needed(now, view_changed).await;
            laps.lap("pass");
            self.allocate_services().await;
            Some(pass)
        } else {
            self.last_pass = None;
            self.follow_book(leadership.leader.as_deref());
            None
        };
        self.note_book(outputs);
        let followed_changed = self.follow_leader(leadership.leader.as_deref());
        laps.lap("follow");
        let nodes = self.nodes.clone();
        let routes = self.subnets(&nodes, leadership.leading).await;
        let placement = match scheduled {
            Some(placement) => placement,
            None => self.leaders_placement(
                leadership.leader.as_deref(),
                view_changed || followed_changed,
            ),
        };
        if leadership.scheduling {
            self.run_cron_jobs(&placement.table, outputs, now).await;
        }
        if !leadership.scheduling && !leadership.quorum.held {
            if self.run_local_cron(&placement.table, outputs, now).await {
                self.objects_dirty = true;
            }
        } else if followed_changed || leadership.scheduling {
            // A leader's table rules again (it adopts the pods this node reports).
            if !self.cron.local.is_empty() || !self.cron.local_jobs.is_empty() {
                self.cron.local.clear();
                self.cron.local_jobs.clear();
                self.objects_dirty = true;
            }
        }
        laps.lap("cron");
        let services = self.service_table(now);
        laps.lap("services");
        let rollouts = self.rollout_tracker.track_shared(&self.objects, &pods, now);
        if leadership.scheduling {
            self.auto_rollback(&rollouts, outputs).await;
        }
        laps.lap("rollouts");
        self.hand_on(
            outputs,
            leadership,
            placement,
            (pods, rollouts),
            routes,
            services,
        );
        laps.lap("hand_on");
        // Disk last: the commits (a sync each) do not delay the node's pods.
        self.write_replica();
        laps.lap("store");
        laps.log_if_slow();
    }

    /// Reads the gossip keys of the nodes whose keys changed; true when any did.
    async fn read_gossip_keys(&mut self) -> bool {
        self.view.refresh(&self.reader).await
    }

    /// Brings the replica up to date with the adverts (when they or the replica changed),
    /// forgets old tombstones, and rebuilds the live objects when the replica changed.
    async fn sync_replica(
        &mut self,
        now: u64,
        view_changed: bool,
        fetched_tx: &mpsc::Sender<Fetched>,
    ) {
        self.sync_needed |= view_changed;
        if std::mem::take(&mut self.sync_needed) {
            self.sync(fetched_tx).await;
        }
        self.collect_garbage(now).await;
        if std::mem::take(&mut self.objects_stale) {
            self.objects = Arc::new(self.replica.objects());
        }
    }

    /// Takes the node list when gossip changed it (forgetting removed peers) and notes since
    /// when each node is not Ready, and whether it left in that spell.
    async fn read_node_list(&mut self, now: u64) {
        if self.nodes_rx.has_changed().unwrap_or(false) {
            self.nodes = Arc::new(self.nodes_rx.borrow_and_update().clone());
            // A removed node leaves the node list; it stops counting toward the majority too.
            let removed = self.gossip.removed_names().await;
            if !removed.is_empty() {
                self.followed.forget_peers(&removed);
            }
        }
        for n in self.nodes.iter() {
            if n.condition == NodeCondition::Ready {
                self.not_ready_since.remove(&n.name);
            } else {
                let spell = self
                    .not_ready_since
                    .entry(n.name.clone())
                    .or_insert((now, false));
                spell.1 |= n.condition == NodeCondition::Left;
            }
        }
    }

    /// Decides who leads, whether this node schedules and at which term
    /// ([`leadership::decide`]), remembers the decision and publishes the term.
    async fn leadership(&mut self, now: u64) -> LeadershipDecision {
        let me = self.me.as_str();
        let others = || self.view.nodes().filter(move |(node, _)| *node != me);
        let unconfirmed = self.reach_rx.borrow().unconfirmed.clone();
        let decision = leadership::decide(LeadershipInput {
            now_ms: now,
            started_ms: self.started_ms,
            startup_grace: self.timings.startup_grace,
            always_wait_grace: self.timings.always_wait_grace,
            me,
            nodes: &self.nodes,
            knows_peers: !self.followed.known_peers.is_empty(),
            last_seen_ready: &self.followed.peer_addrs,
            unconfirmed: &unconfirmed,
            led_before: self.led_before,
            term: self.term,
            published_term: self.view.node(me).and_then(|k| k.term),
            seen_max: others()
                .filter_map(|(_, k)| k.term)
                .max()
                .unwrap_or_default(),
            others_table_term: others()
                .flat_map(|(_, k)| k.tables.iter().map(|(_, doc)| doc.term))
                .max(),
        });
        self.led_before = decision.leading;
        self.term = decision.term;
        if decision.publish_term
            && let Err(e) = self.gossip.set_key(TERM_KEY, &self.term.to_string()).await
        {
            tracing::warn!("cannot publish the term: {e}");
        }
        decision
    }

    /// Publishes this node's pod reports (straight from the node loop) and merges them with
    /// every other node's, again only when either changed.
    async fn exchange_reports(
        &mut self,
        inputs: &ClusterInputs,
        view_changed: bool,
    ) -> Arc<PodReports> {
        let reports = inputs.reports.borrow().clone();
        self.publish_reports(&reports).await;
        if view_changed
            || !self
                .merged_reports
                .as_ref()
                .is_some_and(|m| Arc::ptr_eq(m, &reports))
        {
            let mut pods = PodReports::new();
            for (node, keys) in self.view.nodes().filter(|(n, _)| *n != self.me) {
                for (key, report) in &keys.pods {
                    pods.insert(key.clone(), (node.to_string(), report.clone()));
                }
            }
            for (key, report) in reports.iter() {
                pods.insert(key.clone(), (self.me.clone(), report.clone()));
            }
            self.pods = Arc::new(pods);
            self.merged_reports = Some(reports);
        }
        self.pods.clone()
    }

    /// The scheduling pass, or the last one's placement when nothing it reads has changed.
    async fn scheduling_pass_if_needed(&mut self, now: u64, view_changed: bool) -> Placement {
        let same = self.last_pass.as_ref().is_some_and(|last| {
            !view_changed
                && self.not_ready_since.is_empty()
                && last.term == self.term
                && now.saturating_sub(last.at_ms) < PASS_AT_LEAST_EVERY_MS
                && self.wake_at_ms.is_none_or(|at| now < at)
                && Arc::ptr_eq(&last.nodes, &self.nodes)
                && Arc::ptr_eq(&last.objects, &self.objects)
                && Arc::ptr_eq(&last.pods, &self.pods)
        });
        if same && let Some(last) = &self.last_pass {
            return last.placement.clone();
        }
        let placement = self.scheduling_pass(now).await;
        self.last_pass = Some(LastPass {
            nodes: self.nodes.clone(),
            objects: self.objects.clone(),
            pods: self.pods.clone(),
            term: self.term,
            at_ms: now,
            placement: placement.clone(),
        });
        placement
    }

    /// The leader's pass: places every object's pods starting from the newest published tables,
    /// publishes the tables and the pending list, and follows its own table at once.
    async fn scheduling_pass(&mut self, now: u64) -> Placement {
        // Tables published by every node (the leader's, and stale ones of earlier leaders).
        let mut previous = follow::previous_table(&self.view.tables());
        // After a restart gossip holds no table yet: this node's stored one still counts.
        if let Some(mine) = &self.followed.accepted
            && !previous.iter().any(|p| p.node == self.me)
        {
            previous.extend(mine.pods.iter().cloned());
        }
        schedule::track_readiness(&mut self.readiness, &self.pods, now);
        schedule::forget_released(&mut self.released, &self.pods, now);
        let output = schedule::run(
            &self.nodes,
            schedule::Seen {
                not_ready_since: &self.not_ready_since,
                readiness: &self.readiness,
                released: &self.released,
            },
            &self.objects,
            &previous,
            &self.pods,
            now,
            schedule::Delays {
                eviction: self.timings.eviction_delay,
                restart_grace: self.timings.restart_grace,
            },
        );
        self.wake_at_ms = output.wake_at_ms;
        for key in &output.expired {
            let k = crate::cluster::keys::object_key(key);
            if self.replica.expire(&k, now) {
                tracing::info!(
                    "{key} finished longer than its ttlSecondsAfterFinished ago: deleted"
                );
                if let Some(digest) = self.replica.digest(&k) {
                    self.advertise(&k, &digest).await;
                }
                self.replica_changed();
            }
        }
        schedule::note_released(&mut self.released, &previous, &output.table, now);
        let placement = Placement {
            pending: output.pending.clone(),
            table: Arc::new(output.table.clone()),
        };
        let nodes = self.nodes.clone();
        let mine = self
            .publish_tables(&nodes, output.table, output.pending)
            .await;
        if let Some(doc) = mine
            && self.followed.accept(&doc)
        {
            self.objects_dirty = true;
        }
        placement
    }

    /// Accepts this node's table from the leader it follows (another node; a leader follows
    /// its own in its pass) and remembers the peers seen Ready; true when the pods changed.
    fn follow_leader(&mut self, leader: Option<&str>) -> bool {
        let mut changed = false;
        if let Some(leader) = leader
            && leader != self.me
            && let Some(doc) = self.view.node(leader).and_then(|k| k.table_for(&self.me))
            && self.followed.accept(doc)
        {
            self.objects_dirty = true;
            changed = true;
        }
        self.followed.note_peers(&self.nodes, &self.me);
        changed
    }

    /// Off the scheduling pass, the placement is the leader's: its pending list and its whole
    /// table (this node's part as accepted), rebuilt when gossip, the accepted table or the
    /// leader changed.
    fn leaders_placement(&mut self, leader: Option<&str>, changed: bool) -> Placement {
        let pending = leader
            .and_then(|l| self.view.node(l))
            .and_then(|k| k.pending.clone())
            .unwrap_or_default();
        if changed || self.followed_table_of.as_deref() != leader {
            let mut table = self
                .followed
                .accepted
                .as_ref()
                .map(|a| a.pods.clone())
                .unwrap_or_default();
            if let Some(keys) = leader.and_then(|l| self.view.node(l)) {
                table.extend(
                    keys.tables
                        .iter()
                        .filter(|(target, _)| *target != self.me)
                        .flat_map(|(_, doc)| doc.pods.iter().cloned()),
                );
            }
            self.followed_table = Arc::new(table);
            self.followed_table_of = leader.map(str::to_string);
        }
        Placement {
            pending,
            table: self.followed_table.clone(),
        }
    }

    /// Hands the node loop a new [`Desired`] when its objects, its assigned pods or the pending
    /// list changed (and refreshes what this node serves), and the API the cluster state.
    fn hand_on(
        &mut self,
        outputs: &ClusterOutputs,
        leadership: LeadershipDecision,
        placement: Placement,
        (pods, rollouts): (Arc<PodReports>, Arc<crate::cluster::rollouts::Rollouts>),
        routes: Vec<PeerRoute>,
        services: Arc<crate::services::ServiceTable>,
    ) {
        let mut links_changed = false;
        if !self
            .service_links_of
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &services))
        {
            let links = crate::services::links::links_of(&services);
            links_changed = links != *self.service_links;
            if links_changed {
                self.service_links = Arc::new(links);
            }
            self.service_links_of = Some(services.clone());
        }
        if self.objects_dirty || placement.pending != self.last_pending || links_changed {
            self.objects_dirty = false;
            self.last_pending = placement.pending.clone();
            *self.served.write().unwrap_or_else(|p| p.into_inner()) = self.replica.records();
            tracing::debug!(target: "skiff::path", "desired sent");
            outputs.desired.send_replace(Desired {
                objects: self.objects.clone(),
                assigned: self.followed.accepted.as_ref().map(|a| {
                    // Jobs this node runs by itself while cut off (node-local CronJobs).
                    let mut pods = a.pods.clone();
                    pods.extend(self.cron.local.iter().cloned());
                    Arc::new(pods)
                }),
                pending: Arc::new(placement.pending.clone()),
                service_links: self.service_links.clone(),
            });
        }
        outputs.state.send_replace(Arc::new(ClusterState {
            nodes: self.nodes.clone(),
            // Not this node while it waits out its startup grace: it does not lead yet.
            leader: leadership.leader,
            term: self.term,
            pods,
            pending: placement.pending,
            table: placement.table,
            routes,
            quorum: leadership.quorum,
            services,
            rollouts,
        }));
    }
}

//! `NetlinkNetwork`: the real `PodNetwork` over rtnetlink, mount(2), nftables and redb. Holds no
//! state that matters in memory; each call observes, plans with `plan`, and applies.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{NetworkConfig, PodNetRequest, PodNetStatus, host_link_name, validate_pod_id};
use crate::error::CniError;
use crate::ipam::Ipam;
use crate::links;
use crate::netns::{list_netns_files, remove_netns, validate_netns_name};
use crate::nft;
use crate::nft_session::NftSession;
use crate::nsthread::{blocking_in_netns, netlink_in_netns};
use crate::plan::{Action, GcAction, ObservedNode, plan_gc, plan_setup, plan_teardown};
use crate::routes::PeerRoute;
use crate::traits::{GcReport, NodeInventory, PodNetwork};
use std::net::Ipv4Addr;

/// Pod networking on this node through netlink.
pub struct NetlinkNetwork {
    pub(crate) cfg: Arc<NetworkConfig>,
    pub(crate) ipam: Ipam,
    fail_after: Mutex<Option<Action>>,
    /// When this instance last rewrote the nftables table. Only a shortcut: running `nft`
    /// costs ~15 ms, so `ensure_bridge` rewrites the table on its first call and then at most
    /// every `TABLE_REFRESH`; a new instance always rewrites it.
    table_written: Mutex<Option<Instant>>,
    /// The node's long-lived `nft -i` for small transactions (started on first use).
    nft_session: Arc<Mutex<Option<NftSession>>>,
}

/// The longest an `nft -i` transaction may take before its process is replaced.
const NFT_SESSION_LIMIT: Duration = Duration::from_secs(20);

/// How often `ensure_bridge` rewrites the nftables table (repairing outside tampering).
pub const TABLE_REFRESH: Duration = Duration::from_secs(60);

impl NetlinkNetwork {
    /// Validates the config and opens the `cni_` tables in `db`.
    pub fn new(cfg: NetworkConfig, db: crate::ipam::SharedDb) -> Result<Self, CniError> {
        cfg.validate()?;
        let ipam = Ipam::open(db, cfg.subnet, cfg.gateway)?;
        Ok(NetlinkNetwork {
            cfg: Arc::new(cfg),
            ipam,
            fail_after: Mutex::new(None),
            table_written: Mutex::new(None),
            nft_session: Arc::new(Mutex::new(None)),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// The address book (for status pages and tests).
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Records the address a running pod already has (see [`Ipam::restore`]).
    pub fn restore_lease(
        &self,
        req: &PodNetRequest,
        ip: Ipv4Addr,
    ) -> Result<crate::ipam::PodRecord, CniError> {
        validate_pod_id(&req.id)?;
        let link = host_link_name(&self.cfg.link_prefix, &req.id);
        self.ipam.restore(req, &link, ip)
    }

    /// Test hook: make the next setup/teardown fail right after `action` succeeded, as a crash
    /// there would. `None` turns it off.
    pub fn inject_failure_after(&self, action: Option<Action>) {
        *self.fail_after.lock().unwrap_or_else(|p| p.into_inner()) = action;
    }

    pub(crate) fn check_injected_failure(&self, done: Action) -> Result<(), CniError> {
        let mut armed = self.fail_after.lock().unwrap_or_else(|p| p.into_inner());
        if *armed == Some(done) {
            *armed = None;
            return Err(CniError::Injected {
                step: format!("{done:?}"),
            });
        }
        Ok(())
    }

    fn table_needs_rewrite(&self, now: Instant) -> bool {
        let written = *self.table_written.lock().unwrap_or_else(|p| p.into_inner());
        written.is_none_or(|at| now.saturating_duration_since(at) >= TABLE_REFRESH)
    }

    pub(crate) fn node_netns(&self) -> Option<&Path> {
        self.cfg.node_netns.as_deref()
    }

    /// Makes the routes to other nodes' pod subnets equal `routes` (adds, replaces, removes
    /// only routes carrying skiff's route protocol number). Idempotent.
    pub async fn ensure_peer_routes(&self, routes: &[PeerRoute]) -> Result<(), CniError> {
        let wanted = routes.to_vec();
        netlink_in_netns(self.node_netns(), move |h| async move {
            crate::routes::converge_peer_routes(&h, &wanted).await
        })
        .await
    }

    /// The routes to other nodes' pod subnets currently installed.
    pub async fn peer_routes(&self) -> Result<Vec<PeerRoute>, CniError> {
        netlink_in_netns(self.node_netns(), move |h| async move {
            crate::routes::list_peer_routes(&h).await
        })
        .await
    }

    /// Routes the service CIDR to the bridge (see [`crate::routes::ensure_device_route`]).
    /// The bridge must exist.
    pub async fn ensure_service_route(&self, cidr: ipnet::Ipv4Net) -> Result<(), CniError> {
        let bridge = self.cfg.bridge.clone();
        netlink_in_netns(self.node_netns(), move |h| async move {
            let link =
                links::find_link(&h, &bridge)
                    .await?
                    .ok_or_else(|| CniError::LinkNotFound {
                        name: bridge.clone(),
                        place: " in the node namespace".into(),
                    })?;
            crate::routes::ensure_device_route(&h, cidr, link.index).await
        })
        .await
    }

    /// A UDP socket and a TCP listener bound to `addr` in the node namespace (sockets stay in
    /// the namespace they were made in), non-blocking, for a server on the node side.
    pub async fn bind_in_node_netns(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), CniError> {
        blocking_in_netns(self.node_netns(), move || {
            let place = addr.to_string();
            let udp =
                std::net::UdpSocket::bind(addr).map_err(|e| CniError::io("bind udp", &place, e))?;
            let tcp = std::net::TcpListener::bind(addr)
                .map_err(|e| CniError::io("bind tcp", &place, e))?;
            udp.set_nonblocking(true)
                .map_err(|e| CniError::io("set non-blocking", &place, e))?;
            tcp.set_nonblocking(true)
                .map_err(|e| CniError::io("set non-blocking", &place, e))?;
            Ok((udp, tcp))
        })
        .await
    }

    /// Runs an nftables script (one transaction) in the node namespace.
    pub async fn run_nft(&self, action: &str, script: String) -> Result<(), CniError> {
        let action = action.to_string();
        blocking_in_netns(self.node_netns(), move || {
            nft::run(&action, &script).map(drop)
        })
        .await
    }

    /// Runs an nftables script (one transaction) in the node namespace through the node's
    /// long-lived `nft -i` process: several times faster than [`NetlinkNetwork::run_nft`] for a
    /// small change to a large table (see [`crate::nft_session`]). The process is started on
    /// first use and replaced after any failure other than the script's own error.
    pub async fn apply_nft(&self, action: &str, script: String) -> Result<(), CniError> {
        let action = action.to_string();
        let session = Arc::clone(&self.nft_session);
        blocking_in_netns(self.node_netns(), move || {
            let mut slot = session
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.as_ref().is_some_and(NftSession::worn_out) {
                *slot = None;
            }
            let running = match slot.take() {
                Some(s) => s,
                None => NftSession::start()?,
            };
            let running = slot.insert(running);
            let result = running.run(&action, &script, NFT_SESSION_LIMIT);
            if let Err(e) = &result
                && !matches!(e, CniError::Nft { .. })
            {
                *slot = None;
            }
            result
        })
        .await
    }

    /// Deletes the node namespace's tracked flows that `stale` picks; returns how many.
    pub async fn delete_flows(
        &self,
        stale: impl Fn(&crate::conntrack::Flow) -> bool + Send + 'static,
    ) -> Result<usize, CniError> {
        blocking_in_netns(self.node_netns(), move || {
            let flows: Vec<_> = crate::conntrack::list()?
                .into_iter()
                .filter(|f| stale(f))
                .collect();
            if flows.is_empty() {
                return Ok(0);
            }
            crate::conntrack::delete(&flows)
        })
        .await
    }

    /// Whether an nftables table of ours (`ip` family) exists in the node namespace.
    pub async fn nft_table_exists(&self, table: &str) -> Result<bool, CniError> {
        let table = table.to_string();
        blocking_in_netns(self.node_netns(), move || nft::table_exists(&table)).await
    }

    /// Deletes an nftables table of ours (`ip` family); a missing one is fine.
    pub async fn delete_nft_table(&self, table: &str) -> Result<(), CniError> {
        let table = table.to_string();
        blocking_in_netns(self.node_netns(), move || nft::delete_table(&table)).await
    }

    /// Removes the node side: our nftables table and the bridge. Pods should be gone first.
    pub async fn remove_node_network(&self) -> Result<(), CniError> {
        let tables = [self.cfg.nft_table.clone(), self.cfg.service_table()];
        blocking_in_netns(self.node_netns(), move || {
            tables.iter().try_for_each(|t| nft::delete_table(t))
        })
        .await?;
        let bridge = self.cfg.bridge.clone();
        netlink_in_netns(self.node_netns(), move |h| async move {
            links::delete_link(&h, &bridge).await
        })
        .await
    }

    async fn execute(
        &self,
        actions: &[Action],
        names: &crate::pod_ops::PodNames,
        req: Option<&PodNetRequest>,
        record: &mut Option<crate::ipam::PodRecord>,
    ) -> Result<(), CniError> {
        for action in actions {
            let started = std::time::Instant::now();
            self.apply(*action, names, req, record).await?;
            let micros = started.elapsed().as_micros();
            tracing::debug!(pod = %names.id, ?action, micros, "pod network step done");
        }
        Ok(())
    }
}

impl PodNetwork for NetlinkNetwork {
    async fn ensure_bridge(&self) -> Result<(), CniError> {
        let cfg = Arc::clone(&self.cfg);
        let (bridge, gw, prefix) = (cfg.bridge.clone(), cfg.gateway, cfg.subnet.prefix_len());
        netlink_in_netns(self.node_netns(), move |h| async move {
            links::ensure_bridge(&h, &bridge, gw, prefix).await
        })
        .await?;
        let rewrite_table = self.table_needs_rewrite(Instant::now());
        blocking_in_netns(self.node_netns(), move || {
            let path = "/proc/sys/net/ipv4/ip_forward";
            let on = std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
            if !on {
                std::fs::write(path, "1\n").map_err(|e| CniError::io("enable", path, e))?;
            }
            if rewrite_table {
                nft::ensure_table(&cfg)?;
            }
            Ok(())
        })
        .await?;
        if rewrite_table {
            *self.table_written.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        Ok(())
    }

    async fn setup_pod(&self, req: &PodNetRequest) -> Result<PodNetStatus, CniError> {
        validate_pod_id(&req.id)?;
        validate_netns_name(&req.netns_name)?;
        let names = self.names(&req.id, Some(&req.netns_name));
        let mut record = self.ipam.record(&req.id)?;
        let observed = self.observe_for_setup(req, &names, record.as_ref()).await?;
        let actions = plan_setup(&observed);
        self.execute(&actions, &names, Some(req), &mut record)
            .await?;
        let record = match record {
            Some(r) => r,
            None => self.ipam.record(&req.id)?.ok_or_else(|| {
                CniError::InvalidConfig(format!("pod {} lost its address record", req.id))
            })?,
        };
        Ok(self.status_of(&record))
    }

    async fn teardown_pod(&self, id: &str) -> Result<(), CniError> {
        validate_pod_id(id)?;
        let mut record = self.ipam.record(id)?;
        let names = self.names(id, record.as_ref().map(|r| r.netns_name.as_str()));
        let observed = self.observe_for_teardown(&names, record.as_ref()).await?;
        let actions = plan_teardown(&observed);
        self.execute(&actions, &names, None, &mut record).await
    }

    async fn gc(&self, known_ids: &BTreeSet<String>) -> Result<GcReport, CniError> {
        let records = self.ipam.records()?;
        let mut node = ObservedNode::default();
        for rec in &records {
            node.recorded_pods.insert(rec.id.clone());
            let names = self.names(&rec.id, Some(&rec.netns_name));
            node.owned_links.insert(names.host);
            node.owned_links.insert(names.temp);
            node.owned_netns.insert(rec.netns_name.clone());
            if known_ids.contains(&rec.id) {
                node.leased_ips.insert(rec.ip);
            }
        }
        let prefix = self.cfg.link_prefix.clone();
        node.links = netlink_in_netns(self.node_netns(), move |h| async move {
            links::links_with_prefix(&h, &prefix).await
        })
        .await?
        .into_iter()
        .map(|l| l.name)
        .collect();
        if !self.cfg.netns_prefix.is_empty() {
            node.netns_files = list_netns_files(&self.cfg.netns_dir, &self.cfg.netns_prefix)?
                .into_iter()
                .collect();
        }
        let table = self.cfg.nft_table.clone();
        node.published_ips =
            blocking_in_netns(self.node_netns(), move || nft::list_published(&table))
                .await?
                .into_iter()
                .map(|p| p.pod_ip)
                .collect();
        let mut report = GcReport::default();
        for action in plan_gc(known_ids, &node) {
            tracing::info!(?action, "pod network gc");
            let result = match &action {
                GcAction::TeardownPod(id) => self.teardown_pod(id).await,
                GcAction::DeleteLink(name) => {
                    let name = name.clone();
                    netlink_in_netns(self.node_netns(), move |h| async move {
                        links::delete_link(&h, &name).await
                    })
                    .await
                }
                GcAction::RemoveNetns(name) => remove_netns(&self.cfg.netns_dir, name),
                GcAction::UnpublishIp(ip) => {
                    let (table, ip) = (self.cfg.nft_table.clone(), *ip);
                    blocking_in_netns(self.node_netns(), move || nft::unpublish_ip(&table, ip))
                        .await
                }
            };
            match result {
                Ok(()) => report.actions.push(action),
                Err(err) => report.errors.push((action, err)),
            }
        }
        Ok(report)
    }

    fn pod_status(&self, id: &str) -> Result<Option<PodNetStatus>, CniError> {
        Ok(self.ipam.record(id)?.map(|r| self.status_of(&r)))
    }

    async fn inventory(&self) -> Result<NodeInventory, CniError> {
        let prefix = self.cfg.link_prefix.clone();
        let links = netlink_in_netns(self.node_netns(), move |h| async move {
            links::links_with_prefix(&h, &prefix).await
        })
        .await?
        .into_iter()
        .map(|l| l.name)
        .collect();
        let table = self.cfg.nft_table.clone();
        let published =
            blocking_in_netns(self.node_netns(), move || nft::list_published(&table)).await?;
        let netns_files = if self.cfg.netns_prefix.is_empty() {
            Vec::new()
        } else {
            list_netns_files(&self.cfg.netns_dir, &self.cfg.netns_prefix)?
        };
        Ok(NodeInventory {
            links,
            netns_files,
            netns_mounts: count_mounts_under(&self.cfg.netns_dir, &self.cfg.netns_prefix),
            leases: self.ipam.lease_count()?,
            records: self.ipam.records()?.into_iter().map(|r| r.id).collect(),
            published,
        })
    }
}

/// Namespace mounts inside `dir` whose file name starts with `prefix`.
fn count_mounts_under(dir: &Path, prefix: &str) -> usize {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let prefix = format!("{}/{prefix}", dir.display());
    info.lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|p| p.starts_with(&prefix))
                && line.contains(" nsfs ")
        })
        .count()
}

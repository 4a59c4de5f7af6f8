//! `FakeNetwork` (feature `fake`): an in-memory `PodNetwork` for the agent's fast tests. It
//! plans with the same pure planner and the same redb IPAM (in memory) as `NetlinkNetwork`, and
//! applies actions to a model of the node instead of the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use redb::Database;
use redb::backends::InMemoryBackend;

use crate::config::{
    NetworkConfig, PodNetRequest, PodNetStatus, host_link_name, temp_peer_name, validate_pod_id,
};
use crate::error::CniError;
use crate::files;
use crate::ipam::{Ipam, PodRecord};
use crate::netns::validate_netns_name;
use crate::nft::PublishedPort;
use crate::plan::{
    Action, GcAction, HostLinkState, ObservedNode, ObservedPod, PodIface, plan_gc, plan_setup,
    plan_teardown,
};
use crate::traits::{GcReport, NodeInventory, PodNetwork};

/// The modelled node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeState {
    pub bridge: bool,
    pub netns: BTreeSet<String>,
    /// Host links in the node namespace -> attached to the bridge.
    pub host_links: BTreeMap<String, bool>,
    /// Pod ends still in the node namespace under their temporary name.
    pub temp_in_node: BTreeSet<String>,
    /// Pod interface per namespace.
    pub pod_ifaces: BTreeMap<String, PodIface>,
    /// Pod file directories whose hosts/resolv.conf were written.
    pub files: BTreeSet<PathBuf>,
    pub published: Vec<PublishedPort>,
}

/// In-memory pod networking.
pub struct FakeNetwork {
    cfg: NetworkConfig,
    ipam: Ipam,
    state: Mutex<FakeState>,
    fail_after: Mutex<Option<Action>>,
}

impl FakeNetwork {
    /// A fake with its own in-memory database.
    pub fn new(cfg: NetworkConfig) -> Result<Self, CniError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(|e| CniError::store("create in-memory database", e))?;
        Self::with_db(cfg, crate::ipam::shared(db))
    }

    /// A fake over the given database (to model restarts).
    pub fn with_db(cfg: NetworkConfig, db: crate::ipam::SharedDb) -> Result<Self, CniError> {
        cfg.validate()?;
        let ipam = Ipam::open(db, cfg.subnet, cfg.gateway)?;
        Ok(FakeNetwork {
            cfg,
            ipam,
            state: Mutex::new(FakeState::default()),
            fail_after: Mutex::new(None),
        })
    }

    /// A copy of the modelled node.
    pub fn state(&self) -> FakeState {
        self.lock().clone()
    }

    /// Test hook: fail right after `action`, once.
    pub fn inject_failure_after(&self, action: Option<Action>) {
        *self.fail_after.lock().unwrap_or_else(|p| p.into_inner()) = action;
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status_of(&self, rec: &PodRecord) -> PodNetStatus {
        let (hosts_file, resolv_file) = files::paths(&rec.files_dir);
        PodNetStatus {
            ip: rec.ip,
            gateway: self.cfg.gateway,
            netns_path: self.cfg.netns_dir.join(&rec.netns_name),
            host_link: rec.host_link.clone(),
            hosts_file,
            resolv_file,
        }
    }

    fn observe(
        &self,
        id: &str,
        req: Option<&PodNetRequest>,
        rec: Option<&PodRecord>,
    ) -> ObservedPod {
        let st = self.lock();
        let host = host_link_name(&self.cfg.link_prefix, id);
        let temp = temp_peer_name(&self.cfg.link_prefix, id);
        let netns_name = req
            .map(|r| r.netns_name.clone())
            .or(rec.map(|r| r.netns_name.clone()));
        let netns = netns_name.as_ref().is_some_and(|n| st.netns.contains(n));
        let files_dir = req
            .map(|r| r.files_dir.clone())
            .or(rec.map(|r| r.files_dir.clone()));
        let ip = rec.map(|r| r.ip);
        let mut published: Vec<_> = st
            .published
            .iter()
            .filter(|p| Some(p.pod_ip) == ip)
            .map(|p| (p.protocol, p.host_port, p.container_port))
            .collect();
        published.sort();
        let mut wanted: Vec<_> = req
            .map(|r| {
                r.ports
                    .iter()
                    .map(|p| (p.protocol, p.host_port, p.container_port))
                    .collect()
            })
            .unwrap_or_default();
        wanted.sort();
        ObservedPod {
            record_current: match (req, rec) {
                (Some(q), Some(r)) => {
                    r.netns_name == q.netns_name
                        && r.hostname == q.hostname
                        && r.files_dir == q.files_dir
                        && r.ports == q.ports
                        && r.cluster_dns == q.cluster_dns
                        && r.hosts == q.hosts
                }
                _ => false,
            },
            record_exists: rec.is_some(),
            netns,
            netns_file: netns,
            host_link: st
                .host_links
                .get(&host)
                .map(|a| HostLinkState { attached: *a }),
            temp_peer_in_node: st.temp_in_node.contains(&temp),
            pod_iface: netns_name
                .and_then(|n| st.pod_ifaces.get(&n).copied())
                .unwrap_or_default(),
            files_current: rec.is_some()
                && files_dir.as_ref().is_some_and(|d| st.files.contains(d)),
            files_exist: files_dir.as_ref().is_some_and(|d| st.files.contains(d)),
            ports_current: rec.is_some() && published == wanted
                || rec.is_none() && wanted.is_empty(),
            ports_exist: !published.is_empty(),
        }
    }

    fn apply(
        &self,
        action: Action,
        id: &str,
        req: Option<&PodNetRequest>,
        rec: &mut Option<PodRecord>,
    ) -> Result<(), CniError> {
        let host = host_link_name(&self.cfg.link_prefix, id);
        let temp = temp_peer_name(&self.cfg.link_prefix, id);
        let netns = req
            .map(|r| r.netns_name.clone())
            .or(rec.as_ref().map(|r| r.netns_name.clone()))
            .unwrap_or_default();
        let missing = || CniError::InvalidConfig(format!("pod {id} has no address record"));
        if action == Action::Allocate {
            let req = req.ok_or_else(missing)?;
            *rec = Some(self.ipam.allocate(req, &host)?);
        } else if action == Action::Release {
            self.ipam.release(id)?;
        } else {
            let mut st = self.lock();
            match action {
                Action::CreateNetns => {
                    st.netns.insert(netns.clone());
                }
                Action::RemoveNetns => {
                    st.netns.remove(&netns);
                    st.pod_ifaces.remove(&netns);
                }
                Action::DeleteHostLink => {
                    st.host_links.remove(&host);
                    st.temp_in_node.remove(&temp);
                    st.pod_ifaces.remove(&netns);
                }
                Action::CreateVeth => {
                    st.host_links.insert(host.clone(), false);
                    st.pod_ifaces.insert(netns.clone(), PodIface::TempName);
                }
                Action::MovePeerToNetns => {
                    st.temp_in_node.remove(&temp);
                    st.pod_ifaces.insert(netns.clone(), PodIface::TempName);
                }
                Action::AttachHostLink => {
                    if !st.bridge {
                        return Err(CniError::LinkNotFound {
                            name: self.cfg.bridge.clone(),
                            place: " (call ensure_bridge first)".into(),
                        });
                    }
                    st.host_links.insert(host.clone(), true);
                }
                Action::ConfigurePodIface => {
                    st.pod_ifaces
                        .insert(netns.clone(), PodIface::Eth0 { configured: true });
                }
                Action::WriteFiles => {
                    st.files
                        .insert(rec.as_ref().ok_or_else(missing)?.files_dir.clone());
                }
                Action::RemoveFiles => {
                    if let Some(r) = rec.as_ref() {
                        st.files.remove(&r.files_dir);
                    }
                }
                Action::PublishPorts => {
                    let r = rec.as_ref().ok_or_else(missing)?;
                    st.published.retain(|p| p.pod_ip != r.ip);
                    st.published.extend(r.ports.iter().map(|p| PublishedPort {
                        protocol: p.protocol,
                        host_port: p.host_port,
                        pod_ip: r.ip,
                        container_port: p.container_port,
                    }));
                }
                Action::UnpublishPorts => {
                    if let Some(ip) = rec.as_ref().map(|r| r.ip) {
                        st.published.retain(|p| p.pod_ip != ip);
                    }
                }
                Action::Allocate | Action::Release => {}
            }
        }
        let mut armed = self.fail_after.lock().unwrap_or_else(|p| p.into_inner());
        if *armed == Some(action) {
            *armed = None;
            return Err(CniError::Injected {
                step: format!("{action:?}"),
            });
        }
        Ok(())
    }

    fn teardown_now(&self, id: &str) -> Result<(), CniError> {
        let mut rec = self.ipam.record(id)?;
        let observed = self.observe(id, None, rec.as_ref());
        for action in plan_teardown(&observed) {
            self.apply(action, id, None, &mut rec)?;
        }
        Ok(())
    }
}

impl PodNetwork for FakeNetwork {
    async fn ensure_bridge(&self) -> Result<(), CniError> {
        self.lock().bridge = true;
        Ok(())
    }

    async fn setup_pod(&self, req: &PodNetRequest) -> Result<PodNetStatus, CniError> {
        validate_pod_id(&req.id)?;
        validate_netns_name(&req.netns_name)?;
        let mut rec = self.ipam.record(&req.id)?;
        let observed = self.observe(&req.id, Some(req), rec.as_ref());
        for action in plan_setup(&observed) {
            self.apply(action, &req.id, Some(req), &mut rec)?;
        }
        let rec =
            rec.ok_or_else(|| CniError::InvalidConfig(format!("pod {} lost its record", req.id)))?;
        Ok(self.status_of(&rec))
    }

    async fn teardown_pod(&self, id: &str) -> Result<(), CniError> {
        validate_pod_id(id)?;
        self.teardown_now(id)
    }

    async fn gc(&self, known_ids: &BTreeSet<String>) -> Result<GcReport, CniError> {
        let mut node = ObservedNode::default();
        for rec in self.ipam.records()? {
            node.recorded_pods.insert(rec.id.clone());
            node.owned_links
                .insert(host_link_name(&self.cfg.link_prefix, &rec.id));
            node.owned_links
                .insert(temp_peer_name(&self.cfg.link_prefix, &rec.id));
            node.owned_netns.insert(rec.netns_name.clone());
            if known_ids.contains(&rec.id) {
                node.leased_ips.insert(rec.ip);
            }
        }
        {
            let st = self.lock();
            node.links = st
                .host_links
                .keys()
                .chain(st.temp_in_node.iter())
                .cloned()
                .collect();
            node.netns_files = st
                .netns
                .iter()
                .filter(|n| {
                    !self.cfg.netns_prefix.is_empty() && n.starts_with(&self.cfg.netns_prefix)
                })
                .cloned()
                .collect();
            node.published_ips = st.published.iter().map(|p| p.pod_ip).collect();
        }
        let mut report = GcReport::default();
        for action in plan_gc(known_ids, &node) {
            let result = match &action {
                GcAction::TeardownPod(id) => self.teardown_now(id),
                GcAction::DeleteLink(name) => {
                    let mut st = self.lock();
                    st.host_links.remove(name);
                    st.temp_in_node.remove(name);
                    Ok(())
                }
                GcAction::RemoveNetns(name) => {
                    let mut st = self.lock();
                    st.netns.remove(name);
                    st.pod_ifaces.remove(name);
                    Ok(())
                }
                GcAction::UnpublishIp(ip) => {
                    self.lock().published.retain(|p| p.pod_ip != *ip);
                    Ok(())
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
        let st = self.lock();
        let netns_files: Vec<String> = st
            .netns
            .iter()
            .filter(|n| n.starts_with(&self.cfg.netns_prefix))
            .cloned()
            .collect();
        Ok(NodeInventory {
            links: st
                .host_links
                .keys()
                .chain(st.temp_in_node.iter())
                .cloned()
                .collect(),
            netns_mounts: netns_files.len(),
            netns_files,
            leases: self.ipam.lease_count()?,
            records: self.ipam.records()?.into_iter().map(|r| r.id).collect(),
            published: st.published.clone(),
        })
    }
}

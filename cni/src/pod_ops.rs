//! NetlinkNetwork's per-pod half: observe one pod, then apply planned actions one by one.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{PodNetRequest, PodNetStatus, host_link_name, temp_peer_name};
use crate::error::CniError;
use crate::files;
use crate::ipam::PodRecord;
use crate::links;
use crate::netlink_network::NetlinkNetwork;
use crate::netns::{create_netns, is_netns_mount, remove_netns};
use crate::nft;
use crate::nsthread::{blocking_in_netns, netlink_in_netns};
use crate::plan::{Action, HostLinkState, ObservedPod, PodIface};

/// The names one pod's resources carry.
#[derive(Debug, Clone)]
pub(crate) struct PodNames {
    pub id: String,
    pub host: String,
    pub temp: String,
    pub netns_path: Option<PathBuf>,
}

impl NetlinkNetwork {
    pub(crate) fn names(&self, id: &str, netns_name: Option<&str>) -> PodNames {
        let prefix = &self.cfg.link_prefix;
        PodNames {
            id: id.to_owned(),
            host: host_link_name(prefix, id),
            temp: temp_peer_name(prefix, id),
            netns_path: netns_name.map(|n| self.cfg.netns_dir.join(n)),
        }
    }

    pub(crate) fn status_of(&self, rec: &PodRecord) -> PodNetStatus {
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

    /// Host link and temporary peer as seen in the node namespace.
    async fn observe_node_links(
        &self,
        names: &PodNames,
    ) -> Result<(Option<HostLinkState>, bool), CniError> {
        let (host, temp, bridge) = (
            names.host.clone(),
            names.temp.clone(),
            self.cfg.bridge.clone(),
        );
        netlink_in_netns(self.node_netns(), move |h| async move {
            let bridge = links::find_link(&h, &bridge).await?;
            let host = links::find_link(&h, &host).await?.map(|l| HostLinkState {
                attached: l.up && bridge.is_some_and(|b| l.controller == Some(b.index)),
            });
            let temp = links::find_link(&h, &temp).await?.is_some();
            Ok((host, temp))
        })
        .await
    }

    pub(crate) async fn observe_for_setup(
        &self,
        req: &PodNetRequest,
        names: &PodNames,
        record: Option<&PodRecord>,
    ) -> Result<ObservedPod, CniError> {
        let netns_path = names.netns_path.clone().unwrap_or_default();
        let netns = is_netns_mount(&netns_path);
        let record_current = record.is_some_and(|r| {
            r.netns_name == req.netns_name
                && r.hostname == req.hostname
                && r.files_dir == req.files_dir
                && r.ports == req.ports
                && r.cluster_dns == req.cluster_dns
                && r.hosts == req.hosts
                && r.host_link == names.host
        });
        let (host_link, temp_peer_in_node) = self.observe_node_links(names).await?;
        let mut pod_iface = PodIface::Absent;
        if netns && host_link.is_some() && !temp_peer_in_node {
            let ip = record.map(|r| r.ip).unwrap_or(Ipv4Addr::UNSPECIFIED);
            let (temp, gw) = (names.temp.clone(), self.cfg.gateway);
            pod_iface = netlink_in_netns(Some(&netns_path), move |h| async move {
                links::inspect_pod_iface(&h, &temp, ip, gw).await
            })
            .await?;
        }
        let files_current = record.is_some_and(|r| {
            let wanted = files::wanted(
                &req.hostname,
                &req.hosts,
                r.ip,
                &self.cfg.resolv_conf_source,
                req.cluster_dns.as_ref().map(|d| (d, self.cfg.gateway)),
            );
            files::current(&req.files_dir, &wanted)
        });
        let ports_current = match record {
            None => req.ports.is_empty(),
            Some(r) if r.ports.is_empty() && req.ports.is_empty() => true,
            Some(r) => {
                let (table, ip) = (self.cfg.nft_table.clone(), r.ip);
                let mut have: Vec<_> =
                    blocking_in_netns(self.node_netns(), move || nft::list_published(&table))
                        .await?
                        .into_iter()
                        .filter(|p| p.pod_ip == ip)
                        .map(|p| (p.protocol, p.host_port, p.container_port))
                        .collect();
                let mut want: Vec<_> = req
                    .ports
                    .iter()
                    .map(|p| (p.protocol, p.host_port, p.container_port))
                    .collect();
                have.sort();
                want.sort();
                have == want
            }
        };
        Ok(ObservedPod {
            record_current,
            record_exists: record.is_some(),
            netns,
            netns_file: netns_path.exists(),
            host_link,
            temp_peer_in_node,
            pod_iface,
            files_current,
            files_exist: files::exist(&req.files_dir),
            ports_current,
            ports_exist: false,
        })
    }

    pub(crate) async fn observe_for_teardown(
        &self,
        names: &PodNames,
        record: Option<&PodRecord>,
    ) -> Result<ObservedPod, CniError> {
        let (host_link, temp_peer_in_node) = self.observe_node_links(names).await?;
        let netns_file = names.netns_path.as_ref().is_some_and(|p| p.exists());
        Ok(ObservedPod {
            record_exists: record.is_some(),
            netns: netns_file,
            netns_file,
            host_link,
            temp_peer_in_node,
            files_exist: record.is_some_and(|r| files::exist(&r.files_dir)),
            ports_exist: record.is_some_and(|r| !r.ports.is_empty()),
            ..ObservedPod::default()
        })
    }

    /// Applies one action. `record` is filled by `Allocate` and read by later steps.
    pub(crate) async fn apply(
        &self,
        action: Action,
        names: &PodNames,
        req: Option<&PodNetRequest>,
        record: &mut Option<PodRecord>,
    ) -> Result<(), CniError> {
        let cfg = Arc::clone(&self.cfg);
        let node = self.node_netns().map(PathBuf::from);
        let netns_path = names.netns_path.clone().unwrap_or_default();
        let need_record = |r: &Option<PodRecord>| {
            r.clone().ok_or_else(|| {
                CniError::InvalidConfig(format!("pod {} has no address record", names.id))
            })
        };
        match action {
            Action::Allocate => {
                let req = req
                    .ok_or_else(|| CniError::InvalidConfig("allocate without a request".into()))?;
                let ipam = self.ipam.clone();
                let (req, host) = (req.clone(), names.host.clone());
                *record = Some(spawn_blocking(move || ipam.allocate(&req, &host)).await?);
            }
            Action::CreateNetns => {
                let (dir, name) = split(&netns_path)?;
                spawn_blocking(move || create_netns(&dir, &name).map(drop)).await?;
            }
            Action::RemoveNetns => {
                let (dir, name) = split(&netns_path)?;
                spawn_blocking(move || remove_netns(&dir, &name)).await?;
            }
            Action::DeleteHostLink => {
                let (host, temp) = (names.host.clone(), names.temp.clone());
                netlink_in_netns(node.as_deref(), move |h| async move {
                    links::delete_link(&h, &host).await?;
                    links::delete_link(&h, &temp).await
                })
                .await?;
            }
            Action::CreateVeth => {
                let (host, temp) = (names.host.clone(), names.temp.clone());
                netlink_in_netns(node.as_deref(), move |h| async move {
                    links::create_veth(&h, &host, &temp, &netns_path).await
                })
                .await?;
            }
            Action::MovePeerToNetns => {
                let temp = names.temp.clone();
                netlink_in_netns(node.as_deref(), move |h| async move {
                    links::move_to_netns(&h, &temp, &netns_path).await
                })
                .await?;
            }
            Action::AttachHostLink => {
                let (host, bridge) = (names.host.clone(), cfg.bridge.clone());
                netlink_in_netns(node.as_deref(), move |h| async move {
                    links::attach_to_bridge(&h, &host, &bridge).await
                })
                .await?;
            }
            Action::ConfigurePodIface => {
                let rec = need_record(record)?;
                let (temp, prefix, gw) = (names.temp.clone(), cfg.subnet.prefix_len(), cfg.gateway);
                netlink_in_netns(Some(&netns_path), move |h| async move {
                    links::configure_pod_iface(&h, &temp, rec.ip, prefix, gw).await
                })
                .await?;
            }
            Action::WriteFiles => {
                let rec = need_record(record)?;
                // The request's resolver settings (what `files_current` compared with) win
                // over the record's, which may predate them.
                let dns = req
                    .map(|r| r.cluster_dns.as_ref())
                    .unwrap_or(rec.cluster_dns.as_ref());
                let hosts = req.map(|r| &r.hosts).unwrap_or(&rec.hosts);
                let wanted = files::wanted(
                    &rec.hostname,
                    hosts,
                    rec.ip,
                    &cfg.resolv_conf_source,
                    dns.map(|d| (d, cfg.gateway)),
                );
                files::write(&rec.files_dir, &wanted)?;
            }
            Action::RemoveFiles => {
                if let Some(rec) = record.as_ref() {
                    files::remove(&rec.files_dir)?;
                }
            }
            Action::PublishPorts => {
                let rec = need_record(record)?;
                blocking_in_netns(node.as_deref(), move || {
                    // The table normally exists (ensure_bridge); create it only if missing.
                    nft::publish(&cfg, rec.ip, &rec.ports).or_else(|_| {
                        nft::ensure_table(&cfg)?;
                        nft::publish(&cfg, rec.ip, &rec.ports)
                    })
                })
                .await?;
            }
            Action::UnpublishPorts => {
                if let Some(ip) = record.as_ref().map(|r| r.ip) {
                    blocking_in_netns(node.as_deref(), move || {
                        nft::unpublish_ip(&cfg.nft_table, ip)
                    })
                    .await?;
                }
            }
            Action::Release => {
                let (ipam, id) = (self.ipam.clone(), names.id.clone());
                spawn_blocking(move || ipam.release(&id)).await?;
            }
        }
        self.check_injected_failure(action)
    }
}

fn split(path: &std::path::Path) -> Result<(PathBuf, String), CniError> {
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| CniError::InvalidConfig(format!("bad netns path {}", path.display())))?;
    Ok((dir, name))
}

async fn spawn_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| CniError::ThreadPanicked {
            what: "blocking task".into(),
        })?
}

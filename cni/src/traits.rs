//! The `PodNetwork` boundary the agent drives: `NetlinkNetwork` is the real one, `FakeNetwork`
//! (feature `fake`) the in-memory one. Both plan with the same pure planner.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use crate::config::{PodNetRequest, PodNetStatus};
use crate::error::CniError;
use crate::nft::PublishedPort;
use crate::plan::GcAction;

/// What gc found and did.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Every orphan it acted on, in order.
    pub actions: Vec<GcAction>,
    /// Orphans it could not remove (it keeps going; the next gc tries again).
    pub errors: Vec<(GcAction, CniError)>,
}

/// What reconcile did: gc of everything unexpected, then setup of every expected pod.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    pub gc: GcReport,
    pub ready: BTreeMap<String, PodNetStatus>,
    pub failed: BTreeMap<String, CniError>,
}

/// Everything of ours that exists on the node (for leak checks and `describe node`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInventory {
    /// Links in the node namespace named with our link prefix.
    pub links: Vec<String>,
    /// Files in the netns directory named with our netns prefix (mounted or not).
    pub netns_files: Vec<String>,
    /// Namespace mounts under the netns directory.
    pub netns_mounts: usize,
    /// IPAM leases and pod records.
    pub leases: usize,
    pub records: Vec<String>,
    /// Host port map elements.
    pub published: Vec<PublishedPort>,
}

impl NodeInventory {
    /// True when nothing of ours is left.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.netns_files.is_empty()
            && self.netns_mounts == 0
            && self.leases == 0
            && self.records.is_empty()
            && self.published.is_empty()
    }
}

/// Pod networking on one node. Every method is idempotent and keeps no state in memory that
/// matters: a new instance over the same database picks up where a killed one stopped.
pub trait PodNetwork: Send + Sync {
    /// The node side: bridge with the gateway address, ip_forward, our nftables table.
    fn ensure_bridge(&self) -> impl Future<Output = Result<(), CniError>> + Send;

    /// Wires one pod (or completes a half-wired one) and returns what it got.
    fn setup_pod(
        &self,
        req: &PodNetRequest,
    ) -> impl Future<Output = Result<PodNetStatus, CniError>> + Send;

    /// Removes everything of one pod and frees its address. Unknown pods are fine.
    fn teardown_pod(&self, id: &str) -> impl Future<Output = Result<(), CniError>> + Send;

    /// Tears down recorded pods not in `known_ids` and removes resources with our prefixes that
    /// no pod owns.
    fn gc(
        &self,
        known_ids: &BTreeSet<String>,
    ) -> impl Future<Output = Result<GcReport, CniError>> + Send;

    /// The recorded status of a pod (no system calls).
    fn pod_status(&self, id: &str) -> Result<Option<PodNetStatus>, CniError>;

    /// What of ours exists on the node.
    fn inventory(&self) -> impl Future<Output = Result<NodeInventory, CniError>> + Send;

    /// ensure_bridge, gc of everything not expected, then setup of every expected pod (which
    /// completes partial ones). One pod failing does not stop the others.
    fn reconcile(
        &self,
        expected: &[PodNetRequest],
    ) -> impl Future<Output = Result<ReconcileReport, CniError>> + Send {
        async move {
            self.ensure_bridge().await?;
            let known: BTreeSet<String> = expected.iter().map(|r| r.id.clone()).collect();
            let mut report = ReconcileReport {
                gc: self.gc(&known).await?,
                ..ReconcileReport::default()
            };
            for req in expected {
                match self.setup_pod(req).await {
                    Ok(status) => {
                        report.ready.insert(req.id.clone(), status);
                    }
                    Err(err) => {
                        report.failed.insert(req.id.clone(), err);
                    }
                }
            }
            Ok(report)
        }
    }
}

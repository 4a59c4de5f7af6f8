//! skiff-cni: pod networking on one node, driven by the agent; knows nothing of gossip or manifests.
//!
//! Code map:
//! - `netns` owns per-pod network namespaces (create without forking, remove, list).
//! - `config` holds the node config, the pod request/status types and derived link names.
//! - `plan` is the pure planner: observed pod/node state in, idempotent actions out.
//! - `netlink_network` + `pod_ops` execute plans for real (`NetlinkNetwork`); `fake` does it in
//!   memory (`FakeNetwork`, feature `fake`); both implement `traits::PodNetwork`.
//! - `routes` converges routes to other nodes' pod subnets (own route protocol number).
//! - `links` (netlink calls), `nft` (all nftables), `ipam` (redb leases), `files` (hosts,
//!   resolv.conf), `nsthread` (work inside a namespace on a dedicated OS thread).
//! - `error` holds `CniError`, the one error type.
//!
//! How the agent drives it: `NetlinkNetwork::new(cfg, db)` once; `ensure_bridge()` at start
//! (cheap afterwards: the nftables table is rewritten at most once a minute per instance);
//! `setup_pod(&PodNetRequest)` before starting a pod's containers (join `netns_path`, bind-mount
//! `hosts_file` / `resolv_file`, set the hostname); `teardown_pod(id)` after they are gone;
//! `reconcile(&expected)` (or `gc(&known_ids)`) after a restart and periodically;
//! `ensure_peer_routes(&routes)` when other nodes' pod subnets change.
//!
//! Invariants: the IPAM record is written before any resource of a pod exists and removed after
//! the last one is gone, so gc can always attribute what it finds; no call depends on in-process
//! state, so a killed agent leaves pods untouched and a new instance converges.

pub mod config;
pub mod conntrack;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod files;
pub mod ipam;
pub mod links;
pub mod netlink_network;
pub mod netns;
pub mod nft;
pub mod nft_session;
mod nsthread;
pub mod plan;
mod pod_ops;
pub mod routes;
pub mod traits;

pub use config::{
    ClusterDns, DnsBase, HostPortMapping, NetworkConfig, PodHosts, PodNetRequest, PodNetStatus,
    Protocol,
};
pub use error::CniError;
pub use netlink_network::NetlinkNetwork;
pub use netns::{NetnsConfig, create_netns, list_netns, remove_netns};
pub use nsthread::tcp_socket_in;
pub use plan::Action;
pub use routes::PeerRoute;
pub use traits::{GcReport, NodeInventory, PodNetwork, ReconcileReport};

//! skiff-cni: pod networking on one node, driven by the agent; knows nothing of gossip or manifests.
//!
//! Code map:
//! - `netns` owns per-pod network namespaces (create without forking, remove, list).
//! - `nsthread` runs netlink work inside a namespace on a dedicated OS thread.
//! - `error` holds `CniError`, the one error type.

pub mod error;
pub mod netns;
#[allow(dead_code)] // used by the pod network executor, next commit
mod nsthread;

pub use error::CniError;
pub use netns::{NetnsConfig, create_netns, list_netns, remove_netns};

//! skiff-runtime: images (store, import, registry pull, layer unpack) and containers run through
//! libcontainer from a per-container shim process. Knows nothing of gossip or manifests.

pub mod container;
pub mod image;

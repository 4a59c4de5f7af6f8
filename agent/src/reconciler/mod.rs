//! The node reconciler: pure decisions (`plan`, `backoff`) and the executor that applies them.

pub mod backoff;
pub mod container;
pub mod plan;
pub mod sandbox;
pub mod security;

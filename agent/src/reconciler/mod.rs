//! The node reconciler: pure decisions (`plan`, `outcome`, `backoff`) and the executor that applies them.

pub mod backoff;
pub mod container;
pub mod expand;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod sandbox;
pub mod security;
pub mod storage;

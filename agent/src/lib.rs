//! skiff-agent: the node daemon and the CLI.
//!
//! Code map:
//! - `config`: defaults, TOML file, flags.
//! - `watcher`: the manifests directory, debounced into file events.
//! - `desired`: manifest files -> desired objects -> the pods this node should run (pure).
//! - `pod`: pod records and container status, persisted in `store`.
//! - `reconciler`: pure `observe`/`plan` per pod, and the executor that carries out actions
//!   on `skiff-runtime` (containers, images) and `skiff-cni` (network namespaces).
//! - `cluster`: replicated desired objects, leader scheduling, assignments, pod reports.
//! - `agent`: the service that owns the state and runs the loop; `api`: the local socket;
//!   `rlimit`: the agent's own open-files limit.
//! - `cli`: the `skiff` command line; `cli::output` is the only place that prints.

pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod desired;
pub mod dev;
pub mod events;
pub mod jobs;
pub mod memory;
pub mod pod;
pub mod reconciler;
pub mod render;
pub mod rlimit;
pub mod scheduler;
pub mod services;
pub mod shim;
pub mod store;
pub mod watcher;

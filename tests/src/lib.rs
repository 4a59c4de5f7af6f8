//! skiff-tests: multi-node scenarios and shared test helpers.
//!
//! - [`bed`]: a network-namespace test bed (hub bridge, one namespace per node, 198.18.0.0/15,
//!   no default route, no NAT) removed by a guard, with a sweep of leftovers by run id.
//! - [`agent`]: real `skiff agent` processes inside the bed's namespaces, and their node lists.
//! - [`cluster`]: a started cluster of agents and waits on what every node reports.
//! - [`poll`]: deadline-bounded waiting for a condition (from `skiff-test-support`).
//! - [`pods`]: real workloads: the test image, manifests, the API's JSON, cluster-wide pods.
//! - [`web`]: the `web` Deployment on a five-node cluster with real pods, for the `cluster_*`
//!   scenarios.
//! - [`cleanup`]: removing everything a run made (processes, mounts, namespaces, cgroups), on
//!   top of `skiff-test-support`, which the agent's single-node harness shares.

pub mod agent;
pub mod bed;
pub mod cleanup;
pub mod cluster;
pub mod pods;
pub mod web;

/// Deadline-bounded polling (shared with the agent's end-to-end tests).
pub use skiff_test_support::poll;

//! skiff-tests: multi-node scenarios and shared test helpers.
//!
//! - [`bed`]: a network-namespace test bed (hub bridge, one namespace per node, 198.18.0.0/15,
//!   no default route, no NAT) removed by a guard, with a sweep of leftovers by run id.
//! - [`agent`]: real `skiff agent` processes inside the bed's namespaces, and their node lists.
//! - [`cluster`]: a started cluster of agents and waits on what every node reports.
//! - [`poll`]: deadline-bounded waiting for a condition.

pub mod agent;
pub mod bed;
pub mod cluster;
pub mod poll;

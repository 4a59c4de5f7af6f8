//! skiff-test-support: what both end-to-end harnesses (the agent's single-node tests in
//! `agent/tests/support/` and the multi-node scenarios in `skiff-tests`) need from the host.
//!
//! - [`proc`]: process identity (pid + start time), signals, processes by command line.
//! - [`cleanup`]: removing everything a test node made (processes, mounts, network namespaces,
//!   cgroups, its temp dir), listing what is left, and what a reboot does to a node.
//! - [`poll`]: deadline-bounded waiting, the only way these tests wait for a change.
//! - [`process`]: a `skiff agent` child process with its log file: kill -9, SIGTERM and wait.
//! - [`image`]: the busybox test image archive.
//! - [`net`]: `ip` and commands inside a network namespace.
//! - [`api`]: one request on an agent's API socket.
//!
//! Everything here runs as root against the real host; nothing here knows the agent's types.

pub mod api;
pub mod cleanup;
pub mod image;
pub mod net;
pub mod poll;
pub mod proc;
pub mod process;

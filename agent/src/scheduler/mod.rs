//! The cluster scheduler, run by the leader: a pure function from nodes, desired workloads,
//! the previous assignment table and the pods nodes report to the full new table plus the
//! pods that have no place and why. No IO, no clock: `now` is a parameter.
//!
//! Code map:
//! - `input`: the types going in and out (the table entries are what the leader publishes
//!   in `sched/assign/<node>`), and workloads built from validated objects.
//! - `plan` (+ `place`): the pass: keep what may stay, then place what needs a place.
//! - `reason`: node fit checks and the `0/3 nodes: 2 insufficient memory, 1 cordoned` text.
//!
//! Invariants: the same input gives the same output (sorted); a pod that may stay is never
//! moved; no node gets more than its allocatable cpu, memory and pod count through new pods.

mod input;
mod plan;
mod reason;

pub use input::{
    Allocatable, JobMark, JobPodEnd, NodeCondition, NodeTaint, Pending, Placement, ReportedPod,
    Resources, SchedInput, SchedNode, SchedOutput, Share, Workload, WorkloadKind,
    workloads_from_objects,
};
pub use plan::{node_gone, schedule};
pub use reason::{MAX_PODS_PER_NODE, Misfit, Tally};

#[cfg(test)]
mod tests;

//! Removing everything one test run made (see `skiff_test_support::cleanup`): processes in
//! the run's cgroups, in its network namespaces or naming its temp dir (agents, shims,
//! containers), mounts under the temp dir, every network namespace whose name starts with the
//! run id (nodes, hub, pods), the temp dir, and the run's cgroup dirs in every hierarchy.

pub use skiff_test_support::cleanup::{Footprint, netns_with_prefix, simulate_reboot};
use std::path::Path;

/// Kills, unmounts and removes everything of run `run_id` (temp dir `dir`; namespaces
/// `<run_id>-...`; cgroups `<hierarchy>/<run_id>`).
pub fn purge(run_id: &str, dir: &Path) {
    remove_node(dir, run_id, &format!("{run_id}-"));
}

/// Removes what an agent (killed or not) made: every process in the cgroups at `cgroup_parent`
/// (relative to each hierarchy), in network namespaces starting with `netns_prefix` or naming
/// `dir`; the mounts under `dir`, those namespaces, the cgroup dirs, and `dir` itself.
pub fn remove_node(dir: &Path, cgroup_parent: &str, netns_prefix: &str) {
    skiff_test_support::cleanup::clean(Footprint {
        dir,
        cgroup_parent,
        netns_prefix,
    });
}

/// Every live process of a node (this one excepted): in the cgroups at `cgroup_parent`, in
/// network namespaces starting with `netns_prefix`, or naming `dir` on its command line.
pub fn node_pids(dir: &Path, cgroup_parent: &str, netns_prefix: &str) -> Vec<i32> {
    skiff_test_support::cleanup::node_pids(Footprint {
        dir,
        cgroup_parent,
        netns_prefix,
    })
}

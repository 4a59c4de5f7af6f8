//! Cleanup of test agents, from the shared test-support crate (removing what a node made,
//! listing leftovers), plus the sweep of agents whose test process died (`/tmp/sk-<tag>`).

use skiff_test_support::cleanup::Footprint;
// Not every test binary uses every one.
#[allow(unused_imports)]
pub use skiff_test_support::cleanup::{
    Leftovers, cgroup_pids, clean, mounts_under, netns_with_prefix, owner_is_gone, write_owner,
};
use std::path::Path;

/// What is left of the agent with dir `dir`, cgroup parent `cgroup_parent` and network
/// namespaces starting with `netns_prefix`.
pub fn leftovers(dir: &Path, cgroup_parent: &str, netns_prefix: &str) -> Leftovers {
    skiff_test_support::cleanup::leftovers(Footprint {
        dir,
        cgroup_parent,
        netns_prefix,
    })
}

/// Removes what test agents of dead test processes left behind (a test process killed by a
/// timeout runs no drop guard): every `/tmp/sk-<tag>` whose owner is gone, with its cgroups
/// (`/skiff-t-<tag>`) and network namespaces (`t<tag>...`); its agent, if it still runs, names
/// the dir and is killed with the rest.
pub fn sweep_dead_owners() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(tag) = name.strip_prefix("sk-") else {
            continue;
        };
        if tag.len() != 6 || !tag.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        if !owner_is_gone(&e.path()) {
            continue;
        }
        let left = clean(Footprint {
            dir: &e.path(),
            cgroup_parent: &format!("/skiff-t-{tag}"),
            netns_prefix: &format!("t{tag}"),
        });
        if !left.is_empty() {
            eprintln!("sweeping {}: left {left:?}", e.path().display());
        }
    }
}

//! Processes as the tests see them: identity and signals (from the shared test-support crate),
//! and the container records the runtime keeps in the run dir.

use std::path::Path;

pub use skiff_test_support::proc::*;

/// The running container whose id starts with `id_prefix` (`<pod uid>-c<index>-`), from the
/// runtime's `running.json` (no `exit.json` yet) and checked alive in /proc.
pub fn running_container(state_root: &Path, id_prefix: &str) -> Option<ProcessId> {
    let dir = state_root.join("containers");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).ok()?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(id_prefix) || entry.path().join("exit.json").exists() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("running.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let id = ProcessId {
            pid: v["init_pid"].as_i64().unwrap_or(0) as i32,
            start_ticks: v["init_start_ticks"].as_u64().unwrap_or(0),
        };
        if id.alive() {
            found.push(id);
        }
    }
    (found.len() == 1).then(|| found[0])
}

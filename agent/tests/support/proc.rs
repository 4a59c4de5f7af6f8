//! Processes as the tests see them: signals, identity (pid + start time, so pid reuse cannot
//! fool a "same process" check), and the container records the runtime keeps in the run dir.

use std::path::Path;

/// A process identity: pid and start time in clock ticks since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub start_ticks: u64,
}

impl ProcessId {
    /// True while this very process lives (not a zombie).
    pub fn alive(&self) -> bool {
        stat(self.pid)
            .is_some_and(|(state, ticks)| ticks == self.start_ticks && state != 'Z' && state != 'X')
    }
}

/// State letter and start ticks from `/proc/<pid>/stat`.
pub fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

pub fn identify(pid: i32) -> Option<ProcessId> {
    stat(pid).map(|(_, start_ticks)| ProcessId { pid, start_ticks })
}

/// Sends a signal, ignoring errors (the process may be gone).
pub fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::try_from(sig).ok(),
        );
    }
}

/// Pids whose command line mentions `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

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

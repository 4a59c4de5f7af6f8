//! Processes as the tests see them: identity (pid + start time, so pid reuse cannot fool a
//! "same process" check), liveness, signals, and processes found by their command line.

use nix::sys::signal::Signal;

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

/// The identity of the process `pid` now, if it exists.
pub fn identify(pid: i32) -> Option<ProcessId> {
    stat(pid).map(|(_, start_ticks)| ProcessId { pid, start_ticks })
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Sends signal number `sig`, ignoring errors (the process may be gone).
pub fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::try_from(sig).ok());
    }
}

/// SIGKILL, ignoring errors.
pub fn kill9(pid: i32) {
    signal(pid, Signal::SIGKILL as i32);
}

/// Pids (this process excepted) whose command line contains `needle`.
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
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

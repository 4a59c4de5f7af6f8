//! Containers: OCI bundles, the per-container shim, logs, exit status.
//!
//! Code map:
//! - [`spec`]: `ContainerSpec`, what the agent decides; [`oci`] turns it into config.json,
//!   [`user`] resolves the user against the image, [`rootfs`] mounts the overlay,
//!   [`security`] confines the process (capabilities, [`seccomp`] filter, masked paths).
//! - [`shim`]: the single-threaded `skiff shim` process that owns one container for its life;
//!   its `exec` step runs a process in a running container, speaking the frames of [`exec`].
//! - [`shim_runtime`]: `ShimRuntime`, the agent's side: spawns shims, reads their records,
//!   signals and removes containers. `fake` (feature `fake`) is an in-memory stand-in.
//! - [`layout`]: the state dir and the records shim and runtime share; [`process`]: pid
//!   identity (start times, pidfds); [`cgroup`]: OOM detection and cgroup cleanup.
//! - [`log`]: reading and following CRI-format logs across rotations.
//!
//! Invariants: the agent never calls libcontainer create/start itself (only the shim does);
//! a container's state dir exists from `start` until `remove`; `exit.json` is written once,
//! atomically, after the shim cleaned up the mount and cgroups; logs outlive `remove`.

pub mod cgroup;
pub mod error;
pub mod exec;
#[cfg(feature = "fake")]
pub mod fake;
pub mod layout;
pub mod log;
pub mod oci;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod shim;
pub mod shim_runtime;
pub mod spec;
pub mod time;
pub mod user;

use std::time::SystemTime;

pub use error::{ContainerError, LogError};
#[cfg(feature = "fake")]
pub use fake::FakeRuntime;
pub use log::{LogFollower, LogLine, Stream, follow_log, read_log};
pub use shim::shim_main;
pub use shim_runtime::{ShimRuntime, ShimRuntimeConfig};
pub use spec::{
    BindMount, ContainerSpec, LogConfig, ProcessSpec, Resources, Seccomp, SecuritySpec,
};

/// What `start` returns once the container's main process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedContainer {
    /// Host pid of the container's init (its main process).
    pub pid: i32,
    pub shim_pid: i32,
    pub started_at: SystemTime,
}

/// What the runtime knows about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Running {
        pid: i32,
        started_at: SystemTime,
    },
    Exited {
        /// Exit status; 128 + signal when killed by a signal; 128 when the start failed.
        exit_code: i32,
        signal: Option<i32>,
        oom_killed: bool,
        /// `None` when the container never started.
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
        /// `Completed`, `Error`, `OOMKilled` or `StartError`.
        reason: String,
        /// Why the start failed (`StartError` only).
        message: Option<String>,
    },
    /// The state dir exists but neither a shim nor an exit record does (the shim crashed, or the
    /// start was interrupted). The agent should `remove` it.
    Unknown,
    NotFound,
}

/// How the agent runs containers. Synchronous: call it from `spawn_blocking`.
pub trait ContainerRuntime: Send + Sync {
    /// Starts the container; returns once its main process runs, or with the start error.
    fn start(&self, spec: &ContainerSpec) -> Result<StartedContainer, ContainerError>;
    fn state(&self, id: &str) -> Result<ContainerState, ContainerError>;
    /// Ids of every container with a state dir (for re-adoption and orphan cleanup), sorted.
    fn list(&self) -> Result<Vec<String>, ContainerError>;
    /// Sends `signal` to the container's init. `NotRunning` when it already exited.
    fn kill(&self, id: &str, signal: i32) -> Result<(), ContainerError>;
    /// Removes everything but the logs, SIGKILLing the container first if it still runs.
    /// Idempotent.
    fn remove(&self, id: &str) -> Result<(), ContainerError>;
    /// Whether the pids this runtime reports are host processes whose exit the agent can
    /// watch with a pidfd (a fake runtime's pids are made up).
    fn pids_are_host_processes(&self) -> bool {
        false
    }
    /// The command that runs `command` inside the running container `id` (the shim's `exec`
    /// step, speaking the frames of [`exec`] on its stdin and stdout, both piped). Spawn it
    /// from any thread.
    fn exec_command(
        &self,
        id: &str,
        tty: bool,
        command: Vec<String>,
    ) -> Result<std::process::Command, ContainerError> {
        let _ = (tty, command);
        Err(ContainerError::ExecUnsupported { id: id.to_string() })
    }
}

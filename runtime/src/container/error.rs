//! `ContainerError`: what can go wrong starting, inspecting, signalling and removing containers.

use std::path::PathBuf;

/// Errors of the container half of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {id}: invalid spec: {reason}")]
    InvalidSpec { id: String, reason: String },
    #[error("container {id} already exists: remove it first or pick another id")]
    AlreadyExists { id: String },
    #[error("container {id} not found")]
    NotFound { id: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id}: this runtime cannot run a process in a container")]
    ExecUnsupported { id: String },
    #[error("container {id}: failed to start: {message}")]
    StartFailed { id: String, message: String },
    #[error("container {id}: could not spawn the shim {command:?}: check the shim command")]
    SpawnShim {
        id: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: shim exited without reporting ({detail}): see {log:?}")]
    ShimLost {
        id: String,
        detail: String,
        log: PathBuf,
    },
    #[error("container {id}: could not signal pid {pid}")]
    Signal {
        id: String,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {what} {path:?} failed")]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: record {path:?} is corrupt: remove the container")]
    CorruptRecord {
        id: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("container {id}: timed out after {seconds}s waiting for {what}")]
    Timeout {
        id: String,
        what: &'static str,
        seconds: u64,
    },
}

impl ContainerError {
    pub(crate) fn io(
        id: &str,
        what: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ContainerError::Io {
            id: id.to_string(),
            what,
            path: path.into(),
            source,
        }
    }
}

/// Errors reading container logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path:?}: {what} failed")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

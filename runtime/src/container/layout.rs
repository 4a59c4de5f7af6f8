//! Where a container's files live under the state root, and the records the shim writes there.
//!
//! ```text
//! <state_root>/lc/<id>/                 libcontainer state (kept short: unix socket path limit)
//! <state_root>/containers/<id>/spec.json     the ContainerSpec the shim runs
//! <state_root>/containers/<id>/bundle/       config.json + rootfs/ (overlay mount point)
//! <state_root>/containers/<id>/upper, work   overlay upper and work dirs
//! <state_root>/containers/<id>/running.json  RunningRecord, written before "started" is reported
//! <state_root>/containers/<id>/exit.json     ExitRecord, written once the init is reaped
//! <state_root>/containers/<id>/shim.log      the shim's own stderr
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ContainerError;

/// Paths of one container's state.
#[derive(Clone, Debug)]
pub struct ContainerDir {
    pub id: String,
    pub dir: PathBuf,
    pub libcontainer_root: PathBuf,
}

impl ContainerDir {
    pub fn new(state_root: &Path, id: &str) -> Self {
        ContainerDir {
            id: id.to_string(),
            dir: containers_dir(state_root).join(id),
            libcontainer_root: libcontainer_root(state_root),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("bundle").join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn running(&self) -> PathBuf {
        self.dir.join("running.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    /// libcontainer's own state dir for this container.
    pub fn libcontainer_state(&self) -> PathBuf {
        self.libcontainer_root.join(&self.id)
    }
}

pub fn containers_dir(state_root: &Path) -> PathBuf {
    state_root.join("containers")
}

pub fn libcontainer_root(state_root: &Path) -> PathBuf {
    state_root.join("lc")
}

/// Written by the shim once the container's main process runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRecord {
    pub init_pid: i32,
    /// Start time of the init in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub init_start_ticks: u64,
    pub shim_pid: i32,
    pub shim_start_ticks: u64,
    pub started_at: SystemTime,
}

/// Written by the shim when the container's main process is gone (or never started).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status; 128 + signal when killed by a signal; 128 when the start failed.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    /// `Completed`, `Error`, `OOMKilled` or `StartError`.
    pub reason: String,
    /// Why the start failed, when it did.
    pub message: Option<String>,
}

/// Writes `value` as JSON to `path` atomically (temp file in the same dir, fsync, rename).
pub fn write_record<T: Serialize>(id: &str, path: &Path, value: &T) -> Result<(), ContainerError> {
    write_record_with(id, path, value, true)
}

/// Like [`write_record`] without the fsync: still atomic for every reader (the rename), but
/// not kept through a power loss. For the records of a start, which sit on its critical path
/// and mean nothing after a reboot (the container's processes are gone with it): `spec.json`,
/// read by the shim a moment later, and `running.json`. An fsync there costs one to several
/// milliseconds each, far more when the block layer's completion work waits for a busy CPU.
/// Readers treat a record torn by a power loss as missing.
pub fn write_record_unsynced<T: Serialize>(
    id: &str,
    path: &Path,
    value: &T,
) -> Result<(), ContainerError> {
    write_record_with(id, path, value, false)
}

fn write_record_with<T: Serialize>(
    id: &str,
    path: &Path,
    value: &T,
    sync: bool,
) -> Result<(), ContainerError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(value).map_err(|source| ContainerError::CorruptRecord {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let write = || -> std::io::Result<()> {
        // Records hold the container's environment (Secret values among it): root only.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&body)?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| ContainerError::io(id, "writing record", path, e))
}

/// Reads a JSON record; `Ok(None)` when it does not exist.
pub fn read_record<T: DeserializeOwned>(
    id: &str,
    path: &Path,
) -> Result<Option<T>, ContainerError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
            ContainerError::CorruptRecord {
                id: id.to_string(),
                path: path.to_path_buf(),
                source,
            }
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ContainerError::io(id, "reading record", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert_eq!(read_record::<ExitRecord>("c", &path).unwrap(), None);
        let rec = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            started_at: None,
            finished_at: SystemTime::UNIX_EPOCH,
            reason: "OOMKilled".into(),
            message: None,
        };
        write_record("c", &path, &rec).unwrap();
        assert_eq!(read_record::<ExitRecord>("c", &path).unwrap(), Some(rec));
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, b"{").unwrap();
        assert!(read_record::<ExitRecord>("c", &path).is_err());
    }
}

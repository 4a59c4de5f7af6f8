//! The shim re-executes itself once the container runs: the fresh process image only touches
//! the monitor's code, which keeps the long-lived shim small. The container's init stays our
//! child across exec; its output pipes are passed as inherited fds.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::MonitorArgs;
use super::monitor::Running;
use super::signals;

/// Replaces this process with `<argv prefix> monitor ...`. Only returns on failure.
pub(super) fn exec_monitor(
    prefix: &[OsString],
    args: &MonitorArgs,
    running: &Running,
) -> std::io::Error {
    let Some((arg0, rest)) = prefix.split_first() else {
        return std::io::Error::other("empty argv");
    };
    for fd in [running.stdout.as_raw_fd(), running.stderr.as_raw_fd()] {
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())) {
            return std::io::Error::from(e);
        }
    }
    // Handlers do not survive exec but ignored dispositions do: no window without protection.
    if let Err(e) = signals::ignore_all() {
        return std::io::Error::from(e);
    }
    let error = Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(rest)
        .args(args.to_args())
        .exec();
    for fd in [running.stdout.as_raw_fd(), running.stderr.as_raw_fd()] {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    error
}

/// Takes ownership of an fd inherited through exec, after checking that it is open.
pub(super) fn adopt_fd(fd: RawFd) -> std::io::Result<File> {
    if fd <= 2 {
        return Err(std::io::Error::other(format!(
            "fd {fd} is a standard stream"
        )));
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    // SAFETY: the fd is open (fcntl succeeded), was handed to us by our pre-exec self for
    // exactly this purpose, and nothing else in this process refers to it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

//! The agent's own process limits: it raises its open-files soft limit to the hard limit at
//! start, so many API clients, pods and log files do not run it out of file descriptors at
//! systemd's default soft limit of 1024.
#![allow(unsafe_code)]

/// An open-files limit: `(soft, hard)`.
pub type NofileLimit = (u64, u64);

/// The current `(soft, hard)` RLIMIT_NOFILE.
pub fn nofile_limit() -> std::io::Result<NofileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we pass and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Sets the open-files soft limit to `soft` (at most the hard limit).
pub fn set_nofile_soft_limit(soft: u64) -> std::io::Result<()> {
    let (_, hard) = nofile_limit()?;
    let limit = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the rlimit we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the open-files soft limit to the hard limit; returns the limits now in force.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let (soft, hard) = nofile_limit()?;
    if soft < hard {
        set_nofile_soft_limit(hard)?;
    }
    nofile_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = nofile_limit().unwrap();
        // Start from systemd's default soft limit when the hard limit allows a difference.
        set_nofile_soft_limit(hard.min(1024)).unwrap();
        let (soft, hard_after) = raise_nofile_limit().unwrap();
        assert_eq!(hard_after, hard);
        assert_eq!(soft, hard);
    }
}

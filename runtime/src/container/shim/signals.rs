//! Signal dispositions of the shim: it survives SIGTERM/SIGINT/SIGHUP/SIGPIPE, yet the container
//! (forked from it) still starts with default dispositions.
//!
//! Ignored signals (SIG_IGN) are inherited across exec, so ignoring SIGTERM here would make the
//! container immune to it. A handler is reset to the default on exec, so we install a no-op one.
#![allow(unsafe_code)]

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

extern "C" fn ignore(_signal: libc::c_int) {}

/// Installs the no-op handler for the signals the shim must survive, and resets SIGPIPE (which
/// the Rust runtime sets to SIG_IGN) the same way so containers get the default back.
pub fn install() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(ignore),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler is async-signal-safe (it does nothing) and the shim is
        // single-threaded when this runs.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Sets SIGTERM, SIGINT, SIGHUP and SIGQUIT to ignored. Ignored dispositions survive exec, so
/// use this only once no container will be forked from this process any more.
pub fn ignore_all() -> nix::Result<()> {
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: SIG_IGN installs no code; the shim is single-threaded.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) }?;
    }
    Ok(())
}

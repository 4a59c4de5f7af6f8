//! The `skiff` binary: agent, hidden shim, and CLI entry point.

use clap::Parser;
use skiff_agent::cli::{self, Cli, Command};
use std::path::PathBuf;

fn main() {
    // The shim must start before anything creates a thread (libcontainer clones this process).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "shim") {
        std::process::exit(skiff_agent::shim::main(args[2..].to_vec()));
    }
    let cli = Cli::parse();
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(skiff_agent::config::DEFAULT_API_SOCKET));
    let code = match cli.command {
        Command::Agent(args) => {
            // Before any thread: the agent starts again once with its allocator settings.
            skiff_agent::memory::run_with_tunables();
            skiff_agent::agent::run_from_args(*args)
        }
        Command::Dev(dev) => skiff_agent::dev::run(dev),
        command => {
            restore_sigpipe();
            cli::commands::run(&socket, command)
        }
    };
    std::process::exit(code);
}

/// Client commands die quietly when their reader goes away (`skiff get pods -o json | head`),
/// like other command-line tools, instead of panicking on a failed print.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called before any other thread exists in a client command; SIG_DFL is a valid
    // disposition and no handler code runs.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
}

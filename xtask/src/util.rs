//! Small process helpers shared by the xtask commands.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// A `cargo` command using the same cargo that runs xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

/// Runs a command, echoing it, and fails when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Whether an executable (or a cargo subcommand named `cargo-X`) is on PATH.
pub fn have(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|p| p.join("bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .any(|dir| dir.join(program).is_file())
}

/// Builds the `skiff` binary (debug profile unless `release`) and returns its path.
pub fn build_skiff_profile(release: bool) -> Result<PathBuf> {
    if release && let Some(bin) = std::env::var_os("SKIFF_BIN") {
        // A benchmark of a binary built earlier (or elsewhere): no rebuild.
        eprintln!("xtask: using SKIFF_BIN={}", PathBuf::from(&bin).display());
        return Ok(PathBuf::from(bin));
    }
    let root = crate::root();
    let mut cmd = cargo();
    cmd.args(["build", "--package", "skiff-agent", "--bin", "skiff"]);
    if release {
        cmd.arg("--release");
    }
    run(cmd.current_dir(&root))?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("skiff"))
}

/// Cargo's target dir: `CARGO_TARGET_DIR` (relative to the workspace root), else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => crate::root().join(dir),
        None => crate::root().join("target"),
    }
}

/// Builds the debug `skiff` binary.
pub fn build_skiff() -> Result<PathBuf> {
    build_skiff_profile(false)
}

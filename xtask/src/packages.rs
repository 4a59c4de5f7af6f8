//! Debian packages the tests, the demo and the benchmarks need, installed when missing.

use anyhow::{Result, bail};
use std::process::Command;

/// Everything: build deps (libseccomp-dev for libcontainer), the test image's busybox, the
/// registry and skopeo for pull tests, netlink/nftables tools, and the benchmark peers.
pub const ALL: &[&str] = &[
    "libseccomp-dev",
    "pkg-config",
    "busybox-static",
    "iproute2",
    "nftables",
    "docker-registry",
    "skopeo",
    "runc",
    "podman",
    // podman's pause process for `kube play` (not a dependency of the podman package).
    "catatonit",
    "serf",
    "containernetworking-plugins",
    // Services: HTTP load through ClusterIPs, the DNS peer (the binary alone, no system
    // service) and its load client.
    "wrk",
    "dnsmasq-base",
    "dnsperf",
    // CronJobs' timeZone (and the tests' zones) read the zone database.
    "tzdata",
];

/// What a node agent needs to build and run pods (the demo and the single-agent benches).
pub const AGENT: &[&str] = &[
    "libseccomp-dev",
    "pkg-config",
    "busybox-static",
    "iproute2",
    "nftables",
    "tzdata",
];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the packages that are missing, with apt-get (needs root).
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        bail!(
            "missing Debian packages {}: run `sudo apt-get install {}` or run xtask as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    crate::util::run(Command::new("apt-get").args(["update", "-qq"]))?;
    crate::util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

//! `cargo xtask`: everything a developer or CI runs (test, lint, ci, demo, bench, image).
// xtask is a command-line tool: printing is its job.
#![allow(clippy::print_stdout)]

mod bench;
mod bench_cluster;
mod bench_cluster_real;
mod bench_gossip;
mod bench_jobs;
mod bench_manifests;
mod bench_net;
mod bench_rollout;
mod bench_services;
mod bench_trace;
mod demo;
mod packages;
mod test;
mod util;

use anyhow::{Result, bail};
use std::path::PathBuf;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test     run every test tier (--tier unit|sim|root picks; --help lists them); the root tier
           installs missing system packages and builds the test image first
  lint     rustfmt --check, clippy -D warnings, rustdoc -D warnings
  ci       lint + test, exactly what .ci/run does
  demo     a 3-node cluster in network namespaces running examples/; Ctrl-C (or --once) tears down
  bench    pod start latency and memory, side by side with runc and podman
  fuzz     run the property-based fuzz targets longer: --minutes N (default 5)
  image    build the busybox test image archive (target/skiff-test-image/busybox.oci.tar)
  packages install the Debian packages tests, demo and bench need (root)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(1);
    };
    let rest = &args[1..];
    match command.as_str() {
        "test" => test::run(rest),
        "lint" => lint(),
        "ci" => {
            lint()?;
            // As .ci/run: every tier, with nextest's ci profile.
            let mut args = rest.to_vec();
            if !args.iter().any(|a| a == "--") {
                args.push("--".into());
            }
            args.extend(["--profile".into(), "ci".into()]);
            test::run(&args)
        }
        "demo" => demo::run(rest),
        "fuzz" => fuzz(rest),
        "bench" => bench::run(rest),
        // Only the membership figures of `bench` (issue 4); not in the usage text.
        "bench-gossip" => bench_gossip::run(rest),
        "image" => {
            let path = build_test_image()?;
            println!("{}", path.display());
            Ok(())
        }
        "packages" => packages::ensure(packages::ALL),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown xtask command {other:?}\n{USAGE}"),
    }
}

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Runs every `fuzz_` proptest target (manifest parser, local API and rpc request decoders,
/// gossip frames, join requests, DNS queries) again and again with fresh seeds and many cases per run, until
/// `--minutes` are up; a failure stops at once with proptest's minimal input.
fn fuzz(args: &[String]) -> Result<()> {
    let minutes: u64 = match args {
        [] => 5,
        [flag, n] if flag == "--minutes" => n
            .parse()
            .map_err(|_| anyhow::anyhow!("--minutes wants a whole number, got {n:?}"))?,
        other => bail!("usage: cargo xtask fuzz [--minutes N] (got {other:?})"),
    };
    let root = root();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(minutes * 60);
    let mut rounds = 0u64;
    const CASES: u64 = 2000;
    while rounds == 0 || std::time::Instant::now() < deadline {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(rounds);
        println!(
            "fuzz round {} (seed {seed}, {CASES} cases per target)",
            rounds + 1
        );
        util::run(
            util::cargo()
                .args(["test", "--workspace", "--lib", "--tests", "--", "fuzz_"])
                .env("PROPTEST_CASES", CASES.to_string())
                .env("PROPTEST_RNG_SEED", seed.to_string())
                .current_dir(&root),
        )?;
        rounds += 1;
    }
    println!(
        "fuzz: {rounds} round(s) of {CASES} cases per target in {minutes} minute(s), no failure"
    );
    Ok(())
}

fn lint() -> Result<()> {
    let root = root();
    util::run(
        util::cargo()
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&root),
    )?;
    util::run(
        util::cargo()
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ])
            .current_dir(&root),
    )?;
    util::run(
        util::cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings")
            .current_dir(&root),
    )?;
    Ok(())
}

/// Builds the busybox test image as an OCI archive (`<target dir>/skiff-test-image/`) with the
/// `skiff` binary's hidden dev command, so the image is made by the project's own (tested) code.
pub fn build_test_image() -> Result<PathBuf> {
    build_test_image_with(&util::build_skiff()?)
}

/// Builds the test image with an already built `skiff`.
pub fn build_test_image_with(skiff: &std::path::Path) -> Result<PathBuf> {
    let out_dir = util::target_dir().join("skiff-test-image");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join("busybox.oci.tar");
    util::run(
        std::process::Command::new(skiff)
            .args(["dev", "build-test-image", "--out"])
            .arg(&out),
    )?;
    Ok(out)
}

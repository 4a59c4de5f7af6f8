//! `cargo xtask test [--tier unit|sim|root]...`: the test tiers, run with cargo-nextest.
//!
//! Every test belongs to exactly one tier, chosen by a nextest filterset in [`TIERS`]; before
//! running, [`check_tiers`] lists every test of the workspace and fails when a test matches no
//! tier (a new test binary nobody classified would otherwise never run) or more than one.

use crate::{packages, root, util};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One test tier: its name and the nextest filterset that selects it (what each holds is
/// told in [`HELP`]).
pub struct Tier {
    pub name: &'static str,
    pub filter: &'static str,
}

/// The tiers, in the order they run. `root` is what needs root: real containers, cgroups,
/// mounts, network namespaces, nftables, device nodes and ownership. The unit and sim tiers
/// pass as an unprivileged user (checked by running their test binaries under `setpriv`).
pub const TIERS: &[Tier] = &[
    Tier {
        name: "unit",
        filter: "(kind(lib) | kind(bin) | kind(proc-macro)) \
                 & !(package(skiff-runtime) & test(/^image::unpack::tests::/))",
    },
    Tier {
        name: "sim",
        filter: "(package(skiff-agent) & kind(test) & (binary(/^cluster_sim/) | binary(=node_sim) | binary(=api_accept_backoff))) \
                 | (package(skiff-manifests) & kind(test)) \
                 | (package(skiff-gossip) & kind(test) & !binary(=quic_partition)) \
                 | (package(skiff-cni) & kind(test) & binary(=fake_network))",
    },
    Tier {
        name: "root",
        filter: "(package(skiff-agent) & kind(test) & !binary(/^cluster_sim/) & !binary(=node_sim) & !binary(=api_accept_backoff)) \
                 | (package(skiff-tests) & kind(test)) \
                 | (package(skiff-runtime) & kind(test)) \
                 | (package(skiff-runtime) & kind(lib) & test(/^image::unpack::tests::/)) \
                 | (package(skiff-cni) & kind(test) & !binary(=fake_network)) \
                 | (package(skiff-gossip) & kind(test) & binary(=quic_partition))",
    },
];

pub const HELP: &str = "\
usage: cargo xtask test [--tier TIER]... [-- NEXTEST-ARGS...]

Builds the workspace (--locked), checks that every test belongs to exactly one tier, and runs
the chosen tiers with cargo-nextest (.config/nextest.toml; CI adds `-- --profile ci`).
No --tier: every tier, as CI runs it. --tier takes a name or a comma list and can be repeated.
The root tier installs the missing Debian packages and builds the test image first (needs root).

tiers:
  unit   unit tables and in-crate tests of every crate (lib and bin targets), plus doc tests
  sim    integration tests without root: in-process clusters on paused time (cluster_sim*),
         the real node loop with a fake runtime and network on paused time (node_sim),
         fakes, manifests fixtures and fuzzing, real QUIC on 127.0.0.1
  root   privileged end-to-end tests: agent/tests with real containers, tests/ multi-node
         clusters in network namespaces, runtime and cni with real containers and netlink,
         the runtime's layer unpacking tables (mknod, chown, trusted xattrs), the gossip
         partition through nftables

Arguments after `--` go to `cargo nextest run` (`--no-capture`, `--profile ci`, test names);
a filterset there (`-- -E 'test(restart)'`) narrows the chosen tiers.";

/// The command: parse `--tier`s, build, check the tiers, run them.
pub fn run(args: &[String]) -> Result<()> {
    let (tiers, extra) = parse(args)?;
    let (narrow, extra) = take_filtersets(&extra)?;
    let nextest = util::have("cargo-nextest");
    if !nextest && tiers.len() != TIERS.len() {
        bail!("--tier needs cargo-nextest: cargo install cargo-nextest --locked");
    }
    let root = root();
    let wants_root = tiers.iter().any(|t| t.name == "root");
    if wants_root {
        packages::ensure(packages::ALL)?;
    }
    // Build every target once with the workspace's unified features, so the test run below and
    // the test image build reuse the same artifacts.
    util::run(
        util::cargo()
            .args(["build", "--workspace", "--all-targets", "--locked"])
            .current_dir(&root),
    )?;
    let skiff = util::target_dir().join("debug").join("skiff");
    let mut cmd = util::cargo();
    if nextest {
        check_tiers()?;
        let filter = run_filter(&tiers, &narrow);
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
            "-E",
        ])
        .arg(filter);
    } else {
        if !narrow.is_empty() {
            bail!("-E needs cargo-nextest: cargo install cargo-nextest --locked");
        }
        // Without nextest: every tier through cargo's own runner (doc tests included).
        eprintln!("xtask: cargo-nextest not found: running every tier with cargo test");
        cmd.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
    }
    cmd.args(&extra)
        // The tests that start agents outside cargo's own test harness use this binary.
        .env("SKIFF_BIN", &skiff)
        .current_dir(&root);
    if wants_root {
        // The test image path is handed to the tests.
        cmd.env("SKIFF_TEST_IMAGE", crate::build_test_image_with(&skiff)?);
    }
    eprintln!(
        "xtask: running tier(s) {}",
        tiers.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
    );
    util::run(&mut cmd)?;
    if nextest && tiers.iter().any(|t| t.name == "unit") {
        // Doc tests are not run by nextest.
        util::run(
            util::cargo()
                .args(["test", "--workspace", "--doc", "--locked"])
                .current_dir(&root),
        )?;
    }
    Ok(())
}

/// The tiers asked for (all when none) and the arguments for nextest.
fn parse(args: &[String]) -> Result<(Vec<&'static Tier>, Vec<String>)> {
    let mut names = BTreeSet::new();
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let list = match arg.as_str() {
            "--tier" => it
                .next()
                .context("--tier wants unit, sim or root")?
                .as_str(),
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--" => {
                extra.extend(it.by_ref().cloned());
                break;
            }
            other => match other.strip_prefix("--tier=") {
                Some(list) => list,
                // Anything else goes to nextest, as before tiers existed.
                None => {
                    extra.push(other.to_string());
                    continue;
                }
            },
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !TIERS.iter().any(|t| t.name == name) {
                bail!("unknown tier {name:?} (tiers: unit, sim, root)\n\n{HELP}");
            }
            names.insert(name.to_string());
        }
    }
    let tiers = TIERS
        .iter()
        .filter(|t| names.is_empty() || names.contains(t.name))
        .collect();
    Ok((tiers, extra))
}

/// Takes the filtersets (`-E F`, `--filterset F`, `-E=F`) out of the arguments for nextest:
/// nextest runs the union of several, so they are combined with the tiers' filter instead.
fn take_filtersets(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let (mut filtersets, mut rest) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-E" | "--filterset" | "--filter-expr" => {
                filtersets.push(it.next().context("-E wants a filterset")?.clone());
            }
            other => match ["-E=", "--filterset=", "--filter-expr="]
                .iter()
                .find_map(|p| other.strip_prefix(p))
            {
                Some(f) => filtersets.push(f.to_string()),
                None => rest.push(other.to_string()),
            },
        }
    }
    Ok((filtersets, rest))
}

/// The filterset of a run: the chosen tiers, narrowed to the tests any of `narrow` selects.
fn run_filter(tiers: &[&Tier], narrow: &[String]) -> String {
    let union = |parts: Vec<String>| {
        parts
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let tiers = union(tiers.iter().map(|t| t.filter.to_string()).collect());
    if narrow.is_empty() {
        tiers
    } else {
        format!("({tiers}) & ({})", union(narrow.to_vec()))
    }
}

/// Lists every test of the workspace (ignored ones included) once per tier, and fails unless
/// each test is in exactly one tier.
pub fn check_tiers() -> Result<()> {
    let mut tiers_of: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for tier in TIERS {
        for (test, matches) in list(tier.filter)? {
            let entry = tiers_of.entry(test).or_default();
            if matches {
                entry.push(tier.name);
            }
        }
    }
    let problems = tier_problems(&tiers_of);
    if !problems.is_empty() {
        bail!(
            "every test must belong to exactly one tier (edit TIERS in xtask/src/test.rs):\n{}",
            problems.join("\n")
        );
    }
    eprintln!("xtask: {} tests, each in exactly one tier", tiers_of.len());
    Ok(())
}

/// The tests in no tier or in several, one line each.
fn tier_problems(tiers_of: &BTreeMap<String, Vec<&str>>) -> Vec<String> {
    tiers_of
        .iter()
        .filter(|(_, tiers)| tiers.len() != 1)
        .map(|(test, tiers)| match tiers.as_slice() {
            [] => format!("  {test}: in no tier"),
            many => format!("  {test}: in tiers {}", many.join(", ")),
        })
        .collect()
}

/// Every test as `binary-id test-name`, with whether `filter` selects it.
fn list(filter: &str) -> Result<Vec<(String, bool)>> {
    let out = util::cargo()
        .args([
            "nextest",
            "list",
            "--workspace",
            "--locked",
            "--run-ignored",
            "all",
            "--message-format",
            "json",
            "-E",
            filter,
        ])
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run cargo nextest list")?;
    if !out.status.success() {
        bail!(
            "cargo nextest list -E {filter:?} failed with {}",
            out.status
        );
    }
    let json: Value = serde_json::from_slice(&out.stdout).context("cargo nextest list output")?;
    let suites = json["rust-suites"]
        .as_object()
        .context("cargo nextest list: no rust-suites")?;
    let mut tests = Vec::new();
    for (binary, suite) in suites {
        for (name, case) in suite["testcases"].as_object().into_iter().flatten() {
            let matches = case["filter-match"]["status"] == "matches";
            tests.push((format!("{binary} {name}"), matches));
        }
    }
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn names(tiers: &[&Tier]) -> Vec<&'static str> {
        tiers.iter().map(|t| t.name).collect()
    }

    #[test]
    fn no_tier_is_every_tier() {
        let (tiers, extra) = parse(&[]).unwrap();
        assert_eq!(names(&tiers), ["unit", "sim", "root"]);
        assert!(extra.is_empty());
    }

    #[test]
    fn tiers_repeat_or_come_as_a_list_in_run_order() {
        let (tiers, _) = parse(&args(&["--tier", "root", "--tier=unit"])).unwrap();
        assert_eq!(names(&tiers), ["unit", "root"]);
        let (tiers, _) = parse(&args(&["--tier", "sim,unit"])).unwrap();
        assert_eq!(names(&tiers), ["unit", "sim"]);
    }

    #[test]
    fn unknown_tier_is_refused_and_the_rest_goes_to_nextest() {
        assert!(parse(&args(&["--tier", "fast"])).is_err());
        assert!(parse(&args(&["--tier"])).is_err());
        let (_, extra) = parse(&args(&["--no-capture", "--", "-E", "test(x)"])).unwrap();
        assert_eq!(extra, ["--no-capture", "-E", "test(x)"]);
    }

    #[test]
    fn filtersets_after_the_tiers_narrow_them() {
        let (narrow, rest) = take_filtersets(&args(&[
            "--no-capture",
            "-E",
            "test(a)",
            "--filterset=test(b)",
        ]))
        .unwrap();
        assert_eq!(narrow, ["test(a)", "test(b)"]);
        assert_eq!(rest, ["--no-capture"]);
        let unit = &TIERS[0];
        assert_eq!(run_filter(&[unit], &[]), format!("({})", unit.filter));
        assert_eq!(
            run_filter(&[unit], &narrow),
            format!("(({})) & ((test(a)) | (test(b)))", unit.filter)
        );
    }

    #[test]
    fn a_test_in_no_tier_or_two_is_a_problem() {
        let mut tiers_of = BTreeMap::new();
        tiers_of.insert("a t".to_string(), vec!["unit"]);
        tiers_of.insert("b t".to_string(), vec![]);
        tiers_of.insert("c t".to_string(), vec!["sim", "root"]);
        assert_eq!(
            tier_problems(&tiers_of),
            ["  b t: in no tier", "  c t: in tiers sim, root"]
        );
    }

    #[test]
    fn help_names_every_tier() {
        for tier in TIERS {
            assert!(
                HELP.contains(&format!("  {}  ", tier.name)),
                "{}",
                tier.name
            );
        }
    }
}

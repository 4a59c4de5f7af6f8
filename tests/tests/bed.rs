//! The test bed's own guarantees: dropping it (also while unwinding from a failure) removes its
//! namespaces and temp dir, and a sweep removes what a dead run left behind. Needs root.

use anyhow::{Result, ensure};
use skiff_tests::bed::{RUN_PREFIX, TestBed, ip, sweep_leftovers};

fn netns_exists(name: &str) -> Result<bool> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name)))
}

#[test]
fn drop_removes_everything_even_when_the_test_panics() -> Result<()> {
    let mut made = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bed = TestBed::new(&[0, 1]).expect("bed");
        made.push(bed.hub.clone());
        made.extend(bed.nodes.iter().map(|n| n.netns.clone()));
        made.push(bed.dir.display().to_string());
        // The nodes reach each other over the trunk, and not once it is down.
        let ping = |up: bool| {
            bed.set_trunk(1, up).expect("trunk");
            std::process::Command::new("ip")
                .args(["netns", "exec", &bed.nodes[0].netns, "ping", "-c1", "-W1"])
                .arg(bed.nodes[1].ip.to_string())
                .output()
                .expect("ping")
                .status
                .success()
        };
        assert!(ping(true), "nodes on two segments cannot reach each other");
        assert!(!ping(false), "a node answered across a cut trunk");
        panic!("simulated test failure");
    }));
    ensure!(outcome.is_err(), "the closure should have panicked");
    let dir = made.pop().unwrap_or_default();
    for ns in &made {
        ensure!(!netns_exists(ns)?, "namespace {ns} left behind");
    }
    ensure!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    Ok(())
}

#[test]
fn sweep_removes_leftovers_of_dead_runs_only() -> Result<()> {
    // pid_max on Linux is at most 4194304: this owner cannot be alive.
    let dead = format!("{RUN_PREFIX}4194305x0-hub");
    let live = format!("{RUN_PREFIX}{}x999-hub", std::process::id());
    ip(&["netns", "add", &dead])?;
    ip(&["netns", "add", &live])?;
    sweep_leftovers();
    let dead_left = netns_exists(&dead)?;
    let live_kept = netns_exists(&live)?;
    let _ = ip(&["netns", "del", &live]);
    let _ = ip(&["netns", "del", &dead]);
    ensure!(!dead_left, "sweep left {dead}");
    ensure!(
        live_kept,
        "sweep removed {live}, which belongs to a live run"
    );
    Ok(())
}

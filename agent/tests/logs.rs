//! `skiff logs`: the default container, `-c`, `--tail N`, `-f` following new lines, and clear
//! errors for unknown pods and containers.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{SKIFF, TEST_IMAGE, TestAgent, WAIT};

fn pod() -> String {
    let c = |name: &str, script: &str| {
        format!(
            "  - name: {name}\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: talk\nspec:\n  containers:\n{}{}{}",
        c(
            "first",
            "trap 'exit 0' TERM; for i in $(seq 1 10); do echo first $i; done; sleep 100000 & wait"
        ),
        c(
            "second",
            "trap 'exit 0' TERM; echo second-only; echo oops >&2; sleep 100000 & wait"
        ),
        c(
            "ticker",
            "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
        ),
    )
}

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

#[test]
fn logs_tail_container_and_follow() {
    let agent = TestAgent::start();
    agent.write_manifest("talk.yaml", &pod());
    agent.wait_phase("talk", "Running");
    let first = agent.wait_until(WAIT, "ten lines from the first container", || {
        let out = agent.skiff_ok(&["logs", "talk"]);
        out.contains("first 10").then_some(out)
    });
    // No -c: the first container.
    let expected: Vec<String> = (1..=10).map(|i| format!("first {i}")).collect();
    assert_eq!(first.lines().collect::<Vec<_>>(), expected, "{first}");
    assert_eq!(agent.skiff_ok(&["logs", "talk", "-c", "first"]), first);

    let tail = agent.skiff_ok(&["logs", "talk", "--tail", "3"]);
    assert_eq!(
        tail.lines().collect::<Vec<_>>(),
        ["first 8", "first 9", "first 10"],
        "{tail}"
    );
    let tail = agent.skiff_ok(&["logs", "talk", "--tail", "0"]);
    assert_eq!(tail, "", "--tail 0");

    let second = agent.wait_until(WAIT, "the second container's lines", || {
        let out = agent.skiff_ok(&["logs", "talk", "-c", "second"]);
        (out.contains("second-only") && out.contains("oops")).then_some(out)
    });
    assert!(!second.contains("first"), "{second}");

    // Errors name what is wrong.
    let out = agent.skiff(&["logs", "talk", "-c", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("ticker"), "{err}");
    let out = agent.skiff(&["logs", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost"));

    // -f: lines written after the command started arrive while it runs.
    let before = agent.wait_until(WAIT, "some ticks", || {
        let t = ticks(&agent.skiff_ok(&["logs", "talk", "-c", "ticker"]));
        (t.len() >= 2).then_some(t)
    });
    let newest = *before.last().unwrap_or(&0);
    let mut child = Command::new(SKIFF)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["logs", "talk", "-c", "ticker", "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skiff logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<u64> = Vec::new();
    while got.iter().filter(|n| **n > newest).count() < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => got.extend(ticks(&line)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("logs -f gave only {got:?} (newest before: {newest})");
            }
        }
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "logs -f exited while following"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "lines out of order or missing: {got:?}"
    );
    assert!(
        got[0] >= newest,
        "--tail 1 printed older lines: {got:?} vs newest {newest}"
    );
}

fn numbered(text: &str, prefix: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(prefix)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn logs_survive_rotation() {
    let agent = TestAgent::start_with(support::AgentOptions {
        config: "log-max-bytes = 4096\nlog-max-files = 2\n".into(),
        ..support::AgentOptions::default()
    });
    let pad = "x".repeat(60);
    let c = |name: &str, script: &str| {
        format!(
            "  - name: {name}\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n"
        )
    };
    agent.write_manifest(
        "rot.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: rot\nspec:\n  containers:\n{}{}",
            c("burst", &format!("trap 'exit 0' TERM; for i in $(seq 1 2000); do echo burst $i {pad}; done; echo burst-done; sleep 100000 & wait")),
            c("steady", &format!("trap 'exit 0' TERM; i=0; while true; do echo steady $i {pad}; i=$((i+1)); sleep 0.01; done")),
        ),
    );
    agent.wait_phase("rot", "Running");
    let all = agent.wait_until(WAIT, "the burst to finish", || {
        let out = agent.skiff_ok(&["logs", "rot", "-c", "burst"]);
        out.contains("burst-done").then_some(out)
    });
    let n = numbered(&all, "burst ");
    assert_eq!(n.last(), Some(&2000), "the newest lines are kept");
    assert!(
        n.len() < 2000,
        "nothing was rotated away ({} lines)",
        n.len()
    );
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap inside the kept lines: {n:?}"
    );
    let tail = agent.skiff_ok(&["logs", "rot", "-c", "burst", "--tail", "3"]);
    assert_eq!(numbered(&tail, "burst "), vec![1999, 2000], "{tail}");
    assert!(tail.lines().last() == Some("burst-done"), "{tail}");
    let dir = agent
        .data
        .join("pods")
        .join(support::uid_of(&agent.pod("rot").expect("rot")))
        .join("logs");
    let total: u64 = std::fs::read_dir(&dir)
        .expect("log dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("burst"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(total < 4 * 4096, "rotation keeps {total} bytes of logs");

    // Following across several rotations loses nothing.
    let mut child = Command::new(SKIFF)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["logs", "rot", "-c", "steady", "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skiff logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<u64> = Vec::new();
    while got.len() < 300 {
        match rx.recv_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ) {
            Ok(line) => got.extend(numbered(&line, "steady ")),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        got.len() >= 300,
        "logs -f stalled after {} lines: {:?}",
        got.len(),
        got.last()
    );
    let gaps: Vec<(u64, u64)> = got
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "lines lost or repeated while following across rotations: {gaps:?}"
    );
}

#[test]
fn follow_ends_when_the_pod_is_deleted() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "short.yaml",
        &support::pod_yaml(
            "short",
            "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
            "",
        ),
    );
    agent.wait_phase("short", "Running");
    let mut child = Command::new(SKIFF)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["logs", "short", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skiff logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).expect("a first line");
    assert!(first.starts_with("tick "), "{first}");
    agent.remove_manifest("short.yaml");
    let status = agent.wait_until(WAIT, "logs -f to end after the pod is gone", || {
        child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "logs -f ended with {status}");
    assert!(agent.pod("short").is_none());
}

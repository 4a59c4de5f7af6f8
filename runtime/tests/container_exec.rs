//! Privileged tests of the shim's `exec` step against real containers: output and exit codes,
//! input, a terminal with its size, confinement (namespaces, cgroup, user, seccomp), a command
//! that does not exist, and a caller that goes away.

mod container_common;

use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use container_common::{TestEnv, wait_for};
use skiff_runtime::container::exec::{ExecInput, ExecOutput, FrameReader};
use skiff_runtime::container::{ContainerRuntime, ContainerSpec};

const TIMEOUT: Duration = Duration::from_secs(30);

/// What one exec produced.
#[derive(Debug, Default)]
struct Ran {
    stdout: String,
    stderr: String,
    failed: Option<String>,
    exit: Option<i32>,
}

/// Starts a long-running container and waits until it runs.
fn running(env: &TestEnv, id: &str, edit: impl FnOnce(&mut ContainerSpec)) {
    let mut spec = env.spec(id, &["sh", "-c", "echo ready; exec sleep 1000"]);
    edit(&mut spec);
    env.runtime.start(&spec).unwrap();
    wait_for("the container to print ready", TIMEOUT, || {
        env.log_texts(id)
            .iter()
            .any(|(_, t)| t == "ready")
            .then_some(())
    });
}

fn spawn(env: &TestEnv, id: &str, tty: bool, command: &[&str]) -> Child {
    env.runtime
        .exec_command(id, tty, command.iter().map(|s| s.to_string()).collect())
        .unwrap()
        .spawn()
        .unwrap()
}

/// Reads frames until the exit frame (or the end of output).
fn collect(child: &mut Child) -> Ran {
    let mut stdout = child.stdout.take().unwrap();
    let mut frames = FrameReader::default();
    let mut ran = Ran::default();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(frame) = frames.next_output().unwrap() {
            match frame {
                ExecOutput::Stdout(d) => ran.stdout.push_str(&String::from_utf8_lossy(&d)),
                ExecOutput::Stderr(d) => ran.stderr.push_str(&String::from_utf8_lossy(&d)),
                ExecOutput::Failed(m) => ran.failed = Some(m),
                ExecOutput::Exit(code) => ran.exit = Some(code),
            }
        }
        match stdout.read(&mut buf).unwrap() {
            0 => break,
            n => frames.push(&buf[..n]),
        }
    }
    child.wait().unwrap();
    ran
}

/// Runs `command` with `input` frames and returns what it produced.
fn exec(env: &TestEnv, id: &str, tty: bool, command: &[&str], input: &[ExecInput]) -> Ran {
    let mut child = spawn(env, id, tty, command);
    let mut stdin = child.stdin.take().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        // Input is written beside the reading: a big input would otherwise fill both pipes
        // (the shim holds back input while its output is not read) and neither side moves.
        let pid = child.id().to_string();
        scope.spawn(move || {
            for frame in input {
                // A shim that already finished (a command that does not exist) closes its
                // input: what it produced is checked by the reader.
                if stdin.write_all(&frame.encode()).is_err() {
                    break;
                }
            }
            let _ = stdin.flush();
            // Kept open (not dropped) until the output is read, so the shim does not take
            // it for a caller that went away; a shim that hangs is killed at the deadline
            // and the assertions on what it produced fail.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(TIMEOUT) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .status();
            }
            drop(stdin);
        });
        let ran = collect(&mut child);
        let _ = done_tx.send(());
        ran
    })
}

#[test]
fn output_streams_exit_codes_and_input_pass_through() {
    let env = TestEnv::new();
    running(&env, "ex-io", |_| {});
    let ran = exec(
        &env,
        "ex-io",
        false,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        &[ExecInput::StdinEnd],
    );
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n");
    assert_eq!(ran.exit, Some(3));
    assert_eq!(ran.failed, None);

    let big = "x".repeat(300_000);
    let ran = exec(
        &env,
        "ex-io",
        false,
        &["cat"],
        &[
            ExecInput::Stdin(big.clone().into_bytes()),
            ExecInput::StdinEnd,
        ],
    );
    assert_eq!(ran.stdout.len(), big.len(), "cat echoes all its input");
    assert_eq!(ran.exit, Some(0));

    let ran = exec(
        &env,
        "ex-io",
        false,
        &["no-such-cmd"],
        &[ExecInput::StdinEnd],
    );
    assert_eq!(ran.exit, Some(127), "{ran:?}");
    assert!(
        ran.failed.as_deref().unwrap_or("").contains("no-such-cmd"),
        "{ran:?}"
    );
}

#[test]
fn exec_joins_the_containers_namespaces_cgroup_user_and_filter() {
    let env = TestEnv::new();
    running(&env, "ex-ns", |s| {
        s.process.user = "1000:1001".into();
        s.hostname = Some("inside".into());
    });
    let ran = exec(
        &env,
        "ex-ns",
        false,
        &[
            "sh",
            "-c",
            "hostname; id -u; cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/self/cgroup; cat /proc/self/status",
        ],
        &[ExecInput::StdinEnd],
    );
    assert_eq!(ran.exit, Some(0), "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "inside", "the container's uts namespace");
    assert_eq!(lines[1], "1000", "the container's user");
    assert_eq!(
        lines[2].trim(),
        "sleep 1000",
        "pid 1 is the container's init"
    );
    let cgroups = env.cgroups_path("ex-ns");
    let cgroups = cgroups.to_str().unwrap();
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.contains(":memory:") && l.ends_with(cgroups)),
        "in the container's memory cgroup {cgroups}: {}",
        ran.stdout
    );
    assert!(ran.stdout.contains("Seccomp:\t2"), "seccomp filter applied");
    assert!(ran.stdout.contains("NoNewPrivs:\t1"));
    assert!(
        ran.stdout.contains("CapEff:\t0000000000000000"),
        "non-root keeps no capabilities"
    );
}

#[test]
fn a_terminal_has_the_size_the_caller_sets() {
    let env = TestEnv::new();
    running(&env, "ex-tty", |_| {});
    let ran = exec(
        &env,
        "ex-tty",
        true,
        &[
            "sh",
            "-c",
            "read line; tty; stty size; echo \"got $line\"; exit 5",
        ],
        &[
            ExecInput::Resize { cols: 97, rows: 31 },
            ExecInput::Stdin(b"hello\n".to_vec()),
        ],
    );
    assert_eq!(ran.exit, Some(5), "{ran:?}");
    assert!(ran.stdout.contains("/dev/pts/"), "{ran:?}");
    assert!(ran.stdout.contains("31 97"), "{ran:?}");
    assert!(ran.stdout.contains("got hello"), "{ran:?}");
    assert_eq!(ran.stderr, "", "a terminal merges the streams");
}

#[test]
fn a_caller_that_goes_away_kills_the_process() {
    let env = TestEnv::new();
    running(&env, "ex-gone", |_| {});
    let mut child = spawn(&env, "ex-gone", false, &["sleep", "999"]);
    wait_for("sleep to run in the container", TIMEOUT, || {
        let ran = exec(
            &env,
            "ex-gone",
            false,
            &["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"],
            &[ExecInput::StdinEnd],
        );
        ran.stdout.contains("sleep 999").then_some(())
    });
    let started = Instant::now();
    drop(child.stdin.take());
    let ran = collect(&mut child);
    assert_eq!(ran.exit, Some(137), "{ran:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

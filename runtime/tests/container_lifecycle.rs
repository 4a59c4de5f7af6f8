//! Privileged tests of real containers through the shim (needs root, busybox-static, iproute2).

mod container_common;

use std::time::Duration;

use container_common::{TestEnv, wait_for};
use skiff_runtime::container::{ContainerError, ContainerRuntime, ContainerState};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn exit_code_and_both_streams_are_logged() {
    let env = TestEnv::new();
    let spec = env.spec("exit3", &["sh", "-c", "echo hi; echo err >&2; exit 3"]);
    let started = env.runtime.start(&spec).unwrap();
    assert!(started.pid > 0);
    match env.wait_exited("exit3", EXIT_TIMEOUT) {
        ContainerState::Exited {
            exit_code,
            signal,
            oom_killed,
            reason,
            started_at,
            finished_at,
            message,
        } => {
            assert_eq!(
                (exit_code, signal, oom_killed, reason.as_str(), message),
                (3, None, false, "Error", None)
            );
            assert!(started_at.unwrap() <= finished_at);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The shim's own stderr: a clean run (start, exit, cleanup) says nothing.
    let shim_log =
        std::fs::read_to_string(env.state_root.join("containers/exit3/shim.log")).unwrap();
    assert_eq!(shim_log, "");
    let logs = env.log_texts("exit3");
    assert!(logs.contains(&("stdout".into(), "hi".into())), "{logs:?}");
    assert!(logs.contains(&("stderr".into(), "err".into())), "{logs:?}");
}

#[test]
fn env_cwd_user_hostname_and_limits_are_applied() {
    let env = TestEnv::new();
    let mut spec = env.spec(
        "envuser",
        &[
            "sh",
            "-c",
            "echo foo=$FOO; pwd; id -u; id -g; id -G; hostname; ulimit -n; sleep 1000",
        ],
    );
    spec.process.env = vec!["FOO=bar".into()];
    spec.process.cwd = "/tmp".into();
    spec.process.user = "app".into();
    spec.hostname = Some("box1".into());
    spec.resources.memory_limit_bytes = Some(64 << 20);
    spec.resources.cpu_limit_millis = Some(500);
    spec.resources.cpu_request_millis = Some(250);
    spec.resources.pids_limit = Some(64);
    env.runtime.start(&spec).unwrap();
    let nofile = container_common::nofile_hard_limit()
        .min(1_048_576)
        .to_string();
    let want = [
        "foo=bar",
        "/tmp",
        "1000",
        "1001",
        "1001 50",
        "box1",
        nofile.as_str(),
    ];
    let logs = wait_for("all output lines", EXIT_TIMEOUT, || {
        let logs: Vec<String> = env
            .log_texts("envuser")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        (logs.len() >= want.len()).then_some(logs)
    });
    assert_eq!(logs, want);

    let cg = env.cgroups_path("envuser");
    let rel = cg.strip_prefix("/").unwrap();
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(
            std::path::Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join(rel)
                .join(file),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.shares"), "256");
    assert_eq!(read("pids", "pids.max"), "64");

    // Numeric uid:gid without a passwd entry.
    let mut spec2 = env.spec("numeric", &["sh", "-c", "id -u; id -g"]);
    spec2.process.user = "4242:4343".into();
    env.runtime.start(&spec2).unwrap();
    env.wait_exited("numeric", EXIT_TIMEOUT);
    let texts: Vec<String> = env
        .log_texts("numeric")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["4242", "4343"]);
}

#[test]
fn read_only_bind_mount_is_visible_but_not_writable() {
    let env = TestEnv::new();
    let host = env.dir.path().join("volume");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from-host\n").unwrap();
    let mut spec = env.spec(
        "bind",
        &[
            "sh",
            "-c",
            "cat /data/f; if touch /data/g 2>/dev/null; then echo writable; else echo readonly; fi",
        ],
    );
    spec.mounts.push(skiff_runtime::container::BindMount {
        source: host.clone(),
        destination: "/data".into(),
        read_only: true,
    });
    env.runtime.start(&spec).unwrap();
    match env.wait_exited("bind", EXIT_TIMEOUT) {
        ContainerState::Exited { exit_code, .. } => assert_eq!(exit_code, 0),
        other => panic!("{other:?}"),
    }
    let texts: Vec<String> = env.log_texts("bind").into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["from-host", "readonly"]);
    assert!(!host.join("g").exists());
}

#[test]
fn exceeding_the_memory_limit_is_reported_as_oom_killed() {
    let env = TestEnv::new();
    // dd allocates its block and fills it from /dev/zero: 128 MiB of resident memory.
    let mut spec = env.spec(
        "oom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
    );
    spec.resources.memory_limit_bytes = Some(32 << 20);
    env.runtime.start(&spec).unwrap();
    match env.wait_exited("oom", EXIT_TIMEOUT) {
        ContainerState::Exited {
            exit_code,
            signal,
            oom_killed,
            reason,
            ..
        } => {
            assert!(oom_killed, "exit {exit_code} signal {signal:?}");
            assert_eq!(
                (exit_code, signal, reason.as_str()),
                (137, Some(9), "OOMKilled")
            );
        }
        other => panic!("{other:?}"),
    }
    // The same command under a roomy limit completes.
    let mut ok = env.spec(
        "nooom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"],
    );
    ok.resources.memory_limit_bytes = Some(64 << 20);
    env.runtime.start(&ok).unwrap();
    match env.wait_exited("nooom", EXIT_TIMEOUT) {
        ContainerState::Exited {
            exit_code,
            oom_killed,
            reason,
            ..
        } => {
            assert_eq!(
                (exit_code, oom_killed, reason.as_str()),
                (0, false, "Completed")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sigterm_stops_a_process_that_handles_it() {
    let env = TestEnv::new();
    let spec = env.spec(
        "term",
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    env.runtime.start(&spec).unwrap();
    wait_for("ready", EXIT_TIMEOUT, || {
        env.log_texts("term")
            .iter()
            .any(|(_, t)| t == "ready")
            .then_some(())
    });
    env.runtime.kill("term", libc::SIGTERM).unwrap();
    match env.wait_exited("term", EXIT_TIMEOUT) {
        ContainerState::Exited {
            exit_code, signal, ..
        } => assert_eq!((exit_code, signal), (0, None)),
        other => panic!("{other:?}"),
    }
    assert!(env.log_texts("term").iter().any(|(_, t)| t == "bye"));
    assert!(matches!(
        env.runtime.kill("term", libc::SIGTERM),
        Err(ContainerError::NotRunning { .. })
    ));
}

#[test]
fn a_process_ignoring_sigterm_needs_sigkill() {
    let env = TestEnv::new();
    // `sleep` as the namespace's init has no SIGTERM handler, so the kernel drops SIGTERM.
    let spec = env.spec("stubborn", &["sleep", "1000"]);
    let started = env.runtime.start(&spec).unwrap();
    env.runtime.kill("stubborn", libc::SIGTERM).unwrap();
    // The kernel drops the signal when it is sent (no handler in a namespace init), so the
    // process is still there right after kill() returned.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", started.pid)).unwrap();
    assert!(!stat.contains(") Z "), "{stat}");
    assert!(
        matches!(env.runtime.state("stubborn").unwrap(), ContainerState::Running { pid, .. } if pid == started.pid)
    );
    env.runtime.kill("stubborn", libc::SIGKILL).unwrap();
    match env.wait_exited("stubborn", EXIT_TIMEOUT) {
        ContainerState::Exited {
            exit_code,
            signal,
            oom_killed,
            reason,
            ..
        } => {
            assert_eq!(
                (exit_code, signal, oom_killed, reason.as_str()),
                (137, Some(9), false, "Error")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn start_failure_is_reported_and_removable() {
    let env = TestEnv::new();
    let spec = env.spec("bad", &["/no/such/binary"]);
    match env.runtime.start(&spec) {
        Err(ContainerError::StartFailed { message, .. }) => {
            assert!(message.contains("/no/such/binary"), "{message}");
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
    match env.runtime.state("bad").unwrap() {
        ContainerState::Exited {
            exit_code,
            reason,
            started_at,
            message,
            ..
        } => {
            assert_eq!(
                (exit_code, reason.as_str(), started_at),
                (128, "StartError", None)
            );
            assert!(message.unwrap().contains("/no/such/binary"));
        }
        other => panic!("{other:?}"),
    }
    let dir = env.state_root.join("containers/bad");
    assert!(!skiff_runtime::container::rootfs::is_mounted(
        &dir.join("bundle/rootfs")
    ));
    env.runtime.remove("bad").unwrap();
    assert_eq!(env.runtime.state("bad").unwrap(), ContainerState::NotFound);
    assert!(matches!(
        env.runtime.start(&spec),
        Err(ContainerError::StartFailed { .. })
    ));
    assert!(matches!(
        env.runtime.start(&spec),
        Err(ContainerError::AlreadyExists { .. })
    ));
}

#[test]
fn unknown_ids_are_not_found_and_list_is_sorted() {
    let env = TestEnv::new();
    assert_eq!(env.runtime.state("nope").unwrap(), ContainerState::NotFound);
    assert!(matches!(
        env.runtime.kill("nope", libc::SIGTERM),
        Err(ContainerError::NotFound { .. })
    ));
    env.runtime.remove("nope").unwrap();
    assert!(env.runtime.list().unwrap().is_empty());
    for id in ["b2", "a1"] {
        env.runtime.start(&env.spec(id, &["true"])).unwrap();
    }
    assert_eq!(env.runtime.list().unwrap(), ["a1", "b2"]);
    for id in ["a1", "b2"] {
        match env.wait_exited(id, EXIT_TIMEOUT) {
            ContainerState::Exited {
                exit_code, reason, ..
            } => {
                assert_eq!((exit_code, reason.as_str()), (0, "Completed"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        env.runtime.state("../etc"),
        Err(ContainerError::InvalidSpec { .. })
    ));
}

//! Privileged tests of the shim's life apart from the agent: re-adoption by a new runtime
//! instance, surviving SIGTERM, log rotation, cleanup on remove, netns joining, and its RSS.

mod container_common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use container_common::{NetnsGuard, TestEnv, shim_config, vm_rss_kib, wait_for};
use skiff_runtime::container::log::rotated_path;
use skiff_runtime::container::{
    BindMount, ContainerRuntime, ContainerState, ShimRuntime, cgroup, read_log, rootfs,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the container printed `ready` on stdout.
fn wait_ready(env: &TestEnv, id: &str) {
    wait_for(&format!("{id} to print ready"), TIMEOUT, || {
        env.log_texts(id)
            .iter()
            .any(|(_, t)| t == "ready")
            .then_some(())
    });
}

#[test]
fn a_new_runtime_instance_adopts_a_running_container_and_sees_its_exit() {
    let env = TestEnv::new();
    let control = env.dir.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let mut spec = env.spec(
        "adopt",
        &[
            "sh",
            "-c",
            "echo ready; while [ ! -e /ctl/stop ]; do sleep 0.05; done; exit 7",
        ],
    );
    spec.mounts.push(BindMount {
        source: control.clone(),
        destination: "/ctl".into(),
        read_only: true,
    });

    // The first "agent" starts the container and then forgets about it.
    let first = ShimRuntime::new(shim_config(&env.state_root));
    let started = first.start(&spec).unwrap();
    drop(first);
    wait_ready(&env, "adopt");

    // The shim leads its own session and process group.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", started.shim_pid)).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(fields[2], started.shim_pid.to_string(), "pgid");
    assert_eq!(fields[3], started.shim_pid.to_string(), "session id");

    // A restarted agent sees the same container, same pid.
    let second = ShimRuntime::new(shim_config(&env.state_root));
    assert_eq!(second.list().unwrap(), ["adopt"]);
    match second.state("adopt").unwrap() {
        ContainerState::Running { pid, started_at } => {
            assert_eq!((pid, started_at), (started.pid, started.started_at));
        }
        other => panic!("{other:?}"),
    }

    // SIGTERM to the shim (not the container) must not kill it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(started.shim_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();

    std::fs::write(control.join("stop"), b"").unwrap();
    let state = wait_for("exit seen by the second instance", TIMEOUT, || match second
        .state("adopt")
        .unwrap()
    {
        s @ ContainerState::Exited { .. } => Some(s),
        _ => None,
    });
    assert!(
        matches!(
            state,
            ContainerState::Exited {
                exit_code: 7,
                signal: None,
                ..
            }
        ),
        "{state:?}"
    );
    // The shim recorded the exit, so it outlived the SIGTERM; it then leaves (it may still be
    // on its way out when the record appears): gone, or a zombie of ours.
    let shim_stat =
        || std::fs::read_to_string(format!("/proc/{}/stat", started.shim_pid)).unwrap_or_default();
    wait_for(
        "the shim to leave after recording the exit",
        TIMEOUT,
        || {
            let stat = shim_stat();
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        },
    );
    second.remove("adopt").unwrap();
}

#[test]
fn remove_leaves_no_mount_cgroup_or_state_but_keeps_logs() {
    let env = TestEnv::new();
    let spec = env.spec("gone", &["sh", "-c", "echo ready; exec sleep 1000"]);
    let started = env.runtime.start(&spec).unwrap();
    wait_ready(&env, "gone");
    let dir = env.state_root.join("containers/gone");
    let cg_root = std::path::Path::new(cgroup::CGROUP_ROOT);
    // The rootfs is mounted in the shim's own mount namespace only, not the host's.
    let rootfs_path = dir.join("bundle/rootfs");
    let mounted_in = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == rootfs_path.to_str())
        })
    };
    assert!(
        mounted_in(started.shim_pid),
        "the shim's namespace has the rootfs"
    );
    assert!(!rootfs::is_mounted(&rootfs_path), "the host's has not");
    assert!(cgroup::any_cgroup_left(cg_root, &spec.cgroups_path));
    assert!(env.state_root.join("lc/gone").exists());

    env.runtime.remove("gone").unwrap();
    assert!(!mounted_in(started.shim_pid));
    assert!(!rootfs::is_mounted(&rootfs_path));
    assert!(!cgroup::any_cgroup_left(cg_root, &spec.cgroups_path));
    let pod = spec.cgroups_path.parent().unwrap();
    assert!(
        !cgroup::any_cgroup_left(cg_root, pod),
        "empty pod cgroup dir left behind"
    );
    assert!(!dir.exists());
    assert!(!env.state_root.join("lc/gone").exists());
    assert!(
        std::fs::read_to_string(format!("/proc/{}/stat", started.pid))
            .map_or(true, |s| s.contains(") Z "))
    );
    assert_eq!(env.runtime.state("gone").unwrap(), ContainerState::NotFound);
    assert!(
        read_log(&spec.log.path, None)
            .unwrap()
            .iter()
            .any(|l| l.text == "ready")
    );
    env.runtime.remove("gone").unwrap();
}

#[test]
fn logs_rotate_at_the_size_limit_and_read_back_in_order() {
    let env = TestEnv::new();
    let mut spec = env.spec(
        "rot",
        &["sh", "-c", "for i in $(seq 1 300); do echo line-$i; done"],
    );
    spec.log.max_size_bytes = 2048;
    spec.log.max_files = 3;
    env.runtime.start(&spec).unwrap();
    env.wait_exited("rot", TIMEOUT);
    assert!(rotated_path(&spec.log.path, 2).exists());
    assert!(!rotated_path(&spec.log.path, 3).exists());
    for p in [
        spec.log.path.clone(),
        rotated_path(&spec.log.path, 1),
        rotated_path(&spec.log.path, 2),
    ] {
        assert!(std::fs::metadata(&p).unwrap().len() <= 2048, "{p:?}");
    }
    let lines = read_log(&spec.log.path, None).unwrap();
    let nums: Vec<u32> = lines
        .iter()
        .map(|l| l.text.trim_start_matches("line-").parse().unwrap())
        .collect();
    assert_eq!(nums.last(), Some(&300));
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    assert!(nums.len() < 300, "old files were dropped");
    let tail = read_log(&spec.log.path, Some(2)).unwrap();
    assert_eq!(
        tail.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["line-299", "line-300"]
    );
}

#[test]
fn follower_streams_a_running_containers_output() {
    let env = TestEnv::new();
    let mut spec = env.spec(
        "follow",
        &[
            "sh",
            "-c",
            "for i in $(seq 1 60); do echo tick-$i; sleep 0.02; done",
        ],
    );
    spec.log.max_size_bytes = 600;
    spec.log.max_files = 10;
    env.runtime.start(&spec).unwrap();
    let (mut seen, mut follower) =
        skiff_runtime::container::follow_log(&spec.log.path, None).unwrap();
    wait_for("all 60 ticks through the follower", TIMEOUT, || {
        seen.extend(follower.poll().unwrap());
        (seen.len() >= 60).then_some(())
    });
    let texts: Vec<String> = seen.iter().map(|l| l.text.clone()).collect();
    let want: Vec<String> = (1..=60).map(|i| format!("tick-{i}")).collect();
    assert_eq!(texts, want);
    assert!(
        rotated_path(&spec.log.path, 1).exists(),
        "the follower crossed at least one rotation"
    );
}

#[test]
fn joins_the_given_network_namespace() {
    let env = TestEnv::new();
    let netns = NetnsGuard::new();
    let mut spec = env.spec("net", &["sh", "-c", "echo ready; exec sleep 1000"]);
    spec.network_namespace = Some(netns.path());
    let started = env.runtime.start(&spec).unwrap();
    let want = std::fs::metadata(netns.path()).unwrap().ino();
    let got = std::fs::metadata(format!("/proc/{}/ns/net", started.pid))
        .unwrap()
        .ino();
    assert_eq!(got, want);
    let host = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_ne!(got, host);
    env.runtime.remove("net").unwrap();

    // Host network when no namespace is given.
    let host_spec = env.spec("hostnet", &["sleep", "1000"]);
    let started = env.runtime.start(&host_spec).unwrap();
    let got = std::fs::metadata(format!("/proc/{}/ns/net", started.pid))
        .unwrap()
        .ino();
    assert_eq!(got, host);
}

#[test]
fn shim_stays_small() {
    let env = TestEnv::new();
    let spec = env.spec(
        "rss",
        &[
            "sh",
            "-c",
            "for i in $(seq 1 200); do echo some-output-$i; done; echo ready; exec sleep 1000",
        ],
    );
    let started = env.runtime.start(&spec).unwrap();
    wait_ready(&env, "rss");
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", started.shim_pid))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains(" monitor "),
        "the shim re-executed itself as the monitor: {cmdline}"
    );
    let rss = vm_rss_kib(started.shim_pid).unwrap();
    eprintln!("shim VmRSS: {rss} kB ({cmdline})");
    if std::env::var_os("SKIFF_SHIM_RSS_DEBUG").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(format!("/proc/{}/smaps", started.shim_pid)).unwrap()
        );
    }
    // Release builds stay under 3 MB; debug builds carry bigger, less local code.
    let limit_kib = if cfg!(debug_assertions) {
        6 * 1024
    } else {
        3 * 1024
    };
    assert!(rss < limit_kib, "shim RSS {rss} kB, limit {limit_kib} kB");
}

#[test]
fn container_and_shim_survive_kill_9_of_the_process_that_started_them() {
    let env = TestEnv::new();
    // The "agent" is a shell that starts the shim and waits for it, like a parent would.
    let config = skiff_runtime::container::ShimRuntimeConfig {
        state_root: env.state_root.clone(),
        shim_command: ["/bin/sh".into(), "-c".into(), "\"$0\" \"$@\" & wait".into()]
            .into_iter()
            .chain(container_common::shim_command())
            .collect(),
    };
    let runtime = ShimRuntime::new(config);
    let spec = env.spec("orphan", &["sh", "-c", "echo ready; exec sleep 1000"]);
    let started = runtime.start(&spec).unwrap();
    wait_ready(&env, "orphan");
    let ppid = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
    };
    let parent = ppid(started.shim_pid).unwrap();
    assert_ne!(
        parent,
        std::process::id() as i32,
        "the shell is the shim's parent"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the shim to be re-parented", TIMEOUT, || {
        (ppid(started.shim_pid)? != parent).then_some(())
    });

    let fresh = ShimRuntime::new(shim_config(&env.state_root));
    assert!(
        matches!(fresh.state("orphan").unwrap(), ContainerState::Running { pid, .. } if pid == started.pid)
    );
    assert_eq!(
        ppid(started.pid),
        Some(started.shim_pid),
        "the init is still the shim's child"
    );
    fresh.kill("orphan", libc::SIGKILL).unwrap();
    let state = wait_for("the exit record", TIMEOUT, || {
        match fresh.state("orphan").unwrap() {
            s @ ContainerState::Exited { .. } => Some(s),
            _ => None,
        }
    });
    assert!(
        matches!(
            state,
            ContainerState::Exited {
                exit_code: 137,
                signal: Some(9),
                ..
            }
        ),
        "{state:?}"
    );
    fresh.remove("orphan").unwrap();
}

#[test]
fn start_to_exit_latency_is_printed() {
    let env = TestEnv::new();
    let runs = 5;
    let mut total = Duration::ZERO;
    for i in 0..runs {
        let id = format!("lat{i}");
        let t0 = std::time::Instant::now();
        env.runtime.start(&env.spec(&id, &["true"])).unwrap();
        let started = t0.elapsed();
        env.wait_exited(&id, TIMEOUT);
        let exited = t0.elapsed();
        env.runtime.remove(&id).unwrap();
        eprintln!(
            "run {i}: started {started:?}, exit recorded {exited:?}, removed {:?}",
            t0.elapsed()
        );
        total += t0.elapsed();
    }
    eprintln!(
        "start + exit + remove of /bin/true: mean {:?} over {runs} runs",
        total / runs
    );
    assert!(env.runtime.list().unwrap().is_empty());
}

//! Resource limits in real containers: memory and CPU limits reach the container's cgroup, and
//! a container over its memory limit is OOM-killed and reported as such.

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT, container_status, pod_yaml};

fn terminated(pod: &serde_json::Value) -> serde_json::Value {
    container_status(pod, "main")["state"]["terminated"].clone()
}

#[test]
fn memory_limit_oom_kill_is_reported() {
    let agent = TestAgent::start();
    // `tail` keeps its input in memory until it sees the end: 64 MiB with no newline.
    agent.write_manifest(
        "oom.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: oom
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "head -c 67108864 /dev/zero | tail >/dev/null"]
    resources:
      limits: {{memory: 16Mi}}
"#
        ),
    );
    let pod = agent.wait_until(WAIT, "the oom pod to end", || {
        agent
            .pod("oom")
            .filter(|p| p["status"]["phase"] == "Failed" || p["status"]["phase"] == "Succeeded")
    });
    let t = terminated(&pod);
    assert_eq!(
        t["reason"],
        "OOMKilled",
        "{pod}\n{}",
        agent.skiff_ok(&["logs", "oom"])
    );
    assert_eq!(t["exitCode"], 137, "{pod}");
    assert_eq!(pod["status"]["phase"], "Failed");
    let events = agent.events();
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "OOMKilled" && e["involvedObject"]["name"] == "oom"),
        "{events:#?}"
    );

    // Restarted after an OOM kill: the reason moves to lastState.
    agent.write_manifest(
        "oom2.yaml",
        &agent
            .dir
            .join("m/oom.yaml")
            .to_str()
            .map(|p| {
                std::fs::read_to_string(p)
                    .expect("oom.yaml")
                    .replace("name: oom", "name: oom2")
                    .replace("restartPolicy: Never", "restartPolicy: Always")
            })
            .expect("path"),
    );
    let pod = agent.wait_until(WAIT, "oom2 restarted", || {
        agent
            .pod("oom2")
            .filter(|p| container_status(p, "main")["restartCount"].as_u64() >= Some(1))
    });
    let last = &container_status(&pod, "main")["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{pod}");
}

#[test]
fn the_same_command_without_a_limit_completes() {
    // The control for the OOM test: the command really allocates and works when memory allows.
    let agent = TestAgent::start();
    agent.write_manifest(
        "big.yaml",
        &pod_yaml(
            "big",
            "head -c 67108864 /dev/zero | tail | wc -c",
            "  restartPolicy: Never\n",
        ),
    );
    let pod = agent.wait_phase("big", "Succeeded");
    assert_eq!(terminated(&pod)["reason"], "Completed");
    assert_eq!(agent.skiff_ok(&["logs", "big"]).trim(), "67108864");
}

/// Deletes the pod's file and returns how long its container process took to die.

#[test]
fn cpu_and_memory_limits_reach_the_cgroup() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "limited.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: limited\nspec:\n  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n    resources:\n      limits: {{cpu: 500m, memory: 48Mi}}\n"
        ),
    );
    let pod = agent.wait_phase("limited", "Running");
    let id = agent.container_process(&pod, "main").expect("process");
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", id.pid)).expect("cgroup");
    let path_of = |controller: &str| {
        cgroups
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == controller))
            })
            .and_then(|l| l.split(':').nth(2))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {controller} cgroup in {cgroups}"))
    };
    let memory = path_of("memory");
    assert!(
        memory.starts_with(&format!(
            "{}/{}/",
            agent.cgroup_parent,
            support::uid_of(&pod)
        )),
        "{memory}"
    );
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"
    ))
    .expect("memory limit");
    assert_eq!(limit.trim(), (48 * 1024 * 1024).to_string());
    let cpu = path_of("cpu");
    let dir = std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == "cpu"))
                && p.join(cpu.trim_start_matches('/')).is_dir()
        })
        .expect("cpu hierarchy");
    let base = dir.join(cpu.trim_start_matches('/'));
    let quota: i64 = std::fs::read_to_string(base.join("cpu.cfs_quota_us"))
        .expect("quota")
        .trim()
        .parse()
        .expect("number");
    let period: i64 = std::fs::read_to_string(base.join("cpu.cfs_period_us"))
        .expect("period")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(quota * 1000 / period, 500, "quota {quota} period {period}");
}

//! Safe defaults and `securityContext` in real containers: the user and groups the process runs
//! as, runAsNonRoot refusing a root image, the default seccomp filter and masked paths (and
//! privileged without them), capabilities, a read-only rootfs, and the pod pids limit.

mod support;

use serde_json::Value;
use support::{AgentOptions, TEST_IMAGE, TestAgent, WAIT, container_status};

/// A pod whose containers are `(name, script, securityContext)`, with `pod_sc` for the pod.
/// Short grace period: a shell as PID 1 ignores SIGTERM.
fn pod(name: &str, pod_sc: &str, extra_spec: &str, containers: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  securityContext: {pod_sc}\n{extra_spec}  containers:\n"
    );
    for (container, script, sc) in containers {
        yaml.push_str(&format!(
            "  - name: {container}\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n    securityContext: {sc}\n"
        ));
    }
    yaml
}

/// Waits for the pod to finish and returns it with its containers' logs by name.
fn finished(agent: &TestAgent, name: &str, containers: &[&str]) -> (Value, Vec<String>) {
    let pod = agent.wait_until(WAIT, &format!("{name} to finish"), || {
        agent
            .pod(name)
            .filter(|p| p["status"]["phase"] == "Succeeded" || p["status"]["phase"] == "Failed")
    });
    let logs = containers
        .iter()
        .map(|c| agent.skiff_ok(&["logs", name, "-c", c]))
        .collect();
    (pod, logs)
}

#[test]
fn run_as_user_group_and_fs_group_reach_the_process() {
    let agent = TestAgent::start();
    let script = "id -u; id -g; id -G; touch /data/f && stat -c %g /data/f";
    agent.write_manifest(
        "ids.yaml",
        &pod(
            "ids",
            "{runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000]}",
            "  volumes:\n  - name: data\n    emptyDir: {}\n",
            &[("main", script, "{}")],
        )
        .replace(
            "    securityContext: {}\n",
            "    securityContext: {}\n    volumeMounts:\n    - {name: data, mountPath: /data}\n",
        ),
    );
    let (pod, logs) = finished(&agent, "ids", &["main"]);
    let lines: Vec<&str> = logs[0].lines().collect();
    assert_eq!(pod["status"]["phase"], "Succeeded", "{pod}\n{}", logs[0]);
    assert_eq!(lines.first(), Some(&"1000"), "{}", logs[0]);
    assert_eq!(lines.get(1), Some(&"3000"), "{}", logs[0]);
    let groups: Vec<&str> = lines.get(2).unwrap_or(&"").split_whitespace().collect();
    for gid in ["3000", "2000", "4000"] {
        assert!(groups.contains(&gid), "{gid} missing from {groups:?}");
    }
    // The emptyDir belongs to the fsGroup (setgid): new files get that group.
    assert_eq!(lines.get(3), Some(&"2000"), "{}", logs[0]);
}

#[test]
fn run_as_non_root_with_a_root_image_is_refused_with_the_reason() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "nonroot.yaml",
        &pod(
            "nonroot",
            "{runAsNonRoot: true}",
            "",
            &[("main", "echo should-not-run", "{}")],
        ),
    );
    let waiting = agent.wait_until(WAIT, "nonroot refused", || {
        let p = agent.pod("nonroot")?;
        let w = container_status(&p, "main")["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("container has runAsNonRoot and image will run as root"),
        "{waiting}"
    );
    let get = agent.skiff_ok(&["get", "pods"]);
    assert!(get.contains("CreateContainerConfigError"), "{get}");
    let describe = agent.skiff_ok(&["describe", "pod", "nonroot"]);
    assert!(describe.contains("runAsNonRoot"), "{describe}");
    let events = agent.events();
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("runAsNonRoot"))),
        "{events:#?}"
    );
    // The same pod with a non-root uid runs.
    agent.write_manifest(
        "nonroot.yaml",
        &pod(
            "nonroot",
            "{runAsNonRoot: true, runAsUser: 65534}",
            "",
            &[("main", "id -u", "{}")],
        ),
    );
    let (_, logs) = finished(&agent, "nonroot", &["main"]);
    assert_eq!(logs[0].trim(), "65534");
}

/// Prints the seccomp mode, whether a user namespace can be made, and how many bytes of a
/// masked /proc file can be read.
const CONFINEMENT: &str = "grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?; echo timer_list=$(cat /proc/timer_list | wc -c)";

#[test]
fn defaults_confine_the_container_and_privileged_does_not() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "confined.yaml",
        &pod(
            "confined",
            "{}",
            "",
            &[
                ("default", CONFINEMENT, "{}"),
                ("privileged", CONFINEMENT, "{privileged: true}"),
                (
                    "unconfined",
                    CONFINEMENT,
                    "{seccompProfile: {type: Unconfined}}",
                ),
            ],
        ),
    );
    let (_, logs) = finished(&agent, "confined", &["default", "privileged", "unconfined"]);
    let field = |log: &str, key: &str| -> String {
        log.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in {log}"))
    };
    let (default, privileged, unconfined) = (&logs[0], &logs[1], &logs[2]);
    assert_eq!(field(default, "Seccomp:"), "2", "{default}");
    assert_ne!(field(default, "unshare="), "0", "{default}");
    assert_eq!(field(default, "timer_list="), "0", "{default}");
    assert_eq!(field(privileged, "Seccomp:"), "0", "{privileged}");
    assert_eq!(field(privileged, "unshare="), "0", "{privileged}");
    assert_ne!(field(privileged, "timer_list="), "0", "{privileged}");
    // Unconfined lifts only the filter: the masked path stays masked.
    assert_eq!(field(unconfined, "Seccomp:"), "0", "{unconfined}");
    assert_eq!(field(unconfined, "unshare="), "0", "{unconfined}");
    assert_eq!(field(unconfined, "timer_list="), "0", "{unconfined}");
}

#[test]
fn capabilities_read_only_rootfs_and_no_new_privs_are_enforced() {
    let agent = TestAgent::start();
    let script = "touch /x; echo touch=$?; touch /dev/shm/f; chown 1:1 /dev/shm/f; echo chown=$?; grep NoNewPrivs /proc/self/status";
    agent.write_manifest(
        "caps.yaml",
        &pod(
            "caps",
            "{}",
            "",
            &[
                ("plain", script, "{}"),
                ("dropall", script, "{capabilities: {drop: [ALL]}}"),
                ("readonly", script, "{readOnlyRootFilesystem: true}"),
                ("nnp", script, "{allowPrivilegeEscalation: false}"),
            ],
        ),
    );
    let (_, logs) = finished(&agent, "caps", &["plain", "dropall", "readonly", "nnp"]);
    let (plain, dropall, readonly, nnp) = (&logs[0], &logs[1], &logs[2], &logs[3]);
    let no_new_privs = |log: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix("NoNewPrivs:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no NoNewPrivs in {log}"))
    };
    assert!(
        plain.contains("touch=0") && plain.contains("chown=0"),
        "{plain}"
    );
    assert_eq!(no_new_privs(plain), "0", "{plain}");
    assert!(dropall.contains("chown=1"), "{dropall}");
    assert!(readonly.contains("touch=1"), "{readonly}");
    assert!(readonly.contains("chown=0"), "{readonly}");
    assert_eq!(no_new_privs(nnp), "1", "{nnp}");
    assert!(nnp.contains("chown=0"), "{nnp}");
}

#[test]
fn localhost_seccomp_profiles_are_applied_and_a_missing_one_is_explained() {
    let agent = TestAgent::start();
    let profiles = agent.data.join("seccomp/test");
    std::fs::create_dir_all(&profiles).expect("seccomp dir");
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("profile");
    let script = "mkdir /made; echo mkdir=$?";
    let localhost =
        |file: &str| format!("{{seccompProfile: {{type: Localhost, localhostProfile: {file}}}}}");
    let (good, missing) = (localhost("test/no-mkdir.json"), localhost("test/gone.json"));
    agent.write_manifest(
        "profiles.yaml",
        &pod(
            "profiles",
            "{}",
            "",
            &[("profiled", script, &good), ("plain", script, "{}")],
        ),
    );
    let (_, logs) = finished(&agent, "profiles", &["profiled", "plain"]);
    assert!(logs[0].contains("mkdir=1"), "{}", logs[0]);
    assert!(logs[1].contains("mkdir=0"), "{}", logs[1]);

    agent.write_manifest(
        "missing.yaml",
        &pod("missing", "{}", "", &[("main", script, &missing)]),
    );
    let waiting = agent.wait_until(WAIT, "the missing profile reported", || {
        let p = agent.pod("missing")?;
        let w = container_status(&p, "main")["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("seccomp profile \"test/gone.json\": cannot read"),
        "{waiting}"
    );
}

#[test]
fn the_pod_pids_limit_reaches_the_pod_cgroup() {
    let agent = TestAgent::start_with(AgentOptions {
        extra_args: vec!["--pod-pids-limit".into(), "77".into()],
        ..AgentOptions::default()
    });
    agent.write_manifest(
        "pids.yaml",
        &pod(
            "pids",
            "{}",
            "",
            &[("main", "trap 'exit 0' TERM; sleep 100000 & wait", "{}")],
        )
        .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    let running = agent.wait_phase("pids", "Running");
    let id = agent.container_process(&running, "main").expect("process");
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", id.pid)).expect("cgroup");
    let path = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap_or_else(|| panic!("no pids cgroup in {cgroups}"))
        .to_string();
    let container = std::path::Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/'));
    let pod_dir = container.parent().expect("pod dir");
    assert!(
        pod_dir.ends_with(support::uid_of(&running)),
        "{}",
        pod_dir.display()
    );
    let read = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("pids.max"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
    };
    assert_eq!(read(pod_dir).trim(), "77");
    assert_eq!(read(&container).trim(), "77");

    // A fork bomb stops at the limit. The bomb runs in a subshell (a failed fork ends a shell);
    // only builtins count what is left (a command substitution would need a fork of its own);
    // the shell's exit ends the namespace and its sleeps.
    let bomb = "(for i in $(seq 120); do sleep 1000 & done) 2>/dev/null; set -- /proc/[0-9]*; echo procs=$#";
    agent.write_manifest("bomb.yaml", &pod("bomb", "{}", "", &[("main", bomb, "{}")]));
    let (_, logs) = finished(&agent, "bomb", &["main"]);
    let procs: usize = logs[0]
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", logs[0]));
    assert!((50..=77).contains(&procs), "{procs} processes: {}", logs[0]);
}

//! ConfigMaps, Secrets and volumes in real containers: env from keys and envFrom with a prefix,
//! configMap/secret files (with items/path mapping), an emptyDir shared by two containers, a
//! hostPath created on the host, a missing ConfigMap reported and recovered from; init
//! containers run to completion, in order, before the main container.

mod support;

use support::{AgentOptions, TEST_IMAGE, TestAgent, WAIT, container_status};

const CONFIG: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: large
  app_conf: "listen=8080"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  password: aHVudGVyMg==
stringData:
  user: admin
"#;

fn app_pod(host_dir: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  volumes:
  - name: conf
    configMap:
      name: settings
      items:
      - {{key: app_conf, path: nested/app.conf}}
  - name: allconf
    configMap: {{name: settings}}
  - name: sec
    secret: {{secretName: creds}}
  - name: shared
    emptyDir: {{}}
  - name: host
    hostPath: {{path: {host_dir}, type: DirectoryOrCreate}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    env:
    - name: COLOR
      valueFrom: {{configMapKeyRef: {{name: settings, key: color}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    - name: PLAIN
      value: plain-value
    envFrom:
    - prefix: CM_
      configMapRef: {{name: settings}}
    - prefix: S_
      secretRef: {{name: creds}}
    volumeMounts:
    - {{name: conf, mountPath: /etc/conf}}
    - {{name: allconf, mountPath: /etc/all}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: shared, mountPath: /shared}}
    - {{name: host, mountPath: /host}}
    command:
    - sh
    - -c
    - |
      trap 'exit 0' TERM
      env | sort | sed 's/^/env: /'
      echo "file nested: $(cat /etc/conf/nested/app.conf)"
      echo "file count conf: $(find /etc/conf -type f | wc -l)"
      echo "file color: $(cat /etc/all/color)"
      echo "file password: $(cat /etc/sec/password)"
      echo "file user: $(cat /etc/sec/user)"
      echo written-by-main > /host/from-container
      while [ ! -f /shared/sidecar.txt ]; do sleep 0.1; done
      echo "shared: $(cat /shared/sidecar.txt)"
      echo done
      sleep 100000 & wait
  - name: sidecar
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts:
    - {{name: shared, mountPath: /data}}
    command: ["sh", "-c", "trap 'exit 0' TERM; echo from-sidecar > /data/sidecar.txt; sleep 100000 & wait"]
"#
    )
}

#[test]
fn configmaps_secrets_and_volumes_reach_the_containers() {
    let agent = TestAgent::start();
    let host_dir = agent.dir.join("host").join("sub");
    agent.write_manifest("config.yaml", CONFIG);
    agent.write_manifest("app.yaml", &app_pod(&host_dir.display().to_string()));
    agent.wait_phase("app", "Running");
    let log = agent.wait_until(WAIT, "the main container's report", || {
        let out = agent.skiff_ok(&["logs", "app", "-c", "main"]);
        out.lines().any(|l| l == "done").then_some(out)
    });
    let lines: Vec<&str> = log.lines().collect();
    for expected in [
        "env: COLOR=blue",
        "env: PASSWORD=hunter2",
        "env: PLAIN=plain-value",
        "env: CM_color=blue",
        "env: CM_size=large",
        "env: CM_app_conf=listen=8080",
        "env: S_password=hunter2",
        "env: S_user=admin",
        "file nested: listen=8080",
        "file count conf: 1",
        "file color: blue",
        "file password: hunter2",
        "file user: admin",
        "shared: from-sidecar",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in:\n{log}");
    }
    assert!(
        !log.contains("env: color="),
        "envFrom without its prefix:\n{log}"
    );
    // hostPath: created on the host, and the container's file is there.
    assert!(host_dir.is_dir());
    let from = std::fs::read_to_string(host_dir.join("from-container"))
        .expect("file written through hostPath");
    assert_eq!(from.trim(), "written-by-main");
    // Secret values never show in `get secrets`.
    let secrets = agent.get_json(&["secrets"]);
    assert!(!secrets.to_string().contains("aHVudGVyMg=="), "{secrets}");
    // Secret files live in memory (tmpfs), never on the node's disk.
    let pod = agent.pod("app").expect("app");
    let sec = agent
        .data
        .join("pods")
        .join(support::uid_of(&pod))
        .join("volumes/sec");
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let fstype = info.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        (fields.get(4).copied() == Some(&*sec.to_string_lossy()))
            .then(|| fields[sep + 1].to_string())
    });
    assert_eq!(
        fstype.as_deref(),
        Some("tmpfs"),
        "secret volume {} is not a tmpfs",
        sec.display()
    );
}

#[test]
fn missing_configmap_leaves_the_pod_waiting_with_a_reason() {
    // Backoffs far longer than the wait below: the pods must start because the ConfigMap
    // arrived, not because a retry came round.
    let agent = TestAgent::start_with(AgentOptions {
        crash_backoff_base_ms: 300_000,
        config: "image-pull-backoff-base-ms = 300000\n".into(),
        ..AgentOptions::default()
    });
    let env_pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: envpod
spec:
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    env:
    - name: X
      valueFrom: {{configMapKeyRef: {{name: late, key: x}}}}
    command: ["sh", "-c", "trap 'exit 0' TERM; echo X=$X; sleep 100000 & wait"]
"#
    );
    let vol_pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: volpod
spec:
  volumes:
  - name: c
    configMap: {{name: late}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: c, mountPath: /c}}]
    command: ["sh", "-c", "trap 'exit 0' TERM; echo x=$(cat /c/x); sleep 100000 & wait"]
"#
    );
    agent.write_manifest("envpod.yaml", &env_pod);
    agent.write_manifest("volpod.yaml", &vol_pod);
    let waiting = agent.wait_until(WAIT, "envpod waiting on the configmap", || {
        let p = agent.pod("envpod")?;
        let w = container_status(&p, "main")["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("late") && message.contains("not found"),
        "{waiting}"
    );
    let vol = agent.wait_until(WAIT, "volpod waiting on the configmap", || {
        let p = agent.pod("volpod")?;
        (p["status"]["reason"] == "FailedMount").then_some(p)
    });
    assert_eq!(vol["status"]["phase"], "Pending");
    let message = vol["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("late") && message.contains("not found"),
        "{vol}"
    );
    assert_eq!(
        agent.pod("envpod").map(|p| p["status"]["phase"].clone()),
        Some("Pending".into())
    );

    // Once the ConfigMap exists both pods start.
    agent.write_manifest(
        "late.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\ndata:\n  x: ex\n",
    );
    agent.wait_phase("envpod", "Running");
    agent.wait_phase("volpod", "Running");
    agent.wait_until(WAIT, "the env value in the log", || {
        agent
            .skiff_ok(&["logs", "envpod"])
            .contains("X=ex")
            .then_some(())
    });
    agent.wait_until(WAIT, "the file value in the log", || {
        agent
            .skiff_ok(&["logs", "volpod"])
            .contains("x=ex")
            .then_some(())
    });
}

#[test]
fn working_dir_args_read_only_mounts_sub_paths_and_hostname() {
    let agent = TestAgent::start();
    agent.write_manifest(
        "spec.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: specpod
spec:
  volumes:
  - name: data
    emptyDir: {{}}
  containers:
  - name: writer
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts:
    - {{name: data, mountPath: /data}}
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /data/sub && echo in-sub > /data/sub/f; echo top > /data/top; sleep 100000 & wait"]
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    workingDir: /data
    command: ["sh", "-c"]
    args:
    - |
      trap 'exit 0' TERM
      while [ ! -f /ro/top ] || [ ! -f /only-sub/f ]; do sleep 0.1; done
      echo "pwd=$(pwd)"
      echo "hostname=$(hostname)"
      echo "sub=$(cat /only-sub/f)"
      echo "sub-has-top=$(test -e /only-sub/top && echo yes || echo no)"
      if touch /ro/new 2>/dev/null; then echo ro-write=allowed; else echo ro-write=denied; fi
      echo "path=$PATH"
      echo finished
      sleep 100000 & wait
    env:
    - {{name: PATH, value: "/bin:/custom"}}
    volumeMounts:
    - {{name: data, mountPath: /ro, readOnly: true}}
    - {{name: data, mountPath: /only-sub, subPath: sub}}
    - {{name: data, mountPath: /data}}
"#
        ),
    );
    agent.wait_phase("specpod", "Running");
    let log = agent.wait_until(WAIT, "main's report", || {
        let out = agent.skiff_ok(&["logs", "specpod", "-c", "main"]);
        out.contains("finished").then_some(out)
    });
    for expected in [
        "pwd=/data",
        "hostname=specpod",
        "sub=in-sub",
        "sub-has-top=no",
        "ro-write=denied",
        "path=/bin:/custom",
    ] {
        assert!(
            log.lines().any(|l| l == expected),
            "missing {expected:?}:\n{log}"
        );
    }
}

#[test]
fn secrets_are_never_logged() {
    let agent = TestAgent::start();
    agent.write_manifest("config.yaml", CONFIG);
    agent.write_manifest(
        "user.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: user
spec:
  volumes:
  - name: sec
    secret: {{secretName: creds}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    env:
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    - name: MISSING
      valueFrom: {{secretKeyRef: {{name: creds, key: nope}}}}
    volumeMounts: [{{name: sec, mountPath: /sec}}]
    command: ["sh", "-c", "sleep 100000"]
"#
        ),
    );
    // The missing key keeps the container from starting: the error path must not leak either.
    agent.wait_until(WAIT, "the config error", || {
        let p = agent.pod("user")?;
        (container_status(&p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError")
            .then_some(())
    });
    let describe = agent.skiff_ok(&["describe", "pod", "user"]);
    let events = agent.skiff_ok(&["get", "events", "-o", "json"]);
    let secrets = agent.skiff_ok(&["get", "secrets", "-o", "yaml"]);
    for (what, text) in [
        ("agent log", agent.log_text()),
        ("describe", describe),
        ("events", events),
        ("get secrets", secrets),
    ] {
        assert!(
            !text.contains("hunter2") && !text.contains("aHVudGVyMg=="),
            "the secret shows in the {what}:\n{text}"
        );
    }
}

#[test]
fn host_path_type_checks_and_memory_size_limits() {
    let agent = TestAgent::start();
    let missing = agent.dir.join("no-such-dir");
    agent.write_manifest(
        "hp.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hp
spec:
  volumes:
  - name: h
    hostPath: {{path: {}, type: Directory}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: h, mountPath: /h}}]
    command: ["sh", "-c", "sleep 100000"]
"#,
            missing.display()
        ),
    );
    agent.write_manifest(
        "small.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: small
spec:
  restartPolicy: Never
  volumes:
  - name: m
    emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: m, mountPath: /m}}]
    command: ["sh", "-c", "head -c 524288 /dev/zero > /m/half && echo half-ok; if head -c 2097152 /dev/zero > /m/big; then echo big-ok; else echo big-failed; fi"]
"#
        ),
    );
    let hp = agent.wait_until(WAIT, "hp waiting on its hostPath", || {
        agent
            .pod("hp")
            .filter(|p| p["status"]["reason"] == "FailedMount")
    });
    let message = hp["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no-such-dir"), "{hp}");
    assert!(!missing.exists(), "type Directory must not create the path");
    agent.wait_phase("small", "Succeeded");
    let log = agent.skiff_ok(&["logs", "small"]);
    assert!(
        log.contains("half-ok") && log.contains("big-failed"),
        "{log}"
    );
}

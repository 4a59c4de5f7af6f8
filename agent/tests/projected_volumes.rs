//! downwardAPI and projected volumes in real containers, and object volumes refreshed in place
//! (issue 14): a ConfigMap edited while its pod runs reaches the container's files within
//! seconds without a restart (a subPath mount keeps its file, as in Kubernetes); the pod's own
//! fields and resources are files; a projected volume combines a ConfigMap, a Secret and the
//! downward API in one directory.
//!
//! Run as root: `cargo test -p skiff-agent --test projected_volumes`.

mod support;

use support::{TEST_IMAGE, TestAgent, WAIT};

fn objects(greeting: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: live
data:
  greeting: {greeting}
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  pw: hunter2
"#
    )
}

fn pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {{app: vols, tier: edge}}
  annotations: {{note: "a b"}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: live
    configMap: {{name: live}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: notes, fieldRef: {{fieldPath: metadata.annotations}}}}
      - {{path: cpu, resourceFieldRef: {{containerName: main, resource: limits.cpu, divisor: 1m}}}}
  - name: proj
    projected:
      sources:
      - configMap: {{name: live, items: [{{key: greeting, path: conf/greeting}}]}}
      - secret: {{name: creds, items: [{{key: pw, path: pw, mode: 0400}}]}}
      - downwardAPI: {{items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: IfNotPresent
    resources:
      limits: {{cpu: 250m}}
    volumeMounts:
    - {{name: live, mountPath: /etc/live}}
    - {{name: live, mountPath: /etc/sub/greeting, subPath: greeting}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: proj, mountPath: /etc/proj}}
    command:
    - sh
    - -c
    - |
      trap 'exit 0' TERM
      echo "labels: $(tr '\n' ' ' < /etc/info/labels)"
      echo "notes: $(cat /etc/info/notes)"
      echo "pw mode: $(stat -L -c %a /etc/proj/pw)"
      last=""
      while true; do
        now="live=$(cat /etc/live/greeting) proj=$(cat /etc/proj/conf/greeting) pw=$(cat /etc/proj/pw) name=$(cat /etc/proj/name) sub=$(cat /etc/sub/greeting) cpu=$(cat /etc/info/cpu)"
        if [ "$now" != "$last" ]; then echo "$now"; last="$now"; fi
        sleep 0.2
      done
"#
    )
}

#[test]
fn downward_and_projected_files_and_a_configmap_edit_reach_the_running_container() {
    let agent = TestAgent::start();
    agent.write_manifest("objects.yaml", &objects("hello"));
    agent.write_manifest("vols.yaml", &pod());
    agent.wait_phase("vols", "Running");
    let logs = || agent.skiff_ok(&["logs", "vols"]);
    let first = "live=hello proj=hello pw=hunter2 name=vols sub=hello cpu=250";
    let log = agent.wait_until(WAIT, "the files as first written", || {
        let log = logs();
        log.lines().any(|l| l == first).then_some(log)
    });
    for want in [
        // One line per label, no newline after the last (as kubelet writes it).
        "labels: app=\"vols\" tier=\"edge\"",
        "notes: note=\"a b\"",
        "pw mode: 400",
    ] {
        assert!(
            log.lines().any(|l| l == want),
            "missing {want:?} in:\n{log}"
        );
    }
    // Edit the ConfigMap: the mounted files change in place, the subPath mount does not.
    agent.write_manifest("objects.yaml", &objects("bonjour"));
    let second = "live=bonjour proj=bonjour pw=hunter2 name=vols sub=hello cpu=250";
    agent.wait_until(WAIT, "the edited ConfigMap in the container", || {
        logs().lines().any(|l| l == second).then_some(())
    });
    let pod = agent.pod("vols").expect("vols");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["restartCount"], 0,
        "the container was not restarted: {pod}"
    );
    let events = agent.events();
    assert!(
        events.iter().any(|e| e["reason"] == "VolumesUpdated"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("live") && m.contains("proj"))),
        "{events:#?}"
    );
    // Files in the host's pod directory: one version, read through `..data`.
    let uid = support::uid_of(&pod);
    let dir = agent.data.join("pods").join(uid).join("volumes/live");
    let versions = std::fs::read_dir(&dir)
        .expect("volume dir")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("..") && name != "..data"
        })
        .count();
    assert_eq!(versions, 1, "old versions are removed");
}

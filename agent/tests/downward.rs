//! The downward API in a container's environment on one real node (issue 14): `fieldRef`
//! values are the pod's own name, namespace, uid, labels, node name and addresses, and
//! `resourceFieldRef` its memory limit, as the container sees them. Real containers, pod networking in the test's own namespaces.
//!
//! Run as root: `cargo test -p skiff-agent --test downward`.

mod support;

use support::netbed::NetBed;
use support::{TEST_IMAGE, WAIT};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: downward
  labels: {app: probe-me}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo mem=$MEM_MI; echo name=$POD_NAME ns=$POD_NAMESPACE app=$APP node=$NODE ip=$POD_IP host=$HOST_IP uid=$UID; ip -4 -o addr show eth0; trap 'exit 0' TERM; sleep 100000 & wait"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    resources:
      limits: {memory: 48Mi}
"#;

#[test]
fn field_refs_give_the_container_its_pods_fields() {
    let bed = NetBed::start(67, 24, false);
    bed.write_manifest("downward.yaml", &POD.replace("IMAGE", TEST_IMAGE));
    let pod = bed.wait_phase("downward", "Running");
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    let uid = pod["metadata"]["uid"].as_str().expect("a uid").to_string();
    let node = pod["spec"]["nodeName"]
        .as_str()
        .expect("a node")
        .to_string();
    let line = bed.wait_until(WAIT, "the container's first line", || {
        let out = bed.skiff(&["logs", "downward"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("name="))
            .map(str::to_string)
    });
    let want = format!("name=downward ns=default app=probe-me node={node} ip={ip} host=");
    assert!(
        line.starts_with(&want),
        "{line:?} does not start with {want:?}"
    );
    assert!(line.ends_with(&format!("uid={uid}")), "{line}");
    let host = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("host="))
        .unwrap_or_default();
    assert!(
        host.parse::<std::net::Ipv4Addr>().is_ok(),
        "status.hostIP is an address: {line}"
    );
    // The address the container has on eth0 is the one it was told.
    let logs = String::from_utf8_lossy(&bed.skiff(&["logs", "downward"]).stdout).into_owned();
    assert!(
        logs.lines().any(|l| l == "mem=48"),
        "resourceFieldRef: {logs}"
    );
    assert!(logs.contains(&format!("inet {ip}/")), "{logs}");
}

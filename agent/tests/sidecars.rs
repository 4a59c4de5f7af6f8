//! Native sidecars on one real node (issue 12): an init container with `restartPolicy: Always`
//! starts before the next init container (which can already use it), keeps running beside
//! the main container, comes back when it exits, and the pod is Running with it (not stuck in
//! PodInitializing). Real containers, pod networking in the test's own namespaces.
//!
//! Run as root: `cargo test -p skiff-agent --test sidecars`.

mod support;

use support::netbed::NetBed;
use support::{TEST_IMAGE, WAIT};

/// The sidecar serves on 8081; the init container after it fetches from it (it only succeeds
/// when the sidecar runs); the main container keeps going. The sidecar exits after a while.
const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: withside
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: IMAGE
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "mkdir -p /www && echo side-ok > /www/index.html && (httpd -f -p 8081 -h /www &) && sleep 4 && echo leaving"]
  - name: setup
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "until wget -q -O - http://127.0.0.1:8081/; do sleep 0.2; done"]
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#;

#[test]
fn a_native_sidecar_runs_beside_the_main_container_and_restarts() {
    let bed = NetBed::start(66, 24, false);
    bed.write_manifest("withside.yaml", &POD.replace("IMAGE", TEST_IMAGE));
    let pod = bed.wait_phase("withside", "Running");
    let init = &pod["status"]["initContainerStatuses"];
    assert!(
        init[0]["state"]["running"].is_object(),
        "the sidecar runs beside the main container: {init}"
    );
    assert_eq!(
        init[1]["state"]["terminated"]["reason"], "Completed",
        "the init container after the sidecar reached it: {init}"
    );
    let conditions = &pod["status"]["conditions"];
    assert!(
        conditions
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Initialized" && c["status"] == "True"),
        "initialized with its sidecar running: {conditions}"
    );
    // It exits after 4 s and comes back, whatever happens to the main container.
    bed.wait_until(WAIT, "the sidecar started again", || {
        let pod = bed.pod("withside")?;
        let side = &pod["status"]["initContainerStatuses"][0];
        (side["restartCount"].as_u64()? >= 1 && side["state"]["running"].is_object()).then_some(())
    });
    let pod = bed.pod("withside").expect("the pod");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["restartCount"], 0,
        "the main container was left alone"
    );
}

//! Probes on one real node (issue 12): a readiness probe holds a pod out of READY (and out of
//! its Service's endpoints) until its check passes; a failed liveness probe restarts the
//! container with an `Unhealthy` event that says why; exec probes and an exec postStart hook run
//! inside the container; grpc and HTTPS probes reach servers of the test's own. Real
//! containers, pod networking in the test's own namespaces; httpGet checks go from the node to
//! the pod's address.
//!
//! Run as root: `cargo test -p skiff-agent --test probes`.

mod support;

use support::netbed::NetBed;
use support::{TEST_IMAGE, WAIT};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: probed
  labels: {app: probed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/alive && (httpd -f -p 8080 -h /www &) && sleep 2 && echo ok > /www/ready && sleep 3 && rm /www/alive && echo removed; trap 'exit 0' TERM; sleep 100000 & wait"]
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
    livenessProbe:
      httpGet: {path: /alive, port: 8080}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata:
  name: probed
spec:
  selector: {app: probed}
  ports:
  - {port: 80, targetPort: http}
"#;

fn ready_of(bed: &NetBed) -> Option<(bool, u64)> {
    let pod = bed.pod("probed")?;
    let status = &pod["status"]["containerStatuses"][0];
    Some((status["ready"].as_bool()?, status["restartCount"].as_u64()?))
}

fn endpoints(bed: &NetBed) -> usize {
    addresses(bed, "probed", "addresses")
}

/// How many `field` (addresses, notReadyAddresses) `get endpoints NAME` lists.
fn addresses(bed: &NetBed, name: &str, field: &str) -> usize {
    let out = bed.skiff(&["get", "endpoints", name, "-o", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["subsets"][0][field].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// A pod that turns ready through its readiness probe, behind Service `flip`.
const FLIP: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
  labels: {app: flip}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/ready && exec httpd -f -p 8080 -h /www"]
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: flip
spec:
  selector: {app: flip}
  ports:
  - {port: 80, targetPort: http}
"#;

#[test]
fn readiness_gates_ready_and_endpoints_and_liveness_restarts() {
    let bed = NetBed::start_with_args(63, 24, false, &["--service-cidr", "198.19.163.0/24"]);
    bed.write_manifest("probed.yaml", &POD.replace("IMAGE", TEST_IMAGE));
    bed.wait_phase("probed", "Running");
    // Running, but not ready until /ready is served (about 2 s after the start).
    let (ready, _) = bed.wait_until(WAIT, "the container's status", || ready_of(&bed));
    assert!(!ready, "ready before its readiness probe passed");
    assert_eq!(endpoints(&bed), 0, "a pod that is not ready is no endpoint");
    // Listed, as Kubernetes' Endpoints do, among the not-ready addresses meanwhile.
    let not_ready = addresses(&bed, "probed", "notReadyAddresses");
    assert!(not_ready <= 1, "{not_ready} not-ready addresses of one pod");
    bed.wait_until(WAIT, "READY through the readiness probe", || {
        ready_of(&bed).filter(|(r, _)| *r)
    });
    bed.wait_until(WAIT, "the ready pod among the endpoints", || {
        (endpoints(&bed) == 1).then_some(())
    });
    // /alive goes away: two failed checks restart the container, with the reason.
    bed.wait_until(WAIT, "a restart by the liveness probe", || {
        ready_of(&bed).filter(|(_, restarts)| *restarts >= 1)
    });
    let events = bed.events();
    let unhealthy = events.iter().find(|e| {
        e["reason"] == "Unhealthy"
            && e["message"].as_str().is_some_and(|m| {
                m.contains("Liveness probe failed: HTTP probe failed with statuscode: 404")
            })
    });
    assert!(unhealthy.is_some(), "{events:#?}");

    // A ready endpoint that turns unready leaves the Service's endpoints and rules, and comes
    // back when its check passes again.
    bed.write_manifest("flip.yaml", &FLIP.replace("IMAGE", TEST_IMAGE));
    let pod = bed.wait_until(WAIT, "flip ready", || {
        let pod = bed.pod("flip")?;
        (pod["status"]["containerStatuses"][0]["ready"] == true).then_some(pod)
    });
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    let in_rules = |bed: &NetBed| {
        let t = bed.nft_service_table();
        t.contains(&format!("{ip}:8080")) || t.contains(&format!("{ip} . 8080"))
    };
    bed.wait_until(WAIT, "flip among the endpoints and in the rules", || {
        (addresses(&bed, "flip", "addresses") == 1 && in_rules(&bed)).then_some(())
    });
    bed.skiff_ok(&["exec", "flip", "--", "rm", "/www/ready"]);
    bed.wait_until(
        WAIT,
        "flip unready, out of the rules, listed as not ready",
        || {
            (addresses(&bed, "flip", "addresses") == 0
                && addresses(&bed, "flip", "notReadyAddresses") == 1
                && !in_rules(&bed))
            .then_some(())
        },
    );
    bed.skiff_ok(&["exec", "flip", "--", "sh", "-c", "echo ok > /www/ready"]);
    bed.wait_until(WAIT, "flip ready again, back in the rules", || {
        (addresses(&bed, "flip", "addresses") == 1
            && addresses(&bed, "flip", "notReadyAddresses") == 0
            && in_rules(&bed))
        .then_some(())
    });
}

/// Without pod networking a pod has a loopback-only namespace: its checks run inside it.
#[test]
fn a_pod_without_pod_networking_is_probed_on_its_own_loopback() {
    let agent = support::TestAgent::start_with(support::AgentOptions {
        pod_network: false,
        ..support::AgentOptions::default()
    });
    agent.write_manifest(
        "lo.yaml",
        &support::pod_yaml(
            "lo",
            "mkdir -p /www && echo ok > /www/ready && exec httpd -f -p 8080 -h /www",
            "  terminationGracePeriodSeconds: 1\n",
        )
        .replace(
            "    command:",
            "    readinessProbe:\n      httpGet: {path: /ready, port: 8080}\n      periodSeconds: 1\n    command:",
        ),
    );
    agent.wait_until(WAIT, "lo READY through its readiness probe", || {
        let pod = agent.pod("lo")?;
        (pod["status"]["containerStatuses"][0]["ready"] == true).then_some(())
    });
    // The checks reach the pod's own server: a missing path is its 404.
    agent.write_manifest(
        "dead.yaml",
        &support::pod_yaml(
            "dead",
            "mkdir -p /www && exec httpd -f -p 8080 -h /www",
            "  terminationGracePeriodSeconds: 1\n",
        )
        .replace(
            "    command:",
            "    livenessProbe:\n      httpGet: {path: /missing, port: 8080}\n      periodSeconds: 1\n      failureThreshold: 1\n    command:",
        ),
    );
    agent.wait_until(WAIT, "dead restarted by its liveness probe", || {
        agent.events().into_iter().find(|e| {
            e["message"].as_str().is_some_and(|m| {
                m.contains("Liveness probe failed: HTTP probe failed with statuscode: 404")
            })
        })
    });
}

/// The Kubernetes `exec-liveness` example with an exec readiness probe and an exec postStart
/// hook: the hook's file makes the pod ready, `skiff exec` reads it, and the liveness command
/// failing once the file it reads is gone restarts the container with its output as the reason.
const EXEC_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: execprobed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 4; rm -f /tmp/healthy; trap 'exit 0' TERM; sleep 100000 & wait"]
    lifecycle:
      postStart:
        exec: {command: ["sh", "-c", "echo hooked > /tmp/started"]}
    readinessProbe:
      exec: {command: ["test", "-e", "/tmp/started"]}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
"#;

#[test]
fn exec_probes_and_an_exec_post_start_hook_run_in_the_container() {
    let agent = support::TestAgent::start_with(support::AgentOptions {
        pod_network: false,
        ..support::AgentOptions::default()
    });
    agent.write_manifest("execprobed.yaml", &EXEC_POD.replace("IMAGE", TEST_IMAGE));
    agent.wait_until(WAIT, "READY through the exec readiness probe", || {
        let pod = agent.pod("execprobed")?;
        (pod["status"]["containerStatuses"][0]["ready"] == true).then_some(())
    });
    let marker = agent.skiff_ok(&["exec", "execprobed", "--", "cat", "/tmp/started"]);
    assert_eq!(
        marker, "hooked\n",
        "the postStart hook ran in the container"
    );
    let event = agent.wait_until(WAIT, "a restart by the exec liveness probe", || {
        let pod = agent.pod("execprobed")?;
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_u64()?;
        let events = agent.events();
        let unhealthy = events.into_iter().find(|e| {
            e["reason"] == "Unhealthy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Liveness probe failed: cat: can't open"))
        });
        (restarts >= 1).then_some(unhealthy).flatten()
    });
    assert!(
        event["message"]
            .as_str()
            .unwrap_or("")
            .contains("/tmp/healthy"),
        "{event}"
    );
}

/// HTTPS and gRPC health servers of the test's own on the node's loopback, for a host-network
/// pod's probes: `status` is what the gRPC health check answers (1 SERVING, 2 NOT_SERVING),
/// `code` the HTTPS server's status code.
struct ProbeServers {
    https: u16,
    grpc: u16,
    status: std::sync::Arc<std::sync::atomic::AtomicU8>,
    code: std::sync::Arc<std::sync::atomic::AtomicU16>,
    _runtime: tokio::runtime::Runtime,
}

impl ProbeServers {
    fn start() -> ProbeServers {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let status = Arc::new(AtomicU8::new(1));
        let code = Arc::new(AtomicU16::new(200));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (https, grpc) = runtime.block_on(async {
            let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let h2l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            (tls, h2l)
        });
        let ports = (
            https.local_addr().unwrap().port(),
            grpc.local_addr().unwrap().port(),
        );
        let answer = code.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = https.accept().await {
                let acceptor = acceptor.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 2048];
                    let _ = tls.read(&mut buf).await;
                    let code = answer.load(Ordering::SeqCst);
                    let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let serving = status.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = grpc.accept().await {
                let serving = serving.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let ok = request.uri().path() == "/grpc.health.v1.Health/Check";
                        let mut body = request.into_body();
                        while let Some(Ok(_)) = body.data().await {}
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let Ok(mut send) = respond.send_response(response, false) else {
                            continue;
                        };
                        let mut trailers = http::HeaderMap::new();
                        if ok {
                            let s = serving.load(Ordering::SeqCst);
                            let _ = send.send_data(vec![0, 0, 0, 0, 2, 0x08, s].into(), false);
                            trailers.insert("grpc-status", "0".parse().unwrap());
                        } else {
                            trailers.insert("grpc-status", "12".parse().unwrap());
                        }
                        let _ = send.send_trailers(trailers);
                    }
                });
            }
        });
        ProbeServers {
            https: ports.0,
            grpc: ports.1,
            status,
            code,
            _runtime: runtime,
        }
    }
}

#[test]
fn grpc_readiness_and_https_liveness_probes_reach_servers_of_their_own() {
    use std::sync::atomic::Ordering;
    let servers = ProbeServers::start();
    let agent = support::TestAgent::start_with(support::AgentOptions {
        pod_network: false,
        ..support::AgentOptions::default()
    });
    let probes = format!(
        "    readinessProbe:\n      grpc: {{port: {}}}\n      periodSeconds: 1\n    livenessProbe:\n      httpGet: {{path: /healthz, port: {}, scheme: HTTPS}}\n      periodSeconds: 1\n      failureThreshold: 2\n    command:",
        servers.grpc, servers.https
    );
    agent.write_manifest(
        "remote.yaml",
        &support::pod_yaml(
            "remote",
            "trap 'exit 0' TERM; sleep 100000 & wait",
            "  terminationGracePeriodSeconds: 1\n  hostNetwork: true\n",
        )
        .replace("    command:", &probes),
    );
    let ready = |want: bool| {
        agent.wait_until(
            WAIT,
            &format!("READY {want} through the grpc probe"),
            || {
                let pod = agent.pod("remote")?;
                (pod["status"]["containerStatuses"][0]["ready"] == want).then_some(())
            },
        )
    };
    ready(true);
    servers.status.store(2, Ordering::SeqCst);
    ready(false);
    let events = agent.events();
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| {
                m.contains(
                    "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")",
                )
            })),
        "{events:#?}"
    );
    servers.code.store(500, Ordering::SeqCst);
    agent.wait_until(WAIT, "a restart by the HTTPS liveness probe", || {
        agent.events().into_iter().find(|e| {
            e["message"].as_str().is_some_and(|m| {
                m.contains("Liveness probe failed: HTTP probe failed with statuscode: 500")
            })
        })
    });
}

//! Container probes: defaults, every handler, and refusals that name the field.

use skiff_manifests::{HttpScheme, Object, Probe, ProbeHandler, ProbePort, parse_file};

fn pod(probes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports:\n    - {{name: http, containerPort: 8080}}\n{probes}"
    )
}

fn probes(yaml: &str) -> [Option<Probe>; 3] {
    let parsed = parse_file("pod.yaml", pod(yaml).as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let Object::Pod(p) = parsed.objects()[0].get() else {
        panic!("not a Pod")
    };
    let c = &p.spec.containers[0];
    [
        c.liveness_probe.clone(),
        c.readiness_probe.clone(),
        c.startup_probe.clone(),
    ]
}

fn errors(yaml: &str) -> Vec<(String, String)> {
    parse_file("pod.yaml", pod(yaml).as_bytes())
        .errors()
        .into_iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect()
}

#[test]
fn defaults_and_every_handler() {
    let [live, ready, start] = probes(
        "    livenessProbe:\n      httpGet: {path: healthz, port: http, scheme: HTTPS, httpHeaders: [{name: X-Probe, value: \"1\"}]}\n    readinessProbe:\n      tcpSocket: {port: 8080}\n      initialDelaySeconds: 5\n      periodSeconds: 2\n      successThreshold: 2\n    startupProbe:\n      exec: {command: [cat, /tmp/ok]}\n      failureThreshold: 30\n      terminationGracePeriodSeconds: 3\n",
    );
    let live = live.unwrap();
    assert_eq!(
        (
            live.initial_delay_seconds,
            live.period_seconds,
            live.timeout_seconds
        ),
        (0, 10, 1)
    );
    assert_eq!((live.success_threshold, live.failure_threshold), (1, 3));
    let ProbeHandler::HttpGet(get) = &live.handler else {
        panic!("{live:?}")
    };
    assert_eq!(get.path, "/healthz");
    assert_eq!(get.port, ProbePort::Name("http".into()));
    assert_eq!(get.scheme, HttpScheme::Https);
    assert_eq!(get.http_headers[0].name, "X-Probe");
    let ready = ready.unwrap();
    assert_eq!(
        ready.handler,
        ProbeHandler::TcpSocket {
            port: ProbePort::Number(8080),
            host: None
        }
    );
    assert_eq!(
        (
            ready.initial_delay_seconds,
            ready.period_seconds,
            ready.success_threshold
        ),
        (5, 2, 2)
    );
    let start = start.unwrap();
    assert_eq!(start.kind(), "exec");
    assert_eq!(
        (
            start.failure_threshold,
            start.termination_grace_period_seconds
        ),
        (30, Some(3))
    );
    let [_, _, grpc] = probes("    startupProbe:\n      grpc: {port: 9090, service: health}\n");
    assert_eq!(
        grpc.unwrap().handler,
        ProbeHandler::Grpc {
            port: 9090,
            service: Some("health".into())
        }
    );
}

#[test]
fn probes_read_back_in_kubernetes_shape() {
    let parsed = parse_file(
        "pod.yaml",
        pod("    readinessProbe:\n      httpGet: {port: 8080}\n").as_bytes(),
    );
    let json = serde_json::to_value(parsed.objects()[0].get()).unwrap();
    let probe = &json["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["httpGet"]["path"], "/");
    assert_eq!(probe["httpGet"]["port"], 8080);
    assert_eq!(probe["httpGet"]["scheme"], "HTTP");
    assert_eq!(probe["periodSeconds"], 10);
    assert_eq!(probe["failureThreshold"], 3);
}

#[test]
fn every_handler_is_accepted_without_a_warning() {
    let warnings = |yaml: &str| -> Vec<String> {
        parse_file("pod.yaml", pod(yaml).as_bytes())
            .warnings()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    for yaml in [
        "    livenessProbe:\n      tcpSocket: {port: 8080}\n    readinessProbe:\n      httpGet: {port: 8080}\n",
        "    livenessProbe:\n      exec: {command: [\"true\"]}\n",
        "    startupProbe:\n      grpc: {port: 9090, service: db}\n",
        "    readinessProbe:\n      httpGet: {port: 8080, scheme: HTTPS}\n",
        "    lifecycle:\n      preStop: {httpGet: {port: 8443, scheme: HTTPS}}\n",
    ] {
        assert!(warnings(yaml).is_empty(), "{yaml}: {:?}", warnings(yaml));
    }
}

#[test]
fn refusals_name_the_field() {
    let p = "spec.containers[0]";
    let cases = [
        (
            "    livenessProbe: {periodSeconds: 3}\n",
            format!("{p}.livenessProbe"),
            "must set one probe handler",
        ),
        (
            "    livenessProbe:\n      tcpSocket: {port: 80}\n      exec: {command: [\"true\"]}\n",
            format!("{p}.livenessProbe"),
            "only one probe handler (got exec, tcpSocket)",
        ),
        (
            "    livenessProbe:\n      tcpSocket: {port: 80}\n      successThreshold: 2\n",
            format!("{p}.livenessProbe.successThreshold"),
            "must be 1 for a liveness probe",
        ),
        (
            "    startupProbe:\n      tcpSocket: {port: 80}\n      successThreshold: 3\n",
            format!("{p}.startupProbe.successThreshold"),
            "must be 1 for a startup probe",
        ),
        (
            "    readinessProbe:\n      tcpSocket: {port: 80}\n      terminationGracePeriodSeconds: 5\n",
            format!("{p}.readinessProbe.terminationGracePeriodSeconds"),
            "readiness",
        ),
        (
            "    readinessProbe:\n      tcpSocket: {port: 80}\n      periodSeconds: 0\n",
            format!("{p}.readinessProbe.periodSeconds"),
            "must be >= 1",
        ),
        (
            "    readinessProbe:\n      tcpSocket: {port: 80}\n      initialDelaySeconds: -1\n",
            format!("{p}.readinessProbe.initialDelaySeconds"),
            "must be >= 0",
        ),
        (
            "    readinessProbe:\n      httpGet: {port: metrics}\n",
            format!("{p}.readinessProbe.httpGet.port"),
            "names no port of this container",
        ),
        (
            "    readinessProbe:\n      httpGet: {port: 70000}\n",
            format!("{p}.readinessProbe.httpGet.port"),
            "between 1 and 65535",
        ),
        (
            "    readinessProbe:\n      httpGet: {port: 80, scheme: FTP}\n",
            format!("{p}.readinessProbe.httpGet.scheme"),
            "must be one of",
        ),
        (
            "    readinessProbe:\n      tcpSocket: {}\n",
            format!("{p}.readinessProbe.tcpSocket.port"),
            "required",
        ),
        (
            "    readinessProbe:\n      exec: {command: []}\n",
            format!("{p}.readinessProbe.exec.command"),
            "must name a command",
        ),
        (
            "    readinessProbe:\n      grpc: {}\n",
            format!("{p}.readinessProbe.grpc.port"),
            "required",
        ),
    ];
    for (yaml, field, message) in cases {
        let found = errors(yaml);
        assert!(
            found
                .iter()
                .any(|(f, m)| *f == field && m.contains(message)),
            "{yaml}: want {field}: {message}; got {found:?}"
        );
    }
}

#[test]
fn lifecycle_hooks_read_back_and_refusals_name_the_field() {
    use skiff_manifests::Hook;
    let parsed = parse_file(
        "pod.yaml",
        pod("    lifecycle:\n      postStart: {httpGet: {path: /warm, port: http}}\n      preStop: {sleep: {seconds: 5}}\n").as_bytes(),
    );
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    let Object::Pod(p) = parsed.objects()[0].get() else {
        panic!("not a Pod")
    };
    let l = &p.spec.containers[0].lifecycle;
    assert_eq!(l.pre_stop, Some(Hook::Sleep { seconds: 5 }));
    let Some(Hook::HttpGet(get)) = &l.post_start else {
        panic!("{l:?}")
    };
    assert_eq!(
        (get.path.as_str(), &get.port),
        ("/warm", &ProbePort::Name("http".into()))
    );
    let json = serde_json::to_value(&p.spec.containers[0]).unwrap();
    assert_eq!(json["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    assert_eq!(json["lifecycle"]["postStart"]["httpGet"]["path"], "/warm");

    let p = "spec.containers[0].lifecycle";
    let cases = [
        (
            "    lifecycle: {preStop: {}}\n",
            format!("{p}.preStop"),
            "must set one handler",
        ),
        (
            "    lifecycle: {preStop: {sleep: {seconds: 1}, httpGet: {port: 80}}}\n",
            format!("{p}.preStop"),
            "only one handler (got httpGet, sleep)",
        ),
        (
            "    lifecycle: {postStart: {sleep: {seconds: -1}}}\n",
            format!("{p}.postStart.sleep.seconds"),
            "must be >= 0",
        ),
        (
            "    lifecycle: {postStart: {tcpSocket: {port: metrics}}}\n",
            format!("{p}.postStart.tcpSocket.port"),
            "metrics",
        ),
    ];
    for (yaml, field, message) in cases {
        let found = errors(yaml);
        assert!(
            found
                .iter()
                .any(|(f, m)| *f == field && m.contains(message)),
            "{yaml}: want {field}: {message}; got {found:?}"
        );
    }
    // Hooks on init containers are refused, as Kubernetes does.
    let init = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    lifecycle: {preStop: {sleep: {seconds: 1}}}\n  containers:\n  - name: c\n    image: busybox\n";
    let found: Vec<(String, String)> = parse_file("pod.yaml", init.as_bytes())
        .errors()
        .into_iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect();
    assert!(
        found
            .iter()
            .any(|(f, m)| f == "spec.initContainers[0].lifecycle" && m.contains("init containers")),
        "{found:?}"
    );
    // An exec hook runs: no warning.
    let parsed = parse_file(
        "pod.yaml",
        pod("    lifecycle:\n      preStop: {exec: {command: [nginx, -s, quit]}}\n").as_bytes(),
    );
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
}

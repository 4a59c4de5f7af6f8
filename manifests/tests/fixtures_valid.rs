//! The example manifests under tests/fixtures/valid parse cleanly, carry the expected values,
//! and survive a round trip through JSON and YAML (serialize, parse again, compare).

use std::path::PathBuf;

use skiff_manifests::{
    DaemonSet, Deployment, EnvFromRef, EnvValue, EnvVarSource, Kind, Object, ParsedFile, Pod,
    PullPolicy, RestartPolicy, Valid, VolumeSource, parse_file, to_yaml,
};

fn fixture(name: &str) -> (String, Vec<u8>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/valid")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    (name.to_string(), bytes)
}

fn parse_clean(name: &str) -> ParsedFile {
    let (name, bytes) = fixture(name);
    let parsed = parse_file(&name, &bytes);
    let errors: Vec<String> = parsed.errors().iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}");
    let warnings: Vec<String> = parsed.warnings().iter().map(ToString::to_string).collect();
    assert!(warnings.is_empty(), "{name}: {warnings:#?}");
    parsed
}

#[test]
fn web_deployment_fixture() {
    let parsed = parse_clean("web-deployment.yaml");
    let objects = parsed.into_result().unwrap_or_default();
    assert_eq!(objects.len(), 1);
    let Ok(web) = Valid::<Deployment>::try_from(objects[0].clone()) else {
        panic!("not a deployment");
    };
    assert_eq!(objects[0].key().to_string(), "Deployment default/web");
    assert_eq!(web.spec.replicas, 2);
    assert!(
        web.spec
            .selector
            .matches(&web.spec.template.metadata.labels)
    );
    let container = &web.spec.template.spec.containers[0];
    assert_eq!(container.image, "skiff.local/busybox:latest");
    assert_eq!(container.image_pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(container.ports[0].container_port, 8080);
    assert_eq!(container.resources.requests.cpu_millis(), Some(50));
    assert_eq!(container.resources.limits.cpu_millis(), Some(500));
    assert_eq!(container.resources.requests.memory_bytes(), Some(16 << 20));
    assert_eq!(container.resources.limits.memory_bytes(), Some(64 << 20));
    assert_eq!(web.spec.template.spec.restart_policy, RestartPolicy::Always);
    assert_eq!(web.spec.template.spec.termination_grace_period_seconds, 30);
    assert_eq!(web.spec.template.spec.total_requests().cpu_millis, 50);
}

#[test]
fn log_shipper_daemon_set_fixture() {
    let parsed = parse_clean("log-shipper-daemonset.yaml");
    let objects = parsed.into_result().unwrap_or_default();
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0].key().to_string(),
        "DaemonSet default/log-shipper"
    );
    assert_eq!(objects[0].kind(), Kind::DaemonSet);
    assert_eq!(Kind::from_cli_name("ds"), Some(Kind::DaemonSet));
    assert_eq!(
        Kind::from_type("apps/v1", "DaemonSet"),
        Some(Kind::DaemonSet)
    );
    let Ok(shipper) = Valid::<DaemonSet>::try_from(objects[0].clone()) else {
        panic!("not a daemon set");
    };
    let template = &shipper.spec.template;
    assert!(shipper.spec.selector.matches(&template.metadata.labels));
    assert_eq!(
        template.spec.node_selector.get("role").map(String::as_str),
        Some("edge")
    );
    assert_eq!(template.spec.restart_policy, RestartPolicy::Always);
    // The init container asks for more cpu than the main one: the larger figure counts.
    let requests = template.spec.total_requests();
    assert_eq!(
        (requests.cpu_millis, requests.memory_bytes),
        (100, 16 << 20)
    );
    assert_eq!(shipper.pod_template_hash(), template.hash());

    let pod = shipper.new_pod("edge-1");
    assert_eq!(pod.metadata.name, shipper.pod_name("edge-1"));
    assert!(pod.metadata.name.starts_with("log-shipper-"));
    assert_eq!(pod.metadata.name.len(), "log-shipper-".len() + 5);
    assert_eq!(shipper.new_pod("edge-1"), pod, "same node, same pod");
    assert_ne!(shipper.pod_name("edge-2"), pod.metadata.name);
    assert_eq!(pod.metadata.namespace, "default");
    assert_eq!(
        pod.metadata.labels.get("pod-template-hash"),
        Some(&shipper.pod_template_hash())
    );
    assert_eq!(pod.spec, template.spec);

    let json = serde_json::to_value(&objects[0]).unwrap_or_default();
    assert_eq!(json["apiVersion"], "apps/v1");
    assert_eq!(json["kind"], "DaemonSet");
    assert_eq!(
        json["spec"]["selector"]["matchLabels"]["app"],
        "log-shipper"
    );
    assert_eq!(
        json["spec"]["template"]["spec"]["nodeSelector"]["role"],
        "edge"
    );
}

#[test]
fn app_with_config_fixture() {
    let parsed = parse_clean("app-with-config.yaml");
    let kinds: Vec<Kind> = parsed.objects().iter().map(|o| o.kind()).collect();
    assert_eq!(kinds, [Kind::ConfigMap, Kind::Secret, Kind::Pod]);
    let objects = parsed.objects();
    let Object::ConfigMap(config) = objects[0].get() else {
        panic!("configmap")
    };
    assert_eq!(config.get("greeting"), Some(&b"hello from skiff"[..]));
    let Object::Secret(secret) = objects[1].get() else {
        panic!("secret")
    };
    assert_eq!(secret.type_, "Opaque");
    assert_eq!(
        secret.get("password").map(|s| s.expose()),
        Some(&b"s3cr3t-pw"[..])
    );
    assert_eq!(
        secret.get("api-token").map(|s| s.expose()),
        Some(&b"demo-token-123"[..])
    );
    let debug = format!("{parsed:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("demo-token"),
        "secret in Debug output"
    );

    let Object::Pod(pod) = objects[2].get() else {
        panic!("pod")
    };
    assert_eq!(pod.spec.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(pod.spec.termination_grace_period_seconds, 5);
    let main = &pod.spec.containers[0];
    assert_eq!(main.working_dir.as_deref(), Some("/tmp"));
    assert!(matches!(
        &main.env[0].value,
        EnvValue::ValueFrom(EnvVarSource::SecretKeyRef(key)) if key.name == "app-secret" && key.key == "password"
    ));
    assert_eq!(main.env[1].value, EnvValue::Value("demo".into()));
    assert_eq!(main.env_from[0].prefix.as_deref(), Some("SECRET_"));
    assert!(matches!(&main.env_from[0].source, EnvFromRef::SecretRef(r) if r.name == "app-secret"));
    let Some(VolumeSource::ConfigMap(volume)) = pod.spec.volume("config").map(|v| &v.source) else {
        panic!("config volume");
    };
    assert_eq!(
        (volume.name.as_str(), volume.default_mode),
        ("app-config", 0o644)
    );
    let Some(VolumeSource::EmptyDir(scratch)) = pod.spec.volume("scratch").map(|v| &v.source)
    else {
        panic!("scratch volume");
    };
    assert_eq!(scratch.size_limit_bytes(), Some(32 << 20));
    assert!(main.volume_mounts[0].read_only);
}

#[test]
fn json_fixture_with_two_objects() {
    let parsed = parse_clean("sleeper-namespace.json");
    let keys: Vec<String> = parsed
        .objects()
        .iter()
        .map(|o| o.key().to_string())
        .collect();
    assert_eq!(keys, ["Namespace batch", "Deployment batch/sleeper"]);
    assert_eq!(parsed.documents[1].line, 6);
}

#[test]
fn every_fixture_round_trips_through_json_and_yaml() {
    for name in [
        "web-deployment.yaml",
        "app-with-config.yaml",
        "sleeper-namespace.json",
        "log-shipper-daemonset.yaml",
    ] {
        let parsed = parse_clean(name);
        for object in parsed.objects() {
            let json = object.to_json();
            let again =
                Valid::<Object>::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(&again, object, "{name}: JSON round trip changed the object");
            let via_serde: Valid<Object> =
                serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&via_serde, object);

            let yaml = to_yaml(object).unwrap_or_else(|e| panic!("{name}: {e}"));
            let reparsed = parse_file("again.yaml", yaml.as_bytes());
            assert!(
                reparsed.warnings().is_empty(),
                "{name}: {:?}",
                reparsed.warnings()
            );
            let objects = reparsed
                .into_result()
                .unwrap_or_else(|e| panic!("{name}: {e:?}\n{yaml}"));
            assert_eq!(objects.len(), 1);
            assert_eq!(
                &objects[0], object,
                "{name}: YAML round trip changed the object"
            );
            assert_eq!(objects[0].content_hash(), object.content_hash());
        }
    }
}

#[test]
fn serialized_shape_is_kubernetes_like() {
    let parsed = parse_clean("app-with-config.yaml");
    let objects = parsed.objects();
    let pod = serde_json::to_value(objects[2]).unwrap_or_default();
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"],
        "password"
    );
    assert_eq!(pod["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
    assert_eq!(pod["spec"]["volumes"][1]["emptyDir"]["sizeLimit"], "32Mi");
    let secret = serde_json::to_value(objects[1]).unwrap_or_default();
    assert_eq!(secret["data"]["password"], "czNjcjN0LXB3");
    assert!(secret.get("stringData").is_none());

    let deployment: Result<Valid<Pod>, _> =
        serde_json::from_value(serde_json::to_value(objects[0]).unwrap_or_default());
    let message = deployment.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("expected a Pod, got a ConfigMap"),
        "{message}"
    );
}

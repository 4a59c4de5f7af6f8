//! Tables for turning a manifest container into a process: argv and environment rules, pids
//! limits, and the effective security settings (pod and container securityContext merged).

use super::*;
use std::collections::BTreeMap;

fn container(fields: &str) -> Container {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i:1\n{fields}"
    );
    let parsed = skiff_manifests::parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    match parsed.objects()[0].get() {
        Object::Pod(p) => p.spec.containers[0].clone(),
        other => panic!("not a pod: {other:?}"),
    }
}

fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfig {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
    ImageConfig {
        entrypoint: v(entrypoint),
        cmd: v(cmd),
        env: v(env),
        ..ImageConfig::default()
    }
}

#[test]
fn command_and_args_follow_kubernetes() {
    let img = image(&["/entry"], &["default"], &[]);
    // (manifest fields, argv)
    let table = [
        ("", vec!["/entry", "default"]),
        ("    args: [a, b]\n", vec!["/entry", "a", "b"]),
        ("    command: [sh]\n", vec!["sh"]),
        (
            "    command: [sh]\n    args: [-c, x]\n",
            vec!["sh", "-c", "x"],
        ),
    ];
    for (fields, want) in table {
        assert_eq!(
            argv(&img, &container(fields), &BTreeMap::new()),
            want,
            "{fields:?}"
        );
    }
}

fn objects(yaml: &str) -> Objects {
    skiff_manifests::parse_file("o.yaml", yaml.as_bytes())
        .objects()
        .into_iter()
        .map(|o| (o.key(), o.clone()))
        .collect()
}

const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: one\n  b: two\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  pw: hunter2\n";

#[test]
fn environment_layers_image_env_from_and_env() {
    let c = container(
        "    envFrom:\n    - prefix: CM_\n      configMapRef: {name: cm}\n    env:\n    - {name: PATH, value: /x}\n    - name: PW\n      valueFrom:\n        secretKeyRef: {name: s, key: pw}\n    - name: B\n      valueFrom:\n        configMapKeyRef: {name: cm, key: b}\n",
    );
    let img = image(&[], &["sh"], &["PATH=/bin", "HOME=/"]);
    let env = environment(&img, &c, "default", &objects(CONFIG), &[]).unwrap();
    assert_eq!(
        env,
        vec![
            "PATH=/x",
            "HOME=/",
            "CM_a=one",
            "CM_b=two",
            "PW=hunter2",
            "B=two"
        ]
    );
}

#[test]
fn hostname_and_service_variables_come_before_the_manifest_env() {
    let c = container("    env:\n    - {name: DB_SERVICE_HOST, value: override}\n");
    let img = image(&[], &["sh"], &["HOSTNAME=image", "PATH=/bin"]);
    let links = [crate::services::links::test_link(
        "db",
        "10.43.0.7",
        "  - {port: 5432}\n",
    )];
    let runtime = runtime_vars("web-1", &links);
    let env = environment(&img, &c, "default", &objects(CONFIG), &runtime).unwrap();
    assert_eq!(
        env[0], "HOSTNAME=web-1",
        "the pod's hostname replaces the image's"
    );
    assert!(env.contains(&"DB_SERVICE_PORT=5432".to_string()), "{env:?}");
    assert!(
        env.contains(&"DB_PORT=tcp://10.43.0.7:5432".to_string()),
        "{env:?}"
    );
    assert!(
        env.contains(&"DB_SERVICE_HOST=override".to_string()),
        "the manifest wins: {env:?}"
    );
    assert!(!env.contains(&"DB_SERVICE_HOST=10.43.0.7".to_string()));
}

#[test]
fn missing_references_fail_unless_optional() {
    let img = image(&[], &["sh"], &[]);
    let none = objects(CONFIG);
    let missing = container(
        "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: nope, key: a}\n",
    );
    assert_eq!(
        environment(&img, &missing, "default", &none, &[])
            .unwrap_err()
            .0,
        "configmap \"nope\" not found"
    );
    let missing_key = container(
        "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: cm, key: zz}\n",
    );
    assert_eq!(
        environment(&img, &missing_key, "default", &none, &[])
            .unwrap_err()
            .0,
        "key \"zz\" not found in configmap \"cm\""
    );
    let optional = container(
        "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: nope, key: a, optional: true}\n    envFrom:\n    - secretRef: {name: gone, optional: true}\n",
    );
    assert!(
        environment(&img, &optional, "default", &none, &[])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn resources_default_the_cpu_request_to_the_limit() {
    let c = container("    resources:\n      limits: {cpu: 500m, memory: 64Mi}\n");
    let r = resources(&c, 0);
    assert_eq!((r.pids_limit, r.pod_pids_limit), (None, None));
    assert_eq!(r.memory_limit_bytes, Some(64 * 1024 * 1024));
    assert_eq!(
        (r.cpu_limit_millis, r.cpu_request_millis),
        (Some(500), Some(500))
    );
}

#[test]
fn the_node_pids_limit_bounds_the_pod_and_each_container() {
    let r = resources(&container(""), 4096);
    assert_eq!((r.pids_limit, r.pod_pids_limit), (Some(4096), Some(4096)));
}

/// The pod spec of a pod with `pod_sc` as its securityContext and one container with `fields`.
fn pod_spec(pod_sc: &str, fields: &str) -> PodSpec {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  securityContext: {pod_sc}\n  containers:\n  - name: c\n    image: i:1\n{fields}"
    );
    let parsed = skiff_manifests::parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    match parsed.objects()[0].get() {
        Object::Pod(p) => (*p.spec).clone(),
        other => panic!("not a pod: {other:?}"),
    }
}

fn effective_of(
    pod_sc: &str,
    fields: &str,
    image_user: Option<&str>,
    seccomp_dir: &Path,
) -> Result<super::super::security::Effective, ConfigError> {
    let spec = pod_spec(pod_sc, fields);
    let img = ImageConfig {
        user: image_user.map(str::to_string),
        ..image(&[], &["sh"], &[])
    };
    super::super::security::effective(&spec, &spec.containers[0], &img, seccomp_dir)
}

#[test]
fn no_security_context_gives_the_safe_default() {
    let e = effective_of("{}", "", None, Path::new("/nowhere")).unwrap();
    assert_eq!(e.user, "");
    assert_eq!(
        e.security,
        skiff_runtime::container::SecuritySpec::default()
    );
}

#[test]
fn container_settings_win_over_the_pod() {
    let e = effective_of(
        "{runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000], seccompProfile: {type: Unconfined}}",
        "    securityContext: {runAsUser: 1001, seccompProfile: {type: RuntimeDefault}, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMIN], drop: [ALL]}}\n",
        Some("nobody"),
        Path::new("/nowhere"),
    )
    .unwrap();
    assert_eq!(e.user, "1001:3000");
    let s = e.security;
    assert_eq!(s.supplemental_groups, vec![4000, 2000]);
    assert_eq!(s.seccomp, skiff_runtime::container::Seccomp::RuntimeDefault);
    assert!(s.read_only_rootfs && s.no_new_privileges && !s.privileged);
    assert_eq!(s.capabilities_add, vec!["NET_ADMIN".to_string()]);
    assert_eq!(s.capabilities_drop, vec!["ALL".to_string()]);
    let pod_only = effective_of(
        "{seccompProfile: {type: Unconfined}}",
        "",
        None,
        Path::new("/x"),
    );
    assert_eq!(
        pod_only.unwrap().security.seccomp,
        skiff_runtime::container::Seccomp::Unconfined
    );
}

#[test]
fn run_as_non_root_refuses_root_and_unverifiable_users() {
    let dir = Path::new("/nowhere");
    let root = effective_of("{runAsNonRoot: true}", "", None, dir)
        .unwrap_err()
        .0;
    assert!(
        root.starts_with("container has runAsNonRoot and image will run as root"),
        "{root}"
    );
    let named = effective_of("{runAsNonRoot: true}", "", Some("app"), dir)
        .unwrap_err()
        .0;
    assert!(named.contains("non-numeric user (app)"), "{named}");
    assert!(effective_of("{runAsNonRoot: true}", "", Some("1000"), dir).is_ok());
    assert!(effective_of("{runAsNonRoot: true, runAsUser: 7}", "", None, dir).is_ok());
    let zero = "    securityContext: {runAsUser: 0}\n";
    assert!(effective_of("{runAsNonRoot: true}", zero, Some("1000"), dir).is_err());
    // The container's runAsNonRoot: false wins over the pod's true.
    let off = "    securityContext: {runAsNonRoot: false}\n";
    assert!(effective_of("{runAsNonRoot: true}", off, None, dir).is_ok());
}

#[test]
fn localhost_profiles_are_read_from_the_seccomp_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("p")).unwrap();
    std::fs::write(
        dir.path().join("p/log.json"),
        br#"{"defaultAction":"SCMP_ACT_LOG"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.json"), b"not json").unwrap();
    let sc = |file: &str| {
        format!(
            "    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: {file}}}}}\n"
        )
    };
    let e = effective_of("{}", &sc("p/log.json"), None, dir.path()).unwrap();
    assert!(matches!(
        e.security.seccomp,
        skiff_runtime::container::Seccomp::Profile(_)
    ));
    let missing = effective_of("{}", &sc("gone.json"), None, dir.path())
        .unwrap_err()
        .0;
    assert!(
        missing.starts_with("seccomp profile \"gone.json\": cannot read"),
        "{missing}"
    );
    let bad = effective_of("{}", &sc("bad.json"), None, dir.path())
        .unwrap_err()
        .0;
    assert!(bad.contains("not a seccomp profile"), "{bad}");
}

#[test]
fn privileged_runs_unfiltered_unless_a_profile_is_asked_for() {
    use skiff_runtime::container::Seccomp;
    let dir = Path::new("/nowhere");
    let plain = "    securityContext: {privileged: true}\n";
    let e = effective_of("{}", plain, None, dir).unwrap();
    assert!(e.security.privileged);
    assert_eq!(e.security.seccomp, Seccomp::Unconfined);
    let asked = "    securityContext: {privileged: true, seccompProfile: {type: RuntimeDefault}}\n";
    let e = effective_of("{}", asked, None, dir).unwrap();
    assert_eq!(e.security.seccomp, Seccomp::RuntimeDefault);
    let from_pod = effective_of("{seccompProfile: {type: RuntimeDefault}}", plain, None, dir);
    assert_eq!(from_pod.unwrap().security.seccomp, Seccomp::RuntimeDefault);
}

#[test]
fn references_expand_as_kubernetes_does() {
    let c = container(
        "    command: [sh, -c, \"echo $(GREETING) $(CM_a) $$(GREETING) $(NOPE) $(HOME)\"]\n    args: [\"$(DB_SERVICE_HOST)\"]\n    envFrom:\n    - prefix: CM_\n      configMapRef: {name: cm}\n    env:\n    - {name: LATER_USE, value: \"$(GREETING)\"}\n    - {name: GREETING, value: \"hi-$(CM_b)\"}\n    - {name: BOTH, value: \"$(GREETING)/$(DB_SERVICE_HOST)/$(HOSTNAME)/$(PATH)\"}\n    - name: RAW\n      valueFrom:\n        configMapKeyRef: {name: cm, key: a}\n",
    );
    let img = image(&[], &["sh"], &["PATH=/bin", "HOME=/root"]);
    let links = [crate::services::links::test_link(
        "db",
        "10.43.0.7",
        "  - {port: 5432}\n",
    )];
    let runtime = runtime_vars("web-1", &links);
    let (env, vars) = environment_and_vars(
        &img,
        &c,
        &Downward {
            namespace: "default".into(),
            ..Downward::default()
        },
        &objects(CONFIG),
        &runtime,
    )
    .unwrap();
    let get = |name: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    assert_eq!(
        get("LATER_USE").as_deref(),
        Some("$(GREETING)"),
        "only variables defined before"
    );
    assert_eq!(
        get("GREETING").as_deref(),
        Some("hi-two"),
        "envFrom is seen"
    );
    assert_eq!(
        get("BOTH").as_deref(),
        Some("hi-two/10.43.0.7/$(HOSTNAME)/$(PATH)"),
        "service variables are seen; HOSTNAME and the image's are not"
    );
    assert_eq!(get("RAW").as_deref(), Some("one"));
    assert_eq!(
        argv(&img, &c, &vars),
        [
            "sh",
            "-c",
            "echo hi-two one $(GREETING) $(NOPE) $(HOME)",
            "10.43.0.7"
        ]
    );
}

#[test]
fn field_refs_read_the_pods_own_fields() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n    env:\n    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}\n    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}\n    - {name: APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}\n    - {name: NOTE, valueFrom: {fieldRef: {fieldPath: \"metadata.annotations['absent']\"}}}\n    - {name: NODE, valueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}}\n    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}\n    - {name: URL, value: \"http://$(POD_IP):8080\"}\n";
    let parsed = skiff_manifests::parse_file("p.yaml", pod.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let skiff_manifests::Object::Pod(p) = parsed.objects()[0].get() else {
        panic!("a pod")
    };
    let c = &p.spec.containers[0];
    let mut downward = Downward {
        name: "p".into(),
        namespace: "edge".into(),
        uid: "u-1".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        annotations: Default::default(),
        node_name: "n1".into(),
        pod_ip: Some("10.42.0.7".into()),
        host_ip: Some("192.168.1.10".into()),
        ..Downward::default()
    };
    let (env, _) =
        environment_and_vars(&ImageConfig::default(), c, &downward, &objects(CONFIG), &[]).unwrap();
    for want in [
        "POD_NAME=p",
        "NS=edge",
        "UID=u-1",
        "APP=web",
        "NOTE=",
        "NODE=n1",
        "POD_IP=10.42.0.7",
        "HOST_IP=192.168.1.10",
        "URL=http://10.42.0.7:8080",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    downward.pod_ip = None;
    let err = environment_and_vars(&ImageConfig::default(), c, &downward, &objects(CONFIG), &[])
        .unwrap_err();
    assert!(err.0.contains("fieldRef status.podIP"), "{}", err.0);
}

#[test]
fn resource_field_refs_divide_and_round_up() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n    resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 1500m}}\n    env:\n    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}\n    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1Mi}}}\n    - {name: MEM_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory}}}\n    - {name: SIDE, valueFrom: {resourceFieldRef: {containerName: other, resource: limits.cpu}}}\n  - name: other\n    image: i\n    resources: {limits: {cpu: 2}}\n";
    let parsed = skiff_manifests::parse_file("p.yaml", pod.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let skiff_manifests::Object::Pod(p) = parsed.objects()[0].get() else {
        panic!("a pod")
    };
    let downward = Downward {
        resources: p
            .spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.resources.clone()))
            .collect(),
        container: "c".into(),
        node_cpu_millis: 4000,
        node_memory_bytes: 8 << 30,
        ..Downward::default()
    };
    let (env, _) = environment_and_vars(
        &ImageConfig::default(),
        &p.spec.containers[0],
        &downward,
        &objects(CONFIG),
        &[],
    )
    .unwrap();
    // 1500m rounds up to 2 cores; no memory limit: the node's memory.
    for want in [
        "CPU_LIMIT=2",
        "CPU_M=250",
        "MEM_MI=64",
        "MEM_LIMIT=8589934592",
        "SIDE=2",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
}

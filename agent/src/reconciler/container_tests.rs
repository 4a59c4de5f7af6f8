//! Tables for turning a manifest container into a process: argv and environment rules.

use super::*;

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
        assert_eq!(argv(&img, &container(fields)), want, "{fields:?}");
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
    let env = environment(&img, &c, "default", &objects(CONFIG)).unwrap();
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
fn missing_references_fail_unless_optional() {
    let img = image(&[], &["sh"], &[]);
    let none = objects(CONFIG);
    let missing = container(
        "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: nope, key: a}\n",
    );
    assert_eq!(
        environment(&img, &missing, "default", &none).unwrap_err().0,
        "configmap \"nope\" not found"
    );
    let missing_key = container(
        "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: cm, key: zz}\n",
    );
    assert_eq!(
        environment(&img, &missing_key, "default", &none)
            .unwrap_err()
            .0,
        "key \"zz\" not found in configmap \"cm\""
    );
    let optional = container(
        "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: nope, key: a, optional: true}\n    envFrom:\n    - secretRef: {name: gone, optional: true}\n",
    );
    assert!(
        environment(&img, &optional, "default", &none)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn resources_default_the_cpu_request_to_the_limit() {
    let c = container("    resources:\n      limits: {cpu: 500m, memory: 64Mi}\n");
    let r = resources(&c);
    assert_eq!(r.memory_limit_bytes, Some(64 * 1024 * 1024));
    assert_eq!(
        (r.cpu_limit_millis, r.cpu_request_millis),
        (Some(500), Some(500))
    );
}

//! `securityContext` validation: every supported field is kept in the model, and every bad,
//! unknown or unsupported field is an error with its path (a security setting is never dropped).

use skiff_manifests::model::pod::{Capabilities, PodSecurityContext, SeccompProfile};
use skiff_manifests::{Object, Valid, parse_file};

/// A Pod with `pod_sc` under `spec.securityContext` and `container_sc` under the container's.
fn pod(pod_sc: &str, container_sc: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  securityContext: {pod_sc}\n  containers:\n    - name: c\n      image: skiff.local/busybox:latest\n      securityContext: {container_sc}\n"
    )
}

/// `(field, message)` of every error.
fn errors(yaml: &str) -> Vec<(String, String)> {
    let parsed = parse_file("test.yaml", yaml.as_bytes());
    parsed
        .errors()
        .into_iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect()
}

fn valid_pod(yaml: &str) -> skiff_manifests::model::pod::PodSpec {
    let parsed = parse_file("test.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:#?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:#?}", parsed.warnings());
    match parsed.objects()[0].get() {
        Object::Pod(pod) => (*pod.spec).clone(),
        other => panic!("not a pod: {other:?}"),
    }
}

#[test]
fn supported_fields_are_kept() {
    let spec = valid_pod(&pod(
        "{runAsUser: 1000, runAsGroup: 3000, runAsNonRoot: true, fsGroup: 2000, supplementalGroups: [4000, 4000, 5000], seccompProfile: {type: Localhost, localhostProfile: prof/a.json}, fsGroupChangePolicy: OnRootMismatch}",
        "{runAsUser: 1001, privileged: false, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {add: [net_admin, CAP_SYS_TIME], drop: [ALL]}, seccompProfile: {type: Unconfined}, procMount: Default}",
    ));
    assert_eq!(
        spec.security_context,
        PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            run_as_non_root: Some(true),
            fs_group: Some(2000),
            supplemental_groups: vec![4000, 5000],
            seccomp_profile: Some(SeccompProfile::Localhost("prof/a.json".into())),
        }
    );
    let sc = &spec.containers[0].security_context;
    assert_eq!(sc.run_as_user, Some(1001));
    assert_eq!(sc.run_as_group, None);
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.seccomp_profile, Some(SeccompProfile::Unconfined));
    assert_eq!(
        sc.capabilities,
        Capabilities {
            add: vec!["NET_ADMIN".into(), "SYS_TIME".into()],
            drop: vec!["ALL".into()],
        }
    );
}

#[test]
fn security_context_round_trips_in_kubernetes_shape() {
    let spec = valid_pod(&pod(
        "{seccompProfile: {type: Localhost, localhostProfile: a.json}}",
        "{capabilities: {drop: [ALL]}, runAsUser: 5}",
    ));
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json["securityContext"]["seccompProfile"],
        serde_json::json!({"type": "Localhost", "localhostProfile": "a.json"})
    );
    assert_eq!(
        json["containers"][0]["securityContext"],
        serde_json::json!({"runAsUser": 5, "capabilities": {"drop": ["ALL"]}})
    );
}

#[test]
fn an_empty_security_context_changes_nothing() {
    let plain = valid_pod(&pod("{}", "{}"));
    assert!(plain.security_context.is_empty());
    assert!(plain.containers[0].security_context.is_empty());
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("securityContext").is_none(), "{json}");
}

#[test]
fn bad_values_are_errors_with_their_paths() {
    let table: Vec<(String, &str, &str)> = vec![
        (
            pod("{runAsUser: -1}", "{}"),
            "spec.securityContext.runAsUser",
            "must be between 0 and 2147483647 (got -1)",
        ),
        (
            pod("{runAsGroup: abc}", "{}"),
            "spec.securityContext.runAsGroup",
            "must be an integer (got \"abc\")",
        ),
        (
            pod("{fsGroup: 3000000000}", "{}"),
            "spec.securityContext.fsGroup",
            "must be between 0 and 2147483647",
        ),
        (
            pod("{supplementalGroups: [1, x]}", "{}"),
            "spec.securityContext.supplementalGroups[1]",
            "must be an integer",
        ),
        (
            pod("{runAsNonRoot: yes-please}", "{}"),
            "spec.securityContext.runAsNonRoot",
            "must be true or false",
        ),
        (
            pod("{seLinuxOptions: {level: s0}}", "{}"),
            "spec.securityContext.seLinuxOptions",
            "is not supported by skiff",
        ),
        (
            pod("{sysctls: [{name: a, value: b}]}", "{}"),
            "spec.securityContext.sysctls",
            "is not supported by skiff",
        ),
        (
            pod("{windowsOptions: {}}", "{}"),
            "spec.securityContext.windowsOptions",
            "is not supported by skiff",
        ),
        (
            pod("{supplementalGroupsPolicy: Strict}", "{}"),
            "spec.securityContext.supplementalGroupsPolicy",
            "skiff supports only \"Merge\"",
        ),
        (
            pod("{runAsUsr: 1}", "{}"),
            "spec.securityContext.runAsUsr",
            "unknown field",
        ),
        (
            pod("[1]", "{}"),
            "spec.securityContext",
            "must be a mapping",
        ),
        (
            pod("{}", "{capabilities: {add: [NET_ADMIN, CAP_FOO]}}"),
            "spec.containers[0].securityContext.capabilities.add[1]",
            "unknown capability \"CAP_FOO\"",
        ),
        (
            pod("{}", "{capabilities: {drop: all-of-them}}"),
            "spec.containers[0].securityContext.capabilities.drop",
            "must be a list",
        ),
        (
            pod("{}", "{capabilities: {keep: [CHOWN]}}"),
            "spec.containers[0].securityContext.capabilities.keep",
            "unknown field",
        ),
        (
            pod("{}", "{privileged: 1}"),
            "spec.containers[0].securityContext.privileged",
            "must be true or false (got 1)",
        ),
        (
            pod("{}", "{procMount: Unmasked}"),
            "spec.containers[0].securityContext.procMount",
            "skiff supports only \"Default\"",
        ),
        (
            pod("{}", "{appArmorProfile: {type: RuntimeDefault}}"),
            "spec.containers[0].securityContext.appArmorProfile",
            "is not supported by skiff",
        ),
        (
            pod("{}", "{seLinuxOptions: {user: u}}"),
            "spec.containers[0].securityContext.seLinuxOptions",
            "is not supported by skiff",
        ),
        (
            pod("{}", "{readOnlyRootFilesystem: true, bogus: 1}"),
            "spec.containers[0].securityContext.bogus",
            "unknown field",
        ),
        (
            pod("{}", "{allowPrivilegeEscalation: false, privileged: true}"),
            "spec.containers[0].securityContext.allowPrivilegeEscalation",
            "cannot be false when privileged is true",
        ),
        (
            pod(
                "{}",
                "{allowPrivilegeEscalation: false, capabilities: {add: [CAP_SYS_ADMIN]}}",
            ),
            "spec.containers[0].securityContext.allowPrivilegeEscalation",
            "cannot be false when capabilities.add has SYS_ADMIN",
        ),
        (
            pod("{}", "{seccompProfile: {type: Weird}}"),
            "spec.containers[0].securityContext.seccompProfile.type",
            "must be one of \"RuntimeDefault\", \"Unconfined\", \"Localhost\" (got \"Weird\")",
        ),
        (
            pod("{}", "{seccompProfile: {localhostProfile: a.json}}"),
            "spec.containers[0].securityContext.seccompProfile.type",
            "is required",
        ),
        (
            pod("{}", "{seccompProfile: {type: Localhost}}"),
            "spec.containers[0].securityContext.seccompProfile.localhostProfile",
            "is required when type is Localhost",
        ),
        (
            pod(
                "{}",
                "{seccompProfile: {type: RuntimeDefault, localhostProfile: a.json}}",
            ),
            "spec.containers[0].securityContext.seccompProfile.localhostProfile",
            "may only be set when type is Localhost",
        ),
        (
            pod(
                "{}",
                "{seccompProfile: {type: Localhost, localhostProfile: ../../etc/x.json}}",
            ),
            "spec.containers[0].securityContext.seccompProfile.localhostProfile",
            "must not contain empty, \".\" or \"..\" parts",
        ),
        (
            pod(
                "{}",
                "{seccompProfile: {type: Localhost, localhostProfile: /etc/x.json}}",
            ),
            "spec.containers[0].securityContext.seccompProfile.localhostProfile",
            "must be a relative path",
        ),
    ];
    for (yaml, field, message) in &table {
        let found = errors(yaml);
        assert!(
            found
                .iter()
                .any(|(f, m)| f == field && m.starts_with(message)),
            "expected {field}: {message}... in {found:#?}\n{yaml}"
        );
        assert_eq!(found.len(), 1, "one error expected: {found:#?}\n{yaml}");
    }
}

#[test]
fn init_containers_and_templates_are_checked_too() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      securityContext: {sysctls: []}\n      initContainers:\n        - name: i\n          image: skiff.local/busybox:latest\n          securityContext: {capabilities: {add: [MAGIC]}}\n      containers:\n        - name: c\n          image: skiff.local/busybox:latest\n";
    let found = errors(yaml);
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.template.spec.initContainers[0].securityContext.capabilities.add[0]",
            "spec.template.spec.securityContext.sysctls",
        ],
        "{found:#?}"
    );
}

#[test]
fn a_validated_security_context_survives_a_json_round_trip() {
    let yaml = pod(
        "{runAsUser: 1, runAsGroup: 2, runAsNonRoot: true, fsGroup: 3, supplementalGroups: [4], seccompProfile: {type: Localhost, localhostProfile: a/b.json}}",
        "{runAsUser: 5, privileged: false, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {add: [cap_net_admin], drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}",
    );
    let parsed = parse_file("test.yaml", yaml.as_bytes());
    let object = parsed.objects()[0].clone();
    let json = object.to_json();
    let again = Valid::<Object>::from_json(&json).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(again, object);
}

//! Validation reports every problem with file, document and field path; bad documents do not
//! hide good ones; unknown fields are warnings; secrets never leak into messages.

use std::path::PathBuf;

use skiff_manifests::{Kind, ManifestError, parse_file};

fn invalid_fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/invalid")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `(field, message)` of every error of a one-document file.
fn problems(yaml: &str) -> Vec<(String, String)> {
    let parsed = parse_file("test.yaml", yaml.as_bytes());
    assert_eq!(parsed.documents.len(), 1, "{yaml}");
    parsed
        .errors()
        .into_iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect()
}

/// A Pod around a container body (indented for `containers:`), plus extra spec lines.
fn pod(container: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec_extra}  containers:\n    - name: c\n      image: skiff.local/busybox:latest\n{container}"
    )
}

fn daemon_set(spec_extra: &str, template_labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n{spec_extra}  selector:\n    matchLabels: {{app: agent}}\n  template:\n    metadata:\n      labels: {template_labels}\n    spec:\n      containers:\n        - name: c\n          image: skiff.local/busybox:latest\n"
    )
}

fn deployment(spec_extra: &str, template_labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n{spec_extra}  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {template_labels}\n    spec:\n      containers:\n        - name: c\n          image: skiff.local/busybox:latest\n"
    )
}

#[test]
fn multi_document_file_with_bad_documents_keeps_the_good_one() {
    let parsed = parse_file("web.yaml", &invalid_fixture("web.yaml"));
    assert_eq!(parsed.documents.len(), 3);
    assert!(!parsed.is_ok());
    let messages: Vec<String> = parsed.errors().iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[0].starts_with(
            "manifest web.yaml: document 1: spec.template.spec.containers[0].resources.limits.memory: invalid quantity \"12Q\""
        ),
        "{}",
        messages[0]
    );
    assert_eq!(
        messages[1],
        "manifest web.yaml: document 2: spec.replicas: must be >= 0 (got -1)"
    );
    let good = parsed.objects();
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].key().to_string(), "ConfigMap default/still-good");
    assert_eq!(parsed.documents[2].index, 3);
    assert!(
        parsed.into_result().is_err(),
        "the whole-file view must fail"
    );
}

#[test]
fn every_problem_of_a_document_is_reported() {
    let yaml = String::from_utf8_lossy(&invalid_fixture("everything-wrong.yaml")).into_owned();
    let found = problems(&yaml);
    let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
    let expected = [
        "metadata.name",
        "metadata.namespace",
        r#"metadata.labels["-bad"]"#,
        "spec.volumes[0]",
        "spec.containers[0].image",
        "spec.containers[0].imagePullPolicy",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[0].ports[0].protocol",
        "spec.containers[0].volumeMounts[0].name",
        "spec.containers[0].volumeMounts[0].mountPath",
        "spec.containers[1].name",
        "spec.containers[1].resources.limits.memory",
        "spec.containers[1].resources.requests.cpu",
        "spec.restartPolicy",
        "spec.terminationGracePeriodSeconds",
    ];
    for field in expected {
        assert!(fields.contains(&field), "missing {field} in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    let message = |field: &str| {
        found
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        message("spec.restartPolicy"),
        r#"must be one of "Always", "OnFailure", "Never" (got "Sometimes")"#
    );
    assert_eq!(
        message("spec.containers[1].name"),
        r#"duplicate container name "web" (also used by spec.containers[0])"#
    );
    assert_eq!(
        message("spec.containers[0].volumeMounts[0].name"),
        r#"unknown volume "missing" (volumes: data)"#
    );
    assert_eq!(
        message("spec.containers[1].resources.requests.cpu"),
        "must be less than or equal to the cpu limit (2 > 1)"
    );
}

#[test]
fn daemon_set_problems_are_reported_with_paths() {
    let parsed = parse_file("agent.yaml", &invalid_fixture("daemonset.yaml"));
    let messages: Vec<String> = parsed.errors().iter().map(ToString::to_string).collect();
    let expected = [
        "manifest agent.yaml: document 1: metadata.name: ",
        "manifest agent.yaml: document 1: spec.selector.matchLabels: must not be empty: a DaemonSet needs labels to find its pods",
        "manifest agent.yaml: document 1: spec.template.spec.restartPolicy: must be \"Always\" in a DaemonSet (got \"OnFailure\")",
        "manifest agent.yaml: document 1: spec.template.spec.nodeSelector[\"bad key!\"]: ",
    ];
    for prefix in expected {
        assert!(
            messages.iter().any(|m| m.starts_with(prefix)),
            "missing {prefix} in {messages:#?}"
        );
    }
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    let warnings: Vec<String> = parsed.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["manifest agent.yaml: document 1: spec.replicas: unknown field, ignored"]
    );
}

#[test]
fn single_problems_table() {
    let cases: Vec<(String, &str, &str)> = vec![
        (pod("      image: \"\"\n", ""), "spec.containers[0].image", "must not be empty"),
        (pod("", "  restartPolicy: Sometimes\n"), "spec.restartPolicy", "must be one of"),
        (pod("      imagePullPolicy: Often\n", ""), "spec.containers[0].imagePullPolicy", "must be one of"),
        (pod("      ports: [{containerPort: 0}]\n", ""), "spec.containers[0].ports[0].containerPort", "between 1 and 65535 (got 0)"),
        (pod("      ports: [{containerPort: 80, hostPort: 65536}]\n", ""), "spec.containers[0].ports[0].hostPort", "(got 65536)"),
        (pod("      ports: [{containerPort: 80, hostPort: 81}]\n", "  hostNetwork: true\n"), "spec.containers[0].ports[0].hostPort", "must equal containerPort"),
        (pod("      ports: [{name: HTTP, containerPort: 80}]\n", ""), "spec.containers[0].ports[0].name", "at most 15 lowercase"),
        (pod("      resources: {limits: {memory: 12Q}}\n", ""), "spec.containers[0].resources.limits.memory", "invalid quantity \"12Q\""),
        (pod("      resources: {requests: {cpu: -1}}\n", ""), "spec.containers[0].resources.requests.cpu", "must not be negative"),
        (pod("      resources: {requests: {cpus: 1}}\n", ""), "spec.containers[0].resources.requests.cpus", "unknown resource"),
        (pod("      volumeMounts: [{name: v, mountPath: /v}]\n", ""), "spec.containers[0].volumeMounts[0].name", "unknown volume \"v\" (volumes: none)"),
        (pod("      env: [{name: A, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n", ""), "spec.containers[0].env[0]", "not both"),
        (pod("      env: [{name: A, valueFrom: {secretKeyRef: {name: s}}}]\n", ""), "spec.containers[0].env[0].valueFrom.secretKeyRef.key", "required"),
        (pod("      env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.phase}}}]\n", ""), "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "unsupported field \"status.phase\""),
        (pod("      env: [{name: A, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}]\n", ""), "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "no service accounts"),
        (pod("      env: [{name: A, valueFrom: {fieldRef: {apiVersion: v2, fieldPath: metadata.name}}}]\n", ""), "spec.containers[0].env[0].valueFrom.fieldRef.apiVersion", "must be v1"),
        (pod("      env: [{name: A, valueFrom: {fieldRef: {}}}]\n", ""), "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "required"),
        (pod("      env: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}, secretKeyRef: {name: s, key: k}}}]\n", ""), "spec.containers[0].env[0].valueFrom", "only one of"),
        (pod("      env: [{name: A, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}]\n", ""), "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource", "must be one of limits.cpu"),
        (pod("      env: [{name: A, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 0}}}]\n", ""), "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor", "must be positive"),
        (pod("      env: [{name: 1A, value: x}]\n", ""), "spec.containers[0].env[0].name", "not start with a digit"),
        (pod("      envFrom: [{prefix: X_}]\n", ""), "spec.containers[0].envFrom[0]", "configMapRef or secretRef"),
        (pod("", "  volumes: [{name: v, emptyDir: {}, hostPath: {path: /x}}]\n"), "spec.volumes[0]", "only one volume source (got emptyDir, hostPath)"),
        (pod("", "  volumes: [{name: v, hostPath: {path: x}}]\n"), "spec.volumes[0].hostPath.path", "absolute"),
        (pod("", "  volumes: [{name: v, hostPath: {path: /x, type: Dir}}]\n"), "spec.volumes[0].hostPath.type", "must be one of"),
        (pod("", "  volumes: [{name: v, configMap: {name: c, defaultMode: 1000}}]\n"), "spec.volumes[0].configMap.defaultMode", "file mode"),
        (pod("", "  volumes: [{name: v, secret: {secretName: s, items: [{key: k, path: ../x}]}}]\n"), "spec.volumes[0].secret.items[0].path", "'..'"),
        (pod("", "  volumes: [{name: v, emptyDir: {medium: Disk}}]\n"), "spec.volumes[0].emptyDir.medium", "must be one of"),
        (pod("", "  volumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]\n"), "spec.volumes[1].name", "duplicate volume name"),
        (pod("", "  volumes: [{name: v, persistentVolumeClaim: {claimName: data}}]\n"), "spec.volumes[0].persistentVolumeClaim", "not supported yet"),
        (pod("", "  volumes: [{name: v, nfs: {server: s, path: /}}]\n"), "spec.volumes[0].nfs", "not supported yet"),
        (pod("", "  volumes: [{name: v, emptyDir: {}, csi: {driver: d}}]\n"), "spec.volumes[0]", "only one volume source (got emptyDir, csi)"),
        (pod("", "  volumes: [{name: v}]\n"), "spec.volumes[0]", "must set one volume source"),
        (pod("", "  volumes: [{name: v, downwardAPI: {items: [{path: ip, fieldRef: {fieldPath: status.podIP}}]}}]\n"), "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath", "for the environment only"),
        (pod("", "  volumes: [{name: v, downwardAPI: {items: [{path: n}]}}]\n"), "spec.volumes[0].downwardAPI.items[0]", "must set fieldRef or resourceFieldRef"),
        (pod("", "  volumes: [{name: v, downwardAPI: {items: [{path: n, fieldRef: {fieldPath: metadata.name}, resourceFieldRef: {containerName: c, resource: limits.cpu}}]}}]\n"), "spec.volumes[0].downwardAPI.items[0]", "only one of fieldRef and resourceFieldRef"),
        (pod("", "  volumes: [{name: v, downwardAPI: {items: [{path: cpu, resourceFieldRef: {resource: limits.cpu}}]}}]\n"), "spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName", "required in a volume"),
        (pod("", "  volumes: [{name: v, downwardAPI: {items: [{path: a, fieldRef: {fieldPath: metadata.name}}, {path: a, fieldRef: {fieldPath: metadata.uid}}]}}]\n"), "spec.volumes[0].downwardAPI.items[1].path", "duplicate path"),
        (pod("", "  volumes: [{name: v, downwardAPI: {items: [{path: /etc/x, fieldRef: {fieldPath: metadata.name}}]}}]\n"), "spec.volumes[0].downwardAPI.items[0].path", "relative"),
        (pod("", "  volumes: [{name: v, downwardAPI: {defaultMode: 01000}}]\n"), "spec.volumes[0].downwardAPI.defaultMode", "file mode"),
        (pod("", "  volumes: [{name: v, projected: {sources: [{serviceAccountToken: {path: token}}]}}]\n"), "spec.volumes[0].projected.sources[0].serviceAccountToken", "no service accounts"),
        (pod("", "  volumes: [{name: v, projected: {sources: [{clusterTrustBundle: {path: b}}]}}]\n"), "spec.volumes[0].projected.sources[0].clusterTrustBundle", "not supported yet"),
        (pod("", "  volumes: [{name: v, projected: {sources: [{}]}}]\n"), "spec.volumes[0].projected.sources[0]", "must set one projection source"),
        (pod("", "  volumes: [{name: v, projected: {sources: [{configMap: {name: c}, secret: {name: s}}]}}]\n"), "spec.volumes[0].projected.sources[0]", "only one projection source (got configMap, secret)"),
        (pod("", "  volumes: [{name: v, projected: {sources: [{secret: {items: [{key: k, path: k}]}}]}}]\n"), "spec.volumes[0].projected.sources[0].secret.name", "required"),
        (pod("", "  volumes: [{name: v, projected: {sources: [{downwardAPI: {items: [{path: n, fieldRef: {fieldPath: spec.nodeName}}]}}]}}]\n"), "spec.volumes[0].projected.sources[0].downwardAPI.items[0].fieldRef.fieldPath", "unsupported field"),
        (pod("", "  nodeSelector: {\"a b\": x}\n"), r#"spec.nodeSelector["a b"]"#, "key must be"),
        (pod("", "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}\n"), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", "at least one term"),
        (pod("", "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: Near, values: [a]}]}]}}}\n"), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator", "must be one of"),
        (pod("", "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In}]}]}}}\n"), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", "must not be empty"),
        (pod("", "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: cores, operator: Gt, values: [many]}]}]}}}\n"), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", "one integer"),
        (pod("", "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchFields: [{key: metadata.labels, operator: In, values: [a]}]}]}}}\n"), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key", "metadata.name"),
        (pod("", "  affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 0, preference: {matchExpressions: [{key: a, operator: Exists}]}}]}}\n"), "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight", "between 1 and 100"),
        (pod("", "  affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: a}}}]}}\n"), "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey", "required"),
        (pod("", "  affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, namespaceSelector: {}, labelSelector: {}}]}}\n"), "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaceSelector", "not supported yet"),
        (pod("", "  affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchExpressions: [{key: a, operator: Gt, values: [\"1\"]}]}}]}}\n"), "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator", "must be one of"),
        (pod("", "  tolerations: [{operator: Exists, value: x}]\n"), "spec.tolerations[0].value", "must be empty with Exists"),
        (pod("", "  tolerations: [{value: x}]\n"), "spec.tolerations[0].key", "required with operator Equal"),
        (pod("", "  tolerations: [{key: k, effect: NoRun}]\n"), "spec.tolerations[0].effect", "must be one of"),
        (pod("", "  tolerations: [{key: k, effect: NoSchedule, tolerationSeconds: 5}]\n"), "spec.tolerations[0].tolerationSeconds", "only with effect NoExecute"),
        (pod("", "  topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {}}]\n"), "spec.topologySpreadConstraints[0].maxSkew", "at least 1"),
        (pod("", "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: Never, labelSelector: {}}]\n"), "spec.topologySpreadConstraints[0].whenUnsatisfiable", "must be one of"),
        (pod("", "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {}, minDomains: 2}]\n"), "spec.topologySpreadConstraints[0].minDomains", "not supported yet"),
        (pod("", "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {}, nodeTaintsPolicy: Honor}]\n"), "spec.topologySpreadConstraints[0].nodeTaintsPolicy", "only \"Ignore\""),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n".into(), "spec.containers", "at least one container"),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n".into(), "spec", "required"),
        ("apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c, image: i}]}\n".into(), "metadata", "required"),
        ("apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n".into(), "kind", "unknown kind \"Foo\" (apiVersion \"v1\")"),
        ("apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n".into(), "kind", "Deployment uses apiVersion \"apps/v1\""),
        ("kind: Pod\nmetadata: {name: x}\n".into(), "apiVersion", "required"),
        ("apiVersion: v1\nmetadata: {name: x}\n".into(), "kind", "required"),
        ("- a\n- b\n".into(), "", "must be a mapping"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: my.ns}\n".into(), "metadata.name", "RFC 1123 label"),
        (deployment("  replicas: -1\n", "{app: web}"), "spec.replicas", "must be >= 0 (got -1)"),
        (deployment("", "{app: api}"), "spec.template.metadata.labels", "must match spec.selector.matchLabels (missing or different: app=web)"),
        (deployment("  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n", "{app: web}"), "spec.strategy.rollingUpdate", "Recreate"),
        (deployment("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n", "{app: web}"), "spec.strategy.rollingUpdate.maxUnavailable", "must not be 0"),
        (deployment("  strategy: {rollingUpdate: {maxSurge: lots}}\n", "{app: web}"), "spec.strategy.rollingUpdate.maxSurge", "percentage"),
        (deployment("  strategy: {type: BlueGreen}\n", "{app: web}"), "spec.strategy.type", "must be one of"),
        (deployment("  minReadySeconds: -1\n", "{app: web}"), "spec.minReadySeconds", "must be between 0 and"),
        (deployment("  minReadySeconds: 30\n  progressDeadlineSeconds: 30\n", "{app: web}"), "spec.progressDeadlineSeconds", "greater than minReadySeconds (30)"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: i}]\n".into(),
            "spec.template.spec.restartPolicy",
            "must be \"Always\" in a Deployment",
        ),
        (daemon_set("", "{app: other}"), "spec.template.metadata.labels", "must match spec.selector.matchLabels (missing or different: app=agent)"),
        (daemon_set("  updateStrategy: {type: OnDelete}\n", "{app: agent}"), "spec.updateStrategy.type", "OnDelete is not supported yet"),
        (daemon_set("  updateStrategy: {rollingUpdate: {maxSurge: 1}}\n", "{app: agent}"), "spec.updateStrategy.rollingUpdate.maxSurge", "only 0"),
        (daemon_set("  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}\n", "{app: agent}"), "spec.updateStrategy.rollingUpdate.maxUnavailable", "must not be 0"),
        (daemon_set("  updateStrategy: {rollingUpdate: {maxUnavailable: 120%}}\n", "{app: agent}"), "spec.updateStrategy.rollingUpdate.maxUnavailable", "at most 100%"),
        ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\n".into(), "spec", "required"),
        ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\nspec:\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n".into(), "spec.selector", "required"),
        ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\nspec:\n  selector: {matchLabels: {a: b}}\n".into(), "spec.template", "required"),
        ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i, resources: {requests: {memory: 1Z}}}]}}\n".into(), "spec.template.spec.containers[0].resources.requests.memory", "invalid quantity"),
        ("apiVersion: v1\nkind: DaemonSet\nmetadata: {name: x}\n".into(), "kind", "DaemonSet uses apiVersion \"apps/v1\""),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  selector: {matchExpressions: []}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n".into(), "spec.selector.matchExpressions", "not supported"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbinaryData: {k: \"%%%\"}\n".into(), "binaryData.k", "base64"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: a}\nbinaryData: {k: YQ==}\n".into(), "binaryData.k", "also in data"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"a/b\": x}\n".into(), r#"data["a/b"]"#, "key must be"),
    ];
    for (yaml, field, fragment) in &cases {
        let found = problems(yaml);
        assert!(
            found
                .iter()
                .any(|(f, m)| f == field && m.contains(fragment)),
            "expected {field}: ...{fragment}... in {found:#?}\nfor:\n{yaml}"
        );
    }
}

#[test]
fn type_errors_are_all_reported_with_paths_and_not_repeated_as_missing() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {version: 2}\nspec:\n  replicas: two\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      hostNetwork: yes\n      containers:\n        - name: c\n          image: 42\n          command: [sleep, 10]\n";
    let found = problems(yaml);
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.labels.version",
            "spec.replicas",
            "spec.template.spec.containers[0].command[1]",
            "spec.template.spec.containers[0].image",
            "spec.template.spec.hostNetwork",
        ],
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .all(|(_, message)| message.contains("invalid type")),
        "{found:#?}"
    );
}

#[test]
fn unknown_fields_are_warnings_with_paths() {
    // hostIP 0.0.0.0 and terminationMessagePolicy File are Kubernetes' defaults: no warning.
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  creationTimestamp: null\n  colour: blue\nspec:\n  revisionHistoryLimit: 5\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      priorityClassName: high\n      containers:\n        - name: c\n          image: skiff.local/busybox:latest\n          terminationMessagePolicy: File\n          ports: [{containerPort: 80, hostIP: 0.0.0.0}]\nstatus: {replicas: 3}\n";
    let parsed = parse_file("web.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let warnings: Vec<String> = parsed.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "manifest web.yaml: document 1: metadata.colour: unknown field, ignored",
            "manifest web.yaml: document 1: spec.template.spec.priorityClassName: ignored: skiff gives every pod the same priority and never preempts pods",
        ]
    );
}

#[test]
fn bad_yaml_reports_line_and_column_and_other_documents_survive() {
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
    let parsed = parse_file("mixed.yaml", yaml.as_bytes());
    assert_eq!(parsed.documents.len(), 3);
    let errors = parsed.errors();
    assert_eq!(errors.len(), 1);
    let error: &ManifestError = errors[0];
    assert_eq!(error.document, 2);
    assert!(error.message.starts_with("invalid YAML: "), "{error}");
    assert!(
        error.message.contains("line 9") || error.message.contains("line 8"),
        "{error}"
    );
    let names: Vec<String> = parsed
        .objects()
        .iter()
        .map(|o| o.key().name.to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn duplicate_objects_in_one_file_are_errors() {
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
    let parsed = parse_file("dup.yaml", yaml.as_bytes());
    let messages: Vec<String> = parsed.errors().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "manifest dup.yaml: document 2: metadata.name: Namespace a is already defined in document 1"
        ]
    );
}

#[test]
fn json_input_is_validated_the_same_way() {
    let json = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "edge"},
        "spec": {"containers": [{"name": "c", "image": "skiff.local/busybox:latest",
        "resources": {"limits": {"cpu": 1, "memory": 129e6}}}]}}"#;
    let parsed = parse_file("pod.json", json.as_bytes());
    let objects = parsed.into_result().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(objects[0].key().to_string(), "Pod edge/p");
    assert_eq!(objects[0].kind(), Kind::Pod);
    let skiff_manifests::Object::Pod(pod) = objects[0].get() else {
        panic!("pod")
    };
    let limits = &pod.spec.containers[0].resources.limits;
    assert_eq!(
        (limits.cpu_millis(), limits.memory_bytes()),
        (Some(1000), Some(129_000_000))
    );

    let broken = parse_file(
        "pod.json",
        br#"{"apiVersion": "v1", "kind": "Pod", "spec": {"replicas": -1}}"#,
    );
    assert!(!broken.is_ok());
    let bad_json = parse_file("x.json", b"{\"a\": }");
    assert!(
        bad_json.errors()[0].message.contains("invalid JSON"),
        "{:?}",
        bad_json.errors()
    );
}

#[test]
fn secret_values_never_appear_in_errors_or_debug() {
    let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  good: aHVudGVyMg==\n  broken: hunter2-not-base64!\nstringData:\n  pin: 987654\n  flag: true\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: t}\ndata: hunter2\n";
    let parsed = parse_file("s.yaml", yaml.as_bytes());
    let everything = format!(
        "{parsed:?} {:?}",
        parsed
            .errors()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    for secret in ["hunter2", "987654", "aHVudGVyMg"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    let fields: Vec<&str> = parsed.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["stringData.flag", "stringData.pin", "data.broken", "data"]
    );
}

#[test]
fn kubectl_output_with_server_fields_applies_cleanly() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n  uid: 1234\n  resourceVersion: \"77\"\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n  managedFields: []\ndata: {a: b}\n";
    let parsed = parse_file("c.yaml", yaml.as_bytes());
    assert!(parsed.is_ok() && parsed.warnings().is_empty(), "{parsed:?}");
}

#[test]
fn file_modes_accept_yaml_1_1_octal_decimal_and_0o() {
    let yaml = pod(
        "",
        "  volumes:\n    - {name: a, configMap: {name: c, defaultMode: 0644, items: [{key: k, path: k, mode: 0400}]}}\n    - {name: b, secret: {secretName: s, defaultMode: 0o600}}\n    - {name: d, secret: {secretName: s, defaultMode: 256}}\n",
    );
    let parsed = parse_file("modes.yaml", yaml.as_bytes());
    let objects = parsed.into_result().unwrap_or_else(|e| panic!("{e:?}"));
    let json = serde_json::to_value(&objects[0]).unwrap_or_default();
    let volumes = &json["spec"]["volumes"];
    assert_eq!(volumes[0]["configMap"]["defaultMode"], 0o644);
    assert_eq!(volumes[0]["configMap"]["items"][0]["mode"], 0o400);
    assert_eq!(volumes[1]["secret"]["defaultMode"], 0o600);
    assert_eq!(volumes[2]["secret"]["defaultMode"], 256);

    let bad = pod(
        "",
        "  volumes: [{name: a, configMap: {name: c, defaultMode: 0999}}]\n",
    );
    let found = problems(&bad);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "spec.volumes[0].configMap.defaultMode");
}

#[test]
fn a_file_over_one_mib_is_refused_without_parsing() {
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  a: ";
    let mut text = doc.as_bytes().to_vec();
    text.resize(skiff_manifests::MAX_FILE_BYTES + 1, b'x');
    let parsed = skiff_manifests::parse_file("big.yaml", &text);
    let errors: Vec<String> = parsed.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [
            "manifest big.yaml: document 1: file is 1048577 bytes; a manifest file may be at most 1 MiB (1048576 bytes)"
        ]
    );
    // Exactly at the cap is parsed as usual.
    text.truncate(skiff_manifests::MAX_FILE_BYTES);
    let parsed = skiff_manifests::parse_file("big.yaml", &text);
    assert!(
        parsed
            .errors()
            .iter()
            .all(|e| !e.to_string().contains("at most 1 MiB (")),
        "{:?}",
        parsed.errors()
    );
}

#[test]
fn flow_nesting_past_the_limit_is_refused_before_the_quadratic_scanner() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {}",
        "[".repeat(1_000_000)
    );
    let started = std::time::Instant::now();
    let errors: Vec<String> = parse_file("deep.yaml", text.as_bytes())
        .errors()
        .iter()
        .map(|e| e.to_string())
        .collect();
    // The quadratic scanner takes hours on this input; 10 s leaves room for a loaded machine.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        errors,
        [
            "manifest deep.yaml: document 1: invalid YAML: more than 1000 unclosed '[' or '{' by line 4"
        ]
    );
    // Nesting a real manifest uses is untouched.
    let ok = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {{a: '{}{}'}}\n",
        "[".repeat(50),
        "]".repeat(50)
    );
    assert!(parse_file("ok.yaml", ok.as_bytes()).is_ok());
}

#[test]
fn field_refs_read_back_in_kubernetes_shape_and_parse_again() {
    let yaml = pod(
        "      env:\n      - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n      - {name: APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}\n",
        "",
    );
    let parsed = parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    let object = parsed.objects()[0].clone();
    let json = object.to_json();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let env = &v["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    assert_eq!(
        env[1]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['app']"
    );
    let again = parse_file("p.json", &json);
    assert!(again.is_ok(), "{:?}", again.errors());
    assert_eq!(again.objects()[0].content_hash(), object.content_hash());
}

#[test]
fn downward_and_projected_volumes_read_back_in_kubernetes_shape_and_parse_again() {
    let yaml = pod(
        "      volumeMounts: [{name: info, mountPath: /info}, {name: all, mountPath: /all}]\n",
        "  volumes:\n  - name: info\n    downwardAPI:\n      defaultMode: 0600\n      items:\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n      - {path: tier, fieldRef: {fieldPath: \"metadata.labels['tier']\"}}\n      - {path: cpu, resourceFieldRef: {containerName: c, resource: limits.cpu, divisor: 1m}, mode: 0444}\n  - name: all\n    projected:\n      sources:\n      - configMap: {name: app, items: [{key: a, path: conf/a}]}\n      - secret: {name: creds, optional: true}\n      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}\n",
    );
    let parsed = parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    let object = parsed.objects()[0].clone();
    let json = object.to_json();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let volumes = &v["spec"]["volumes"];
    let info = &volumes[0]["downwardAPI"];
    assert_eq!(info["defaultMode"], 0o600);
    assert_eq!(info["items"][0]["fieldRef"]["fieldPath"], "metadata.labels");
    assert_eq!(
        info["items"][1]["fieldRef"]["fieldPath"],
        "metadata.labels['tier']"
    );
    assert_eq!(info["items"][2]["resourceFieldRef"]["containerName"], "c");
    assert_eq!(info["items"][2]["mode"], 0o444);
    let sources = &volumes[1]["projected"]["sources"];
    assert_eq!(sources[0]["configMap"]["items"][0]["path"], "conf/a");
    assert_eq!(sources[1]["secret"]["name"], "creds");
    assert_eq!(sources[1]["secret"]["optional"], true);
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "name");
    assert_eq!(volumes[1]["projected"]["defaultMode"], 0o644);
    let again = parse_file("p.json", &json);
    assert!(again.is_ok(), "{:?}", again.errors());
    assert_eq!(again.objects()[0].content_hash(), object.content_hash());
}

#[test]
fn an_unknown_key_in_a_volume_is_a_warning_and_a_known_unsupported_source_an_error() {
    let yaml = pod(
        "",
        "  volumes:\n  - {name: a, emptyDir: {}, emptydir: {}}\n  - {name: b, persistentVolumeClaim: {claimName: data}}\n",
    );
    let parsed = parse_file("p.yaml", yaml.as_bytes());
    let warnings: Vec<String> = parsed.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.volumes[0].emptydir: unknown field")),
        "{warnings:?}"
    );
    let errors: Vec<String> = parsed.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.volumes[1].persistentVolumeClaim: not supported yet"),
        "{errors:?}"
    );
}

#[test]
fn scheduling_constraints_read_back_in_kubernetes_shape_and_parse_again() {
    let yaml = pod(
        "",
        "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{key: zone, operator: In, values: [a, b]}, {key: cores, operator: Gt, values: [\"2\"]}]\n        - matchFields: [{key: metadata.name, operator: In, values: [n1]}]\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - {weight: 20, preference: {matchExpressions: [{key: disk, operator: Exists}]}}\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: db}}}\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 50\n        podAffinityTerm: {topologyKey: topology.kubernetes.io/zone, namespaces: [other], labelSelector: {matchExpressions: [{key: app, operator: NotIn, values: [x]}]}}\n  tolerations:\n  - {key: dedicated, operator: Equal, value: edge, effect: NoSchedule}\n  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 30}\n  - {operator: Exists}\n  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}\n",
    );
    let parsed = parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    let object = parsed.objects()[0].clone();
    let json = object.to_json();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let spec = &v["spec"];
    let node = &spec["affinity"]["nodeAffinity"];
    let terms = &node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchExpressions"][1]["operator"], "Gt");
    assert_eq!(terms[1]["matchFields"][0]["values"][0], "n1");
    assert_eq!(
        node["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        20
    );
    let anti = &spec["affinity"]["podAntiAffinity"];
    assert_eq!(
        anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["namespaces"]
            [0],
        "other"
    );
    assert_eq!(spec["tolerations"][1]["tolerationSeconds"], 30);
    assert_eq!(spec["tolerations"][2]["operator"], "Exists");
    assert_eq!(
        spec["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "ScheduleAnyway"
    );
    let again = parse_file("p.json", &json);
    assert!(again.is_ok(), "{:?}", again.errors());
    assert_eq!(again.objects()[0].content_hash(), object.content_hash());
}

#[test]
fn empty_dir_size_limits_are_taken_without_a_warning() {
    let yaml = pod(
        "",
        "  volumes:\n  - {name: disk, emptyDir: {sizeLimit: 1Gi}}\n  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 64Mi}}\n",
    );
    let parsed = parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
}

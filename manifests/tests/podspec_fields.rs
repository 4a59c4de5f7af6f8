//! The kept list of every field of Kubernetes' v1 PodSpec and Container (as of Kubernetes 1.34)
//! and of the parts a container is made of (ports, volume mounts, resources, lifecycle, probes,
//! env, envFrom, both security contexts), each with what skiff does with it (issue 14): it is
//! handled (accepted without a warning: skiff does it), refused with one error that names the
//! field, or accepted with one warning that names the field and says what skiff does instead.
//! Nothing may fall through to the generic "unknown field" warning. Volume sources have their
//! own table in `validation.rs` (every source Kubernetes defines is refused by name or handled).
//!
//! When Kubernetes adds a field, add its row here first.

use skiff_manifests::parse_file;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Accepted, no warning: skiff does what the field says.
    Handled,
    /// One error naming the field.
    Refused,
    /// Accepted with one warning naming the field.
    Warned,
}
use Expect::*;

/// Where a row's YAML goes.
#[derive(Clone, Copy, Debug)]
enum At {
    /// Keys of the pod spec (`spec.`).
    Pod,
    /// Keys of the first container (`spec.containers[0].`), as a flow mapping's entries.
    Container,
}
use At::*;

/// (where, YAML, the field path problems must name, what is expected).
type Row = (At, &'static str, &'static str, Expect);

const ROWS: &[Row] = &[
    // PodSpec.
    (
        Pod,
        "activeDeadlineSeconds: 30",
        "spec.activeDeadlineSeconds",
        Handled,
    ),
    (
        Pod,
        "activeDeadlineSeconds: 0",
        "spec.activeDeadlineSeconds",
        Refused,
    ),
    (
        Pod,
        "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}",
        "spec.affinity",
        Handled,
    ),
    (
        Pod,
        "automountServiceAccountToken: false",
        "spec.automountServiceAccountToken",
        Handled,
    ),
    (
        Pod,
        "automountServiceAccountToken: true",
        "spec.automountServiceAccountToken",
        Warned,
    ),
    (Pod, "", "spec.containers", Handled),
    (
        Pod,
        "dnsConfig: {nameservers: [198.18.0.53], options: [{name: ndots, value: '2'}]}",
        "spec.dnsConfig",
        Handled,
    ),
    (Pod, "dnsPolicy: Default", "spec.dnsPolicy", Handled),
    (
        Pod,
        "enableServiceLinks: false",
        "spec.enableServiceLinks",
        Handled,
    ),
    (
        Pod,
        "ephemeralContainers: [{name: debug, image: busybox}]",
        "spec.ephemeralContainers",
        Refused,
    ),
    (
        Pod,
        "hostAliases: [{ip: 198.18.0.9, hostnames: [db]}]",
        "spec.hostAliases",
        Handled,
    ),
    (Pod, "hostIPC: false", "spec.hostIPC", Handled),
    (Pod, "hostIPC: true", "spec.hostIPC", Refused),
    (Pod, "hostNetwork: true", "spec.hostNetwork", Handled),
    (Pod, "hostPID: false", "spec.hostPID", Handled),
    (Pod, "hostPID: true", "spec.hostPID", Refused),
    (Pod, "hostUsers: true", "spec.hostUsers", Handled),
    (Pod, "hostUsers: false", "spec.hostUsers", Refused),
    (Pod, "hostname: web-0", "spec.hostname", Handled),
    (
        Pod,
        "hostnameOverride: edge",
        "spec.hostnameOverride",
        Refused,
    ),
    (
        Pod,
        "imagePullSecrets: [{name: regcred}]",
        "spec.imagePullSecrets",
        Warned,
    ),
    (
        Pod,
        "initContainers: [{name: init, image: busybox}]",
        "spec.initContainers",
        Handled,
    ),
    (Pod, "nodeName: edge-1", "spec.nodeName", Handled),
    (Pod, "nodeName: Not_A_Name", "spec.nodeName", Refused),
    (
        Pod,
        "nodeSelector: {disk: ssd}",
        "spec.nodeSelector",
        Handled,
    ),
    (Pod, "os: {name: linux}", "spec.os", Handled),
    (Pod, "os: {name: windows}", "spec.os.name", Refused),
    (Pod, "overhead: {cpu: 10m}", "spec.overhead", Warned),
    (
        Pod,
        "preemptionPolicy: Never",
        "spec.preemptionPolicy",
        Handled,
    ),
    (Pod, "priority: 1000", "spec.priority", Warned),
    (
        Pod,
        "priorityClassName: high",
        "spec.priorityClassName",
        Warned,
    ),
    (
        Pod,
        "readinessGates: [{conditionType: example.com/ready}]",
        "spec.readinessGates",
        Refused,
    ),
    (
        Pod,
        "resourceClaims: [{name: gpu, resourceClaimName: gpu}]",
        "spec.resourceClaims",
        Refused,
    ),
    (
        Pod,
        "resources: {limits: {cpu: '1'}}",
        "spec.resources",
        Refused,
    ),
    (
        Pod,
        "restartPolicy: OnFailure",
        "spec.restartPolicy",
        Handled,
    ),
    (
        Pod,
        "runtimeClassName: gvisor",
        "spec.runtimeClassName",
        Refused,
    ),
    (
        Pod,
        "schedulerName: default-scheduler",
        "spec.schedulerName",
        Handled,
    ),
    (
        Pod,
        "schedulerName: my-scheduler",
        "spec.schedulerName",
        Refused,
    ),
    (
        Pod,
        "schedulingGates: [{name: example.com/wait}]",
        "spec.schedulingGates",
        Refused,
    ),
    (
        Pod,
        "securityContext: {runAsUser: 1000, runAsNonRoot: true}",
        "spec.securityContext",
        Handled,
    ),
    (
        Pod,
        "serviceAccount: default",
        "spec.serviceAccount",
        Handled,
    ),
    (
        Pod,
        "serviceAccountName: default",
        "spec.serviceAccountName",
        Handled,
    ),
    (
        Pod,
        "serviceAccountName: uploader",
        "spec.serviceAccountName",
        Warned,
    ),
    (
        Pod,
        "setHostnameAsFQDN: false",
        "spec.setHostnameAsFQDN",
        Handled,
    ),
    (
        Pod,
        "setHostnameAsFQDN: true",
        "spec.setHostnameAsFQDN",
        Refused,
    ),
    (
        Pod,
        "shareProcessNamespace: false",
        "spec.shareProcessNamespace",
        Handled,
    ),
    (
        Pod,
        "shareProcessNamespace: true",
        "spec.shareProcessNamespace",
        Refused,
    ),
    (Pod, "subdomain: web", "spec.subdomain", Handled),
    (
        Pod,
        "terminationGracePeriodSeconds: 5",
        "spec.terminationGracePeriodSeconds",
        Handled,
    ),
    (
        Pod,
        "tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]",
        "spec.tolerations",
        Handled,
    ),
    (
        Pod,
        "topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}]",
        "spec.topologySpreadConstraints",
        Handled,
    ),
    (Pod, "", "spec.volumes", Handled),
    // PodSecurityContext.
    (
        Pod,
        "securityContext: {appArmorProfile: {type: RuntimeDefault}}",
        "spec.securityContext.appArmorProfile",
        Refused,
    ),
    (
        Pod,
        "securityContext: {fsGroup: 2000}",
        "spec.securityContext.fsGroup",
        Handled,
    ),
    (
        Pod,
        "securityContext: {fsGroupChangePolicy: OnRootMismatch}",
        "spec.securityContext.fsGroupChangePolicy",
        Handled,
    ),
    (
        Pod,
        "securityContext: {runAsGroup: 3000}",
        "spec.securityContext.runAsGroup",
        Handled,
    ),
    (
        Pod,
        "securityContext: {runAsNonRoot: true}",
        "spec.securityContext.runAsNonRoot",
        Handled,
    ),
    (
        Pod,
        "securityContext: {runAsUser: 1000}",
        "spec.securityContext.runAsUser",
        Handled,
    ),
    (
        Pod,
        "securityContext: {seLinuxChangePolicy: Recursive}",
        "spec.securityContext.seLinuxChangePolicy",
        Refused,
    ),
    (
        Pod,
        "securityContext: {seLinuxOptions: {level: 's0:c1'}}",
        "spec.securityContext.seLinuxOptions",
        Refused,
    ),
    (
        Pod,
        "securityContext: {seccompProfile: {type: RuntimeDefault}}",
        "spec.securityContext.seccompProfile",
        Handled,
    ),
    (
        Pod,
        "securityContext: {supplementalGroups: [4000]}",
        "spec.securityContext.supplementalGroups",
        Handled,
    ),
    (
        Pod,
        "securityContext: {supplementalGroupsPolicy: Strict}",
        "spec.securityContext.supplementalGroupsPolicy",
        Refused,
    ),
    (
        Pod,
        "securityContext: {sysctls: [{name: net.core.somaxconn, value: '1024'}]}",
        "spec.securityContext.sysctls",
        Refused,
    ),
    (
        Pod,
        "securityContext: {windowsOptions: {runAsUserName: app}}",
        "spec.securityContext.windowsOptions",
        Refused,
    ),
    // Container.
    (
        Container,
        "args: [-c, 'echo hi']",
        "spec.containers[0].args",
        Handled,
    ),
    (
        Container,
        "command: [sh]",
        "spec.containers[0].command",
        Handled,
    ),
    (
        Container,
        "env: [{name: A, value: '1'}]",
        "spec.containers[0].env",
        Handled,
    ),
    (
        Container,
        "envFrom: [{configMapRef: {name: app}}]",
        "spec.containers[0].envFrom",
        Handled,
    ),
    (Container, "", "spec.containers[0].image", Handled),
    (
        Container,
        "imagePullPolicy: Always",
        "spec.containers[0].imagePullPolicy",
        Handled,
    ),
    (
        Container,
        "lifecycle: {preStop: {sleep: {seconds: 1}}}",
        "spec.containers[0].lifecycle",
        Handled,
    ),
    (
        Container,
        "livenessProbe: {tcpSocket: {port: 80}}",
        "spec.containers[0].livenessProbe",
        Handled,
    ),
    (Container, "", "spec.containers[0].name", Handled),
    (
        Container,
        "ports: [{containerPort: 80}]",
        "spec.containers[0].ports",
        Handled,
    ),
    (
        Container,
        "readinessProbe: {httpGet: {path: /, port: 80}}",
        "spec.containers[0].readinessProbe",
        Handled,
    ),
    (
        Container,
        "resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]",
        "spec.containers[0].resizePolicy",
        Warned,
    ),
    (
        Container,
        "resources: {limits: {memory: 64Mi}}",
        "spec.containers[0].resources",
        Handled,
    ),
    (
        Container,
        "restartPolicy: Always",
        "spec.containers[0].restartPolicy",
        Refused,
    ),
    (
        Container,
        "restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]",
        "spec.containers[0].restartPolicyRules",
        Refused,
    ),
    (
        Container,
        "securityContext: {readOnlyRootFilesystem: true}",
        "spec.containers[0].securityContext",
        Handled,
    ),
    (
        Container,
        "startupProbe: {exec: {command: ['true']}}",
        "spec.containers[0].startupProbe",
        Handled,
    ),
    (
        Container,
        "stdin: false",
        "spec.containers[0].stdin",
        Handled,
    ),
    (
        Container,
        "stdin: true",
        "spec.containers[0].stdin",
        Refused,
    ),
    (
        Container,
        "stdinOnce: true",
        "spec.containers[0].stdinOnce",
        Refused,
    ),
    (
        Container,
        "terminationMessagePath: /dev/termination-log",
        "spec.containers[0].terminationMessagePath",
        Handled,
    ),
    (
        Container,
        "terminationMessagePath: /tmp/why",
        "spec.containers[0].terminationMessagePath",
        Warned,
    ),
    (
        Container,
        "terminationMessagePolicy: File",
        "spec.containers[0].terminationMessagePolicy",
        Handled,
    ),
    (
        Container,
        "terminationMessagePolicy: FallbackToLogsOnError",
        "spec.containers[0].terminationMessagePolicy",
        Warned,
    ),
    (Container, "tty: false", "spec.containers[0].tty", Handled),
    (Container, "tty: true", "spec.containers[0].tty", Refused),
    (
        Container,
        "volumeDevices: [{name: v, devicePath: /dev/xvda}]",
        "spec.containers[0].volumeDevices",
        Refused,
    ),
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v}]",
        "spec.containers[0].volumeMounts",
        Handled,
    ),
    (
        Container,
        "workingDir: /srv",
        "spec.containers[0].workingDir",
        Handled,
    ),
    // ContainerPort.
    (
        Container,
        "ports: [{containerPort: 80, hostPort: 8080, name: http, protocol: UDP}]",
        "spec.containers[0].ports[0]",
        Handled,
    ),
    (
        Container,
        "ports: [{containerPort: 80, hostPort: 8080, hostIP: 0.0.0.0}]",
        "spec.containers[0].ports[0].hostIP",
        Handled,
    ),
    (
        Container,
        "ports: [{containerPort: 80, hostPort: 8080, hostIP: 198.18.0.1}]",
        "spec.containers[0].ports[0].hostIP",
        Refused,
    ),
    (
        Container,
        "ports: [{containerPort: 80, protocol: SCTP}]",
        "spec.containers[0].ports[0].protocol",
        Refused,
    ),
    // VolumeMount.
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v, readOnly: true, subPath: d}]",
        "spec.containers[0].volumeMounts[0]",
        Handled,
    ),
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v, mountPropagation: None}]",
        "spec.containers[0].volumeMounts[0].mountPropagation",
        Handled,
    ),
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v, mountPropagation: Bidirectional}]",
        "spec.containers[0].volumeMounts[0].mountPropagation",
        Refused,
    ),
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v, readOnly: true, recursiveReadOnly: Disabled}]",
        "spec.containers[0].volumeMounts[0].recursiveReadOnly",
        Handled,
    ),
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v, readOnly: true, recursiveReadOnly: Enabled}]",
        "spec.containers[0].volumeMounts[0].recursiveReadOnly",
        Refused,
    ),
    (
        Container,
        "volumeMounts: [{name: v, mountPath: /v, subPathExpr: $(POD_NAME)}]",
        "spec.containers[0].volumeMounts[0].subPathExpr",
        Refused,
    ),
    // ResourceRequirements.
    (
        Container,
        "resources: {requests: {cpu: 100m, memory: 32Mi, ephemeral-storage: 1Gi}, limits: {cpu: 200m, memory: 64Mi, ephemeral-storage: 2Gi}}",
        "spec.containers[0].resources",
        Handled,
    ),
    (
        Container,
        "resources: {claims: [{name: gpu}]}",
        "spec.containers[0].resources.claims",
        Refused,
    ),
    // Lifecycle.
    (
        Container,
        "lifecycle: {postStart: {exec: {command: ['true']}}, preStop: {httpGet: {path: /stop, port: 80}}}",
        "spec.containers[0].lifecycle",
        Handled,
    ),
    (
        Container,
        "lifecycle: {stopSignal: SIGTERM}",
        "spec.containers[0].lifecycle.stopSignal",
        Handled,
    ),
    (
        Container,
        "lifecycle: {stopSignal: SIGUSR1}",
        "spec.containers[0].lifecycle.stopSignal",
        Refused,
    ),
    // Probe.
    (
        Container,
        "livenessProbe: {exec: {command: ['true']}, initialDelaySeconds: 1, periodSeconds: 2, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3, terminationGracePeriodSeconds: 5}",
        "spec.containers[0].livenessProbe",
        Handled,
    ),
    (
        Container,
        "livenessProbe: {grpc: {port: 9000, service: health}}",
        "spec.containers[0].livenessProbe.grpc",
        Handled,
    ),
    (
        Container,
        "readinessProbe: {tcpSocket: {port: 80}, successThreshold: 2}",
        "spec.containers[0].readinessProbe",
        Handled,
    ),
    // EnvVar and EnvFromSource.
    (
        Container,
        "env: [{name: A, valueFrom: {configMapKeyRef: {name: app, key: a, optional: true}}}]",
        "spec.containers[0].env[0].valueFrom.configMapKeyRef",
        Handled,
    ),
    (
        Container,
        "env: [{name: A, valueFrom: {secretKeyRef: {name: app, key: a}}}]",
        "spec.containers[0].env[0].valueFrom.secretKeyRef",
        Handled,
    ),
    (
        Container,
        "env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]",
        "spec.containers[0].env[0].valueFrom.fieldRef",
        Handled,
    ),
    (
        Container,
        "env: [{name: A, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}]",
        "spec.containers[0].env[0].valueFrom.resourceFieldRef",
        Handled,
    ),
    (
        Container,
        "env: [{name: A, valueFrom: {fileKeyRef: {volumeName: v, path: env, key: a}}}]",
        "spec.containers[0].env[0].valueFrom.fileKeyRef",
        Refused,
    ),
    (
        Container,
        "envFrom: [{prefix: APP_, secretRef: {name: app, optional: true}}]",
        "spec.containers[0].envFrom",
        Handled,
    ),
    // SecurityContext.
    (
        Container,
        "securityContext: {allowPrivilegeEscalation: false}",
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
        Handled,
    ),
    (
        Container,
        "securityContext: {appArmorProfile: {type: RuntimeDefault}}",
        "spec.containers[0].securityContext.appArmorProfile",
        Refused,
    ),
    (
        Container,
        "securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}",
        "spec.containers[0].securityContext.capabilities",
        Handled,
    ),
    (
        Container,
        "securityContext: {privileged: true}",
        "spec.containers[0].securityContext.privileged",
        Handled,
    ),
    (
        Container,
        "securityContext: {procMount: Default}",
        "spec.containers[0].securityContext.procMount",
        Handled,
    ),
    (
        Container,
        "securityContext: {procMount: Unmasked}",
        "spec.containers[0].securityContext.procMount",
        Refused,
    ),
    (
        Container,
        "securityContext: {readOnlyRootFilesystem: true}",
        "spec.containers[0].securityContext.readOnlyRootFilesystem",
        Handled,
    ),
    (
        Container,
        "securityContext: {runAsGroup: 3000}",
        "spec.containers[0].securityContext.runAsGroup",
        Handled,
    ),
    (
        Container,
        "securityContext: {runAsNonRoot: true, runAsUser: 1000}",
        "spec.containers[0].securityContext.runAsNonRoot",
        Handled,
    ),
    (
        Container,
        "securityContext: {seLinuxOptions: {level: 's0:c1'}}",
        "spec.containers[0].securityContext.seLinuxOptions",
        Refused,
    ),
    (
        Container,
        "securityContext: {seccompProfile: {type: Unconfined}}",
        "spec.containers[0].securityContext.seccompProfile",
        Handled,
    ),
    (
        Container,
        "securityContext: {windowsOptions: {runAsUserName: app}}",
        "spec.containers[0].securityContext.windowsOptions",
        Refused,
    ),
];

/// Every key of Kubernetes' v1 PodSpec and Container (1.34): each must have a row.
const POD_SPEC_FIELDS: &[&str] = &[
    "activeDeadlineSeconds",
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "ephemeralContainers",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "hostnameOverride",
    "imagePullSecrets",
    "initContainers",
    "nodeName",
    "nodeSelector",
    "os",
    "overhead",
    "preemptionPolicy",
    "priority",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "schedulingGates",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
];
const CONTAINER_FIELDS: &[&str] = &[
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "restartPolicyRules",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeDevices",
    "volumeMounts",
    "workingDir",
];

fn manifest(at: At, text: &str) -> String {
    let (pod, container) = match at {
        Pod => (text, ""),
        Container => ("", text),
    };
    let container = if container.is_empty() {
        String::new()
    } else {
        format!(", {container}")
    };
    let pod = if pod.is_empty() {
        String::new()
    } else {
        format!("  {pod}\n")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{pod}  volumes: [{{name: v, emptyDir: {{}}}}]\n  containers:\n  - {{name: c, image: busybox{container}}}\n"
    )
}

#[test]
fn every_pod_spec_and_container_field_is_handled_refused_or_warned_by_name() {
    let mut failures = Vec::new();
    for (at, text, field, expect) in ROWS {
        let yaml = manifest(*at, text);
        let parsed = parse_file("p.yaml", yaml.as_bytes());
        let errors: Vec<String> = parsed.errors().iter().map(|e| e.to_string()).collect();
        let warnings: Vec<String> = parsed.warnings().iter().map(|w| w.to_string()).collect();
        let names =
            |m: &String| m.contains(&format!(": {field}: ")) || m.contains(&format!(": {field}."));
        let generic = |m: &String| m.contains("unknown field");
        let ok = match expect {
            Handled => errors.is_empty() && warnings.is_empty(),
            Refused => errors.len() == 1 && names(&errors[0]) && !generic(&errors[0]),
            Warned => {
                errors.is_empty()
                    && warnings.len() == 1
                    && names(&warnings[0])
                    && !generic(&warnings[0])
            }
        };
        if !ok {
            failures.push(format!(
                "{field} ({text}): expected {expect:?}, got errors {errors:?}, warnings {warnings:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_list_covers_every_kubernetes_field() {
    let covered = |prefix: &str, key: &str| {
        ROWS.iter().any(|(_, _, field, _)| {
            field.strip_prefix(prefix).is_some_and(|rest| {
                rest == key
                    || rest.starts_with(&format!("{key}."))
                    || rest.starts_with(&format!("{key}["))
            })
        })
    };
    let missing: Vec<String> = POD_SPEC_FIELDS
        .iter()
        .filter(|k| !covered("spec.", k))
        .map(|k| format!("spec.{k}"))
        .chain(
            CONTAINER_FIELDS
                .iter()
                .filter(|k| !covered("spec.containers[0].", k))
                .map(|k| format!("spec.containers[0].{k}")),
        )
        .collect();
    assert!(missing.is_empty(), "fields without a row: {missing:?}");
}

#[test]
fn a_mistyped_field_still_gets_the_unknown_field_warning() {
    let parsed = parse_file("p.yaml", manifest(Pod, "hostNetwrok: true").as_bytes());
    let warnings: Vec<String> = parsed.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("spec.hostNetwrok: unknown field, ignored"),
        "{warnings:?}"
    );
}

#[test]
fn active_deadline_seconds_is_refused_in_a_deployment_template() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      activeDeadlineSeconds: 30\n      containers: [{name: c, image: busybox}]\n";
    let parsed = parse_file("web.yaml", yaml.as_bytes());
    let errors: Vec<String> = parsed.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(
            "spec.template.spec.activeDeadlineSeconds: not supported in a Deployment's pod template"
        ),
        "{errors:?}"
    );
}

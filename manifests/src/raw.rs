//! Lenient mirror of the Kubernetes manifest shape, as decoded before validation: every field is
//! optional, list elements are `Option` and enums are plain strings, so that validation can
//! report every problem with its path. Nothing outside this crate sees these types.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

use crate::quantity::QuantityText;

/// A list whose bad elements were replaced by null during decoding.
pub(crate) type List<T> = Vec<Option<T>>;
pub(crate) type StringMap = BTreeMap<String, String>;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMeta {
    pub(crate) name: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: Option<StringMap>,
    pub(crate) annotations: Option<StringMap>,
    // Set by Kubernetes on stored objects: accepted and dropped without a warning so that
    // `kubectl get -o yaml` output can be applied.
    #[serde(rename = "uid")]
    pub(crate) _uid: Option<Value>,
    #[serde(rename = "resourceVersion")]
    pub(crate) _resource_version: Option<Value>,
    #[serde(rename = "generation")]
    pub(crate) _generation: Option<Value>,
    #[serde(rename = "creationTimestamp")]
    pub(crate) _creation_timestamp: Option<Value>,
    #[serde(rename = "managedFields")]
    pub(crate) _managed_fields: Option<Value>,
    #[serde(rename = "selfLink")]
    pub(crate) _self_link: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPod {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawPodSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodSpec {
    pub(crate) containers: Option<List<RawContainer>>,
    pub(crate) init_containers: Option<List<RawContainer>>,
    pub(crate) restart_policy: Option<String>,
    pub(crate) termination_grace_period_seconds: Option<i64>,
    pub(crate) volumes: Option<List<RawVolume>>,
    pub(crate) host_network: Option<bool>,
    pub(crate) enable_service_links: Option<bool>,
    pub(crate) node_selector: Option<StringMap>,
    /// Checked field by field in `validate::security` (unknown fields there are errors).
    pub(crate) security_context: Option<Value>,
    pub(crate) hostname: Option<String>,
    pub(crate) subdomain: Option<String>,
    pub(crate) dns_policy: Option<String>,
    pub(crate) dns_config: Option<RawDnsConfig>,
    pub(crate) host_aliases: Option<List<RawHostAlias>>,
    pub(crate) affinity: Option<RawAffinity>,
    pub(crate) tolerations: Option<List<RawToleration>>,
    pub(crate) topology_spread_constraints: Option<List<RawSpreadConstraint>>,
    pub(crate) active_deadline_seconds: Option<i64>,
    pub(crate) node_name: Option<String>,
    /// Kubernetes fields skiff does not model: each is refused or warned about by its own rule
    /// (`validate::fields`).
    pub(crate) automount_service_account_token: Option<Value>,
    pub(crate) ephemeral_containers: Option<Value>,
    #[serde(rename = "hostIPC")]
    pub(crate) host_ipc: Option<Value>,
    #[serde(rename = "hostPID")]
    pub(crate) host_pid: Option<Value>,
    pub(crate) host_users: Option<Value>,
    pub(crate) hostname_override: Option<Value>,
    pub(crate) image_pull_secrets: Option<Value>,
    pub(crate) os: Option<Value>,
    pub(crate) overhead: Option<Value>,
    pub(crate) preemption_policy: Option<Value>,
    pub(crate) priority: Option<Value>,
    pub(crate) priority_class_name: Option<Value>,
    pub(crate) readiness_gates: Option<Value>,
    pub(crate) resource_claims: Option<Value>,
    pub(crate) resources: Option<Value>,
    pub(crate) runtime_class_name: Option<Value>,
    pub(crate) scheduler_name: Option<Value>,
    pub(crate) scheduling_gates: Option<Value>,
    pub(crate) service_account: Option<Value>,
    pub(crate) service_account_name: Option<Value>,
    #[serde(rename = "setHostnameAsFQDN")]
    pub(crate) set_hostname_as_fqdn: Option<Value>,
    pub(crate) share_process_namespace: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawAffinity {
    pub(crate) node_affinity: Option<RawNodeAffinity>,
    pub(crate) pod_affinity: Option<RawPodAffinity>,
    pub(crate) pod_anti_affinity: Option<RawPodAffinity>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawNodeAffinity {
    #[serde(rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    pub(crate) required: Option<RawNodeSelector>,
    #[serde(rename = "preferredDuringSchedulingIgnoredDuringExecution")]
    pub(crate) preferred: Option<List<RawPreferredTerm>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawNodeSelector {
    pub(crate) node_selector_terms: Option<List<RawNodeSelectorTerm>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawNodeSelectorTerm {
    pub(crate) match_expressions: Option<List<RawRequirement>>,
    pub(crate) match_fields: Option<List<RawRequirement>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRequirement {
    pub(crate) key: Option<String>,
    pub(crate) operator: Option<String>,
    pub(crate) values: Option<List<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPreferredTerm {
    pub(crate) weight: Option<i64>,
    pub(crate) preference: Option<RawNodeSelectorTerm>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPodAffinity {
    #[serde(rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    pub(crate) required: Option<List<RawPodAffinityTerm>>,
    #[serde(rename = "preferredDuringSchedulingIgnoredDuringExecution")]
    pub(crate) preferred: Option<List<RawWeightedPodAffinityTerm>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodAffinityTerm {
    pub(crate) label_selector: Option<RawPodSelector>,
    pub(crate) namespaces: Option<List<String>>,
    pub(crate) topology_key: Option<String>,
    /// Refused with a reason (not supported yet).
    pub(crate) namespace_selector: Option<Value>,
    pub(crate) match_label_keys: Option<Value>,
    pub(crate) mismatch_label_keys: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawWeightedPodAffinityTerm {
    pub(crate) weight: Option<i64>,
    pub(crate) pod_affinity_term: Option<RawPodAffinityTerm>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodSelector {
    pub(crate) match_labels: Option<StringMap>,
    pub(crate) match_expressions: Option<List<RawRequirement>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawToleration {
    pub(crate) key: Option<String>,
    pub(crate) operator: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) effect: Option<String>,
    pub(crate) toleration_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSpreadConstraint {
    pub(crate) max_skew: Option<i64>,
    pub(crate) topology_key: Option<String>,
    pub(crate) when_unsatisfiable: Option<String>,
    pub(crate) label_selector: Option<RawPodSelector>,
    /// Refused unless at their defaults (not supported yet).
    pub(crate) min_domains: Option<Value>,
    pub(crate) match_label_keys: Option<Value>,
    pub(crate) node_affinity_policy: Option<String>,
    pub(crate) node_taints_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDnsConfig {
    pub(crate) nameservers: Option<List<String>>,
    pub(crate) searches: Option<List<String>>,
    pub(crate) options: Option<List<RawDnsOption>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDnsOption {
    pub(crate) name: Option<String>,
    pub(crate) value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHostAlias {
    pub(crate) ip: Option<String>,
    pub(crate) hostnames: Option<List<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawContainer {
    pub(crate) name: Option<String>,
    /// Only `Always`, on an init container: a native sidecar.
    pub(crate) restart_policy: Option<String>,
    pub(crate) image: Option<String>,
    pub(crate) image_pull_policy: Option<String>,
    pub(crate) command: Option<List<String>>,
    pub(crate) args: Option<List<String>>,
    pub(crate) env: Option<List<RawEnvVar>>,
    pub(crate) env_from: Option<List<RawEnvFrom>>,
    pub(crate) working_dir: Option<String>,
    pub(crate) ports: Option<List<RawPort>>,
    pub(crate) resources: Option<RawResources>,
    pub(crate) volume_mounts: Option<List<RawVolumeMount>>,
    /// Checked field by field in `validate::security` (unknown fields there are errors).
    pub(crate) security_context: Option<Value>,
    pub(crate) liveness_probe: Option<RawProbe>,
    pub(crate) readiness_probe: Option<RawProbe>,
    pub(crate) startup_probe: Option<RawProbe>,
    pub(crate) lifecycle: Option<RawLifecycle>,
    /// Decided by rule in `validate::fields`.
    pub(crate) resize_policy: Option<Value>,
    pub(crate) restart_policy_rules: Option<Value>,
    pub(crate) stdin: Option<Value>,
    pub(crate) stdin_once: Option<Value>,
    pub(crate) tty: Option<Value>,
    pub(crate) termination_message_path: Option<Value>,
    pub(crate) termination_message_policy: Option<Value>,
    pub(crate) volume_devices: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawLifecycle {
    pub(crate) post_start: Option<RawHook>,
    pub(crate) pre_stop: Option<RawHook>,
    pub(crate) stop_signal: Option<Value>,
}

/// A lifecycle hook: one of exec, httpGet, tcpSocket (deprecated) or sleep.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHook {
    pub(crate) exec: Option<RawExecAction>,
    pub(crate) http_get: Option<RawHttpGet>,
    pub(crate) tcp_socket: Option<RawTcpSocket>,
    pub(crate) sleep: Option<RawSleep>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSleep {
    pub(crate) seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawProbe {
    pub(crate) exec: Option<RawExecAction>,
    pub(crate) http_get: Option<RawHttpGet>,
    pub(crate) tcp_socket: Option<RawTcpSocket>,
    pub(crate) grpc: Option<RawGrpc>,
    pub(crate) initial_delay_seconds: Option<i64>,
    pub(crate) period_seconds: Option<i64>,
    pub(crate) timeout_seconds: Option<i64>,
    pub(crate) success_threshold: Option<i64>,
    pub(crate) failure_threshold: Option<i64>,
    pub(crate) termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawExecAction {
    pub(crate) command: Option<List<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHttpGet {
    pub(crate) path: Option<String>,
    pub(crate) port: Option<RawTargetPort>,
    pub(crate) host: Option<String>,
    pub(crate) scheme: Option<String>,
    pub(crate) http_headers: Option<List<RawHttpHeader>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHttpHeader {
    pub(crate) name: Option<String>,
    pub(crate) value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTcpSocket {
    pub(crate) port: Option<RawTargetPort>,
    pub(crate) host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGrpc {
    pub(crate) port: Option<i64>,
    pub(crate) service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEnvVar {
    pub(crate) name: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) value_from: Option<RawEnvVarSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEnvVarSource {
    pub(crate) config_map_key_ref: Option<RawKeyRef>,
    pub(crate) secret_key_ref: Option<RawKeyRef>,
    pub(crate) field_ref: Option<RawFieldRef>,
    pub(crate) resource_field_ref: Option<RawResourceFieldRef>,
    pub(crate) file_key_ref: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawResourceFieldRef {
    pub(crate) container_name: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) divisor: Option<QuantityText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawFieldRef {
    pub(crate) api_version: Option<String>,
    pub(crate) field_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawKeyRef {
    pub(crate) name: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEnvFrom {
    pub(crate) prefix: Option<String>,
    pub(crate) config_map_ref: Option<RawNameRef>,
    pub(crate) secret_ref: Option<RawNameRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawNameRef {
    pub(crate) name: Option<String>,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPort {
    pub(crate) name: Option<String>,
    pub(crate) container_port: Option<i64>,
    pub(crate) host_port: Option<i64>,
    pub(crate) protocol: Option<String>,
    #[serde(rename = "hostIP")]
    pub(crate) host_ip: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawResources {
    pub(crate) requests: Option<BTreeMap<String, QuantityText>>,
    pub(crate) limits: Option<BTreeMap<String, QuantityText>>,
    pub(crate) claims: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawVolumeMount {
    pub(crate) name: Option<String>,
    pub(crate) mount_path: Option<String>,
    pub(crate) read_only: Option<bool>,
    pub(crate) sub_path: Option<String>,
    pub(crate) mount_propagation: Option<Value>,
    pub(crate) recursive_read_only: Option<Value>,
    pub(crate) sub_path_expr: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawVolume {
    pub(crate) name: Option<String>,
    pub(crate) empty_dir: Option<RawEmptyDir>,
    pub(crate) host_path: Option<RawHostPath>,
    pub(crate) config_map: Option<RawConfigMapVolume>,
    pub(crate) secret: Option<RawSecretVolume>,
    #[serde(rename = "downwardAPI")]
    pub(crate) downward_api: Option<RawDownwardApiVolume>,
    pub(crate) projected: Option<RawProjectedVolume>,
    /// Kubernetes' other volume sources, by name, so that the error names the one given.
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDownwardApiVolume {
    pub(crate) items: Option<List<RawDownwardApiFile>>,
    pub(crate) default_mode: Option<FileMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDownwardApiFile {
    pub(crate) path: Option<String>,
    pub(crate) field_ref: Option<RawFieldRef>,
    pub(crate) resource_field_ref: Option<RawResourceFieldRef>,
    pub(crate) mode: Option<FileMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawProjectedVolume {
    pub(crate) sources: Option<List<RawProjection>>,
    pub(crate) default_mode: Option<FileMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawProjection {
    pub(crate) config_map: Option<RawObjectProjection>,
    pub(crate) secret: Option<RawObjectProjection>,
    #[serde(rename = "downwardAPI")]
    pub(crate) downward_api: Option<RawDownwardApiProjection>,
    /// serviceAccountToken, clusterTrustBundle, podCertificate: refused by name.
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawObjectProjection {
    pub(crate) name: Option<String>,
    pub(crate) items: Option<List<RawKeyToPath>>,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDownwardApiProjection {
    pub(crate) items: Option<List<RawDownwardApiFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEmptyDir {
    pub(crate) medium: Option<String>,
    pub(crate) size_limit: Option<QuantityText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHostPath {
    pub(crate) path: Option<String>,
    #[serde(rename = "type")]
    pub(crate) type_: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawConfigMapVolume {
    pub(crate) name: Option<String>,
    pub(crate) items: Option<List<RawKeyToPath>>,
    pub(crate) default_mode: Option<FileMode>,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSecretVolume {
    pub(crate) secret_name: Option<String>,
    pub(crate) items: Option<List<RawKeyToPath>>,
    pub(crate) default_mode: Option<FileMode>,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawKeyToPath {
    pub(crate) key: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) mode: Option<FileMode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDeployment {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawDeploymentSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDeploymentSpec {
    pub(crate) replicas: Option<i64>,
    pub(crate) selector: Option<RawSelector>,
    pub(crate) template: Option<RawPodTemplate>,
    pub(crate) strategy: Option<RawStrategy>,
    pub(crate) min_ready_seconds: Option<i64>,
    pub(crate) progress_deadline_seconds: Option<i64>,
    pub(crate) revision_history_limit: Option<i64>,
    pub(crate) paused: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDaemonSet {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawDaemonSetSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDaemonSetSpec {
    pub(crate) selector: Option<RawSelector>,
    pub(crate) template: Option<RawPodTemplate>,
    pub(crate) update_strategy: Option<RawStrategy>,
    pub(crate) revision_history_limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSelector {
    pub(crate) match_labels: Option<StringMap>,
    pub(crate) match_expressions: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodTemplate {
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawPodSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawStrategy {
    #[serde(rename = "type")]
    pub(crate) type_: Option<String>,
    pub(crate) rolling_update: Option<RawRollingUpdate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRollingUpdate {
    pub(crate) max_surge: Option<RawIntOrString>,
    pub(crate) max_unavailable: Option<RawIntOrString>,
}

/// `maxSurge: 1` or `maxSurge: "25%"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "an integer or a percentage such as \"25%\"")]
pub(crate) enum RawIntOrString {
    Int(i64),
    String(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawNamespace {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawConfigMap {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) data: Option<StringMap>,
    pub(crate) binary_data: Option<StringMap>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSecret {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    #[serde(rename = "type")]
    pub(crate) type_: Option<String>,
    pub(crate) data: Option<BTreeMap<String, SecretText>>,
    pub(crate) string_data: Option<BTreeMap<String, SecretText>>,
}

/// A secret value as written; type errors never echo the value.
pub(crate) struct SecretText(pub(crate) String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        fn not_a_string<E: de::Error>() -> E {
            E::custom("must be a string (quote the value; it is not shown here)")
        }
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = SecretText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
                Ok(SecretText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretText, E> {
                Err(not_a_string())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretText, E> {
                Err(not_a_string())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretText, E> {
                Err(not_a_string())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretText, E> {
                Err(not_a_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<SecretText, E> {
                Err(not_a_string())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretText, A::Error> {
                Err(not_a_string())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<SecretText, A::Error> {
                Err(not_a_string())
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// A file mode as written: a number (`420`, YAML 1.2 `0o644`) or the YAML 1.1 octal spelling
/// `0644`, which YAML 1.2 parsers return as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMode(pub(crate) i64);

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl<'de> Visitor<'de> for ModeVisitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file mode such as 0644, 0o644 or 420")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
                Ok(FileMode(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
                Ok(FileMode(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileMode, E> {
                let digits = v.strip_prefix("0o").or_else(|| v.strip_prefix('0'));
                match digits.map(|d| i64::from_str_radix(d, 8)) {
                    Some(Ok(mode)) if v.len() > 1 => Ok(FileMode(mode)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawService {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawServiceSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawServiceSpec {
    #[serde(rename = "type")]
    pub(crate) type_: Option<String>,
    #[serde(rename = "clusterIP")]
    pub(crate) cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    pub(crate) cluster_ips: Option<List<String>>,
    pub(crate) selector: Option<StringMap>,
    pub(crate) ports: Option<List<RawServicePort>>,
    pub(crate) external_name: Option<String>,
    pub(crate) publish_not_ready_addresses: Option<bool>,
    pub(crate) session_affinity: Option<String>,
    pub(crate) session_affinity_config: Option<RawSessionAffinityConfig>,
    pub(crate) ip_families: Option<List<String>>,
    pub(crate) ip_family_policy: Option<String>,
    pub(crate) external_traffic_policy: Option<String>,
    pub(crate) internal_traffic_policy: Option<String>,
    // Refused when set: skiff has no load balancers and no external IPs.
    #[serde(rename = "externalIPs")]
    pub(crate) external_ips: Option<Value>,
    #[serde(rename = "loadBalancerIP")]
    pub(crate) load_balancer_ip: Option<Value>,
    pub(crate) load_balancer_source_ranges: Option<Value>,
    pub(crate) load_balancer_class: Option<Value>,
    pub(crate) allocate_load_balancer_node_ports: Option<Value>,
    pub(crate) health_check_node_port: Option<Value>,
    pub(crate) traffic_distribution: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawServicePort {
    pub(crate) name: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) port: Option<i64>,
    pub(crate) target_port: Option<RawTargetPort>,
    pub(crate) node_port: Option<i64>,
    pub(crate) app_protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSessionAffinityConfig {
    #[serde(rename = "clientIP")]
    pub(crate) client_ip: Option<RawClientIpConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawClientIpConfig {
    pub(crate) timeout_seconds: Option<i64>,
}

/// `targetPort: 8080` or `targetPort: http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a port number or a container port name")]
pub(crate) enum RawTargetPort {
    Int(i64),
    String(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawJob {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawJobSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawJobSpec {
    pub(crate) completions: Option<i64>,
    pub(crate) parallelism: Option<i64>,
    pub(crate) completion_mode: Option<String>,
    pub(crate) backoff_limit: Option<i64>,
    pub(crate) active_deadline_seconds: Option<i64>,
    pub(crate) ttl_seconds_after_finished: Option<i64>,
    pub(crate) suspend: Option<bool>,
    pub(crate) pod_failure_policy: Option<RawPodFailurePolicy>,
    pub(crate) template: Option<RawPodTemplate>,
    // Decided in `validate::jobs` (refused, or only their default accepted).
    pub(crate) selector: Option<Value>,
    pub(crate) manual_selector: Option<Value>,
    pub(crate) backoff_limit_per_index: Option<Value>,
    pub(crate) max_failed_indexes: Option<Value>,
    pub(crate) success_policy: Option<Value>,
    pub(crate) pod_replacement_policy: Option<Value>,
    pub(crate) managed_by: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodFailurePolicy {
    pub(crate) rules: Option<List<RawPodFailureRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawPodFailureRule {
    pub(crate) action: Option<String>,
    pub(crate) on_exit_codes: Option<RawExitCodes>,
    pub(crate) on_pod_conditions: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawExitCodes {
    pub(crate) container_name: Option<String>,
    pub(crate) operator: Option<String>,
    pub(crate) values: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawCronJob {
    // apiVersion and kind are read before decoding; status is ignored.
    #[serde(rename = "apiVersion")]
    pub(crate) _api_version: Option<Value>,
    #[serde(rename = "kind")]
    pub(crate) _kind: Option<Value>,
    #[serde(rename = "status")]
    pub(crate) _status: Option<Value>,
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawCronJobSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawCronJobSpec {
    pub(crate) schedule: Option<String>,
    pub(crate) time_zone: Option<String>,
    pub(crate) concurrency_policy: Option<String>,
    pub(crate) starting_deadline_seconds: Option<i64>,
    pub(crate) suspend: Option<bool>,
    pub(crate) successful_jobs_history_limit: Option<i64>,
    pub(crate) failed_jobs_history_limit: Option<i64>,
    pub(crate) job_template: Option<RawJobTemplate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawJobTemplate {
    pub(crate) metadata: Option<RawMeta>,
    pub(crate) spec: Option<RawJobSpec>,
}

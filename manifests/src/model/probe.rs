//! Container probes (`livenessProbe`, `readinessProbe`, `startupProbe`), with Kubernetes'
//! defaults filled in, and lifecycle hooks (`postStart`, `preStop`).

use serde::Serialize;

/// One probe: what to check and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(flatten)]
    pub handler: ProbeHandler,
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The grace period when this (liveness or startup) probe kills the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<u64>,
}

/// Defaults of a probe's timing, as kubelet has them.
pub const PROBE_PERIOD_SECONDS: u32 = 10;
pub const PROBE_TIMEOUT_SECONDS: u32 = 1;
pub const PROBE_FAILURE_THRESHOLD: u32 = 3;

/// What a probe runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeHandler {
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGetAction),
    TcpSocket {
        port: ProbePort,
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    Grpc {
        port: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
}

/// A port by number or by the name of one of the container's ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProbePort {
    Number(u16),
    Name(String),
}

/// `httpGet`: a GET whose status 200-399 is a success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    pub path: String,
    pub port: ProbePort,
    /// Default: the pod's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub scheme: HttpScheme,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HttpScheme {
    #[serde(rename = "HTTP")]
    Http,
    /// TLS without certificate verification, as kubelet does.
    #[serde(rename = "HTTPS")]
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

impl Probe {
    /// The handler's kind as the manifest spells it (`httpGet`, ...).
    pub fn kind(&self) -> &'static str {
        match self.handler {
            ProbeHandler::Exec { .. } => "exec",
            ProbeHandler::HttpGet(_) => "httpGet",
            ProbeHandler::TcpSocket { .. } => "tcpSocket",
            ProbeHandler::Grpc { .. } => "grpc",
        }
    }
}

/// A container's `lifecycle`: what runs right after it starts and before it is stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<Hook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Hook>,
}

impl Lifecycle {
    pub fn is_empty(&self) -> bool {
        self.post_start.is_none() && self.pre_stop.is_none()
    }
}

/// What a lifecycle hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Hook {
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGetAction),
    TcpSocket {
        port: ProbePort,
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    Sleep {
        seconds: u32,
    },
}

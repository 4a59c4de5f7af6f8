//! Validation of a container's probes, with Kubernetes' defaults and limits: one handler each,
//! timing values in range, `successThreshold` 1 for liveness and startup probes, a probe-level
//! grace period only on those two, named ports that the container declares.

use crate::error::{FieldPath, Problems};
use crate::model::pod::ContainerPort;
use crate::model::probe::{
    Hook, HttpGetAction, HttpHeader, HttpScheme, Lifecycle, PROBE_FAILURE_THRESHOLD,
    PROBE_PERIOD_SECONDS, PROBE_TIMEOUT_SECONDS, Probe, ProbeHandler, ProbePort,
};
use crate::names;
use crate::raw::{
    RawExecAction, RawGrpc, RawHook, RawHttpGet, RawLifecycle, RawProbe, RawTargetPort,
    RawTcpSocket,
};

use super::{check, elements, one_of, port_number, required_string};

/// Which probe: liveness and startup probes must have `successThreshold: 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// The handlers a probe or hook sets (exec, httpGet, tcpSocket, grpc), each with its name;
/// `None` for one that is set but invalid (its problems are reported).
fn handlers(
    exec: Option<RawExecAction>,
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcpSocket>,
    grpc: Option<RawGrpc>,
    ports: &[ContainerPort],
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<(&'static str, Option<ProbeHandler>)> {
    let mut handlers = Vec::new();
    if let Some(exec) = exec {
        let command_path = path.child("exec").child("command");
        let command: Vec<String> = elements(exec.command, &command_path, problems)
            .into_iter()
            .map(|(_, _, c)| c)
            .collect();
        if command.is_empty() {
            problems.error(&command_path, "must name a command");
        }
        handlers.push(("exec", Some(ProbeHandler::Exec { command })));
    }
    if let Some(http) = http_get {
        let http_path = path.child("httpGet");
        let port = probe_port(http.port, ports, &http_path.child("port"), problems);
        let scheme = match http.scheme.as_deref() {
            None => Some(HttpScheme::Http),
            Some(text) => one_of(
                text,
                &[("HTTP", HttpScheme::Http), ("HTTPS", HttpScheme::Https)],
                &http_path.child("scheme"),
                problems,
            ),
        };
        let mut http_headers = Vec::new();
        for (_, header_path, header) in
            elements(http.http_headers, &http_path.child("httpHeaders"), problems)
        {
            if let Some(name) = required_string(header.name, &header_path.child("name"), problems) {
                http_headers.push(HttpHeader {
                    name,
                    value: header.value.unwrap_or_default(),
                });
            }
        }
        let path_text = http
            .path
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let handler = match (port, scheme) {
            (Some(port), Some(scheme)) => Some(ProbeHandler::HttpGet(HttpGetAction {
                path: if path_text.starts_with('/') {
                    path_text
                } else {
                    format!("/{path_text}")
                },
                port,
                host: http.host.filter(|h| !h.is_empty()),
                scheme,
                http_headers,
            })),
            _ => None,
        };
        handlers.push(("httpGet", handler));
    }
    if let Some(tcp) = tcp_socket {
        let port = probe_port(
            tcp.port,
            ports,
            &path.child("tcpSocket").child("port"),
            problems,
        );
        handlers.push((
            "tcpSocket",
            port.map(|port| ProbeHandler::TcpSocket {
                port,
                host: tcp.host.filter(|h| !h.is_empty()),
            }),
        ));
    }
    if let Some(grpc) = grpc {
        let port_path = path.child("grpc").child("port");
        let port = match grpc.port {
            None => {
                problems.error(
                    &port_path,
                    "required (a number: gRPC probes take no port names)",
                );
                None
            }
            Some(n) => port_number(n, &port_path, problems),
        };
        handlers.push((
            "grpc",
            port.map(|port| ProbeHandler::Grpc {
                port,
                service: grpc.service.filter(|s| !s.is_empty()),
            }),
        ));
    }
    handlers
}

pub(crate) fn probe(
    raw: Option<RawProbe>,
    kind: ProbeKind,
    ports: &[ContainerPort],
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Probe> {
    let raw = raw?;
    let mut handlers = handlers(
        raw.exec,
        raw.http_get,
        raw.tcp_socket,
        raw.grpc,
        ports,
        path,
        problems,
    );
    let handler = match handlers.len() {
        0 => {
            problems.error(
                path,
                "must set one probe handler: exec, httpGet, tcpSocket or grpc",
            );
            None
        }
        1 => handlers.pop().and_then(|(_, h)| h),
        _ => {
            let kinds: Vec<&str> = handlers.iter().map(|(k, _)| *k).collect();
            problems.error(
                path,
                format!("must set only one probe handler (got {})", kinds.join(", ")),
            );
            None
        }
    };
    let mut number = |value: Option<i64>, field: &str, default: u32, least: i64| -> Option<u32> {
        match value {
            None => Some(default),
            Some(v) if v >= least && v <= i64::from(u32::MAX) => Some(v as u32),
            Some(v) => {
                problems.error(&path.child(field), format!("must be >= {least} (got {v})"));
                None
            }
        }
    };
    let initial_delay_seconds = number(raw.initial_delay_seconds, "initialDelaySeconds", 0, 0);
    let period_seconds = number(raw.period_seconds, "periodSeconds", PROBE_PERIOD_SECONDS, 1);
    let timeout_seconds = number(
        raw.timeout_seconds,
        "timeoutSeconds",
        PROBE_TIMEOUT_SECONDS,
        1,
    );
    let success_threshold = number(raw.success_threshold, "successThreshold", 1, 1);
    let failure_threshold = number(
        raw.failure_threshold,
        "failureThreshold",
        PROBE_FAILURE_THRESHOLD,
        1,
    );
    if kind != ProbeKind::Readiness && success_threshold.is_some_and(|s| s != 1) {
        problems.error(
            &path.child("successThreshold"),
            format!(
                "must be 1 for a {} probe (got {})",
                if kind == ProbeKind::Liveness {
                    "liveness"
                } else {
                    "startup"
                },
                success_threshold.unwrap_or_default()
            ),
        );
    }
    let grace_path = path.child("terminationGracePeriodSeconds");
    let termination_grace_period_seconds = match raw.termination_grace_period_seconds {
        None => None,
        Some(_) if kind == ProbeKind::Readiness => {
            problems.error(&grace_path, "must not be set on a readiness probe");
            None
        }
        Some(v) if v >= 1 => Some(v as u64),
        Some(v) => {
            problems.error(&grace_path, format!("must be >= 1 (got {v})"));
            None
        }
    };
    Some(Probe {
        handler: handler?,
        initial_delay_seconds: initial_delay_seconds?,
        period_seconds: period_seconds?,
        timeout_seconds: timeout_seconds?,
        success_threshold: success_threshold?,
        failure_threshold: failure_threshold?,
        termination_grace_period_seconds,
    })
}

/// A probe's port: a number, or the name of one of the container's ports.
fn probe_port(
    raw: Option<RawTargetPort>,
    ports: &[ContainerPort],
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ProbePort> {
    let by_name = |name: String, problems: &mut Problems| {
        if !check(names::check_port_name(&name), path, problems) {
            return None;
        }
        if ports
            .iter()
            .any(|p| p.name.as_deref() == Some(name.as_str()))
        {
            Some(ProbePort::Name(name))
        } else {
            problems.error(
                path,
                format!("names no port of this container (got {name:?})"),
            );
            None
        }
    };
    match raw {
        None => {
            problems.error(path, "required");
            None
        }
        Some(RawTargetPort::Int(n)) => port_number(n, path, problems).map(ProbePort::Number),
        Some(RawTargetPort::String(text)) => match text.parse::<i64>() {
            Ok(n) => port_number(n, path, problems).map(ProbePort::Number),
            Err(_) => by_name(text, problems),
        },
    }
}

/// A container's `lifecycle`: `postStart` and `preStop`, one handler each (exec, httpGet,
/// tcpSocket or sleep). The node runs httpGet (HTTP), tcpSocket and sleep; an exec hook or
/// httpGet over HTTPS is accepted with a warning and skipped until it does.
pub(crate) fn lifecycle(
    raw: Option<RawLifecycle>,
    ports: &[ContainerPort],
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Lifecycle> {
    let Some(raw) = raw else {
        return Some(Lifecycle::default());
    };
    let post_start = hook(raw.post_start, ports, &path.child("postStart"), problems);
    let pre_stop = hook(raw.pre_stop, ports, &path.child("preStop"), problems);
    Some(Lifecycle {
        post_start: post_start?,
        pre_stop: pre_stop?,
    })
}

/// `Some(None)`: no hook; `None`: a hook with problems.
fn hook(
    raw: Option<RawHook>,
    ports: &[ContainerPort],
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Option<Hook>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let mut found: Vec<(&'static str, Option<Hook>)> = handlers(
        raw.exec,
        raw.http_get,
        raw.tcp_socket,
        None,
        ports,
        path,
        problems,
    )
    .into_iter()
    .map(|(name, handler)| {
        let hook = handler.and_then(|h| match h {
            ProbeHandler::Exec { command } => Some(Hook::Exec { command }),
            ProbeHandler::HttpGet(get) => Some(Hook::HttpGet(get)),
            ProbeHandler::TcpSocket { port, host } => Some(Hook::TcpSocket { port, host }),
            ProbeHandler::Grpc { .. } => None,
        });
        (name, hook)
    })
    .collect();
    if let Some(sleep) = raw.sleep {
        let seconds_path = path.child("sleep").child("seconds");
        let seconds = match sleep.seconds {
            None => {
                problems.error(&seconds_path, "required");
                None
            }
            Some(s) if (0..=i64::from(i32::MAX)).contains(&s) => Some(s as u32),
            Some(s) => {
                problems.error(&seconds_path, format!("must be >= 0 (got {s})"));
                None
            }
        };
        found.push(("sleep", seconds.map(|seconds| Hook::Sleep { seconds })));
    }
    let hook = match found.len() {
        0 => {
            problems.error(
                path,
                "must set one handler: exec, httpGet, tcpSocket or sleep",
            );
            return None;
        }
        1 => found.pop().and_then(|(_, h)| h)?,
        _ => {
            let kinds: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
            problems.error(
                path,
                format!("must set only one handler (got {})", kinds.join(", ")),
            );
            return None;
        }
    };
    Some(Some(hook))
}

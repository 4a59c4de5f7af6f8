//! Probes on the node loop: on each tick the loop starts the checks that are due (each on its
//! own task, at most one per probe at a time) and folds their results into the container's
//! probe state (`reconciler::probe`, pure). httpGet (HTTP and HTTPS), tcpSocket and grpc
//! checks connect from the node to the pod's address (the node's own loopback for host-network
//! pods), as kubelet does (`agent::checks` speaks HTTP, TLS and gRPC); exec checks run in the
//! container (`agent::exec`); a failed liveness or startup verdict stops the container, which restarts through
//! the crash backoff.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use skiff_cni::PodNetwork;
use skiff_manifests::{Container, Object, ProbeHandler, ProbePort};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::Core;
use crate::pod::Millis;
use crate::reconciler::probe::{ProbeKind, Verdict};

/// One check's result.
pub struct ProbeResult {
    pub uid: String,
    pub index: usize,
    /// The container instance it checked (a result for an older one is dropped).
    pub instance: String,
    pub kind: ProbeKind,
    pub ok: bool,
    pub message: String,
}

/// What one check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A command in the container; success is exit code 0.
    Exec(Vec<String>),
    Tcp(SocketAddr),
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
        headers: Vec<(String, String)>,
        /// HTTPS (the certificate is not verified, as kubelet does).
        tls: bool,
    },
    /// `grpc.health.v1.Health/Check` for `service` (plaintext HTTP/2).
    Grpc {
        addr: SocketAddr,
        service: String,
    },
}

/// The check a probe of container `c` makes against a pod at `pod_ip`.
pub fn check_of(handler: &ProbeHandler, c: &Container, pod_ip: IpAddr) -> Result<Check, String> {
    let port = |p: &ProbePort| -> Result<u16, String> {
        match p {
            ProbePort::Number(n) => Ok(*n),
            ProbePort::Name(name) => c
                .ports
                .iter()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .map(|cp| cp.container_port)
                .ok_or_else(|| format!("the container has no port named {name:?}")),
        }
    };
    let address = |host: &Option<String>| -> Result<IpAddr, String> {
        match host {
            None => Ok(pod_ip),
            Some(h) => h
                .parse()
                .map_err(|_| format!("probe host {h:?} is not an address")),
        }
    };
    match handler {
        ProbeHandler::Exec { command } => Ok(Check::Exec(command.clone())),
        ProbeHandler::TcpSocket { port: p, host } => {
            Ok(Check::Tcp(SocketAddr::new(address(host)?, port(p)?)))
        }
        ProbeHandler::Grpc { port, service } => Ok(Check::Grpc {
            addr: SocketAddr::new(pod_ip, *port),
            service: service.clone().unwrap_or_default(),
        }),
        ProbeHandler::HttpGet(get) => {
            let addr = SocketAddr::new(address(&get.host)?, port(&get.port)?);
            let host = get
                .http_headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| h.value.clone())
                .unwrap_or_else(|| addr.to_string());
            Ok(Check::Http {
                addr,
                host,
                path: get.path.clone(),
                headers: get
                    .http_headers
                    .iter()
                    .filter(|h| !h.name.eq_ignore_ascii_case("host"))
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
                tls: get.scheme == skiff_manifests::HttpScheme::Https,
            })
        }
    }
}

/// Where a check of pod `p` connects from and to: the node's namespace to the pod's address; a
/// host-network pod on the node's loopback; a pod without pod networking (a loopback-only
/// namespace) from inside its namespace, on its loopback. No address: not networked yet.
pub fn target(
    config: &crate::config::AgentConfig,
    p: &crate::pod::PodRecord,
) -> (Option<std::path::PathBuf>, Option<IpAddr>) {
    let node_netns = config.node_netns.clone();
    if p.plan.host_network {
        (node_netns, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    } else if let Some(n) = p.status.network.as_ref() {
        (node_netns, n.ip.parse().ok())
    } else if p.status.sandbox_ready {
        let name = format!("{}{}", config.netns_prefix, p.uid);
        (
            Some(config.netns_dir.join(name)),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        )
    } else {
        (node_netns, None)
    }
}

/// Runs lifecycle hook `hook` of container `c` (instance `id`) of pod `p` within `budget`: a
/// sleep, a command in the container, or an httpGet or tcpSocket check like a probe's. `Err`:
/// why it failed.
pub async fn run_hook(
    config: &crate::config::AgentConfig,
    runtime: &dyn skiff_runtime::container::ContainerRuntime,
    id: &str,
    p: &crate::pod::PodRecord,
    c: &Container,
    hook: &skiff_manifests::Hook,
    budget: Duration,
) -> Result<(), String> {
    use skiff_manifests::Hook;
    let handler = match hook {
        Hook::Exec { command } => {
            let ran = crate::agent::exec::capture(runtime, id, command.clone(), budget).await?;
            return match ran.code {
                0 => Ok(()),
                code => Err(format!(
                    "command {command:?} exited with {code}: {}",
                    ran.output.trim_end()
                )),
            };
        }
        Hook::Sleep { seconds } => {
            tokio::time::sleep(Duration::from_secs(u64::from(*seconds)).min(budget)).await;
            return Ok(());
        }
        Hook::HttpGet(get) => ProbeHandler::HttpGet(get.clone()),
        Hook::TcpSocket { port, host } => ProbeHandler::TcpSocket {
            port: port.clone(),
            host: host.clone(),
        },
    };
    let (from, ip) = target(config, p);
    let ip = ip.ok_or("the pod has no address")?;
    let check = check_of(&handler, c, ip)?;
    match run_check(&check, budget, from.as_deref()).await {
        (true, _) => Ok(()),
        (false, why) => Err(why),
    }
}

/// Runs `check` within `timeout` from the network namespace `netns` (the node's; the
/// current one for `None`): (success, what a failure said).
pub async fn run_check(
    check: &Check,
    timeout: Duration,
    netns: Option<&std::path::Path>,
) -> (bool, String) {
    match tokio::time::timeout(timeout, attempt(check, netns)).await {
        Ok(result) => result,
        Err(_) => (false, format!("timed out after {timeout:?}")),
    }
}

/// A connection to `addr` from `netns`.
async fn connect(addr: SocketAddr, netns: Option<&std::path::Path>) -> std::io::Result<TcpStream> {
    let fd = skiff_cni::tcp_socket_in(netns)
        .await
        .map_err(std::io::Error::other)?;
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
    socket.connect(addr).await
}

async fn attempt(check: &Check, netns: Option<&std::path::Path>) -> (bool, String) {
    match check {
        Check::Exec(_) => (
            false,
            "an exec check runs in the container, not here".into(),
        ),
        Check::Tcp(addr) => match connect(*addr, netns).await {
            Ok(_) => (true, String::new()),
            Err(e) => (false, format!("dial tcp {addr}: {e}")),
        },
        Check::Http {
            addr,
            host,
            path,
            headers,
            tls,
        } => {
            let scheme = if *tls { "https" } else { "http" };
            let url = format!("{scheme}://{addr}{path}");
            let stream = match connect(*addr, netns).await {
                Ok(s) => s,
                Err(e) => return (false, format!("Get \"{url}\": {e}")),
            };
            if !*tls {
                return crate::agent::checks::http_get(stream, &url, host, path, headers).await;
            }
            match crate::agent::checks::tls(stream, host).await {
                Ok(stream) => {
                    crate::agent::checks::http_get(stream, &url, host, path, headers).await
                }
                Err(e) => (false, format!("Get \"{url}\": {e}")),
            }
        }
        Check::Grpc { addr, service } => match connect(*addr, netns).await {
            Ok(stream) => {
                crate::agent::checks::grpc_health(stream, &addr.to_string(), service).await
            }
            Err(e) => (
                false,
                format!("timeout: failed to connect service {addr:?} within the probe: {e}"),
            ),
        },
    }
}

impl<N: PodNetwork + 'static> Core<N> {
    /// Starts the checks that are due (not those of a probe whose last check still runs).
    pub(super) fn run_probes(
        &mut self,
        now: Millis,
        results: &mpsc::Sender<ProbeResult>,
        tracker: &TaskTracker,
    ) {
        // Containers that run without probe state though their manifest has probes (started
        // by an agent that did not run probes yet): probed from now on, counted as started and
        // ready until their checks say otherwise (an upgrade does not flap endpoints).
        for shared in self.pods.values_mut() {
            let Object::Pod(pod) = shared.manifest.get() else {
                continue;
            };
            let fresh: Vec<(usize, crate::reconciler::probe::ContainerProbes)> = shared
                .status
                .containers
                .iter()
                .zip(&pod.spec.containers)
                .enumerate()
                .filter(|(_, (c, _))| {
                    c.current
                        .as_ref()
                        .is_some_and(|i| i.probes == Default::default())
                })
                .filter_map(|(n, (_, spec))| {
                    let fresh = crate::reconciler::probe::ContainerProbes::start(spec, now);
                    (fresh != Default::default()).then(|| (n, fresh.assumed_passing()))
                })
                .collect();
            if fresh.is_empty() {
                continue;
            }
            // Copied only when a container gets probe state (the record is shared with the
            // published snapshot).
            let p = std::sync::Arc::make_mut(shared);
            for (n, probes) in fresh {
                if let Some(i) = p.status.containers[n].current.as_mut() {
                    i.probes = probes;
                }
            }
        }
        let mut starts = Vec::new();
        for p in self.pods.values() {
            if p.deleting_since.is_some() || p.status.failure.is_some() {
                continue;
            }
            let Object::Pod(pod) = p.manifest.get() else {
                continue;
            };
            let (from, pod_ip) = target(&self.config, p);
            for (index, c) in p.status.containers.iter().enumerate() {
                let Some(i) = c.current.as_ref().filter(|i| i.stop_reason.is_none()) else {
                    continue;
                };
                let Some(spec) = pod.spec.containers.get(index) else {
                    continue;
                };
                for kind in i.probes.due(now) {
                    let key = (p.uid.clone(), index, kind);
                    if self.probing.contains(&key) {
                        continue;
                    }
                    let Some(probe) = kind.of(spec) else {
                        continue;
                    };
                    let check = match (&probe.handler, pod_ip) {
                        (ProbeHandler::Exec { command }, _) => Ok(Check::Exec(command.clone())),
                        (_, None) => Err("the pod has no address to probe".to_string()),
                        (handler, Some(ip)) => check_of(handler, spec, ip),
                    };
                    let timeout = Duration::from_secs(u64::from(probe.timeout_seconds));
                    starts.push((key, i.id.clone(), check, timeout, from.clone()));
                }
            }
        }
        for ((uid, index, kind), instance, check, timeout, netns) in starts {
            self.probing.insert((uid.clone(), index, kind));
            let tx = results.clone();
            let runtime = self.runtime.clone();
            tracker.spawn(async move {
                let (ok, message) = match check {
                    Ok(Check::Exec(command)) => {
                        match crate::agent::exec::capture(
                            runtime.as_ref(),
                            &instance,
                            command,
                            timeout,
                        )
                        .await
                        {
                            Ok(ran) if ran.code == 0 => (true, String::new()),
                            Ok(ran) if ran.output.trim().is_empty() => {
                                (false, format!("command exited with code {}", ran.code))
                            }
                            Ok(ran) => (false, ran.output.trim_end().to_string()),
                            Err(message) => (false, message),
                        }
                    }
                    Ok(check) => run_check(&check, timeout, netns.as_deref()).await,
                    Err(message) => (false, message),
                };
                let _ = tx
                    .send(ProbeResult {
                        uid,
                        index,
                        instance,
                        kind,
                        ok,
                        message,
                    })
                    .await;
            });
        }
    }

    /// Folds one check's result into its container's probe state.
    pub(super) fn on_probe_result(&mut self, r: ProbeResult, now: Millis) {
        self.probing.remove(&(r.uid.clone(), r.index, r.kind));
        let Some(p) = self.pods.get_mut(&r.uid).map(std::sync::Arc::make_mut) else {
            return;
        };
        let Object::Pod(pod) = p.manifest.get() else {
            return;
        };
        let Some(probe) = pod.spec.containers.get(r.index).and_then(|c| r.kind.of(c)) else {
            return;
        };
        let probe = probe.clone();
        let grace = p.plan.grace_period;
        let Some(c) = p.status.containers.get_mut(r.index) else {
            return;
        };
        let name = c.name.clone();
        let Some(i) = c.current.as_mut().filter(|i| i.id == r.instance) else {
            return;
        };
        let verdict = i.probes.record(r.kind, &probe, r.ok, &r.message, now);
        let event = match verdict {
            Verdict::Nothing => None,
            Verdict::Ready(ready) => Some((
                !ready,
                if ready { "Ready" } else { "Unhealthy" },
                if ready {
                    format!("container {name} is ready")
                } else {
                    format!("{} probe failed: {}", r.kind.title(), r.message)
                },
            )),
            Verdict::Kill(reason) => {
                i.stop_reason = Some(reason.clone());
                i.stop_grace_ms = Some(
                    probe
                        .termination_grace_period_seconds
                        .map(|s| s.saturating_mul(1000))
                        .unwrap_or(grace.as_millis() as Millis),
                );
                Some((
                    true,
                    "Unhealthy",
                    format!("{reason}; container {name} will be restarted"),
                ))
            }
        };
        if let Some((warning, reason, message)) = event {
            self.dirty.insert(r.uid.clone());
            self.record_pod_event(&r.uid, warning, reason, &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn checks_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let read = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..read]).into_owned();
                let code = if request.starts_with("GET /ok ") && request.contains("X-Probe: 1") {
                    200
                } else {
                    500
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let http = |path: &str| Check::Http {
            addr,
            host: addr.to_string(),
            path: path.into(),
            headers: vec![("X-Probe".into(), "1".into())],
            tls: false,
        };
        let second = Duration::from_secs(1);
        assert_eq!(
            run_check(&http("/ok"), second, None).await,
            (true, String::new())
        );
        let (ok, message) = run_check(&http("/bad"), second, None).await;
        assert!(
            !ok && message == "HTTP probe failed with statuscode: 500",
            "{message}"
        );
        assert!(run_check(&Check::Tcp(addr), second, None).await.0);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let (ok, message) = run_check(&Check::Tcp(gone), second, None).await;
        assert!(!ok && message.contains("refused"), "{message}");
    }
}

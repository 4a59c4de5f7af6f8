//! Running a process in a container of this node: `skiff exec` sessions (from the local API or
//! forwarded by another node), exec probes and exec hooks. The process is started by the
//! runtime's exec shim (`skiff shim exec`, a fresh single-threaded process: the agent itself
//! never calls libcontainer), which speaks `skiff_runtime::container::exec` frames on its
//! stdin and stdout. The shim's stdin stays open until the process exited; closing it earlier
//! (the caller went away, a probe timed out, the agent stops) kills the process.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use skiff_runtime::container::ContainerRuntime;
use skiff_runtime::container::exec::{ExecInput as Frame, ExecOutput, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::server::Reply;
use crate::api::{ExecInput, Response};
use crate::pod::PodRecord;

/// Output an exec probe or hook keeps (kubelet keeps 10 KiB too).
pub const MAX_CAPTURED: usize = 10 * 1024;

/// The runtime id of the running container `container` of pod `p` (its first container when
/// `None`): app containers, then running init containers (sidecars).
pub fn running_container(p: &PodRecord, container: Option<&str>) -> Result<String, String> {
    let all = p.status.containers.iter().chain(&p.status.init_containers);
    let names: Vec<&str> = all.clone().map(|c| c.name.as_str()).collect();
    let wanted = match container {
        Some(c) => all.clone().find(|s| s.name == c).ok_or_else(|| {
            format!(
                "container {c:?} is not in pod {:?} (containers: {})",
                p.name,
                names.join(", ")
            )
        })?,
        None => p
            .status
            .containers
            .first()
            .ok_or_else(|| format!("pod {:?} has no containers", p.name))?,
    };
    wanted
        .current
        .as_ref()
        .filter(|i| i.term_sent_at.is_none() && !i.kill_sent)
        .map(|i| i.id.clone())
        .ok_or_else(|| {
            format!(
                "container {:?} of pod {:?} is not running",
                wanted.name, p.name
            )
        })
}

/// Starts the exec shim for container `id`; the child is killed if dropped.
fn spawn(
    runtime: &dyn ContainerRuntime,
    id: &str,
    tty: bool,
    command: Vec<String>,
) -> Result<(Child, ChildStdin, ChildStdout), String> {
    let cmd = runtime
        .exec_command(id, tty, command)
        .map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the exec shim: {e}"))?;
    let stdin = child.stdin.take().ok_or("the exec shim has no stdin")?;
    let stdout = child.stdout.take().ok_or("the exec shim has no stdout")?;
    Ok((child, stdin, stdout))
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// An exec session: the process runs, `Ok` is the first answer, then its output, then `Exit`.
/// `input` carries the caller's lines; dropping it (or the answers' receiver) before the exit
/// kills the process. The relay is a task on `tracker` that ends at `cancel` too.
pub fn session(
    runtime: Arc<dyn ContainerRuntime>,
    id: &str,
    tty: bool,
    command: Vec<String>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Reply {
    let (mut child, stdin, mut stdout) = match spawn(runtime.as_ref(), id, tty, command) {
        Ok(x) => x,
        Err(message) => return Reply::One(Response::Error { message }),
    };
    let (out_tx, out_rx) = mpsc::channel::<Response>(64);
    let (in_tx, mut in_rx) = mpsc::channel::<ExecInput>(64);
    tracker.spawn(async move {
        let _ = out_tx
            .send(Response::Ok {
                value: serde_json::Value::Null,
            })
            .await;
        let mut stdin = Some(stdin);
        let mut frames = FrameReader::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut failed: Option<String> = None;
        let mut input_open = true;
        let exit = loop {
            tokio::select! {
                // All branches are cancel-safe (channel receives and a plain read).
                _ = cancel.cancelled(), if stdin.is_some() => stdin = None,
                _ = out_tx.closed(), if stdin.is_some() => stdin = None,
                line = in_rx.recv(), if input_open && stdin.is_some() => match line {
                    Some(line) => {
                        let frame = match line.to_runtime() {
                            Ok(frame) => frame,
                            Err(message) => {
                                tracing::debug!("exec session: {message}");
                                stdin = None;
                                continue;
                            }
                        };
                        if let Some(s) = stdin.as_mut()
                            && s.write_all(&frame.encode()).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    None => {
                        input_open = false;
                        stdin = None;
                    }
                },
                read = stdout.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => {
                        frames.push(&buf[..n]);
                        let mut done = None;
                        while let Ok(Some(frame)) = frames.next_output() {
                            let response = match frame {
                                ExecOutput::Stdout(d) => Response::Stdout { data: b64(&d) },
                                ExecOutput::Stderr(d) => Response::Stderr { data: b64(&d) },
                                ExecOutput::Failed(m) => {
                                    failed = Some(m);
                                    continue;
                                }
                                ExecOutput::Exit(code) => {
                                    done = Some(code);
                                    break;
                                }
                            };
                            if out_tx.send(response).await.is_err() {
                                stdin = None;
                            }
                        }
                        if done.is_some() {
                            break done;
                        }
                    }
                },
            }
        };
        drop(stdin);
        let status = child.wait().await;
        let (code, message) = match exit {
            Some(code) => (code, failed),
            None => (
                status.ok().and_then(|s| s.code()).unwrap_or(255),
                Some("the exec shim ended without reporting an exit status".into()),
            ),
        };
        let _ = out_tx.send(Response::Exit { code, message }).await;
    });
    Reply::Session {
        output: out_rx,
        input: in_tx,
    }
}

/// What an exec probe or hook ran into.
#[derive(Debug, PartialEq, Eq)]
pub struct Captured {
    pub code: i32,
    /// stdout and stderr as they came, at most [`MAX_CAPTURED`] bytes.
    pub output: String,
}

/// Runs `command` in container `id` without input, within `timeout` (the process is killed
/// then). `Err`: it could not run, or timed out.
pub async fn capture(
    runtime: &dyn ContainerRuntime,
    id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> Result<Captured, String> {
    let (mut child, mut stdin, mut stdout) = spawn(runtime, id, false, command)?;
    let run = async {
        stdin
            .write_all(&Frame::StdinEnd.encode())
            .await
            .map_err(|e| format!("exec shim: {e}"))?;
        let mut frames = FrameReader::default();
        let mut output = Vec::new();
        let mut failed = None;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while let Some(frame) = frames.next_output().map_err(|e| e.to_string())? {
                match frame {
                    ExecOutput::Stdout(d) | ExecOutput::Stderr(d) => {
                        let room = MAX_CAPTURED.saturating_sub(output.len());
                        output.extend_from_slice(&d[..d.len().min(room)]);
                    }
                    ExecOutput::Failed(m) => failed = Some(m),
                    ExecOutput::Exit(code) => {
                        if let Some(m) = failed {
                            return Err(m);
                        }
                        return Ok(Captured {
                            code,
                            output: String::from_utf8_lossy(&output).into_owned(),
                        });
                    }
                }
            }
            match stdout.read(&mut buf).await {
                Ok(0) => return Err("the exec shim ended without an exit status".into()),
                Ok(n) => frames.push(&buf[..n]),
                Err(e) => return Err(format!("exec shim: {e}")),
            }
        }
    };
    let result = tokio::time::timeout(timeout, run).await;
    // Closing its stdin makes the shim kill a process that still runs.
    drop(stdin);
    let _ = child.wait().await;
    match result {
        Ok(r) => r,
        Err(_) => Err(format!("command timed out after {timeout:?}")),
    }
}

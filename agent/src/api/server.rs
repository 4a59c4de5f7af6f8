//! The agent side of the local API: a unix socket, one task per connection, requests handed to
//! the agent's handler, within `limits::Limits` (connections, request size and time, bytes
//! buffered across connections; accept errors back off).

pub use super::limits::Limits;
use super::limits::{LogLimiter, ReadOutcome, accept_backoff, human_bytes, read_request};
use super::{Request, Response};
use futures::future::BoxFuture;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An answer: one line, or a stream of lines (logs -f) that ends when the sender is dropped, or
/// a session (exec) that also reads the caller's further lines into `input`.
pub enum Reply {
    One(Response),
    /// One answer already encoded as its JSON line (without the newline): a long `get` list,
    /// encoded item by item so that the whole list is never held as a JSON tree.
    Line(String),
    Stream(mpsc::Receiver<Response>),
    Session {
        output: mpsc::Receiver<Response>,
        input: mpsc::Sender<super::ExecInput>,
    },
}

/// What serves requests.
pub type Handler = Arc<dyn Fn(Request) -> BoxFuture<'static, Reply> + Send + Sync>;

/// The API socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("api socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "api socket {path}: another agent is already listening there (use --api-socket to run a second one)"
    )]
    InUse { path: PathBuf },
}

/// Binds the socket (root-only permissions), replacing a stale file left by a dead agent.
pub fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Accepts connections until `cancel`, within `limits`; each connection is a task on `tracker`.
/// A failed accept (out of file descriptors, say) waits a growing delay before the next one and
/// is logged at most once a second.
pub async fn serve(
    listener: UnixListener,
    handler: Handler,
    limits: Limits,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let budget = Arc::new(Semaphore::new(limits.max_buffered_bytes));
    let mut failures = 0u32;
    let mut log = LogLimiter::new(Duration::from_secs(1));
    loop {
        tokio::select! {
            // Cancel-safe: nothing is lost when cancelled.
            _ = cancel.cancelled() => break,
            // Cancel-safe per tokio's docs.
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    failures = 0;
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        refuse(stream, &limits);
                        continue;
                    };
                    let handler = handler.clone();
                    let cancel = cancel.clone();
                    let limits = limits.clone();
                    let budget = budget.clone();
                    tracker.spawn(async move {
                        let _slot = slot;
                        if let Err(e) = connection(stream, handler, &limits, &budget, cancel).await {
                            tracing::debug!("api connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = accept_backoff(failures);
                    if let Some(suppressed) = log.allow(std::time::Instant::now()) {
                        tracing::warn!(
                            "api socket accept failed: {e} (next try in {delay:?}; \
                             {suppressed} such failures not logged)"
                        );
                    }
                    tokio::select! {
                        // Both cancel-safe.
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            },
        }
    }
}

/// Answers a connection over the limit with an error line (without waiting) and closes it.
/// The write goes straight to the socket: a fresh tokio stream has no readiness yet and its
/// `try_write` could refuse without trying.
fn refuse(stream: UnixStream, limits: &Limits) {
    let response = Response::Error {
        message: format!(
            "the agent is serving too many connections ({}); try again shortly",
            limits.max_connections
        ),
    };
    if let (Ok(mut bytes), Ok(mut stream)) = (serde_json::to_vec(&response), stream.into_std()) {
        bytes.push(b'\n');
        let _ = std::io::Write::write(&mut stream, &bytes);
    }
}

async fn connection(
    stream: UnixStream,
    handler: Handler,
    limits: &Limits,
    budget: &Arc<Semaphore>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let deadline = tokio::time::Instant::now() + limits.request_deadline;
    let first = tokio::select! {
        // Cancel-safe: the connection is dropped.
        _ = cancel.cancelled() => return Ok(()),
        first = tokio::time::timeout_at(deadline, read_request(&mut read, limits, budget)) => first,
    };
    let refusal = match first {
        Err(_) => format!(
            "no complete request line within {:?}: closing the connection",
            limits.request_deadline
        ),
        Ok(outcome) => match outcome? {
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::TooLarge => format!(
                "request too large (max {})",
                human_bytes(limits.max_request_bytes)
            ),
            ReadOutcome::Busy => format!(
                "the agent is buffering {} of requests already; try again shortly",
                human_bytes(limits.max_buffered_bytes)
            ),
            ReadOutcome::Line(line, held) => {
                let reply = match decode_line(&line) {
                    Ok(request) => handler(request).await,
                    Err(e) => Reply::One(Response::Error {
                        message: e.to_string(),
                    }),
                };
                drop(held);
                drop(line);
                if let Reply::Session { output, input } = reply {
                    return session(read, &mut write, output, input, limits, cancel).await;
                }
                return answer(&mut write, reply, cancel).await;
            }
        },
    };
    // The client may still be writing; it reads this answer when its write fails.
    let refusal = Response::Error { message: refusal };
    let refused = write_line(&mut write, &refusal);
    match tokio::time::timeout(Duration::from_secs(1), refused).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// A request line that is not a request; its message is the answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MalformedRequest {
    #[error("malformed request: not valid UTF-8 (bad byte at offset {})", .0.valid_up_to())]
    Utf8(#[source] std::str::Utf8Error),
    #[error("malformed request: {0}")]
    Json(#[source] serde_json::Error),
}

/// One request line as the server reads it: UTF-8, then JSON; the error is the answer.
pub(crate) fn decode_line(line: &[u8]) -> Result<Request, MalformedRequest> {
    let text = std::str::from_utf8(line).map_err(MalformedRequest::Utf8)?;
    serde_json::from_str::<Request>(text).map_err(MalformedRequest::Json)
}

async fn answer(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: Reply,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    match reply {
        Reply::One(response) => write_line(write, &response).await,
        Reply::Line(mut line) => {
            line.push('\n');
            write.write_all(line.as_bytes()).await
        }
        // Sessions are relayed by `session`, which also reads the caller's lines.
        Reply::Session { .. } => Ok(()),
        Reply::Stream(mut rx) => {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    item = rx.recv() => match item {
                        Some(response) => write_line(write, &response).await?,
                        None => break,
                    },
                }
            }
            write_line(write, &Response::End).await
        }
    }
}

/// Relays a session: the caller's lines (each at most `max_request_bytes`) go to `input`, the
/// answers come back, until the answers end. A caller that closes, or sends a line that is not
/// an input, ends its input (which kills the process); its answers still end with `Exit`.
async fn session(
    mut read: tokio::net::unix::OwnedReadHalf,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    mut output: mpsc::Receiver<Response>,
    input: mpsc::Sender<super::ExecInput>,
    limits: &Limits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut input = Some(input);
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            // All cancel-safe: channel receive, a plain read into a buffer kept across turns.
            _ = cancel.cancelled() => return Ok(()),
            item = output.recv() => match item {
                Some(response) => write_line(write, &response).await?,
                None => return Ok(()),
            },
            read = read.read(&mut chunk), if input.is_some() => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        input = None;
                        continue;
                    }
                    Ok(n) => n,
                };
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let parsed = std::str::from_utf8(&line[..end])
                        .ok()
                        .and_then(|t| serde_json::from_str::<super::ExecInput>(t).ok());
                    let sent = match (parsed, &input) {
                        (Some(item), Some(tx)) => tx.send(item).await.is_ok(),
                        _ => false,
                    };
                    if !sent {
                        input = None;
                        pending.clear();
                        break;
                    }
                }
                if pending.len() > limits.max_request_bytes {
                    input = None;
                    pending.clear();
                }
            },
        }
    }
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

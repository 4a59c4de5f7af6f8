//! The agent side of the local API: a unix socket, one task per connection, requests handed to
//! the agent's handler.

use super::{Request, Response};
use futures::future::BoxFuture;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An answer: one line, or a stream of lines (logs -f) that ends when the sender is dropped.
pub enum Reply {
    One(Response),
    Stream(mpsc::Receiver<Response>),
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

/// Accepts connections until `cancel`; each connection is a task on `tracker`.
pub async fn serve(
    listener: UnixListener,
    handler: Handler,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            // Cancel-safe: nothing is lost when cancelled.
            _ = cancel.cancelled() => break,
            // Cancel-safe per tokio's docs.
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    let cancel = cancel.clone();
                    tracker.spawn(async move {
                        if let Err(e) = connection(stream, handler, cancel).await {
                            tracing::debug!("api connection ended: {e}");
                        }
                    });
                }
                Err(e) => tracing::warn!("api socket accept failed: {e}"),
            },
        }
    }
}

async fn connection(
    stream: UnixStream,
    handler: Handler,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    // A request is small (manifests included); refuse anything absurd rather than buffering it.
    let mut reader = BufReader::new(read).take(64 * 1024 * 1024);
    let mut line = String::new();
    let n = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        n = reader.read_line(&mut line) => n?,
    };
    if n == 0 {
        return Ok(());
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handler(request).await,
        Err(e) => Reply::One(Response::Error {
            message: format!("malformed request: {e}"),
        }),
    };
    match reply {
        Reply::One(response) => write_line(&mut write, &response).await,
        Reply::Stream(mut rx) => {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    item = rx.recv() => match item {
                        Some(response) => write_line(&mut write, &response).await?,
                        None => break,
                    },
                }
            }
            write_line(&mut write, &Response::End).await
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

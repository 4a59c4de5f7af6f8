//! The CLI side of the local API: connect, send one request, read the answer line by line.

use super::{Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the CLI could not talk to its agent (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the skiff agent at {path}: {source} (is `skiff agent` running? set --socket or SKIFF_SOCKET)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the connection to the agent at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent at {path} sent an answer this CLI cannot read: {detail}")]
    Protocol { path: PathBuf, detail: String },
}

/// A connection carrying one request.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    /// An answer read before the request was fully sent (the agent refused it early).
    early: Option<Response>,
}

impl Client {
    /// Connects and sends `request`.
    pub fn send(path: &Path, request: &Request) -> Result<Client, ClientError> {
        let mut stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        line.push(b'\n');
        let written = stream.write_all(&line);
        let mut client = Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            early: None,
        };
        match written {
            Ok(()) => Ok(client),
            // The agent may refuse a request before reading all of it (too large, too many
            // connections) and close: its answer is still there to read.
            Err(source)
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                let _ = client
                    .reader
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(5)));
                match client.next_response() {
                    Ok(Some(response)) => {
                        client.early = Some(response);
                        Ok(client)
                    }
                    _ => Err(ClientError::Io {
                        path: path.to_path_buf(),
                        source,
                    }),
                }
            }
            Err(source) => Err(ClientError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The next answer line; `None` when the agent closed the connection.
    pub fn next_response(&mut self) -> Result<Option<Response>, ClientError> {
        if let Some(response) = self.early.take() {
            return Ok(Some(response));
        }
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol {
                path: self.path.clone(),
                detail: e.to_string(),
            })
    }

    /// A second handle on the connection, to write while answers are read (exec input).
    pub fn writer(&self) -> Result<UnixStream, ClientError> {
        self.reader
            .get_ref()
            .try_clone()
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Sends `request` and returns the single answer.
    pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
        let mut client = Client::send(path, request)?;
        client
            .next_response()?
            .ok_or_else(|| ClientError::Protocol {
                path: path.to_path_buf(),
                detail: "connection closed before an answer".into(),
            })
    }
}

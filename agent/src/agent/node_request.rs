//! The node-to-node protocol of the agent (over the gossip crate's mutual-TLS rpc,
//! `skiff-rpc/1`): what one node asks another ([`NodeRequest`]) and how answers are framed. The
//! server side is `rpc`, the calling side `remote`; both ends of `Objects` are in `cluster::fetch`.
//!
//! Encoding: requests are JSON [`NodeRequest`]s. Answers to `DescribePod`, `SetScheduling` and
//! `RemoveNode` are one JSON [`Response`] line; answers to `Logs` are JSON lines: first `Ok` (the
//! stream follows) or `Error` (as the local API would answer), then `LogLine`s, an optional final
//! `Error`; the rpc stream's end is the end of the logs. Answers to `Objects` are a JSON array of
//! `[key, body]` pairs.

use crate::api::Response;
use crate::api::server::Reply;
use serde::{Deserialize, Serialize};
use skiff_gossip::{ResponseStream, ResponseWriter, RpcFailure};

/// What one node asks another (JSON, externally tagged: `{"Objects":{"keys":[...]}}`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum NodeRequest {
    /// The stored bodies of replicated objects, by gossip key (`obj/<Kind>/<ns>/<name>`).
    Objects {
        keys: Vec<String>,
    },
    Logs {
        namespace: String,
        pod: String,
        container: Option<String>,
        tail: Option<usize>,
        follow: bool,
    },
    DescribePod {
        namespace: String,
        name: String,
    },
    /// `skiff exec` of a pod the called node runs: a session (input: `ExecInput` JSON lines;
    /// answer: `Response` JSON lines, `Ok` first, `Exit` last).
    Exec {
        namespace: String,
        pod: String,
        container: Option<String>,
        command: Vec<String>,
        tty: bool,
    },
    /// `skiff cordon|uncordon|drain` of the called node (a node writes its own metadata).
    SetScheduling {
        cordoned: bool,
        draining: bool,
    },
    /// `skiff node remove`, asked of the node that issues certificates.
    RemoveNode {
        name: String,
        force: bool,
    },
}

/// The request's bytes on the wire.
pub(super) fn encode(request: &NodeRequest) -> Vec<u8> {
    serde_json::to_vec(request).unwrap_or_default()
}

/// Writes a local API reply as JSON lines; a stream is announced by a leading `Ok`.
pub(super) async fn write_reply(
    reply: Reply,
    response: &mut ResponseWriter,
) -> Result<(), RpcFailure> {
    match reply {
        Reply::One(one) => response.send(&line(&one)).await,
        Reply::Line(mut text) => {
            text.push('\n');
            response.send(text.as_bytes()).await
        }
        Reply::Session { .. } => Err(RpcFailure::Failed(
            "a session cannot be answered as a call".into(),
        )),
        Reply::Stream(mut rx) => {
            let accepted = Response::Ok {
                value: serde_json::Value::Null,
            };
            response.send(&line(&accepted)).await?;
            // Cancel-safe: the rpc server drops this future when the caller goes away, which
            // drops `rx` and ends the local log task.
            while let Some(item) = rx.recv().await {
                response.send(&line(&item)).await?;
            }
            Ok(())
        }
    }
}

pub(super) fn line(response: &Response) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(response).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// `bytes` without the newline that ends a line.
pub(super) fn trim_line(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\n").unwrap_or(bytes)
}

/// Splits a streamed rpc answer into JSON lines.
pub(super) struct Lines {
    stream: ResponseStream,
    buf: Vec<u8>,
}

/// Longest line accepted from another node (a log line plus its JSON envelope).
const MAX_LINE: usize = 4 * 1024 * 1024;

impl Lines {
    pub(super) fn new(stream: ResponseStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next message; `None` at the end of the stream. Cancel-safe.
    pub(super) async fn next(&mut self) -> Result<Option<Response>, AnswerError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return serde_json::from_slice(trim_line(&line))
                    .map(Some)
                    .map_err(AnswerError::Unreadable);
            }
            if self.buf.len() > MAX_LINE {
                return Err(AnswerError::LineTooLong);
            }
            match self.stream.next_chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(AnswerError::Truncated),
            }
        }
    }
}

/// A streamed answer from another node that cannot be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum AnswerError {
    #[error("unreadable answer: {0}")]
    Unreadable(#[source] serde_json::Error),
    #[error("an answer line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("the answer ends inside a line")]
    Truncated,
    #[error(transparent)]
    Rpc(#[from] skiff_gossip::RpcError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let request = NodeRequest::DescribePod {
            namespace: "default".into(),
            name: "web".into(),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"DescribePod":{"namespace":"default","name":"web"}}"#
        );
        assert_eq!(serde_json::from_str::<NodeRequest>(&json).unwrap(), request);
        // What the cluster layer's fetcher sends.
        let objects: NodeRequest =
            serde_json::from_str(r#"{"Objects":{"keys":["obj/Pod/a/b"]}}"#).unwrap();
        assert_eq!(
            objects,
            NodeRequest::Objects {
                keys: vec!["obj/Pod/a/b".into()]
            }
        );
        assert_eq!(
            serde_json::from_slice::<NodeRequest>(&crate::cluster::fetch::objects_request(&[
                "obj/Pod/a/b".into()
            ]))
            .unwrap(),
            objects
        );
        assert!(serde_json::from_str::<NodeRequest>(r#"{"Reboot":{}}"#).is_err());
    }

    #[test]
    fn replies_become_lines() {
        let bytes = line(&Response::LogLine {
            text: "a\nb".into(),
        });
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert_eq!(
            serde_json::from_slice::<Response>(trim_line(&bytes)).unwrap(),
            Response::LogLine {
                text: "a\nb".into()
            }
        );
    }
}

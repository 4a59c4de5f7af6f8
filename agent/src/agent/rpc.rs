//! Node-to-node calls of the agent, over the gossip crate's mutual-TLS rpc: the request enum,
//! the server side ([`AgentRpc`]: object bodies, and logs / describe of this node's pods, answered
//! by the same code as the local API) and the calling side ([`Remote`]: finds the node that runs a
//! pod from its `pod/<ns>/<name>` gossip key and forwards `logs` / `describe pod` there).
//!
//! Encoding: requests are JSON [`NodeRequest`]s. Answers to `DescribePod` are one JSON
//! [`Response`]; answers to `Logs` are JSON lines: first `Ok` (the stream follows) or `Error`
//! (as the local API would answer), then `LogLine`s, an optional final `Error`; the rpc stream's
//! end is the end of the logs. Answers to `Objects` are a JSON array of `[key, body]` pairs
//! (what `cluster::fetch` reads).

use super::handler::{self, Shared};
use crate::api::server::Reply;
use crate::api::{ResourceKind, Response};
use serde::{Deserialize, Serialize};
use skiff_gossip::{
    GossipHandle, KeyReader, NodeCondition, NodeStatus, ResponseStream, ResponseWriter, RpcClient,
    RpcFailure, RpcHandler,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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

/// Answers `Objects`: `(key, body)` for each key this node holds (unknown keys are left out).
pub type ObjectSource =
    Arc<dyn Fn(&[String]) -> Result<Vec<(String, serde_json::Value)>, String> + Send + Sync>;

/// The rpc server's handler: answers other nodes about this node only (never forwards again).
pub struct AgentRpc {
    shared: Shared,
    objects: ObjectSource,
}

impl AgentRpc {
    pub fn new(shared: Shared, objects: ObjectSource) -> Self {
        Self { shared, objects }
    }
}

impl RpcHandler for AgentRpc {
    async fn call(
        &self,
        peer: &str,
        request: Vec<u8>,
        response: &mut ResponseWriter,
    ) -> Result<(), RpcFailure> {
        let request: NodeRequest = serde_json::from_slice(&request)
            .map_err(|e| RpcFailure::Malformed(format!("from node {peer}: {e}")))?;
        match request {
            NodeRequest::Objects { keys } => {
                let bodies = (self.objects)(&keys).map_err(RpcFailure::Failed)?;
                let bytes =
                    serde_json::to_vec(&bodies).map_err(|e| RpcFailure::Failed(e.to_string()))?;
                response.send(&bytes).await
            }
            NodeRequest::DescribePod { namespace, name } => {
                let snap = self.shared.snapshot.borrow().clone();
                let reply =
                    handler::describe_here(&snap, ResourceKind::Pods, &name, Some(&namespace));
                write_reply(reply, response).await
            }
            NodeRequest::SetScheduling { cordoned, draining } => {
                let reply = match self
                    .shared
                    .node_meta
                    .set_scheduling(cordoned, draining)
                    .await
                {
                    Ok(()) => Response::Ok {
                        value: serde_json::json!({ "name": self.shared.node_meta.node_name() }),
                    },
                    Err(message) => Response::Error { message },
                };
                write_reply(Reply::One(reply), response).await
            }
            NodeRequest::RemoveNode { name, force } => {
                let reply = match &self.shared.remover {
                    Some(remover) if remover.is_issuer() => {
                        super::admin::remove_here(remover, &name, force, Some(peer)).await
                    }
                    _ => Response::Error {
                        message: format!(
                            "node remove: node {} does not issue certificates",
                            self.shared.node_meta.node_name()
                        ),
                    },
                };
                write_reply(Reply::One(reply), response).await
            }
            NodeRequest::Logs {
                namespace,
                pod,
                container,
                tail,
                follow,
            } => {
                let snap = self.shared.snapshot.borrow().clone();
                let reply = handler::logs_here(
                    &self.shared,
                    &snap,
                    &pod,
                    Some(&namespace),
                    container.as_deref(),
                    follow,
                    tail,
                );
                write_reply(reply, response).await
            }
        }
    }
}

/// Writes a local API reply as JSON lines; a stream is announced by a leading `Ok`.
async fn write_reply(reply: Reply, response: &mut ResponseWriter) -> Result<(), RpcFailure> {
    match reply {
        Reply::One(one) => response.send(&line(&one)).await,
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

fn line(response: &Response) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(response).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// What the local API needs to reach other nodes. Cheap to clone.
#[derive(Clone)]
pub struct Remote {
    pub self_name: String,
    pub rpc: RpcClient,
    pub keys: KeyReader,
    pub nodes: watch::Receiver<Vec<NodeStatus>>,
}

/// How long a forwarded `logs` may take to start answering.
const FIRST_ANSWER: Duration = Duration::from_secs(10);

impl Remote {
    /// Reaches other nodes through `gossip`'s rpc client (`None` off QUIC).
    pub fn from_gossip(gossip: &GossipHandle) -> Option<Self> {
        Some(Self {
            self_name: gossip.node_name().to_string(),
            rpc: gossip.rpc_client()?,
            keys: gossip.key_reader(),
            nodes: gossip.nodes(),
        })
    }

    /// Nodes (other than this one) that report running `namespace/name`, best first: a pod
    /// being deleted last, then by node condition.
    pub async fn locate(&self, namespace: &str, name: &str) -> Vec<(String, SocketAddr)> {
        let key = format!("pod/{namespace}/{name}");
        let nodes = self.nodes.borrow().clone();
        let mut found: Vec<(bool, u8, String, SocketAddr)> = Vec::new();
        for (node, k, value) in self.keys.keys_with_prefix(&key).await {
            if k != key || node == self.self_name {
                continue;
            }
            let Some(status) = nodes.iter().find(|n| n.name == node) else {
                continue;
            };
            let rank = match status.condition {
                NodeCondition::Ready => 0,
                NodeCondition::NotReady => 1,
                NodeCondition::Left => continue,
            };
            let deleting = serde_json::from_str::<serde_json::Value>(&value)
                .ok()
                .and_then(|v| v.get("deleting")?.as_bool())
                .unwrap_or(false);
            found.push((deleting, rank, node, status.address));
        }
        found.sort();
        found.into_iter().map(|(_, _, n, a)| (n, a)).collect()
    }

    /// `cordon|uncordon|drain` of another node, carried out by that node.
    pub async fn set_scheduling(&self, node: &str, cordoned: bool, draining: bool) -> Reply {
        let Some(addr) = self
            .nodes
            .borrow()
            .iter()
            .find(|n| n.name == node && n.condition != NodeCondition::Left)
            .map(|n| n.address)
        else {
            return unreachable_or_not_found_node(node);
        };
        let request = encode(&NodeRequest::SetScheduling { cordoned, draining });
        match self.rpc.call(addr, &request).await {
            Ok(bytes) => match serde_json::from_slice::<Response>(trim_line(&bytes)) {
                Ok(response) => Reply::One(response),
                Err(e) => Reply::One(Response::Error {
                    message: format!("node {node} answered unreadably: {e}"),
                }),
            },
            Err(e) => Reply::One(Response::Error {
                message: format!("cannot reach node {node}: {e}"),
            }),
        }
    }

    /// `node remove` carried out by the issuing node at `issuer`.
    pub async fn remove_node(&self, issuer: SocketAddr, name: &str, force: bool) -> Reply {
        let request = encode(&NodeRequest::RemoveNode {
            name: name.to_string(),
            force,
        });
        match self.rpc.call(issuer, &request).await {
            Ok(bytes) => match serde_json::from_slice::<Response>(trim_line(&bytes)) {
                Ok(response) => Reply::One(response),
                Err(e) => Reply::One(Response::Error {
                    message: format!("node remove: the issuing node answered unreadably: {e}"),
                }),
            },
            Err(e) => Reply::One(Response::Error {
                message: format!("node remove: cannot reach the issuing node: {e}"),
            }),
        }
    }

    /// `describe pod` of a pod another node runs; "not found" if no node reports it.
    pub async fn describe_pod(&self, namespace: &str, name: &str) -> Reply {
        let request = encode(&NodeRequest::DescribePod {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
        let mut last = None;
        for (node, addr) in self.locate(namespace, name).await {
            match self.rpc.call(addr, &request).await {
                Ok(bytes) => match serde_json::from_slice::<Response>(trim_line(&bytes)) {
                    Ok(response) => return Reply::One(response),
                    Err(e) => last = Some(format!("node {node} answered unreadably: {e}")),
                },
                Err(e) => last = Some(format!("pod {name:?} runs on node {node}: {e}")),
            }
        }
        unreachable_or_not_found(name, last)
    }

    /// `logs` of a pod another node runs, streamed back (with `follow`, until the pod or the
    /// caller goes away); "not found" if no node reports it.
    pub async fn logs(
        &self,
        request: NodeRequest,
        pod: &str,
        namespace: &str,
        cancel: CancellationToken,
    ) -> Reply {
        let bytes = encode(&request);
        let mut last = None;
        for (node, addr) in self.locate(namespace, pod).await {
            let opened = async {
                let stream = self
                    .rpc
                    .stream(addr, &bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut lines = Lines::new(stream);
                let first = tokio::time::timeout(FIRST_ANSWER, lines.next())
                    .await
                    .map_err(|_| format!("no answer within {FIRST_ANSWER:?}"))??;
                Ok::<_, String>((first, lines))
            };
            match opened.await {
                Ok((Some(Response::Ok { .. }), lines)) => {
                    return Reply::Stream(pump(lines, node, cancel));
                }
                Ok((Some(first), _)) => return Reply::One(first),
                Ok((None, _)) => {
                    last = Some(format!("node {node} ended the logs without an answer"))
                }
                Err(e) => last = Some(format!("pod {pod:?} runs on node {node}: {e}")),
            }
        }
        unreachable_or_not_found(pod, last)
    }
}

fn unreachable_or_not_found_node(node: &str) -> Reply {
    Reply::One(Response::Error {
        message: format!("node {node:?} not found"),
    })
}

fn unreachable_or_not_found(name: &str, last: Option<String>) -> Reply {
    Reply::One(Response::Error {
        message: last.unwrap_or_else(|| format!("pod {name:?} not found")),
    })
}

fn encode(request: &NodeRequest) -> Vec<u8> {
    serde_json::to_vec(request).unwrap_or_default()
}

fn trim_line(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\n").unwrap_or(bytes)
}

/// Relays a remote log stream to the local API until it ends, the caller goes away or the agent
/// stops.
fn pump(mut lines: Lines, node: String, cancel: CancellationToken) -> mpsc::Receiver<Response> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            // Cancel-safe branches: `Lines::next` keeps partial input in its buffer.
            let item = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                item = lines.next() => item,
            };
            let response = match item {
                Ok(Some(response)) => response,
                Ok(None) => return,
                Err(e) => Response::Error {
                    message: format!("logs from node {node}: {e}"),
                },
            };
            let stop = matches!(response, Response::Error { .. });
            if tx.send(response).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// Splits a streamed rpc answer into JSON lines.
struct Lines {
    stream: ResponseStream,
    buf: Vec<u8>,
}

/// Longest line accepted from another node (a log line plus its JSON envelope).
const MAX_LINE: usize = 4 * 1024 * 1024;

impl Lines {
    fn new(stream: ResponseStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next message; `None` at the end of the stream. Cancel-safe.
    async fn next(&mut self) -> Result<Option<Response>, String> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return serde_json::from_slice(trim_line(&line))
                    .map(Some)
                    .map_err(|e| format!("unreadable answer: {e}"));
            }
            if self.buf.len() > MAX_LINE {
                return Err(format!("an answer line is longer than {MAX_LINE} bytes"));
            }
            match self.stream.next_chunk().await.map_err(|e| e.to_string())? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err("the answer ends inside a line".to_string()),
            }
        }
    }
}

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod forwarding_tests;

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

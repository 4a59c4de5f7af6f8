//! The calling side of node-to-node calls ([`Remote`]): the local API reaches the node that runs
//! a pod (found from its `pod/<ns>/<name>` gossip key) for `logs` / `describe pod`, the node to
//! cordon or drain, and the node that issues certificates for `node remove`.

use super::node_request::{Lines, NodeRequest, encode, trim_line};
use crate::api::Response;
use crate::api::server::Reply;
use skiff_gossip::{GossipHandle, KeyReader, NodeCondition, NodeStatus, RpcClient};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// caller goes away); "not found" if no node reports it. The relay is a task on `tracker`
    /// that ends at `cancel`.
    pub async fn logs(
        &self,
        request: NodeRequest,
        pod: &str,
        namespace: &str,
        cancel: CancellationToken,
        tracker: &TaskTracker,
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
                    .map_err(|_| format!("no answer within {FIRST_ANSWER:?}"))?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((first, lines))
            };
            match opened.await {
                Ok((Some(Response::Ok { .. }), lines)) => {
                    return Reply::Stream(pump(lines, node, cancel, tracker));
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

impl Remote {
    /// `exec` in a pod another node runs: a session over rpc whose answers come back as they
    /// are written and whose input lines go on to that node. "not found" if no node reports it.
    /// The relay is a task on `tracker` that ends at `cancel`; the caller's input ending or
    /// the caller going away ends the remote input, which kills the remote process.
    pub async fn exec(
        &self,
        request: NodeRequest,
        pod: &str,
        namespace: &str,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Reply {
        let bytes = encode(&request);
        let mut last = None;
        for (node, addr) in self.locate(namespace, pod).await {
            let opened = async {
                let (sink, stream) = self
                    .rpc
                    .session(addr, &bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut lines = Lines::new(stream);
                let first = tokio::time::timeout(FIRST_ANSWER, lines.next())
                    .await
                    .map_err(|_| format!("no answer within {FIRST_ANSWER:?}"))?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((first, sink, lines))
            };
            match opened.await {
                Ok((Some(first @ Response::Ok { .. }), sink, lines)) => {
                    let (output, input) = relay_session(first, sink, lines, node, cancel, tracker);
                    return Reply::Session { output, input };
                }
                Ok((Some(first), _, _)) => return Reply::One(first),
                Ok((None, _, _)) => {
                    last = Some(format!("node {node} ended the exec without an answer"))
                }
                Err(e) => last = Some(format!("pod {pod:?} runs on node {node}: {e}")),
            }
        }
        unreachable_or_not_found(pod, last)
    }
}

/// Relays a remote exec session: `first` and the remote answers to the caller, the caller's
/// input lines to the remote node.
fn relay_session(
    first: Response,
    sink: skiff_gossip::RequestSink,
    mut lines: Lines,
    node: String,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> (
    mpsc::Receiver<Response>,
    mpsc::Sender<crate::api::ExecInput>,
) {
    let (out_tx, out_rx) = mpsc::channel(64);
    let (in_tx, mut in_rx) = mpsc::channel::<crate::api::ExecInput>(64);
    tracker.spawn(async move {
        if out_tx.send(first).await.is_err() {
            return;
        }
        // Dropped (finishing the remote input) when the relay ends.
        let mut sink = Some(sink);
        loop {
            // Cancel-safe branches: channel receives, and `Lines::next` keeps partial input.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = out_tx.closed() => return,
                item = in_rx.recv(), if sink.is_some() => match item {
                    Some(item) => {
                        let mut bytes = serde_json::to_vec(&item).unwrap_or_default();
                        bytes.push(b'\n');
                        if let Some(s) = sink.as_mut()
                            && s.send(&bytes).await.is_err()
                        {
                            sink = None;
                        }
                    }
                    None => return,
                },
                answer = lines.next() => {
                    let response = match answer {
                        Ok(Some(response)) => response,
                        Ok(None) => return,
                        Err(e) => Response::Error {
                            message: format!("exec on node {node}: {e}"),
                        },
                    };
                    let last = matches!(response, Response::Exit { .. } | Response::Error { .. });
                    if out_tx.send(response).await.is_err() || last {
                        return;
                    }
                }
            }
        }
    });
    (out_rx, in_tx)
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

/// Relays a remote log stream to the local API until it ends, the caller goes away or the agent
/// stops.
fn pump(
    mut lines: Lines,
    node: String,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> mpsc::Receiver<Response> {
    let (tx, rx) = mpsc::channel(256);
    tracker.spawn(async move {
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

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;

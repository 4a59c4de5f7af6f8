//! The server side of node-to-node calls ([`AgentRpc`]): answers other nodes about this node
//! only (never forwards again): object bodies from the replica, logs / describe / exec of this
//! node's pods (by the same code as the local API), cordon / drain of itself, and `node remove` on the
//! node that issues certificates. The protocol is in `node_request`, the calling side in `remote`.

use super::handler::{self, Shared};
use super::node_request::{NodeRequest, line, write_reply};
use crate::api::server::Reply;
use crate::api::{ResourceKind, Response};
use crate::cluster::{Served, fetch};
use skiff_gossip::{RequestStream, ResponseWriter, RpcFailure, RpcHandler};

/// Longest exec input line accepted from another node.
const MAX_INPUT_LINE: usize = 1024 * 1024;

/// The rpc server's handler: answers other nodes about this node only (never forwards again).
pub struct AgentRpc {
    shared: Shared,
    /// The replica's records other nodes fetch (`Objects`).
    served: Served,
}

impl AgentRpc {
    /// Answers with the local API's state `shared` and the records the cluster task serves.
    pub fn new(shared: Shared, served: Served) -> Self {
        Self { shared, served }
    }
}

impl RpcHandler for AgentRpc {
    /// `exec` of a pod this node runs: the caller's input lines go to the process, its answers
    /// go back as lines, until `Exit`.
    async fn session(
        &self,
        peer: &str,
        request: Vec<u8>,
        mut input: RequestStream,
        response: &mut ResponseWriter,
    ) -> Result<(), RpcFailure> {
        let request: NodeRequest = serde_json::from_slice(&request)
            .map_err(|e| RpcFailure::Malformed(format!("from node {peer}: {e}")))?;
        let NodeRequest::Exec {
            namespace,
            pod,
            container,
            command,
            tty,
        } = request
        else {
            return Err(RpcFailure::Malformed(format!(
                "from node {peer}: only exec is a session"
            )));
        };
        let snap = self.shared.snapshot.borrow().clone();
        let reply = handler::exec_here(
            &self.shared,
            &snap,
            &pod,
            &namespace,
            container.as_deref(),
            command,
            tty,
        );
        let (mut output, tx) = match reply {
            Reply::Session { output, input } => (output, input),
            other => return write_reply(other, response).await,
        };
        let mut tx = Some(tx);
        let mut pending: Vec<u8> = Vec::new();
        loop {
            // Cancel-safe: channel receive, and `next_chunk` keeps partial frames.
            tokio::select! {
                item = output.recv() => match item {
                    Some(item) => response.send(&line(&item)).await?,
                    None => return Ok(()),
                },
                chunk = input.next_chunk(), if tx.is_some() => {
                    let Ok(Some(chunk)) = chunk else {
                        // The caller's input ended or broke: the process is killed.
                        tx = None;
                        continue;
                    };
                    pending.extend_from_slice(&chunk);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let one: Vec<u8> = pending.drain(..=end).collect();
                        let parsed = serde_json::from_slice::<crate::api::ExecInput>(&one[..end]);
                        let sent = match (parsed, &tx) {
                            (Ok(item), Some(t)) => t.send(item).await.is_ok(),
                            _ => false,
                        };
                        if !sent {
                            tx = None;
                            pending.clear();
                            break;
                        }
                    }
                    if pending.len() > MAX_INPUT_LINE {
                        tx = None;
                        pending.clear();
                    }
                }
            }
        }
    }

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
                let bytes = fetch::answer(&self.served, &keys)
                    .map_err(|e| RpcFailure::Failed(e.to_string()))?;
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
                    Err(e) => Response::Error {
                        message: e.to_string(),
                    },
                };
                write_reply(Reply::One(reply), response).await
            }
            NodeRequest::RemoveNode { name, force } => {
                let reply = match &self.shared.remover {
                    Some(remover) if remover.is_issuer() => {
                        handler::remove_here(remover, &name, force, Some(peer)).await
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
            NodeRequest::Exec { .. } => Err(RpcFailure::Malformed(format!(
                "from node {peer}: exec is a session, not a call"
            ))),
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

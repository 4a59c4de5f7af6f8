//! The server side of node-to-node calls ([`AgentRpc`]): answers other nodes about this node
//! only (never forwards again): object bodies from the replica, logs / describe of this node's
//! pods (by the same code as the local API), cordon / drain of itself, and `node remove` on the
//! node that issues certificates. The protocol is in `node_request`, the calling side in `remote`.

use super::handler::{self, Shared};
use super::node_request::{NodeRequest, write_reply};
use crate::api::server::Reply;
use crate::api::{ResourceKind, Response};
use crate::cluster::{Served, fetch};
use skiff_gossip::{ResponseWriter, RpcFailure, RpcHandler};

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

//! Fetching object bodies from other nodes over rpc (`skiff-rpc/1`, mutual TLS): the request
//! is `{"Objects":{"keys":[...]}}`, the answer the stored records the node has for those keys.

use super::replica::StoredRecord;
use super::service::Fetcher;
use futures::future::BoxFuture;
use skiff_gossip::GossipHandle;
use std::sync::Arc;

/// The request body of a fetch (one variant of the agent's rpc requests).
pub fn objects_request(keys: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "Objects": { "keys": keys } })).unwrap_or_default()
}

/// Fetches over the gossip node's rpc client, addressing nodes by their gossiped address.
pub struct RpcFetcher {
    gossip: Arc<GossipHandle>,
}

impl RpcFetcher {
    pub fn new(gossip: Arc<GossipHandle>) -> RpcFetcher {
        RpcFetcher { gossip }
    }
}

impl Fetcher for RpcFetcher {
    fn fetch(
        &self,
        node: String,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<(String, StoredRecord)>, String>> {
        let client = self.gossip.rpc_client();
        let addr = self
            .gossip
            .nodes()
            .borrow()
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.address);
        Box::pin(async move {
            let client = client.ok_or("this node has no rpc client")?;
            let addr = addr.ok_or_else(|| format!("node {node} is not known"))?;
            let answer = client
                .call(addr, &objects_request(&keys))
                .await
                .map_err(|e| e.to_string())?;
            serde_json::from_slice(&answer).map_err(|e| format!("bad answer from {node}: {e}"))
        })
    }
}

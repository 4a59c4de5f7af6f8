//! Both ends of fetching object bodies from another node over rpc (`skiff-rpc/1`, mutual TLS):
//! the request is `{"Objects":{"keys":[...]}}` (one of the agent's node requests), the answer a
//! JSON array of `[key, record]` for the keys the node serves. [`RpcFetcher`] asks;
//! [`answer`] is what the agent's rpc server replies.

use super::replica::StoredRecord;
use super::service::{Fetcher, Served};
use futures::future::BoxFuture;
use skiff_gossip::GossipHandle;
use std::sync::Arc;

/// Why a fetch of object bodies from another node failed (it is retried, from another node
/// when one has the version).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("this node has no rpc client")]
    NoRpcClient,
    #[error("node {0} is not known")]
    UnknownNode(String),
    #[error("node {0} is unreachable")]
    Unreachable(String),
    #[error(transparent)]
    Rpc(#[from] skiff_gossip::RpcError),
    #[error("bad answer from {node}: {source}")]
    BadAnswer {
        node: String,
        source: serde_json::Error,
    },
    #[error("timed out")]
    TimedOut,
}

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
    ) -> BoxFuture<'static, Result<Vec<(String, StoredRecord)>, FetchError>> {
        let client = self.gossip.rpc_client();
        let addr = self
            .gossip
            .nodes()
            .borrow()
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.address);
        Box::pin(async move {
            let client = client.ok_or(FetchError::NoRpcClient)?;
            let addr = addr.ok_or_else(|| FetchError::UnknownNode(node.clone()))?;
            let answer = client.call(addr, &objects_request(&keys)).await?;
            serde_json::from_slice(&answer).map_err(|source| FetchError::BadAnswer { node, source })
        })
    }
}

/// Answers a fetch from the served records: `(key, record)` for each key this node serves
/// (unknown keys are left out).
pub fn serve_records(served: &Served, keys: &[String]) -> Vec<(String, StoredRecord)> {
    let records = served.read().unwrap_or_else(|p| p.into_inner());
    keys.iter()
        .filter_map(|k| Some((k.clone(), records.get(k.as_str())?.full())))
        .collect()
}

/// The bytes the rpc server answers an `Objects` request with (what [`RpcFetcher`] reads).
pub fn answer(served: &Served, keys: &[String]) -> Result<Vec<u8>, serde_json::Error> {
    let bodies: Vec<(String, serde_json::Value)> = serve_records(served, keys)
        .into_iter()
        .filter_map(|(key, record)| Some((key, serde_json::to_value(record).ok()?)))
        .collect();
    serde_json::to_vec(&bodies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::replica::ServedRecord;

    #[test]
    fn the_answer_reads_back_as_the_served_records() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n";
        let object = skiff_manifests::parse_file("web.yaml", yaml.as_bytes()).objects()[0].clone();
        let digest = skiff_gossip::Digest {
            stamp: skiff_gossip::Hlc::new("n1").tick(1),
            hash: object.content_hash(),
            tombstone: false,
        };
        let record = StoredRecord {
            digest: digest.to_string(),
            body: Some(object.to_json()),
            origin: "n1:web.yaml".into(),
            history: Vec::new(),
        };
        let served = Served::default();
        Arc::make_mut(&mut served.write().unwrap()).insert(
            "obj/Pod/default/web".into(),
            ServedRecord::from_record("obj/Pod/default/web", record.clone()).expect("valid"),
        );
        let keys = [
            "obj/Pod/default/web".to_string(),
            "obj/Pod/default/gone".into(),
        ];
        let bytes = answer(&served, &keys).unwrap();
        // As `RpcFetcher` reads it; the unknown key is left out.
        let read: Vec<(String, StoredRecord)> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(read, vec![("obj/Pod/default/web".to_string(), record)]);
    }
}

//! skiff-gossip: cluster membership over chitchat carried by mutually authenticated QUIC.
//!
//! Code map:
//! - `pki.rs`, `identity.rs`: the cluster CA, node certificates, files under `<data_dir>/tls/`.
//! - `token.rs`: join tokens (`skiff1.<base64>`), their records, expiry and revocation.
//! - `join.rs`: the join exchange (`skiff-join/1`): the CA holder decides, other nodes relay to
//!   the live CA holder they know from gossip; [`join_cluster`] for the joiner.
//! - `join_serve.rs`: the issuer's decision and the relay of other nodes ([`JoinRefusal`]s).
//! - `join_limit.rs`: failed joins rate-limited and their log lines throttled per source address.
//! - `members.rs`: the issuer's registry of certified names (name bound to a key), removal
//!   markers (`skiff node remove`), and the pure rules [`admit_name`] and [`check_removal`].
//! - `tls.rs`: rustls/quinn configs (ring provider only), ALPNs, per-ALPN client-auth policy.
//! - `transport/`: chitchat's `Transport` over quinn (one uni stream per message, per-peer
//!   queues, counters) and the prober's datagrams on the same gossip connections.
//! - `prober/`: liveness (issue 13): observers on hash rings, the heartbeat watcher, every
//!   node's judgement from published suspicions, the datagram codec (all pure) and the task
//!   that runs them; the only source of Ready / NotReady.
//! - `push.rs`: changes pushed to the ring neighbours as they happen (chitchat's own rounds are
//!   slow anti-entropy).
//! - `sim.rs`: [`SimNetwork`], chitchat's in-memory transport plus a datagram wire, for
//!   paused-time simulations.
//! - `keyspace.rs`: key names and the single size-checked writer of this node's keys.
//! - `view.rs`: [`NodeMetadata`] and the pure node-list rule ([`build_node_list`]).
//! - `profile.rs`: LAN / WAN timing presets.
//! - `hlc.rs`, `records.rs`: version stamps of replicated desired objects, their digests, the
//!   merge rule and the pure sync decision.
//! - `leader.rs`: the leader rule, the term rule and quorum; [`Term`] and [`Generation`], the
//!   stamps of the leader's assignment tables.
//! - `reader.rs`: [`KeyReader`]: prefix scans and change scans of every node's keys.
//! - `node.rs`: the service: [`GossipNode::spawn`] -> [`GossipHandle`].
//! - `remove.rs`: [`NodeRemover`]: `skiff node remove` on the issuing node.
//! - `node_list.rs`: keeps the node-list `watch` fresh (liveness judged from the observers'
//!   suspicions), publishes this node's suspicions and refutations, hands the prober its plan,
//!   and keeps the transport's issuer address.
//! - `observe.rs`: notes gossip exchanges per peer so `leave` knows when its marker went out.
//! - `rpc.rs`, `rpc/`: node-to-node request/response on `skiff-rpc/1` ([`RpcClient`],
//!   [`RpcServer`], [`RpcHandler`]).
//!
//! Invariants: every value this node publishes is at most [`MAX_VALUE_BYTES`]; gossip and rpc
//! connections carry a client certificate from the cluster CA, bootstrap connections reach only
//! the join handler; `send` never waits on the network; only the newest generation of a node
//! name is listed.

mod error;
mod hlc;
mod identity;
mod join;
mod join_limit;
mod join_serve;
mod keyspace;
mod leader;
mod members;
mod node;
mod node_list;
mod observe;
mod pki;
pub mod prober;
mod profile;
mod push;
mod reader;
mod records;
mod remove;
mod rpc;
mod sim;
mod tls;
mod token;
mod transport;
mod view;

pub use error::{GossipError, IdentityError, JoinError, RemoveError, TokenError};
pub use hlc::{Hlc, InvalidStamp, Stamp};
pub use identity::NodeIdentity;
pub use join::{JoinRefusal, join_cluster};
pub use keyspace::{MAX_KEY_BYTES, MAX_VALUE_BYTES, check_entry};
pub use leader::{Generation, TERM_KEY, Term, accepts, has_quorum, leader_of, next_term};
pub use members::{Admission, MemberRecord, MemberRegistry, admit_name, check_removal};
pub use node::{GossipConfig, GossipDeps, GossipHandle, GossipNode, LeaveOutcome, MetadataWriter};
pub use node_list::Reach;
pub use pki::{CLUSTER_SERVER_NAME, fingerprint, validate_node_name};
pub use profile::{GossipProfile, GossipTimings};
pub use reader::{KeyChanges, KeyReader, KeysVersion, NodeKeys};
pub use records::{Digest, InvalidDigest, RECORD_PREFIX, SyncStep, plan_sync};
pub use remove::{NodeRemover, RemovedNode};
pub use rpc::{
    MAX_CHUNK_BYTES, RequestSink, RequestStream, ResponseStream, ResponseWriter, RpcClient,
    RpcConnections, RpcError, RpcFailure, RpcHandler, RpcOptions, RpcServer, RpcServerCounters,
    RpcServerOptions, RpcSink, rpc_channel,
};
pub use sim::SimNetwork;
pub use tls::{ALPN_GOSSIP, ALPN_JOIN, ALPN_RPC, QuicTimings};
pub use token::{
    MAX_TOKEN_TTL, Token, TokenRecord, check_token, check_ttl, create_token, create_token_at,
    list_issued_tokens, list_tokens, revoke_token,
};
pub use transport::{
    MAX_FRAME_BYTES, QuicTransport, QuicTransportOptions, TransportCounters, TransportTimings,
};
pub use view::{
    Capacity, NodeCondition, NodeMetadata, NodeStatus, NodeTaint, ObservedNode, build_node_list,
};

/// chitchat, re-exported so callers use the pinned version (`ChannelTransport` for simulations).
pub use chitchat;

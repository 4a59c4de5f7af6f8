//! Error types of the gossip crate: identity files, join tokens, joining, and the running node.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::join::JoinRefusal;

/// Reading, creating or checking the cluster CA and this node's certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no usable {what}; remove it and join the cluster again")]
    Parse { path: PathBuf, what: &'static str },
    #[error("cannot create a certificate")]
    Certificate(#[source] rcgen::Error),
    #[error("invalid node name {name:?}: use 1-63 letters, digits, '-', '_' or '.'")]
    InvalidNodeName { name: String },
    #[error(
        "data dir {path} already holds the identity of node {existing:?}, not {requested:?}; \
         use that name or another data dir"
    )]
    NameMismatch {
        path: PathBuf,
        existing: String,
        requested: String,
    },
    #[error("cannot build the tls configuration")]
    Tls(#[source] rustls::Error),
}

/// Creating, reading or revoking join tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("not a skiff join token: {reason}")]
    Malformed { reason: &'static str },
    #[error("cannot read the token records in {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the token records in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("token records in {path} are corrupt; remove the file to invalidate every token")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "this node holds no cluster CA key, so it cannot issue join tokens; \
         run the command on the node that created the cluster"
    )]
    NotIssuer,
    #[error("token ttl {reason}")]
    BadTtl { reason: String },
    #[error("no join token with id {id}; `skiff token list` shows the ids")]
    UnknownToken { id: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Joining an existing cluster with a token.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("join refused: {reason}")]
    Refused { reason: JoinRefusal },
    #[error(
        "the node at {addr} does not present the cluster CA pinned by the token; \
         check the address and the token"
    )]
    ServerNotTrusted { addr: SocketAddr },
    #[error(
        "certificate not valid yet (node clock {node_clock}, the certificate of the node at \
         {addr} is valid from {not_before}): set this node's clock (NTP or RTC) and join again"
    )]
    CertificateNotValidYet {
        addr: SocketAddr,
        node_clock: String,
        not_before: String,
    },
    #[error(
        "certificate expired (node clock {node_clock}, the certificate of the node at {addr} \
         was valid until {not_after}): check this node's clock and join again"
    )]
    CertificateExpired {
        addr: SocketAddr,
        node_clock: String,
        not_after: String,
    },
    #[error("cannot reach {addr} to join")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("join with {addr} failed: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    #[error(
        "join refused: node name {name:?} is already a member of this cluster (a replaced device \
         needs 'skiff node remove {name}' first)"
    )]
    NameTaken { name: String },
    #[error("cannot open a local udp socket to join")]
    Bind(#[source] io::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Running a gossip node.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip value for key {key:?} is {len} bytes, limit {limit}")]
    ValueTooLarge {
        key: String,
        len: usize,
        limit: usize,
    },
    #[error("gossip key {key:?} is {len} bytes, limit {limit}")]
    KeyTooLong {
        key: String,
        len: usize,
        limit: usize,
    },
    #[error("gossip key {key:?} is reserved for node metadata; use another prefix")]
    ReservedKey { key: String },
    #[error("cannot listen for gossip on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("listening on {listen} needs an explicit advertise address that other nodes can reach")]
    AdvertiseRequired { listen: SocketAddr },
    #[error("cannot start gossip: {detail}")]
    Start { detail: String },
    #[error("cannot encode node metadata")]
    Metadata(#[source] serde_json::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Forgetting a node (`skiff node remove`).
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("node {name:?} not found: it is neither listed nor certified by this cluster")]
    NotFound { name: String },
    #[error(
        "node {name:?} is Ready: stop that device first, or pass --force to remove it anyway \
         (it is cut off at once; to bring it back, delete tls/ in its data dir and join again)"
    )]
    StillReady { name: String },
    #[error("node {name:?} holds the cluster CA and issues certificates; it cannot be removed")]
    Issuer { name: String },
    #[error(
        "no live node that issues certificates is known, and only it can free a node name; \
         start the node that created the cluster and try again"
    )]
    NoIssuer,
    #[error("member registry {path}: {detail}")]
    Registry { path: PathBuf, detail: String },
    #[error(transparent)]
    Gossip(#[from] GossipError),
}

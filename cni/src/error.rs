//! The crate's error type: one enum, context in fields, the cause in `#[source]`.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

/// Everything that can go wrong while wiring pod networking.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A name (namespace, pod id, link) that cannot be used as given.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The network configuration does not make sense.
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A system call (mount, unshare, setns) failed.
    #[error("{op} {path}: {source} (are we root?)")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// A netlink request failed.
    #[error("netlink {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A connection-tracking request failed.
    #[error("conntrack {op}: {message}")]
    Conntrack { op: &'static str, message: String },
    /// A link we expected is not there.
    #[error("link {name} not found{place}")]
    LinkNotFound { name: String, place: String },
    /// The pod subnet has no address left.
    #[error("no free address in {subnet}")]
    AddressesExhausted { subnet: Ipv4Net },
    /// Two pods asked for the same host port.
    #[error(
        "host port {protocol}/{host_port} is already published by pod {owner}; pick another hostPort"
    )]
    HostPortInUse {
        protocol: String,
        host_port: u16,
        owner: String,
    },
    /// Two pod ids hash to the same host link name (practically never).
    #[error("pods {pod} and {other} map to the same host link name {link}; rename one of them")]
    LinkNameCollision {
        pod: String,
        other: String,
        link: String,
    },
    /// The IPAM database failed.
    #[error("ipam database {op}: {message}")]
    Store { op: &'static str, message: String },
    /// A stored record could not be decoded.
    #[error("ipam record for {key}: {source}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The `nft` tool failed.
    #[error("nft {action}: {stderr} (is the nftables package installed?)")]
    Nft { action: String, stderr: String },
    /// An address in the database lies outside the configured subnet.
    #[error(
        "pod {pod} holds {ip}, which is outside the pod subnet {subnet}; remove the pod to free it"
    )]
    LeaseOutsideSubnet {
        pod: String,
        ip: Ipv4Addr,
        subnet: Ipv4Net,
    },
    /// A helper thread died.
    #[error("network namespace helper thread for {what} panicked")]
    ThreadPanicked { what: String },
    /// A failure injected by a test hook.
    #[error("injected failure after step {step}")]
    Injected { step: String },
}

impl CniError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CniError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: &'static str, path: impl Into<PathBuf>, source: nix::Error) -> Self {
        CniError::Sys {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn netlink(op: impl Into<String>, source: rtnetlink::Error) -> Self {
        CniError::Netlink {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn store(op: &'static str, err: impl std::fmt::Display) -> Self {
        CniError::Store {
            op,
            message: err.to_string(),
        }
    }
}

//! Host-local IPAM persisted in the agent's redb database (tables prefixed `cni_`).
//!
//! One write transaction allocates an address and records the pod, so an address is never
//! handed out twice, across restarts and crashes. The record is written before any link or
//! namespace exists and removed only after they are gone, so every resource we create is
//! always findable from a record (that is what makes gc complete).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::Ipv4Net;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::sync::RwLock;

use crate::config::{HostPortMapping, PodNetRequest};
use crate::error::CniError;

const LEASES: TableDefinition<u32, &str> = TableDefinition::new("cni_leases");
const PODS: TableDefinition<&str, &str> = TableDefinition::new("cni_pods");
const META: TableDefinition<&str, u32> = TableDefinition::new("cni_meta");
const LAST_ALLOCATED: &str = "last_allocated";

/// Everything known about one pod's network, persisted from the first step on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub ip: Ipv4Addr,
    pub netns_name: String,
    pub hostname: String,
    pub files_dir: PathBuf,
    pub host_link: String,
    pub ports: Vec<HostPortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_dns: Option<crate::config::ClusterDns>,
    #[serde(default, skip_serializing_if = "crate::config::PodHosts::is_empty")]
    pub hosts: crate::config::PodHosts,
}

impl PodRecord {
    /// The record of `req` holding `ip` on `host_link`.
    fn of(req: &PodNetRequest, host_link: &str, ip: Ipv4Addr) -> PodRecord {
        PodRecord {
            id: req.id.clone(),
            ip,
            netns_name: req.netns_name.clone(),
            hostname: req.hostname.clone(),
            files_dir: req.files_dir.clone(),
            host_link: host_link.to_owned(),
            ports: req.ports.clone(),
            cluster_dns: req.cluster_dns.clone(),
            hosts: req.hosts.clone(),
        }
    }

    /// The JSON stored under the pod's id.
    fn encode(&self) -> Result<String, CniError> {
        serde_json::to_string(self).map_err(|source| CniError::Record {
            key: self.id.clone(),
            source,
        })
    }
}

/// The node's database, shared with the agent. The agent swaps in a reopened database after an
/// I/O error (a full disk); it holds `None` while that happens, and every use then fails with
/// redb's `DatabaseClosed` until the reopened one is there.
pub type SharedDb = Arc<RwLock<Option<Arc<Database>>>>;

/// A [`SharedDb`] holding `db` (tests and tools that never reopen).
pub fn shared(db: Database) -> SharedDb {
    Arc::new(RwLock::new(Some(Arc::new(db))))
}

fn current(db: &SharedDb) -> Result<Arc<Database>, CniError> {
    db.read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| CniError::store("open", redb::StorageError::DatabaseClosed))
}

/// The address book of one node's pod subnet. Reads use read transactions (they never wait for
/// a writer); writes are short and durable (redb's default: fsync on commit).
#[derive(Clone)]
pub struct Ipam {
    db: SharedDb,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
}

impl Ipam {
    fn begin(&self) -> Result<WriteTransaction, CniError> {
        current(&self.db)?
            .begin_write()
            .map_err(|e| CniError::store("begin", e))
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, CniError> {
        current(&self.db)?
            .begin_read()
            .map_err(|e| CniError::store("begin", e))
    }
    /// Opens (creating if needed) the `cni_` tables.
    pub fn open(db: SharedDb, subnet: Ipv4Net, gateway: Ipv4Addr) -> Result<Self, CniError> {
        let txn = current(&db)?
            .begin_write()
            .map_err(|e| CniError::store("begin", e))?;
        {
            txn.open_table(LEASES)
                .map_err(|e| CniError::store("open table", e))?;
            txn.open_table(PODS)
                .map_err(|e| CniError::store("open table", e))?;
            txn.open_table(META)
                .map_err(|e| CniError::store("open table", e))?;
        }
        txn.commit().map_err(|e| CniError::store("commit", e))?;
        Ok(Ipam {
            db,
            subnet,
            gateway,
        })
    }

    /// The pod's record, if it has one.
    pub fn record(&self, id: &str) -> Result<Option<PodRecord>, CniError> {
        let txn = self.begin_read()?;
        let pods = txn
            .open_table(PODS)
            .map_err(|e| CniError::store("open table", e))?;
        let found = pods.get(id).map_err(|e| CniError::store("read", e))?;
        found.map(|v| decode(id, v.value())).transpose()
    }

    /// Every pod record, sorted by id.
    pub fn records(&self) -> Result<Vec<PodRecord>, CniError> {
        let txn = self.begin_read()?;
        let pods = txn
            .open_table(PODS)
            .map_err(|e| CniError::store("open table", e))?;
        let mut out = Vec::new();
        for entry in pods.iter().map_err(|e| CniError::store("read", e))? {
            let (k, v) = entry.map_err(|e| CniError::store("read", e))?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Number of leased addresses (for leak checks).
    pub fn lease_count(&self) -> Result<usize, CniError> {
        let txn = self.begin_read()?;
        let leases = txn
            .open_table(LEASES)
            .map_err(|e| CniError::store("open table", e))?;
        let n = leases.len().map_err(|e| CniError::store("read", e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Returns the pod's record, allocating an address for it first if it has none. Updates the
    /// stored ports and names to the request. Fails on a host port or link name held by another
    /// pod, and with `no free address in <subnet>` when the subnet is full; on failure nothing
    /// is written.
    pub fn allocate(&self, req: &PodNetRequest, host_link: &str) -> Result<PodRecord, CniError> {
        let txn = self.begin()?;
        let record = {
            let mut pods = txn
                .open_table(PODS)
                .map_err(|e| CniError::store("open table", e))?;
            let mut leases = txn
                .open_table(LEASES)
                .map_err(|e| CniError::store("open table", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| CniError::store("open table", e))?;
            let mut existing = None;
            for entry in pods.iter().map_err(|e| CniError::store("read", e))? {
                let (k, v) = entry.map_err(|e| CniError::store("read", e))?;
                let other = decode(k.value(), v.value())?;
                if other.id == req.id {
                    existing = Some(other);
                    continue;
                }
                check_conflicts(req, host_link, &other)?;
            }
            let ip = match existing {
                Some(ref rec) => {
                    if !self.subnet.contains(&rec.ip) {
                        return Err(CniError::LeaseOutsideSubnet {
                            pod: rec.id.clone(),
                            ip: rec.ip,
                            subnet: self.subnet,
                        });
                    }
                    rec.ip
                }
                None => {
                    let mut used = BTreeSet::new();
                    for entry in leases.iter().map_err(|e| CniError::store("read", e))? {
                        let (k, _) = entry.map_err(|e| CniError::store("read", e))?;
                        used.insert(k.value());
                    }
                    let last = meta
                        .get(LAST_ALLOCATED)
                        .map_err(|e| CniError::store("read", e))?
                        .map(|v| v.value());
                    let ip = pick_address(self.subnet, self.gateway, &used, last).ok_or(
                        CniError::AddressesExhausted {
                            subnet: self.subnet,
                        },
                    )?;
                    meta.insert(LAST_ALLOCATED, u32::from(ip))
                        .map_err(|e| CniError::store("write", e))?;
                    ip
                }
            };
            let record = PodRecord::of(req, host_link, ip);
            let json = record.encode()?;
            leases
                .insert(u32::from(ip), req.id.as_str())
                .map_err(|e| CniError::store("write", e))?;
            pods.insert(req.id.as_str(), json.as_str())
                .map_err(|e| CniError::store("write", e))?;
            record
        };
        txn.commit().map_err(|e| CniError::store("commit", e))?;
        Ok(record)
    }

    /// Records the address a running pod already has (recovery after the store was lost), so
    /// it is neither handed out again nor removed as a leftover. Idempotent; refuses an
    /// address outside the subnet or held by another pod.
    pub fn restore(
        &self,
        req: &PodNetRequest,
        host_link: &str,
        ip: Ipv4Addr,
    ) -> Result<PodRecord, CniError> {
        if !self.subnet.contains(&ip) {
            return Err(CniError::LeaseOutsideSubnet {
                pod: req.id.clone(),
                ip,
                subnet: self.subnet,
            });
        }
        let record = PodRecord::of(req, host_link, ip);
        let json = record.encode()?;
        let txn = self.begin()?;
        {
            let mut leases = txn
                .open_table(LEASES)
                .map_err(|e| CniError::store("open table", e))?;
            let holder = leases
                .get(u32::from(ip))
                .map_err(|e| CniError::store("read", e))?
                .map(|v| v.value().to_string());
            if let Some(other) = holder.filter(|h| *h != req.id) {
                return Err(CniError::Store {
                    op: "restore",
                    message: format!("{ip} is leased to pod {other}, not to {}", req.id),
                });
            }
            leases
                .insert(u32::from(ip), req.id.as_str())
                .map_err(|e| CniError::store("write", e))?;
            let mut pods = txn
                .open_table(PODS)
                .map_err(|e| CniError::store("open table", e))?;
            pods.insert(req.id.as_str(), json.as_str())
                .map_err(|e| CniError::store("write", e))?;
        }
        txn.commit().map_err(|e| CniError::store("commit", e))?;
        Ok(record)
    }

    /// Frees the pod's address and forgets it. Idempotent.
    pub fn release(&self, id: &str) -> Result<(), CniError> {
        let txn = self.begin()?;
        {
            let mut pods = txn
                .open_table(PODS)
                .map_err(|e| CniError::store("open table", e))?;
            let mut leases = txn
                .open_table(LEASES)
                .map_err(|e| CniError::store("open table", e))?;
            let removed = pods.remove(id).map_err(|e| CniError::store("write", e))?;
            if let Some(v) = removed {
                let rec = decode(id, v.value())?;
                leases
                    .remove(u32::from(rec.ip))
                    .map_err(|e| CniError::store("write", e))?;
            }
            // Leases left behind without a record (should not happen) are freed too.
            let stray: Vec<u32> = leases
                .iter()
                .map_err(|e| CniError::store("read", e))?
                .filter_map(Result::ok)
                .filter(|(_, owner)| owner.value() == id)
                .map(|(k, _)| k.value())
                .collect();
            for key in stray {
                leases
                    .remove(key)
                    .map_err(|e| CniError::store("write", e))?;
            }
        }
        txn.commit().map_err(|e| CniError::store("commit", e))
    }
}

fn check_conflicts(
    req: &PodNetRequest,
    host_link: &str,
    other: &PodRecord,
) -> Result<(), CniError> {
    if other.host_link == host_link {
        return Err(CniError::LinkNameCollision {
            pod: req.id.clone(),
            other: other.id.clone(),
            link: host_link.to_owned(),
        });
    }
    for port in &req.ports {
        let clash = other
            .ports
            .iter()
            .any(|p| p.protocol == port.protocol && p.host_port == port.host_port);
        if clash {
            return Err(CniError::HostPortInUse {
                protocol: port.protocol.to_string(),
                host_port: port.host_port,
                owner: other.id.clone(),
            });
        }
    }
    Ok(())
}

fn decode(key: &str, json: &str) -> Result<PodRecord, CniError> {
    serde_json::from_str(json).map_err(|source| CniError::Record {
        key: key.to_owned(),
        source,
    })
}

/// Picks the next free host address after `last` (round robin, so a freed address is not
/// reused at once), skipping the network, broadcast and gateway addresses. Pure.
pub fn pick_address(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    used: &BTreeSet<u32>,
    last: Option<u32>,
) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.network()).checked_add(1)?;
    let end = u32::from(subnet.broadcast()).checked_sub(1)?;
    if end < first {
        return None;
    }
    let start = match last {
        Some(l) if l >= first && l < end => l + 1,
        _ => first,
    };
    let free = |a: &u32| *a != u32::from(gateway) && !used.contains(a);
    (start..=end)
        .chain(first..start)
        .find(free)
        .map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    #[test]
    fn pick_address_table() {
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().expect("ip"));
        let gw: Ipv4Addr = "198.18.5.1".parse().expect("ip");
        // (subnet, used, last, expected)
        type Case<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("198.18.5.0/24", vec![], None, Some("198.18.5.2")),
            (
                "198.18.5.0/24",
                vec!["198.18.5.2"],
                None,
                Some("198.18.5.3"),
            ),
            (
                "198.18.5.0/24",
                vec![],
                Some("198.18.5.7"),
                Some("198.18.5.8"),
            ),
            (
                "198.18.5.0/24",
                vec![],
                Some("198.18.5.254"),
                Some("198.18.5.2"),
            ),
            ("198.18.5.0/30", vec![], None, Some("198.18.5.2")),
            ("198.18.5.0/30", vec!["198.18.5.2"], None, None),
            (
                "198.18.5.0/29",
                vec!["198.18.5.3"],
                Some("198.18.5.2"),
                Some("198.18.5.4"),
            ),
        ];
        for (subnet, used, last, want) in cases {
            let used: BTreeSet<u32> = used.into_iter().map(ip).collect();
            let got = pick_address(net(subnet), gw, &used, last.map(ip));
            assert_eq!(
                got,
                want.map(|w| w.parse().expect("ip")),
                "{subnet} {used:?} {last:?}"
            );
        }
    }
}

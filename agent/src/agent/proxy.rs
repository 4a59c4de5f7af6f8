//! The node's Service proxy: follows the cluster task's Service table and keeps the node's
//! service nftables table equal to it (the whole table on the first sync and after a failure,
//! through a fresh `nft -f`; only the difference afterwards, a small one through the node's
//! long-lived `nft -i`, which spares each change the process start and the wait a closing nft
//! process makes for the kernel's transaction cleanup), with the service CIDR routed to the
//! bridge. Changes that arrive while a sync runs are folded into the next one; syncs are at
//! least [`MIN_SYNC_INTERVAL`] apart. After a sync, tracked flows it made stale (UDP flows to an
//! endpoint that left, any flow to a Service port that is gone) are deleted.

use std::sync::Arc;
use std::time::Duration;

use skiff_cni::NetlinkNetwork;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterState;
use crate::services::{self, rules};

/// The least time between two syncs (bursts of endpoint changes become one transaction).
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(50);
/// Diffs up to this size go through the node's long-lived `nft -i` (a one-endpoint change
/// there: about 7 ms, against about 25 ms through a fresh `nft -f`, most of it the process's
/// wait for the kernel's transaction cleanup when it closes its socket). Larger ones, such as
/// a change to a thousand Services at once, go through `nft -f`, which parses them faster than
/// the interactive reader does one long line, and whose fixed cost is small beside theirs.
const SESSION_SCRIPT_MAX: usize = 64 << 10;
/// How long a failed sync waits before the whole table is written again.
const RETRY: Duration = Duration::from_secs(1);
/// After an agent restart, the rules left in place keep serving until every other Ready
/// node's pods are known again, or at most this long.
const RESTART_SETTLE: Duration = Duration::from_secs(3);

pub async fn run(
    net: Arc<NetlinkNetwork>,
    service_cidr: ipnet::Ipv4Net,
    me: String,
    mut state: watch::Receiver<Arc<ClusterState>>,
    cancel: CancellationToken,
) {
    let table = net.config().service_table();
    // The table last programmed (shared with the cluster state, so it costs nothing while it
    // is the current one): the next diff and the stale flows are worked out from it.
    let mut programmed: Option<Arc<services::ServiceTable>> = None;
    // The whole table is written next (at the start and after a failure).
    let mut whole = true;
    let mut routed = false;
    // The channel starts with an empty state; the cluster task's first state (the objects and
    // book from the store) comes next. Programming the empty one would drop every Service's
    // rules for as long as that takes after a restart.
    tokio::select! {
        _ = cancel.cancelled() => return,
        changed = state.changed() => if changed.is_err() { return },
    }
    // A restarted agent finds its table still there: the old rules keep serving while the
    // other nodes' pod reports arrive (until then their endpoints would look gone).
    if net.nft_table_exists(&table).await.unwrap_or(false) {
        let settle = tokio::time::sleep(RESTART_SETTLE);
        tokio::pin!(settle);
        loop {
            // Every other Ready node has reported pods (a node without pods never does: the
            // settle time bounds the wait).
            let all_reported = {
                let s = state.borrow_and_update();
                let reporting: std::collections::BTreeSet<&str> =
                    s.pods.values().map(|(n, _)| n.as_str()).collect();
                let mut ready = s
                    .nodes
                    .iter()
                    .filter(|n| n.name != me && n.condition == skiff_gossip::NodeCondition::Ready)
                    .peekable();
                ready.peek().is_some() && ready.all(|n| reporting.contains(n.name.as_str()))
            };
            if all_reported {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut settle => break,
                changed = state.changed() => if changed.is_err() { return },
            }
        }
    }
    loop {
        let current = state.borrow_and_update().services.clone();
        let mut failed = false;
        if !routed {
            match net.ensure_service_route(service_cidr).await {
                Ok(()) => routed = true,
                Err(e) => {
                    tracing::warn!("cannot route the service CIDR {service_cidr}: {e}");
                    failed = true;
                }
            }
        }
        let changed = programmed
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(s, &current));
        if changed || whole {
            let ports = services::programmed_ports(&current);
            let wanted = rules::plan(&ports);
            let old_ports = programmed
                .as_deref()
                .map(services::programmed_ports)
                .unwrap_or_default();
            let script = if whole {
                rules::full_script(&table, &wanted)
            } else {
                rules::diff_script(&table, &rules::plan(&old_ports), &wanted)
            };
            let started = std::time::Instant::now();
            let script_bytes = script.len();
            let result = if script.is_empty() {
                Ok(())
            } else if whole || script.len() > SESSION_SCRIPT_MAX {
                net.run_nft("program services", script).await
            } else {
                net.apply_nft("update services", script).await
            };
            match result {
                Ok(()) => {
                    tracing::debug!(
                        target: "skiff::path",
                        us = started.elapsed().as_micros() as u64,
                        full = whole,
                        ports = ports.len(),
                        endpoints = ports.iter().map(|p| p.endpoints.len()).sum::<usize>(),
                        script_bytes,
                        "services programmed"
                    );
                    whole = false;
                    // Rebuilding a large table frees megabytes that malloc would keep.
                    crate::memory::trim_soon();
                    let stale = if programmed.is_none() {
                        // The first sync since the start: what was there before is unknown.
                        vec![services::flows::stale_at_start(service_cidr, &ports)]
                    } else {
                        services::flows::stale(&old_ports, &ports)
                    };
                    programmed = Some(current);
                    if !stale.is_empty() {
                        let started = std::time::Instant::now();
                        match net
                            .delete_flows(move |f| stale.iter().any(|s| s.matches(f)))
                            .await
                        {
                            Ok(n) => tracing::debug!(
                                target: "skiff::path",
                                us = started.elapsed().as_micros() as u64,
                                deleted = n,
                                "stale flows deleted"
                            ),
                            Err(e) => tracing::warn!("cannot delete stale flows: {e}"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot program Services (retrying with the whole table): {e}");
                    whole = true;
                    failed = true;
                }
            }
        }
        let wait = if failed { RETRY } else { MIN_SYNC_INTERVAL };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        if failed {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}

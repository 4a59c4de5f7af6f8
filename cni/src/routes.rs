//! Routes to other nodes' pod subnets (same L2: via that node's address). Our routes carry
//! their own route protocol number, so the set is converged exactly: missing ones added,
//! changed ones replaced, ones no longer wanted removed, and nobody else's route touched.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::error::CniError;

/// Route protocol number marking skiff's routes (`ip route show proto 83`).
pub const SKIFF_ROUTE_PROTOCOL: u8 = 83;

/// One other node's pod subnet and the address to reach it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRoute {
    pub subnet: Ipv4Net,
    pub via: Ipv4Addr,
}

fn ours(msg: &RouteMessage) -> Option<PeerRoute> {
    if msg.header.protocol != RouteProtocol::Other(SKIFF_ROUTE_PROTOCOL) {
        return None;
    }
    let mut dst = None;
    let mut via = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(*a),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
            _ => {}
        }
    }
    let subnet = Ipv4Net::new(dst?, msg.header.destination_prefix_length).ok()?;
    Some(PeerRoute { subnet, via: via? })
}

/// Our routes currently in the main table.
pub async fn list_peer_routes(handle: &Handle) -> Result<Vec<PeerRoute>, CniError> {
    let all: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| CniError::netlink("list routes", e))?;
    let mut found: Vec<PeerRoute> = all.iter().filter_map(ours).collect();
    found.sort();
    Ok(found)
}

fn message(route: &PeerRoute) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.subnet.network(), route.subnet.prefix_len())
        .gateway(route.via)
        .protocol(RouteProtocol::Other(SKIFF_ROUTE_PROTOCOL))
        .build()
}

/// Makes our routes equal `wanted`.
pub async fn converge_peer_routes(handle: &Handle, wanted: &[PeerRoute]) -> Result<(), CniError> {
    let current = list_peer_routes(handle).await?;
    for stale in current.iter().filter(|r| !wanted.contains(r)) {
        let still_wanted_subnet = wanted.iter().any(|w| w.subnet == stale.subnet);
        if still_wanted_subnet {
            continue; // replaced below in one step
        }
        handle
            .route()
            .del(message(stale))
            .execute()
            .await
            .map_err(|e| CniError::netlink(format!("delete route to {}", stale.subnet), e))?;
    }
    for route in wanted.iter().filter(|r| !current.contains(r)) {
        handle
            .route()
            .add(message(route))
            .replace()
            .execute()
            .await
            .map_err(|e| {
                CniError::netlink(
                    format!(
                        "add route to {} via {}",
                        route.subnet,
                        IpAddr::V4(route.via)
                    ),
                    e,
                )
            })?;
    }
    Ok(())
}

fn device_message(net: Ipv4Net, index: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.network(), net.prefix_len())
        .output_interface(index)
        .protocol(RouteProtocol::Other(SKIFF_ROUTE_PROTOCOL))
        .build()
}

/// Routes `net` to the link `index` (replacing any route to exactly `net`): the service CIDR
/// goes to the bridge, so a host process can connect to a ClusterIP even on a device with no
/// default route (netfilter rewrites the address before the packet leaves).
pub async fn ensure_device_route(
    handle: &Handle,
    net: Ipv4Net,
    index: u32,
) -> Result<(), CniError> {
    handle
        .route()
        .add(device_message(net, index))
        .replace()
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("add route to {net}"), e))
}

/// Removes our device route to `net`; a missing one is fine.
pub async fn remove_device_route(
    handle: &Handle,
    net: Ipv4Net,
    index: u32,
) -> Result<(), CniError> {
    match handle
        .route()
        .del(device_message(net, index))
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ESRCH => Ok(()),
        Err(e) => Err(CniError::netlink(format!("delete route to {net}"), e)),
    }
}

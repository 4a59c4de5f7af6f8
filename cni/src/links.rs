//! Netlink link, address and route operations on one rtnetlink handle (bridge, veth, pod eth0).
//! Each function is idempotent; callers choose the namespace by where they opened the handle.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::CniError;
use crate::plan::PodIface;

/// The pod end of the veth once it is inside the pod.
pub const POD_IFACE: &str = "eth0";

/// What we need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub controller: Option<u32>,
}

fn to_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(c) if *c != 0 => link.controller = Some(*c),
            _ => {}
        }
    }
    link
}

fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The link called `name`, if any.
pub async fn find_link(handle: &Handle, name: &str) -> Result<Option<Link>, CniError> {
    let mut stream = handle.link().get().match_name(name.to_owned()).execute();
    match stream.try_next().await {
        Ok(found) => Ok(found.as_ref().map(to_link)),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(CniError::netlink(format!("get link {name}"), e)),
    }
}

/// Every link whose name starts with `prefix`.
pub async fn links_with_prefix(handle: &Handle, prefix: &str) -> Result<Vec<Link>, CniError> {
    let all: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| CniError::netlink("list links", e))?;
    Ok(all
        .iter()
        .map(to_link)
        .filter(|l| l.name.starts_with(prefix))
        .collect())
}

/// Deletes the link called `name`; a missing link is fine.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<(), CniError> {
    let Some(link) = find_link(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(link.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(CniError::netlink(format!("delete link {name}"), e)),
    }
}

/// The bridge exists, is up and carries `gateway/prefix`.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<(), CniError> {
    let link = match find_link(handle, name).await? {
        Some(link) => link,
        None => {
            match handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(e) => return Err(CniError::netlink(format!("create bridge {name}"), e)),
            }
            find_link(handle, name)
                .await?
                .ok_or_else(|| CniError::LinkNotFound {
                    name: name.to_owned(),
                    place: " right after creating it".into(),
                })?
        }
    };
    handle
        .address()
        .add(link.index, IpAddr::V4(gateway), prefix)
        .replace()
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("add {gateway}/{prefix} to {name}"), e))?;
    if !link.up {
        set_up(handle, link.index, name).await?;
    }
    Ok(())
}

async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), CniError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("set {name} up"), e))
}

/// Creates the veth pair `host` <-> `peer`: the host end in the handle's namespace, the peer
/// (under its temporary name) created straight inside the namespace bound at `netns`. Creating
/// it there instead of moving it afterwards saves a namespace change in the kernel (about 20 ms
/// of synchronize_net on this class of machine).
pub async fn create_veth(
    handle: &Handle,
    host: &str,
    peer: &str,
    netns: &Path,
) -> Result<(), CniError> {
    let file = std::fs::File::open(netns).map_err(|e| CniError::io("open netns", netns, e))?;
    let peer_msg = LinkUnspec::new_with_name(peer)
        .setns_by_fd(file.as_raw_fd())
        .build();
    let msg = LinkVeth::new(host, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("create veth {host}/{peer}"), e))
}

/// Moves the link `name` into the namespace bound at `netns`.
pub async fn move_to_netns(handle: &Handle, name: &str, netns: &Path) -> Result<(), CniError> {
    let link = find_link(handle, name)
        .await?
        .ok_or_else(|| CniError::LinkNotFound {
            name: name.to_owned(),
            place: " in the node namespace".into(),
        })?;
    let file = std::fs::File::open(netns).map_err(|e| CniError::io("open netns", netns, e))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(link.index)
                .setns_by_fd(file.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("move {name} into {}", netns.display()), e))
}

/// Puts `host` on the bridge and brings it up.
pub async fn attach_to_bridge(handle: &Handle, host: &str, bridge: &str) -> Result<(), CniError> {
    let not_found = |name: &str, hint: &str| CniError::LinkNotFound {
        name: name.to_owned(),
        place: hint.to_owned(),
    };
    let bridge_link = find_link(handle, bridge)
        .await?
        .ok_or_else(|| not_found(bridge, " (call ensure_bridge first)"))?;
    let link = find_link(handle, host)
        .await?
        .ok_or_else(|| not_found(host, " in the node namespace"))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(link.index)
                .controller(bridge_link.index)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("attach {host} to {bridge}"), e))?;
    // Hairpin: a pod reaching its own hostPort through the node gets its packets back.
    handle
        .link()
        .set_port(LinkBridgePort::new(link.index).hairpin(true).build())
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("set hairpin on {host}"), e))
}

/// Inside the pod: renames the moved peer to eth0, sets the address, brings it up and adds the
/// default route via the gateway. Every step is a replace, so it can run again.
pub async fn configure_pod_iface(
    handle: &Handle,
    temp_name: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), CniError> {
    let link = match find_link(handle, POD_IFACE).await? {
        Some(link) => link,
        None => {
            let temp =
                find_link(handle, temp_name)
                    .await?
                    .ok_or_else(|| CniError::LinkNotFound {
                        name: temp_name.to_owned(),
                        place: " inside the pod namespace".into(),
                    })?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(temp.index)
                        .down()
                        .name(POD_IFACE)
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| CniError::netlink(format!("rename {temp_name} to eth0"), e))?;
            Link {
                name: POD_IFACE.into(),
                up: false,
                ..temp
            }
        }
    };
    handle
        .address()
        .add(link.index, IpAddr::V4(ip), prefix)
        .replace()
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("add {ip}/{prefix} to eth0"), e))?;
    set_up(handle, link.index, POD_IFACE).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(link.index)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|e| CniError::netlink(format!("add default route via {gateway}"), e))
}

/// Inside the pod: where the pod end stands (absent, still under its temporary name, or eth0
/// and whether it is fully configured).
pub async fn inspect_pod_iface(
    handle: &Handle,
    temp_name: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<PodIface, CniError> {
    let Some(link) = find_link(handle, POD_IFACE).await? else {
        return Ok(match find_link(handle, temp_name).await? {
            Some(_) => PodIface::TempName,
            None => PodIface::Absent,
        });
    };
    let addrs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(link.index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| CniError::netlink("list eth0 addresses", e))?;
    let has_addr = addrs.iter().any(|a| {
        a.attributes
            .iter()
            .any(|attr| matches!(attr, AddressAttribute::Address(IpAddr::V4(x)) if *x == ip))
    });
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| CniError::netlink("list pod routes", e))?;
    let has_default = routes.iter().any(|r| {
        r.header.destination_prefix_length == 0
            && r.attributes.iter().any(
                |a| matches!(a, RouteAttribute::Gateway(RouteAddress::Inet(g)) if *g == gateway),
            )
    });
    Ok(PodIface::Eth0 {
        configured: link.up && has_addr && has_default,
    })
}

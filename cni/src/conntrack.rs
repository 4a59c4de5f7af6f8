//! Connection-tracking flows over ctnetlink: the IPv4 flows of the current namespace, and
//! deleting the ones a Service change made stale. UDP has no end of connection, so without
//! this a client keeps sending to an endpoint that is gone (or to the reject of a Service
//! that had none) until the flow times out.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::error::CniError;

/// One direction of a flow: addresses, ports and protocol number (6 TCP, 17 UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowTuple {
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// A tracked flow: what the client sent to (`orig`) and who answers (`reply`; after DNAT its
/// source is the endpoint), and the connection's mark (`ct mark`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub orig: FlowTuple,
    pub reply: FlowTuple,
    pub mark: u32,
}

fn fail(op: &'static str, e: impl std::fmt::Display) -> CniError {
    CniError::Conntrack {
        op,
        message: e.to_string(),
    }
}

fn socket() -> Result<Socket, CniError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| fail("open socket", e))?;
    socket.bind_auto().map_err(|e| fail("bind socket", e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| fail("connect socket", e))?;
    Ok(socket)
}

fn send(socket: &Socket, message: ConntrackMessage, flags: u16) -> Result<(), CniError> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            message,
        )),
    );
    packet.finalize();
    let mut buf = vec![0; packet.header.length as usize];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(|e| fail("send", e))?;
    Ok(())
}

/// Reads replies until the dump ends (or the ack of a request arrives), handing each flow
/// message's attributes to `each`.
fn receive(
    socket: &Socket,
    op: &'static str,
    mut each: impl FnMut(&[ConntrackAttribute]),
) -> Result<(), CniError> {
    loop {
        let (buf, _) = socket.recv_from_full().map_err(|e| fail(op, e))?;
        let mut offset = 0;
        while offset < buf.len() {
            let message = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..])
                .map_err(|e| fail(op, e))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(fail(op, e.to_io())),
                    };
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)),
                    ..
                }) => each(&attributes),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

fn tuple_of(parts: &[Tuple]) -> Option<FlowTuple> {
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, 0, 0);
    for part in parts {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(IpAddr::V4(a)) => src = Some(*a),
                        IPTuple::DestinationAddress(IpAddr::V4(a)) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(Protocol::Tcp) => protocol = Some(6),
                        ProtoTuple::Protocol(Protocol::Udp) => protocol = Some(17),
                        ProtoTuple::Protocol(_) => protocol = Some(0),
                        ProtoTuple::SourcePort(port) => sport = *port,
                        ProtoTuple::DestinationPort(port) => dport = *port,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(FlowTuple {
        protocol: protocol?,
        src: src?,
        dst: dst?,
        sport,
        dport,
    })
}

/// The IPv4 TCP and UDP flows of the current namespace.
pub fn list() -> Result<Vec<Flow>, CniError> {
    let socket = socket()?;
    send(
        &socket,
        ConntrackMessage::Get(Vec::new()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    let mut flows = Vec::new();
    receive(&socket, "list flows", |attributes| {
        let (mut orig, mut reply, mut mark) = (None, None, 0);
        for a in attributes {
            match a {
                ConntrackAttribute::CtaTupleOrig(t) => orig = tuple_of(t),
                ConntrackAttribute::CtaTupleReply(t) => reply = tuple_of(t),
                ConntrackAttribute::CtaMark(m) => mark = *m,
                _ => {}
            }
        }
        if let (Some(orig), Some(reply)) = (orig, reply)
            && matches!(orig.protocol, 6 | 17)
        {
            flows.push(Flow { orig, reply, mark });
        }
    })?;
    Ok(flows)
}

/// Deletes `flows` (by their original direction); flows already gone are fine. Returns how
/// many were deleted.
pub fn delete(flows: &[Flow]) -> Result<usize, CniError> {
    let socket = socket()?;
    let mut deleted = 0;
    for flow in flows {
        let o = flow.orig;
        let protocol = if o.protocol == 17 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let attributes = vec![ConntrackAttribute::CtaTupleOrig(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(IpAddr::V4(o.src)),
                IPTuple::DestinationAddress(IpAddr::V4(o.dst)),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(protocol),
                ProtoTuple::SourcePort(o.sport),
                ProtoTuple::DestinationPort(o.dport),
            ]),
        ])];
        send(
            &socket,
            ConntrackMessage::Delete(attributes),
            NLM_F_REQUEST | NLM_F_ACK,
        )?;
        match receive(&socket, "delete flow", |_| {}) {
            Ok(()) => deleted += 1,
            Err(CniError::Conntrack { message, .. })
                if message.contains("No such file") || message.contains("os error 2") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

//! A small DNS client for the harness: a UDP socket made inside a node's network namespace
//! (a short-lived thread enters it and binds; the socket stays in that namespace), and one
//! A query at a time, answered with the reply's code and addresses.

use anyhow::{Context, Result, bail};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Runs `f` on a thread of its own inside network namespace `netns` (`/run/netns/<netns>`):
/// the sockets it makes belong to that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || -> Result<T> {
        let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("enter {path}"))?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread entering {netns} panicked"))?
}

/// A UDP socket bound inside network namespace `netns`, reads time out after 500 ms.
pub fn udp_socket_in(netns: &str) -> Result<UdpSocket> {
    in_netns(netns, || {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(socket)
    })
}

/// What a server said to one A query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// RCODE (0 NOERROR, 3 NXDOMAIN).
    pub rcode: u8,
    pub truncated: bool,
    pub addresses: Vec<Ipv4Addr>,
}

/// The wire form of an A query for `name` with id `id` (recursion desired).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + len;
    }
}

/// The reply to query `id`, if `msg` is one.
fn parse(msg: &[u8], id: u16) -> Option<Reply> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return None;
    }
    let questions = u16::from_be_bytes([msg[4], msg[5]]);
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let rtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
        let len = u16::from_be_bytes([*msg.get(at + 8)?, *msg.get(at + 9)?]) as usize;
        let data = msg.get(at + 10..at + 10 + len)?;
        if rtype == 1 && len == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Some(Reply {
        rcode: msg[3] & 0x0f,
        truncated: msg[2] & 0x02 != 0,
        addresses,
    })
}

/// Asks `server` for the A records of `name` over `socket` (one try, its read timeout).
pub fn lookup(socket: &UdpSocket, server: SocketAddr, name: &str, id: u16) -> Result<Reply> {
    socket.send_to(&query(id, name), server)?;
    let mut buf = [0u8; 1500];
    loop {
        let (len, from) = socket
            .recv_from(&mut buf)
            .with_context(|| format!("no answer from {server} for {name}"))?;
        if from != server {
            continue;
        }
        match parse(&buf[..len], id) {
            Some(reply) => return Ok(reply),
            // A late answer to an earlier query: wait for ours.
            None if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id => continue,
            None => bail!("unreadable answer from {server} for {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_records_behind_a_compressed_name() {
        let mut reply = query(7, "web.default.svc.cluster.local");
        reply[2] = 0x85; // response, authoritative, recursion desired
        reply[3] = 0x80;
        reply[7] = 2; // two answers
        for last in [5u8, 6] {
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 198, 19, 1, last]);
        }
        let r = parse(&reply, 7).expect("a reply");
        assert_eq!(r.rcode, 0);
        assert!(!r.truncated);
        assert_eq!(
            r.addresses,
            vec![Ipv4Addr::new(198, 19, 1, 5), Ipv4Addr::new(198, 19, 1, 6)]
        );
        assert!(parse(&reply, 8).is_none());
    }
}

//! The prober's datagrams (pure): a heartbeat to an observer, a ping to a late subject and its
//! answer, and a leader's reachability check. Who sent it comes from the mutually authenticated QUIC connection it arrived on, so
//! no name travels. Every message is a kind byte and its fields: the heartbeat, sent several
//! times a second by every node, carries its incarnation as a LEB128 varint (2 bytes while the
//! incarnation is under 128); ping, check and pong carry fixed little-endian fields (at most 13 bytes).

/// One prober message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// "I am alive at this incarnation", about once a period, to each observer.
    Heartbeat { incarnation: u64 },
    /// "Are you there?" from an observer whose deadline passed.
    Ping { nonce: u32 },
    /// The answer to a ping or a check, with the sender's incarnation.
    Pong { nonce: u32, incarnation: u64 },
    /// "Can I reach you?" from a leader confirming its majority after a verdict: answered like
    /// a ping, but it does not make the asker one of the answerer's observers.
    Check { nonce: u32 },
}

/// Why a datagram is not a prober message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("empty datagram")]
    Empty,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("{kind} takes {want} bytes, got {got}")]
    Length {
        kind: &'static str,
        want: usize,
        got: usize,
    },
}

const HEARTBEAT: u8 = 1;
const PING: u8 = 2;
const PONG: u8 = 3;
const CHECK: u8 = 4;

impl Probe {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        match *self {
            Probe::Heartbeat { incarnation } => {
                out.push(HEARTBEAT);
                let mut v = incarnation;
                loop {
                    let byte = (v & 0x7f) as u8;
                    v >>= 7;
                    if v == 0 {
                        out.push(byte);
                        break;
                    }
                    out.push(byte | 0x80);
                }
            }
            Probe::Ping { nonce } => {
                out.push(PING);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            Probe::Check { nonce } => {
                out.push(CHECK);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            Probe::Pong { nonce, incarnation } => {
                out.push(PONG);
                out.extend_from_slice(&nonce.to_le_bytes());
                out.extend_from_slice(&incarnation.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Probe, ProbeError> {
        let (&kind, rest) = bytes.split_first().ok_or(ProbeError::Empty)?;
        let exact = |kind: &'static str, want: usize| {
            if rest.len() == want {
                Ok(())
            } else {
                Err(ProbeError::Length {
                    kind,
                    want: want + 1,
                    got: bytes.len(),
                })
            }
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&rest[at..at + 4]);
            u32::from_le_bytes(b)
        };
        match kind {
            HEARTBEAT => {
                let incarnation = varint(rest).ok_or(ProbeError::Length {
                    kind: "heartbeat",
                    want: 2,
                    got: bytes.len(),
                })?;
                Ok(Probe::Heartbeat { incarnation })
            }
            PING => {
                exact("ping", 4)?;
                Ok(Probe::Ping { nonce: u32_at(0) })
            }
            CHECK => {
                exact("check", 4)?;
                Ok(Probe::Check { nonce: u32_at(0) })
            }
            PONG => {
                exact("pong", 12)?;
                Ok(Probe::Pong {
                    nonce: u32_at(0),
                    incarnation: u64_at(4),
                })
            }
            other => Err(ProbeError::Kind(other)),
        }
    }
}

/// A whole slice as one minimal LEB128 u64 (no trailing bytes, no redundant zero groups).
fn varint(bytes: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i >= 10 {
            return None;
        }
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None; // past 64 bits
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            let minimal = i == 0 || b != 0;
            return (i + 1 == bytes.len() && minimal).then_some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_sizes() {
        for (p, len) in [
            (Probe::Heartbeat { incarnation: 7 }, 2),
            (Probe::Heartbeat { incarnation: 300 }, 3),
            (
                Probe::Heartbeat {
                    incarnation: u64::MAX,
                },
                11,
            ),
            (Probe::Ping { nonce: 3 }, 5),
            (Probe::Check { nonce: 4 }, 5),
            (
                Probe::Pong {
                    nonce: u32::MAX,
                    incarnation: u64::MAX,
                },
                13,
            ),
        ] {
            let bytes = p.encode();
            assert_eq!(bytes.len(), len, "{p:?}");
            assert_eq!(Probe::decode(&bytes), Ok(p));
        }
    }

    #[test]
    fn malformed_datagrams_are_named() {
        assert_eq!(Probe::decode(&[]), Err(ProbeError::Empty));
        assert_eq!(Probe::decode(&[9, 0]), Err(ProbeError::Kind(9)));
        assert_eq!(
            Probe::decode(&[1, 0, 0]),
            Err(ProbeError::Length {
                kind: "heartbeat",
                want: 2,
                got: 3
            })
        );
        assert!(Probe::decode(&[1]).is_err(), "no incarnation");
        assert!(Probe::decode(&[1, 0x80]).is_err(), "unterminated varint");
        assert!(Probe::decode(&[1, 0x80, 0]).is_err(), "not minimal");
        let mut long = Probe::Ping { nonce: 1 }.encode();
        long.push(0);
        assert!(Probe::decode(&long).is_err(), "trailing bytes");
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Probe::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes);
            }
        }
    }
}

//! The liveness prober of issue 13 (groundwork, not yet wired into the node list): fixed
//! observers per member on hash rings (`ring`), first-hand heartbeat watching and Lifeguard-style
//! verdicts (`detector`), and the datagrams they exchange (`wire`). All pure; the QUIC shell
//! (heartbeat datagrams on the gossip connections) comes next.

pub mod detector;
pub mod ring;
pub mod wire;

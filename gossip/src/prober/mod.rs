//! The liveness prober of issue 13: fixed observers per member on hash rings (`ring`),
//! first-hand heartbeat watching (`detector`), every node's judgement of every member from the
//! suspicions observers publish (`judge`), the datagrams they exchange (`wire`), and the task
//! that runs the watcher on the gossip connections (`run`). The first four are pure.

pub mod detector;
pub mod judge;
pub mod ring;
pub(crate) mod run;
pub mod wire;

//! Property-based fuzzing of what a peer's bytes reach first: the frame codec (zstd with a
//! decompressed-size cap) and the chitchat message decoder. Any input is dropped or decoded,
//! never a panic, never more than the frame cap allocated, within a time bound.

use super::MAX_FRAME_BYTES;
use super::{codec, inbound};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(2);

fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        // Frames that claim to be zstd: the decoder must keep to the cap.
        prop::collection::vec(any::<u8>(), 0..4096).prop_map(|mut v| {
            let mut f = vec![0x28, 0xB5, 0x2F, 0xFD];
            f.append(&mut v);
            f
        }),
        // Real compressed data of random content, possibly truncated.
        (prop::collection::vec(any::<u8>(), 0..20_000), any::<u16>()).prop_map(|(v, cut)| {
            let mut z = zstd::bulk::compress(&v, 3).unwrap_or_default();
            let keep = z.len().saturating_sub(cut as usize % 8);
            z.truncate(keep);
            z
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_gossip_frame(bytes in frame()) {
        let started = Instant::now();
        if let Some(message) = codec::decode(&bytes) {
            prop_assert!(message.len() <= MAX_FRAME_BYTES);
            let _ = inbound::decode(&message);
        }
        prop_assert!(started.elapsed() < BOUND);
    }

    #[test]
    fn fuzz_gossip_message(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let started = Instant::now();
        let _ = inbound::decode(&bytes);
        prop_assert!(started.elapsed() < BOUND);
    }
}

#[test]
fn a_zstd_bomb_stops_at_the_frame_cap() {
    // 64 MiB of zeros compresses to a few KiB: decoding must refuse it, not allocate it.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).expect("compress");
    assert!(bomb.len() < 64 << 10);
    assert!(codec::decode(&bomb).is_none());
}

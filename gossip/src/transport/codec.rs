//! Frame codec: one frame is one chitchat message, zstd-compressed when that makes it smaller.
//!
//! A raw chitchat message starts with chitchat's magic number (`0x53 0xB0`), a compressed frame
//! with zstd's (`28 B5 2F FD`), so the two are told apart without a flag byte and a raw frame
//! from an older node still decodes. Digests repeat node names, addresses and the zero high
//! bytes of chitchat's fixed-width counters, so a 20-node digest shrinks to well under half.

use std::borrow::Cow;

use super::MAX_FRAME_BYTES;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Below this a frame is sent as it is (zstd's own header would eat the gain).
const MIN_COMPRESS_BYTES: usize = 96;
/// Frames are at most 64 KB and sent a few times per second: a high level costs little.
const LEVEL: i32 = 9;

/// The frame to send for a serialized chitchat message.
pub(crate) fn encode(raw: Vec<u8>) -> Vec<u8> {
    if raw.len() < MIN_COMPRESS_BYTES {
        return raw;
    }
    match zstd::bulk::compress(&raw, LEVEL) {
        Ok(packed) if packed.len() < raw.len() => packed,
        _ => raw,
    }
}

/// The chitchat message bytes of a received frame; `None` if it does not decompress within
/// [`MAX_FRAME_BYTES`].
pub(crate) fn decode(frame: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !frame.starts_with(&ZSTD_MAGIC) {
        return Some(Cow::Borrowed(frame));
    }
    zstd::bulk::decompress(frame, MAX_FRAME_BYTES)
        .ok()
        .map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Syn as chitchat 0.11 lays it out: magic, version, type, cluster id, then per node its
    /// id (name, generation, address) and digest (heartbeat, last gc version, max version).
    fn syn_bytes(nodes: usize) -> Vec<u8> {
        let mut b = vec![0x53, 0xB0, 0, 0];
        let cluster = b"c2f1e0a9b8d7c6e5";
        b.extend((cluster.len() as u16).to_le_bytes());
        b.extend(cluster);
        b.extend((nodes as u16).to_le_bytes());
        for i in 0..nodes {
            let name = format!("n{i}");
            b.extend((name.len() as u16).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend((1_763_780_000_000u64 + i as u64 * 7_919).to_le_bytes());
            b.push(4);
            b.extend([198, 18, 1, 10 + i as u8]);
            b.extend(7946u16.to_le_bytes());
            b.extend((40_000u64 + i as u64 * 977).to_le_bytes());
            b.extend(0u64.to_le_bytes());
            b.extend((3 + i as u64 % 4).to_le_bytes());
        }
        b
    }

    #[test]
    fn digests_shrink_and_round_trip() {
        for n in [5, 20, 100] {
            let raw = syn_bytes(n);
            eprintln!(
                "syn of {n} nodes: {} bytes raw, {} compressed",
                raw.len(),
                encode(raw.clone()).len()
            );
        }
        let raw = syn_bytes(20);
        let frame = encode(raw.clone());
        assert!(
            frame.len() * 2 < raw.len(),
            "a 20-node syn of {} bytes compressed to {}",
            raw.len(),
            frame.len()
        );
        assert_eq!(decode(&frame).as_deref(), Some(&raw[..]));
    }

    #[test]
    fn small_and_raw_frames_pass_through() {
        let small = syn_bytes(0);
        assert_eq!(encode(small.clone()), small);
        assert_eq!(decode(&small).as_deref(), Some(&small[..]));
    }

    #[test]
    fn corrupt_or_oversized_compressed_frames_are_refused() {
        let mut frame = encode(syn_bytes(20));
        frame.truncate(frame.len() / 2);
        assert_eq!(decode(&frame), None);
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_FRAME_BYTES + 1], 3).unwrap();
        assert_eq!(decode(&bomb), None);
    }
}

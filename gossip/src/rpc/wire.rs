//! The rpc wire format on one bidirectional stream: typed, length-prefixed frames.
//!
//! Every frame is `kind: u8`, `len: u32 big-endian`, then `len` payload bytes. The client sends
//! exactly one [`FrameKind::Request`] frame and finishes its side; or, for a session (input that
//! goes on while the answer streams back: `exec`), one [`FrameKind::Session`] frame followed by
//! any number of [`FrameKind::Data`] frames, finishing its side when its input ends. The server answers with zero or
//! more [`FrameKind::Data`] frames and finishes (success), or with one [`FrameKind::Error`] frame
//! (a UTF-8 message) and finishes (the handler failed). A server that gives up on a stream without
//! an answer resets it with one of the `RESET_*` codes; a client that loses interest stops it.

use quinn::VarInt;

/// Bytes of a frame header.
pub(crate) const HEADER_BYTES: usize = 5;

/// Largest payload of one response frame; longer chunks are split by the writer.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Stream reset / stop codes.
pub(crate) const RESET_MALFORMED: u32 = 0x30;
pub(crate) const RESET_TOO_LARGE: u32 = 0x31;
pub(crate) const RESET_CANCELLED: u32 = 0x32;
pub(crate) const STOP_NOT_INTERESTED: u32 = 0x33;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Request = 1,
    Data = 2,
    Error = 3,
    Session = 4,
}

impl FrameKind {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Request),
            2 => Some(Self::Data),
            3 => Some(Self::Error),
            4 => Some(Self::Session),
            _ => None,
        }
    }
}

/// Encodes one frame header.
pub(crate) fn header(kind: FrameKind, len: usize) -> [u8; HEADER_BYTES] {
    // Callers keep `len` far below u32::MAX (request and chunk limits); saturate regardless.
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [kind as u8, len[0], len[1], len[2], len[3]]
}

/// Decodes a frame header into its kind (if known) and payload length.
pub(crate) fn parse_header(bytes: [u8; HEADER_BYTES]) -> (Option<FrameKind>, usize) {
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    (FrameKind::from_byte(bytes[0]), len as usize)
}

/// Encodes a whole request stream body: one request frame.
pub(crate) fn encode_request(payload: &[u8]) -> Vec<u8> {
    encode_frame(FrameKind::Request, payload)
}

/// Encodes one frame.
pub(crate) fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&header(kind, payload.len()));
    out.extend_from_slice(payload);
    out
}

/// Decodes a whole request stream body; `None` unless it is exactly one request frame.
#[cfg(test)]
pub(crate) fn decode_request(body: &[u8]) -> Option<&[u8]> {
    let head: [u8; HEADER_BYTES] = body.get(..HEADER_BYTES)?.try_into().ok()?;
    let (kind, len) = parse_header(head);
    let payload = &body[HEADER_BYTES..];
    (kind == Some(FrameKind::Request) && payload.len() == len).then_some(payload)
}

/// How a stream opens, decoded from the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// More bytes are needed.
    Incomplete,
    /// A request or session frame with its payload; `rest` is what followed it.
    Frame {
        kind: FrameKind,
        payload: Vec<u8>,
        rest: Vec<u8>,
    },
    /// The first frame is not a request or a session.
    Malformed,
    /// The first frame is longer than `limit`.
    TooLarge,
}

/// Decodes the opening frame of a stream from `buf`, refusing payloads over `limit`.
pub(crate) fn opening(buf: &[u8], limit: usize) -> Opening {
    let Some(head) = buf.get(..HEADER_BYTES) else {
        return Opening::Incomplete;
    };
    let mut bytes = [0u8; HEADER_BYTES];
    bytes.copy_from_slice(head);
    let (kind, len) = parse_header(bytes);
    let kind = match kind {
        Some(k @ (FrameKind::Request | FrameKind::Session)) => k,
        _ => return Opening::Malformed,
    };
    if len > limit {
        return Opening::TooLarge;
    }
    match buf.get(HEADER_BYTES..HEADER_BYTES + len) {
        None => Opening::Incomplete,
        Some(payload) => Opening::Frame {
            kind,
            payload: payload.to_vec(),
            rest: buf[HEADER_BYTES + len..].to_vec(),
        },
    }
}

/// What a reset code from the server means, for error messages.
pub(crate) fn reset_reason(code: VarInt) -> &'static str {
    match u32::try_from(code.into_inner()) {
        Ok(RESET_MALFORMED) => "the peer could not decode the request",
        Ok(RESET_TOO_LARGE) => "the request is larger than the peer accepts",
        Ok(RESET_CANCELLED) => "the peer abandoned the call (shutting down or timed out)",
        _ => "the peer reset the stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_garbage_is_refused() {
        let body = encode_request(b"hello");
        assert_eq!(decode_request(&body), Some(&b"hello"[..]));
        assert_eq!(decode_request(&encode_request(b"")), Some(&b""[..]));
        // Wrong kind, short, long, truncated header.
        let mut data = body.clone();
        data[0] = FrameKind::Data as u8;
        assert_eq!(decode_request(&data), None);
        assert_eq!(decode_request(&body[..body.len() - 1]), None);
        let mut long = body.clone();
        long.push(0);
        assert_eq!(decode_request(&long), None);
        assert_eq!(decode_request(&body[..3]), None);
        assert_eq!(decode_request(b""), None);
    }

    #[test]
    fn openings_are_request_or_session_frames_within_the_limit() {
        let body = encode_frame(FrameKind::Session, b"exec");
        assert_eq!(opening(&body[..4], 10), Opening::Incomplete);
        assert_eq!(opening(&body[..7], 10), Opening::Incomplete);
        let mut more = body.clone();
        more.extend_from_slice(&encode_frame(FrameKind::Data, b"in"));
        assert_eq!(
            opening(&more, 10),
            Opening::Frame {
                kind: FrameKind::Session,
                payload: b"exec".to_vec(),
                rest: encode_frame(FrameKind::Data, b"in"),
            }
        );
        assert_eq!(opening(&body, 3), Opening::TooLarge);
        assert_eq!(
            opening(&encode_frame(FrameKind::Data, b"x"), 10),
            Opening::Malformed
        );
        assert_eq!(opening(&[9, 0, 0, 0, 0], 10), Opening::Malformed);
    }

    #[test]
    fn headers_carry_kind_and_length() {
        let head = header(FrameKind::Error, 70_000);
        assert_eq!(parse_header(head), (Some(FrameKind::Error), 70_000));
        assert_eq!(parse_header([9, 0, 0, 0, 1]), (None, 1));
    }
}

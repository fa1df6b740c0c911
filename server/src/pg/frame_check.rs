//! Is this a message a Postgres client could send? The check
//! [`super::frame_guard`] runs on each whole message before pgwire's codec
//! decodes it, apart from the I/O so that it is plain logic: unit-tested
//! here, and fuzzed by `fuzz/` (target `pgwire_guard` includes this file),
//! which builds without the rest of the server.
//!
//! pgwire 0.41 trusts a message's length field and its body: a length
//! under 4 underflows (`messages/copy.rs:37`, `startup.rs:286`), a body
//! shorter than its fields makes `bytes` panic reading past its end, and a
//! body longer than its fields leaves bytes its codec then reads as the
//! next message. So a message passes only when its length is within the
//! protocol's bounds and pgwire's own decoder, run on a copy of exactly
//! that message, reads it whole without error or panic.
//!
//! Uses only `bytes`, `pgwire` and `std`.

use std::panic::AssertUnwindSafe;

use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};

/// A startup packet's bounds, as Postgres's (`MAX_STARTUP_PACKET_LENGTH`):
/// its length and protocol code at least.
pub const STARTUP_LENGTH: std::ops::RangeInclusive<usize> = 8..=10_000;

/// Any later message's largest length: 1 GiB, Postgres's
/// `PQ_LARGE_MESSAGE_LIMIT` (pgwire has tighter limits per type).
pub const MAX_LENGTH: usize = 1 << 30;

/// The request codes of startup packets after which another startup packet
/// comes (SSLRequest, GSSENCRequest).
const NEGOTIATION_CODES: [i32; 2] = [80_877_103, 80_877_104];

/// What a client's unchecked bytes start with.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// Not a whole message yet.
    Incomplete,
    /// A whole message of this many bytes, which decodes.
    Message(usize),
    /// A message no Postgres client sends: why.
    Bad(String),
}

/// The first message of `bytes`, a startup packet (no type byte) when
/// `startup`.
pub fn next_message(bytes: &[u8], startup: bool) -> Frame {
    let header = usize::from(!startup);
    let Some(field) = bytes.get(header..header + 4) else {
        return Frame::Incomplete;
    };
    let length = i32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    let bounds = if startup {
        STARTUP_LENGTH
    } else {
        4..=MAX_LENGTH
    };
    let Some(length) = usize::try_from(length).ok().filter(|l| bounds.contains(l)) else {
        return Frame::Bad(match startup {
            true => format!("invalid length of startup packet: {length}"),
            false => format!(
                "invalid message length {length} for message type \"{}\"",
                bytes[0].escape_ascii()
            ),
        });
    };
    let total = header + length;
    if bytes.len() < total {
        return Frame::Incomplete;
    }
    // CopyData is raw bytes: nothing in it to decode.
    if !startup && bytes[0] == b'd' {
        return Frame::Message(total);
    }
    match decodes(&bytes[..total], startup) {
        Ok(()) => Frame::Message(total),
        Err(reason) => Frame::Bad(reason),
    }
}

/// After a whole startup packet `message`, is the next one a startup
/// packet too (it was an SSLRequest or GSSENCRequest)?
pub fn startup_follows(message: &[u8]) -> bool {
    message
        .get(4..8)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .is_some_and(|code| NEGOTIATION_CODES.contains(&code))
}

/// Decode one whole message as pgwire will, on a copy; a panic is caught
/// (the server unwinds; the fuzz target sees one that escapes).
fn decodes(message: &[u8], startup: bool) -> Result<(), String> {
    let mut ctx = DecodeContext::default();
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = startup;
    let mut copy = BytesMut::from(message);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        PgWireFrontendMessage::decode(&mut copy, &ctx)
    }));
    let kind = match startup {
        true => "startup packet".to_string(),
        false => format!("message of type \"{}\"", message[0].escape_ascii()),
    };
    match outcome {
        Ok(Ok(Some(_))) if copy.is_empty() => Ok(()),
        Ok(Ok(Some(_))) => Err(format!(
            "invalid {kind}: {} bytes after its fields",
            copy.len()
        )),
        Ok(Ok(None)) => Err(format!("invalid {kind}: incomplete")),
        Ok(Err(err)) => Err(format!("invalid {kind}: {err}")),
        Err(_) => Err(format!("invalid {kind}: its fields do not fit its length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, length: i32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&length.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn bad(bytes: &[u8], startup: bool) -> bool {
        matches!(next_message(bytes, startup), Frame::Bad(_))
    }

    #[test]
    fn lengths_outside_the_protocols_bounds_are_refused() {
        // CopyData of length 0: pgwire's `len - 4` would underflow.
        assert!(bad(&typed(b'd', 0, b""), false));
        assert!(bad(&typed(b'p', 3, b"x"), false));
        assert!(bad(&typed(b'Q', -1, b""), false));
        // A startup packet shorter than its protocol code, or huge.
        assert!(bad(&4i32.to_be_bytes(), true));
        assert!(bad(&20_000i32.to_be_bytes(), true));
    }

    #[test]
    fn bodies_that_do_not_match_their_fields_are_refused() {
        // Shorter than its fields: a Bind cut after its names.
        assert!(bad(&typed(b'B', 6, b"\0\0"), false));
        // Longer: bytes after a Query's string would be read as a message.
        assert!(bad(&typed(b'Q', 15, b"select 1\0d\0"), false));
    }

    #[test]
    fn whole_good_messages_pass_and_partial_ones_wait() {
        let query = typed(b'Q', 13, b"select 1\0");
        assert_eq!(next_message(&query, false), Frame::Message(14));
        assert_eq!(next_message(&query[..7], false), Frame::Incomplete);
        assert_eq!(next_message(&query[..3], false), Frame::Incomplete);
        let copy = typed(b'd', 7, b"abc");
        assert_eq!(next_message(&copy, false), Frame::Message(8));
        let mut startup = Vec::new();
        let body = b"\0\x03\0\0user\0weir\0\0";
        startup.extend_from_slice(&(4 + body.len() as i32).to_be_bytes());
        startup.extend_from_slice(body);
        assert_eq!(next_message(&startup, true), Frame::Message(startup.len()));
        assert!(!startup_follows(&startup));
        assert!(startup_follows(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]));
    }
}

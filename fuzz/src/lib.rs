//! Weir's fuzz targets: each takes arbitrary bytes through one reader of
//! outside input and must return (an error is fine) without panicking.
//!
//! Every target is a plain function here, so that a crash found by
//! `cargo afl fuzz` replays with `cargo run --bin <target> < crash` and
//! becomes a regression test in the crate it belongs to. The `fuzz_targets/`
//! binaries only wrap them in `afl::fuzz!`.
//!
//! | target | what reads the bytes |
//! |---|---|
//! | `sql` | Weir's parser (`weir_planner::parser::parse_request`), then DataFusion's planner for each plain statement |
//! | `pgwire` | pgwire's frontend message codec alone (finds pgwire's own panics, for upstream) |
//! | `pgwire_guard` | the server's check of each client message before pgwire decodes it (`server/src/pg/frame_check.rs`, included as it is): must never panic |
//! | `csv`, `json` | the file connector's record splitter and decoder (`on_error`) |
//! | `wal` | the table log: `Wal::open` over a damaged segment, and `record::decode` |
//! | `manifest` | a checkpoint manifest as JSON |
//! | `chunk` | a checkpoint chunk (Arrow IPC stream), as the checkpoint store reads it |

#[cfg(feature = "engine")]
mod engine;

// The server's message check, compiled here as it is in the server (it
// uses only `bytes` and `pgwire`), so this target needs no DataFusion.
#[allow(dead_code)]
#[path = "../../server/src/pg/frame_check.rs"]
mod frame_check;
#[cfg(feature = "engine")]
pub use engine::{chunk, csv, json, manifest, sql, wal};

/// A client's bytes through pgwire's frontend codec, message after message.
pub fn pgwire(data: &[u8]) {
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
    let mut buf = bytes::BytesMut::from(data);
    let mut ctx = DecodeContext::default();
    // Past the startup phase too: the first byte picks which.
    if data.first().is_some_and(|b| b & 1 == 1) {
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
    }
    for _ in 0..64 {
        match PgWireFrontendMessage::decode(&mut buf, &ctx) {
            Ok(Some(_)) => {
                ctx.awaiting_frontend_ssl = false;
                ctx.awaiting_frontend_startup = false;
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A client's bytes through the server's message check, message after
/// message, as `server/src/pg/frame_guard.rs` runs it before pgwire's codec
/// sees them. Whatever the bytes, it must not panic: it answers each
/// message with "whole and good", "wait for more" or "bad" (and pgwire's
/// own panics inside it are caught, as in the server).
pub fn pgwire_guard(data: &[u8]) {
    use frame_check::{Frame, next_message, startup_follows};
    // The first byte picks the phase, as in `pgwire`.
    let mut startup = data.first().is_some_and(|b| b & 1 == 0);
    let mut rest = data;
    while let Frame::Message(n) = next_message(rest, startup) {
        if startup {
            startup = startup_follows(&rest[..n]);
        }
        rest = &rest[n..];
    }
}

//! `cargo afl fuzz` target: see `weir_fuzz::pgwire_guard`. Without afl's
//! panic hook: the check catches pgwire's panics as the server does, and
//! only one that escapes it is a crash.

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        weir_fuzz::pgwire_guard(data);
    });
}

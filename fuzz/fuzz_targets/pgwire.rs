//! `cargo afl fuzz` target: see `weir_fuzz::pgwire`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::pgwire(data);
    });
}

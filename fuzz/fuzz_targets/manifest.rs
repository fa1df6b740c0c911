//! `cargo afl fuzz` target: see `weir_fuzz::manifest`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::manifest(data);
    });
}

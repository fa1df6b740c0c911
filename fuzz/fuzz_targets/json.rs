//! `cargo afl fuzz` target: see `weir_fuzz::json`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::json(data);
    });
}

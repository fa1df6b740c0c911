//! `cargo afl fuzz` target: see `weir_fuzz::chunk`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::chunk(data);
    });
}

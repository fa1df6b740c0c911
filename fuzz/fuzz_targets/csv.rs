//! `cargo afl fuzz` target: see `weir_fuzz::csv`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::csv(data);
    });
}

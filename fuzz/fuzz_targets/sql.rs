//! `cargo afl fuzz` target: see `weir_fuzz::sql`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::sql(data);
    });
}

//! `cargo afl fuzz` target: see `weir_fuzz::wal`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        weir_fuzz::wal(data);
    });
}

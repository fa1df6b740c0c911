//! What the kill -9 tests share: moments drawn from a printed seed, so a
//! failing run can be replayed (`WEIR_CRASH_SEED=<seed>`), and the loop that
//! kills the server at such moments and starts it again on the same data.

use std::path::Path;
use std::time::Duration;

use super::WeirProcess;

/// xorshift64*: a seeded, dependency-free random sequence.
pub struct CrashRng {
    state: u64,
    seed: u64,
}

impl CrashRng {
    /// Seeded from `WEIR_CRASH_SEED`, else from the clock; the seed is
    /// printed so that a failing run can be replayed.
    pub fn from_env() -> Self {
        let seed = std::env::var("WEIR_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("WEIR_CRASH_SEED={seed}");
        // Spread nearby seeds (clock readings) apart before xorshift, which
        // needs a state other than 0.
        Self {
            state: (seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1,
            seed,
        }
    }

    /// The seed, for messages that say how to replay a run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next number of the sequence.
    pub fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number from `low` to `high`, both included.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Kill `server` (as kill -9) `crashes` times, each after a wait of `low` to
/// `high` milliseconds drawn from `rng`, starting it again on `data_dir` with
/// `args` each time; returns the server that runs after the last kill.
pub async fn kill_at_drawn_moments(
    mut server: WeirProcess,
    data_dir: &Path,
    args: &[&str],
    rng: &mut CrashRng,
    crashes: u32,
    (low, high): (u64, u64),
) -> WeirProcess {
    for crash in 1..=crashes {
        let wait = rng.between(low, high);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        eprintln!("crash {crash} after {wait} ms");
        server.kill();
        server = WeirProcess::start_with(data_dir, args, &[]);
    }
    server
}

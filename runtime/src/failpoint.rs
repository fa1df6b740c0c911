//! Failpoints: crash the process at a named place, for crash tests.
//!
//! `WEIR_FAILPOINT=<name>@<n>` aborts the process (as `kill -9` would: no
//! destructors, no flushing) the `n`-th time the code passes `<name>`
//! (`@1` when omitted). Unset, a failpoint is one relaxed atomic load.
//!
//! Written here rather than taken from the `fail` crate: `fail` compiles
//! its points only under a cargo feature, so the binary under test would
//! differ from the one shipped; these are always in, and cost nothing.
//!
//! Names: `checkpoint-before-manifest` (state written, manifest not),
//! `checkpoint-after-manifest` (manifest written, sinks not committed),
//! `restore` (a job's checkpoint read, the job not started).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("WEIR_FAILPOINT").ok()?;
            let (name, at) = match spec.split_once('@') {
                Some((name, at)) => (name.to_string(), at.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                at,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Abort here if `WEIR_FAILPOINT` names this place and its count is up.
pub fn hit(name: &str) {
    if let Some(armed) = armed()
        && armed.name == name
        && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at
    {
        eprintln!("failpoint {name} hit: aborting");
        std::process::abort();
    }
}

//! Failpoints: crash the process at a named place, for crash tests.
//!
//! `WEIR_FAILPOINT=<name>@<n>` aborts the process (as `kill -9` would: no
//! destructors, no flushing) the `n`-th time the code passes `<name>`
//! (`@1` when omitted). `WEIR_FAILPOINT=<name>@<n>:panic` panics there
//! instead, as a bug would: the process must contain it.
//! `WEIR_FAILPOINT=<name>@<n>:pause` makes a place that can hold still
//! (see [`pause_in`]) stop making progress there instead, so a test can
//! catch a job midway without racing it. Unset, a failpoint is one relaxed
//! atomic load.
//!
//! Written here rather than taken from the `fail` crate: `fail` compiles
//! its points only under a cargo feature, so the binary under test would
//! differ from the one shipped; these are always in, and cost nothing.
//!
//! Names: `checkpoint-before-manifest` (state written, manifest not),
//! `checkpoint-after-manifest` (manifest written, sinks not committed),
//! `restore` (a job's checkpoint read, the job not started);
//! `worker-batch/<job>` (a worker of job `<job>` is about to hand a batch
//! to its operator); `source-batch/<job>` (`:pause` only: a source
//! partition of job `<job>` sent a batch and stops reading, taking barriers
//! still, until its run ends).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    at: u64,
    /// Panic rather than abort.
    panic: bool,
    /// Hold still ([`pause_in`]) rather than crash.
    pause: bool,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("WEIR_FAILPOINT").ok()?;
            let (spec, pause) = match spec.strip_suffix(":pause") {
                Some(spec) => (spec.to_string(), true),
                None => (spec, false),
            };
            let (spec, panic) = match spec.strip_suffix(":panic") {
                Some(spec) => (spec.to_string(), true),
                None => (spec, false),
            };
            let (name, at) = match spec.split_once('@') {
                Some((name, at)) => (name.to_string(), at.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                at,
                panic,
                pause,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Abort (or panic) here if `WEIR_FAILPOINT` names this place and its count
/// is up.
pub fn hit(name: &str) {
    if let Some(armed) = armed()
        && armed.name == name
    {
        trigger(armed);
    }
}

/// [`hit`] for a place inside job `job`: armed as `<name>/<job>`, so one
/// job of several can be made to fail.
pub fn hit_in(name: &str, job: &str) {
    if let Some(armed) = armed_in(name, job) {
        trigger(armed);
    }
}

/// Should the place `<name>/<job>` hold still now? `true` once, the `n`-th
/// time it is passed, when `WEIR_FAILPOINT=<name>/<job>@<n>:pause`; the
/// caller then stops making progress there, as a slow input would, and
/// keeps doing what it owes others (a paused source partition still takes
/// barriers, so a checkpoint or a suspend goes through).
pub fn pause_in(name: &str, job: &str) -> bool {
    let Some(armed) = armed_in(name, job).filter(|a| a.pause) else {
        return false;
    };
    armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at
}

/// The armed failpoint, when it is `<name>/<job>`.
fn armed_in(name: &str, job: &str) -> Option<&'static Armed> {
    armed().filter(|armed| {
        armed
            .name
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(job)
    })
}

fn trigger(armed: &Armed) {
    // A pause is for `pause_in` alone.
    if armed.pause || armed.hits.fetch_add(1, Ordering::Relaxed) + 1 != armed.at {
        return;
    }
    if armed.panic {
        panic!("failpoint {} hit", armed.name);
    }
    eprintln!("failpoint {} hit: aborting", armed.name);
    std::process::abort();
}

//! Job settings: the keys of `WITH (...)` on `CREATE MATERIALIZED VIEW`, of
//! `ALTER JOB ... SET (...)` and of the config file's `[jobs]` table, checked
//! here once so that the three places accept exactly the same things.
//!
//! A job stores only what was set for it (normalized text, in the catalog);
//! what it runs with is that over the server's defaults, resolved into
//! [`JobSettings`] whenever it is needed, so a changed default reaches every
//! job that did not set its own.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Result, ServerError};

/// `restart_strategy`: what happens when the job fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategy {
    /// The job stays failed.
    None,
    /// Restart after `restart_delay`, up to `restart_attempts` times.
    FixedDelay,
    /// Restart after `restart_delay`, doubled each attempt up to
    /// `restart_max_delay`, up to `restart_attempts` times.
    ExponentialBackoff,
}

/// `restore_strategy`: where a resumed job starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStrategy {
    /// The newer of the latest checkpoint and the latest savepoint.
    LatestState,
    /// The latest savepoint of the job.
    LatestSavepoint,
    /// The sources' beginning, state cleared.
    None,
}

/// How a job restarts after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The strategy.
    pub strategy: RestartStrategy,
    /// Restarts allowed before the job is failed.
    pub attempts: u32,
    /// Wait before the first restart.
    pub delay: Duration,
    /// Longest wait (exponential backoff).
    pub max_delay: Duration,
}

impl RestartPolicy {
    /// The wait before restart number `attempt` (1-based), or `None` when
    /// the policy allows no such attempt.
    pub fn delay_for(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || attempt > self.attempts {
            return None;
        }
        match self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay => Some(self.delay),
            RestartStrategy::ExponentialBackoff => {
                let factor = 2u32.saturating_pow(attempt - 1);
                Some(self.delay.saturating_mul(factor).min(self.max_delay))
            }
        }
    }
}

/// What a job runs with: its own settings over the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// After a failure.
    pub restart: RestartPolicy,
    /// Workers per stage (`None`: the server's worker count).
    pub parallelism: Option<usize>,
    /// Between checkpoints: `None` the server's, `Some(None)` off.
    pub checkpoint_interval: Option<Option<Duration>>,
    /// Where a resumed job starts.
    pub restore: RestoreStrategy,
    /// The most bytes of operator state the job may keep (as
    /// `weir_job_state_bytes` measures it, at each checkpoint); past it the
    /// job fails (53400). `None`: no limit.
    pub state_size_limit: Option<u64>,
    /// How long (nanoseconds of event time) the view's regular joins keep
    /// a row (`weir_runtime::plan::JoinTtl`). `None`: for ever.
    pub join_state_ttl: Option<i64>,
}

/// Every setting a job takes.
pub const KEYS: &[&str] = &[
    "restart_strategy",
    "restart_attempts",
    "restart_delay",
    "restart_max_delay",
    "parallelism",
    "checkpoint_interval",
    "restore_strategy",
    "state_size_limit",
    "join_state_ttl",
];

/// Settings that change what a view's operators keep, so part of its state
/// signature: given only with the view's query (`CREATE [OR REPLACE]
/// MATERIALIZED VIEW .. WITH (..)`), never by `ALTER JOB .. SET` or as a
/// server default, which would change the meaning of running views' state
/// behind their backs.
pub const VIEW_ONLY: &[&str] = &["join_state_ttl"];

/// Built-in defaults, under the config file's `[jobs]`: no restart (a
/// failed job stays failed until someone looks, as before jobs had
/// policies), three attempts and a second's delay once a policy is chosen.
const BUILT_IN: &[(&str, &str)] = &[
    ("restart_strategy", "none"),
    ("restart_attempts", "3"),
    ("restart_delay", "1s"),
    ("restart_max_delay", "1m"),
    ("restore_strategy", "latest_state"),
];

/// The most workers a job's stage may have.
const MAX_PARALLELISM: usize = 256;

/// Is `key` a job setting?
pub fn is_job_setting(key: &str) -> bool {
    KEYS.contains(&key)
}

fn bad(key: &str, value: &str, expected: &str) -> ServerError {
    ServerError::InvalidParameterValue {
        message: format!("invalid value for job setting \"{key}\": \"{value}\""),
        hint: Some(format!("{key} takes {expected}")),
    }
}

fn duration(key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim())
        .map_err(|_| bad(key, value, "a duration such as '500ms', '10s' or '1m'"))
}

/// A size as Postgres writes one (`64MB`, a plain number in kB): bytes,
/// `Some(None)` for no limit (0 or -1), `None` if it is not a size.
fn size(value: &str) -> Option<Option<u64>> {
    crate::datafusion_context::parse_memory_limit(value).map(|b| b.map(|b| b as u64))
}

/// Check one setting; its value normalized (trimmed, lower-cased words).
pub fn check(key: &str, value: &str) -> Result<String> {
    let lowered = value.trim().to_ascii_lowercase();
    match key {
        "restart_strategy" => match lowered.as_str() {
            "none" | "fixed_delay" | "exponential_backoff" => Ok(lowered),
            _ => Err(bad(
                key,
                value,
                "'none', 'fixed_delay' or 'exponential_backoff'",
            )),
        },
        "restore_strategy" => match lowered.as_str() {
            "latest_state" | "latest_savepoint" | "none" => Ok(lowered),
            _ => Err(bad(
                key,
                value,
                "'latest_state', 'latest_savepoint' or 'none'",
            )),
        },
        "restart_attempts" => lowered
            .parse::<u32>()
            .map(|n| n.to_string())
            .map_err(|_| bad(key, value, "a whole number of attempts, 0 or more")),
        "parallelism" => match lowered.parse::<usize>() {
            Ok(n) if (1..=MAX_PARALLELISM).contains(&n) => Ok(n.to_string()),
            _ => Err(bad(
                key,
                value,
                &format!("a whole number of workers from 1 to {MAX_PARALLELISM}"),
            )),
        },
        "restart_delay" | "restart_max_delay" => duration(key, value).map(|_| lowered),
        "checkpoint_interval" if lowered == "off" => Ok(lowered),
        "checkpoint_interval" => duration(key, value).map(|_| lowered),
        "state_size_limit" => size(&lowered)
            .map(|_| lowered.clone())
            .ok_or_else(|| {
                bad(
                    key,
                    value,
                    "a size such as '64MB', '512kB' or '2GB' (as Postgres writes sizes; 0 or -1: no limit)",
                )
            }),
        // Postgres's interval text ('1 hour', '30 minutes', '90s'), in
        // event time; months have no fixed length.
        "join_state_ttl" => weir_runtime::windows::interval_nanos(value.trim())
            .map(|_| lowered.clone())
            .map_err(|_| {
                bad(
                    key,
                    value,
                    "a positive interval such as '1 hour', '30 minutes' or '90 seconds' (no months or years)",
                )
            }),
        other => Err(ServerError::InvalidParameterValue {
            message: format!("unrecognized job setting \"{other}\""),
            hint: Some(format!("job settings are {}", KEYS.join(", "))),
        }),
    }
}

/// Check settings as given (later keys win), normalized.
pub fn check_all<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, String>> {
    let mut checked = BTreeMap::new();
    for (key, value) in pairs {
        let key = key.to_ascii_lowercase();
        let value = check(&key, value)?;
        checked.insert(key, value);
    }
    Ok(checked)
}

/// The built-in defaults with the config file's `[jobs]` over them.
pub fn defaults(configured: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if let Some(key) = configured.keys().find(|k| VIEW_ONLY.contains(&k.as_str())) {
        return Err(ServerError::InvalidParameterValue {
            message: format!("job setting \"{key}\" cannot be a server default"),
            hint: Some(format!(
                "{key} is part of what a view's state means: set it on each view, CREATE MATERIALIZED VIEW .. WITH ({key} = ..)"
            )),
        });
    }
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in BUILT_IN {
        merged.insert((*key).to_string(), (*value).to_string());
    }
    merged.extend(check_all(
        configured.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?);
    Ok(merged)
}

/// What a job with `own` settings runs with over `defaults` (both checked).
pub fn resolve(defaults: &BTreeMap<String, String>, own: &BTreeMap<String, String>) -> JobSettings {
    let get = |key: &str| {
        own.get(key)
            .or_else(|| defaults.get(key))
            .map(String::as_str)
    };
    // Both maps were checked: a value that does not read here cannot occur,
    // and falls back to the built-in meaning.
    let duration_of = |key: &str, fallback: Duration| {
        get(key)
            .and_then(|v| humantime::parse_duration(v).ok())
            .unwrap_or(fallback)
    };
    JobSettings {
        restart: RestartPolicy {
            strategy: match get("restart_strategy") {
                Some("fixed_delay") => RestartStrategy::FixedDelay,
                Some("exponential_backoff") => RestartStrategy::ExponentialBackoff,
                _ => RestartStrategy::None,
            },
            attempts: get("restart_attempts")
                .and_then(|v| v.parse().ok())
                .unwrap_or(3),
            delay: duration_of("restart_delay", Duration::from_secs(1)),
            max_delay: duration_of("restart_max_delay", Duration::from_secs(60)),
        },
        parallelism: get("parallelism").and_then(|v| v.parse().ok()),
        checkpoint_interval: get("checkpoint_interval").map(|v| {
            if v == "off" {
                None
            } else {
                humantime::parse_duration(v).ok().filter(|d| !d.is_zero())
            }
        }),
        restore: match get("restore_strategy") {
            Some("latest_savepoint") => RestoreStrategy::LatestSavepoint,
            Some("none") => RestoreStrategy::None,
            _ => RestoreStrategy::LatestState,
        },
        state_size_limit: get("state_size_limit").and_then(size).flatten(),
        join_state_ttl: own
            .get("join_state_ttl")
            .and_then(|v| weir_runtime::windows::interval_nanos(v).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_option() {
        let err = check("restart_strategy", "sometimes").expect_err("bad");
        assert_eq!(err.sqlstate(), "22023");
        assert!(err.to_string().contains("restart_strategy"), "{err}");
        let err = check("parallelism", "0").expect_err("zero");
        assert!(err.to_string().contains("parallelism"), "{err}");
        let err = check("restart_delay", "soon").expect_err("not a duration");
        assert!(err.to_string().contains("restart_delay"), "{err}");
        let err = check("colour", "blue").expect_err("unknown");
        assert!(err.to_string().contains("\"colour\""), "{err}");
        assert_eq!(
            check("restart_strategy", " Fixed_Delay ").expect("ok"),
            "fixed_delay"
        );
        let err = check("state_size_limit", "lots").expect_err("not a size");
        assert_eq!(err.sqlstate(), "22023");
        assert!(err.to_string().contains("state_size_limit"), "{err}");
        for bad in ["forever", "1 month", "-1 hour", "0 seconds"] {
            let err = check("join_state_ttl", bad).expect_err(bad);
            assert_eq!(err.sqlstate(), "22023");
            assert!(err.to_string().contains("join_state_ttl"), "{err}");
        }
    }

    #[test]
    fn the_join_state_ttl_is_an_interval_of_event_time_set_per_view() {
        let ttl = |v: &str| {
            resolve(
                &BTreeMap::new(),
                &check_all([("join_state_ttl", v)]).expect("an interval"),
            )
            .join_state_ttl
        };
        assert_eq!(ttl("1 hour"), Some(3_600_000_000_000));
        assert_eq!(ttl(" 90 Seconds "), Some(90_000_000_000));
        let configured = BTreeMap::from([("join_state_ttl".to_string(), "1 hour".to_string())]);
        let err = defaults(&configured).expect_err("not a server default");
        assert_eq!(err.sqlstate(), "22023");
    }

    #[test]
    fn the_state_size_limit_is_a_postgres_size() {
        let limit = |v: &str| {
            resolve(
                &BTreeMap::new(),
                &check_all([("state_size_limit", v)]).expect("a size"),
            )
            .state_size_limit
        };
        assert_eq!(limit("64MB"), Some(64 << 20));
        assert_eq!(limit("10kB"), Some(10 << 10));
        assert_eq!(limit("512"), Some(512 << 10));
        assert_eq!(limit("0"), None);
        assert_eq!(
            resolve(&BTreeMap::new(), &BTreeMap::new()).state_size_limit,
            None
        );
    }

    #[test]
    fn own_settings_win_over_defaults_which_win_over_built_ins() {
        let configured = BTreeMap::from([("restart_attempts".to_string(), "5".to_string())]);
        let defaults = defaults(&configured).expect("defaults");
        let own = check_all([
            ("restart_strategy", "exponential_backoff"),
            ("parallelism", "2"),
        ])
        .expect("own");
        let settings = resolve(&defaults, &own);
        assert_eq!(
            settings.restart.strategy,
            RestartStrategy::ExponentialBackoff
        );
        assert_eq!(settings.restart.attempts, 5);
        assert_eq!(settings.parallelism, Some(2));
        assert_eq!(settings.checkpoint_interval, None);
        assert_eq!(settings.restore, RestoreStrategy::LatestState);
        let off = resolve(
            &defaults,
            &check_all([("checkpoint_interval", "off")]).expect("off"),
        );
        assert_eq!(off.checkpoint_interval, Some(None));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_attempts_run_out() {
        let policy = RestartPolicy {
            strategy: RestartStrategy::ExponentialBackoff,
            attempts: 4,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        let delays: Vec<Option<Duration>> = (1..=5).map(|a| policy.delay_for(a)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(300)),
                Some(Duration::from_millis(300)),
                None
            ]
        );
        let none = RestartPolicy {
            strategy: RestartStrategy::None,
            ..policy
        };
        assert_eq!(none.delay_for(1), None);
    }
}

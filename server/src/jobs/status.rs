//! A job's status and the transitions between statuses (design note 0008).
//!
//! ```text
//!  created ──start──> running ──suspend──> suspending ──savepoint──> suspended
//!                        │  ▲                                          │ resume
//!                 failure│  │restart (policy)                          ▼
//!                        ▼  │                                        running
//!                    restarting ──attempts out──> failed
//!  running ──bounded inputs ended──> finished
//! ```
//! The status is never stored: it is derived on start from the desired
//! state in the catalog, and kept in memory while the server runs. Every
//! change is written to the job's event log ([`super::events`]).

use serde::{Deserialize, Serialize};

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Defined, not started yet.
    Created,
    /// Reading its inputs and maintaining its output.
    Running,
    /// Stopping with a savepoint.
    Suspending,
    /// Stopped with a savepoint; its output keeps its last contents.
    Suspended,
    /// Failed, waiting to restart per its policy.
    Restarting,
    /// Failed for good (its policy allows no more attempts).
    Failed,
    /// Every input ended and everything reached its output.
    Finished,
}

impl JobStatus {
    /// Every status, for the 0/1 gauge per status.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Created,
        JobStatus::Running,
        JobStatus::Suspending,
        JobStatus::Suspended,
        JobStatus::Restarting,
        JobStatus::Failed,
        JobStatus::Finished,
    ];

    /// As `SHOW JOBS` and the metrics write it.
    pub fn name(&self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Running => "running",
            JobStatus::Suspending => "suspending",
            JobStatus::Suspended => "suspended",
            JobStatus::Restarting => "restarting",
            JobStatus::Failed => "failed",
            JobStatus::Finished => "finished",
        }
    }

    /// Can a job go from `self` to `to`? (A status to itself is not a
    /// transition.) A restart (`ALTER JOB RESTART`, new settings) may start
    /// from any status but `suspending`, whose savepoint is under way.
    pub fn can_go(&self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (a, b) if *a == b => false,
            (Created, Running | Failed | Suspended) => true,
            (Running, Suspending | Restarting | Failed | Finished) => true,
            (Suspending, Suspended | Running | Failed) => true,
            (Suspended, Running | Restarting) => true,
            (Restarting, Running | Failed | Suspended) => true,
            (Failed, Restarting | Running | Suspended) => true,
            (Finished, Restarting | Running | Suspending | Suspended) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;

    #[test]
    fn the_lifecycle_of_the_design_note() {
        assert!(Created.can_go(Running));
        assert!(Running.can_go(Restarting));
        assert!(Restarting.can_go(Running));
        assert!(Restarting.can_go(Failed));
        assert!(Running.can_go(Finished));
        assert!(Suspending.can_go(Suspended));
        assert!(Suspended.can_go(Running));
        assert!(!Suspending.can_go(Restarting));
        assert!(!Running.can_go(Running));
        assert!(!Created.can_go(Finished));
    }
}

//! A statement's point of no return: a write that reports 57014 leaves
//! nothing, and one that committed reports success.
//!
//! A statement runs on a worker task while its connection's handler waits
//! for it. A cancel (CancelRequest, `pg_cancel_backend`), a
//! `statement_timeout` or a client that went away stop the waiting at once,
//! but the worker only notices at its next await: an autocommit `INSERT`
//! whose worker was already committing used to commit after its client had
//! been told 57014. The gate is the one decision both sides take: a state
//! moved once out of `RUNNING`, either to `STOPPED` by whoever stops the
//! statement (then the worker rolls back when it reaches its commit) or to
//! `COMMITTING` by the worker (then a stop arriving later is too late and
//! is ignored, as Postgres ignores a cancel that arrives after the
//! commit). Whichever comes first wins; the other side obeys.

use std::sync::atomic::{AtomicU8, Ordering};

const RUNNING: u8 = 0;
const STOPPED: u8 = 1;
const COMMITTING: u8 = 2;

/// One statement's gate (see the module docs).
#[derive(Debug, Default)]
pub struct StatementGate {
    state: AtomicU8,
}

impl StatementGate {
    /// Stop the statement, unless it is committing. `true`: it is stopped
    /// (report 57014; its worker will roll back); `false`: too late, it
    /// commits and its outcome is the statement's.
    pub fn stop(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == STOPPED,
        }
    }

    /// May the statement's worker commit? `false`: it was stopped first,
    /// and must roll back and report 57014.
    pub fn commit(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == COMMITTING,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_side_decides() {
        let gate = StatementGate::default();
        assert!(gate.commit());
        assert!(!gate.stop(), "a stop after the commit began is too late");
        assert!(gate.commit());
        let gate = StatementGate::default();
        assert!(gate.stop());
        assert!(!gate.commit(), "a stopped statement must not commit");
        assert!(gate.stop());
    }
}

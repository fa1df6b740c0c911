//! Transactions on tables Weir owns: `BEGIN .. COMMIT`, a COPY, and every
//! statement outside a block (its own transaction).
//!
//! ```text
//!   write (insert / update / delete / a COPY chunk) to table t
//!     │ Transaction::enter(t): t's write lock, held until COMMIT or ROLLBACK
//!     v
//!   applied to t's rows as *pending* (rows.rs: LSN `PENDING`, seen only by
//!   this transaction), its record appended to the log without the commit flag
//!     │ COMMIT: under the data locks of every table written, the last record
//!     v          appended with the commit flag (LSN E); pending rows stamped E
//!   visible to others once the log is durable past E, all at once
//! ```
//! ROLLBACK (or dropping the transaction: a lost connection, a failed
//! statement) takes the pending rows out again; a crash before the commit
//! record leaves records that replay skips (`mod.rs`).
//!
//! # Correctness
//! - One writer per table at a time: the write lock is taken at the first
//!   write and held to the end, so a table has at most one transaction's
//!   pending changes, its primary-key index is the latest state of exactly
//!   that writer, and chunk positions do not move under it (small chunks are
//!   merged only when nothing is pending). That is read committed, with
//!   writers to one table serialised (see `docs/design/0011-transactions.md`).
//! - A commit becomes visible at one LSN in every table it wrote: the commit
//!   record is appended and the tables stamped while their data locks are
//!   all held, so no reader sees part of it.
//! - Waiting for a table lock while holding another is checked for a cycle
//!   first: a deadlock fails the waiter with 40P01 instead of hanging both.
//! - The log keeps every record of an open transaction: compaction cuts no
//!   later than its first record (`Log::open`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OwnedMutexGuard;

use super::Log;
use super::record;
use super::table::TableInner;
use super::wal::Lsn;
use crate::error::{ConnectorError, Result};

/// Process-unique transaction keys (the log's ids come later, at the first
/// write, from the log itself).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A transaction's table locks and its log records.
pub struct Transaction {
    key: u64,
    /// The log of the tables written (one per data directory); `None` until
    /// the first write.
    log: Option<Arc<Log>>,
    /// Its id in the log.
    id: u64,
    held: Vec<Held>,
    /// The last change's record, not yet appended: COMMIT appends it with
    /// the commit flag, so a one-statement transaction is one record.
    last: Option<Vec<u8>>,
}

struct Held {
    table: Arc<TableInner>,
    _lock: OwnedMutexGuard<()>,
}

impl Transaction {
    fn new(key: u64) -> Self {
        Self {
            key,
            log: None,
            id: 0,
            held: Vec::new(),
            last: None,
        }
    }

    /// Its id in the log (valid after [`Transaction::enter`]).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Take `table`'s write lock (once) and start its pending changes.
    pub(crate) async fn enter(&mut self, table: &Arc<TableInner>) -> Result<()> {
        if self.held.iter().any(|h| Arc::ptr_eq(&h.table, table)) {
            return Ok(());
        }
        let log = table.log.clone();
        if self.log.is_none() {
            self.id = log.next_txn();
            // Before any record of it is appended: a compaction that reads
            // `open` after that append sees it (see `StoreInner::compact`).
            log.open.lock().insert(self.id, log.wal.end());
            self.log = Some(log.clone());
        }
        let table_id = table.id();
        let lock = match table.write_lock.clone().try_lock_owned() {
            Ok(lock) => lock,
            Err(_) => {
                log.locks.lock().wait(self.key, table_id, table.name())?;
                let waiting = Waiting {
                    log: &log,
                    key: self.key,
                };
                let lock = table.write_lock.clone().lock_owned().await;
                drop(waiting);
                lock
            }
        };
        log.locks.lock().holders.insert(table_id, self.key);
        table.begin(self.key);
        self.held.push(Held {
            table: table.clone(),
            _lock: lock,
        });
        Ok(())
    }

    /// Log a change's record (encoded with this transaction's id and no
    /// flags); it is appended at the next change or at COMMIT.
    pub(crate) fn log(&mut self, payload: Vec<u8>) -> Result<()> {
        let Some(log) = &self.log else {
            return Err(ConnectorError::LogFailed(
                "a change logged outside a transaction".into(),
            ));
        };
        if let Some(previous) = self.last.replace(payload) {
            log.wal.append(&previous)?;
        }
        Ok(())
    }

    /// Make every change visible at once, and wait until it is durable.
    /// Nothing written: nothing to do.
    pub async fn commit(mut self) -> Result<()> {
        let Some(log) = self.log.clone() else {
            return Ok(());
        };
        let mut last = match self.last.take() {
            Some(last) => last,
            // Entered a table but logged nothing (the statement failed
            // first): a bare commit record.
            None => record::encode(0, self.id, 0, &record::Change::default())?,
        };
        record::mark_commit(&mut last);
        let end = {
            let mut tables: Vec<_> = self.held.iter().map(|h| h.table.data.lock()).collect();
            let (_, end) = log.wal.append(&last)?;
            let durable = log.wal.durable();
            for (held, data) in self.held.iter().zip(tables.iter_mut()) {
                let keep = held.table.keep_history();
                data.commit(end, keep, durable)?;
            }
            end
        };
        self.release();
        log.wal.wait_durable(end).await
    }

    /// Take every pending change out again and release the tables.
    fn rollback(&mut self) {
        for held in &self.held {
            if let Err(err) = held.table.data.lock().rollback() {
                // Only the primary-key encoding can fail, and it did not when
                // the rows were written.
                tracing::error!(table = held.table.name(), %err, "rolling back failed");
            }
        }
        self.last = None;
        self.release();
    }

    fn release(&mut self) {
        if let Some(log) = &self.log {
            let mut locks = log.locks.lock();
            for held in &self.held {
                if locks.holders.get(&held.table.id()) == Some(&self.key) {
                    locks.holders.remove(&held.table.id());
                }
            }
            drop(locks);
            log.open.lock().remove(&self.id);
        }
        self.held.clear();
        self.log = None;
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.held.is_empty() {
            self.rollback();
        } else {
            self.release();
        }
    }
}

/// While a transaction waits for a table's lock; the wait is forgotten
/// when it ends (also when the waiting statement is cancelled).
struct Waiting<'a> {
    log: &'a Log,
    key: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.log.locks.lock().waiting.remove(&self.key);
    }
}

/// Who holds which table's write lock and who waits for which: enough to
/// find a cycle before a wait closes one.
#[derive(Default)]
pub(crate) struct LockGraph {
    /// Table id -> the transaction (key) holding its write lock.
    holders: HashMap<u64, u64>,
    /// Transaction (key) -> the table it waits for.
    waiting: HashMap<u64, u64>,
}

impl LockGraph {
    /// `key` is about to wait for `table`: fail with a deadlock if the
    /// holder of `table` (or whoever it waits for, and so on) waits for
    /// `key`.
    fn wait(&mut self, key: u64, table: u64, name: &str) -> Result<()> {
        let mut at = table;
        // A cycle is at most as long as there are waiters.
        for _ in 0..=self.waiting.len() {
            let Some(&holder) = self.holders.get(&at) else {
                break;
            };
            if holder == key {
                return Err(ConnectorError::Deadlock {
                    table: name.to_string(),
                });
            }
            let Some(&next) = self.waiting.get(&holder) else {
                break;
            };
            at = next;
        }
        self.waiting.insert(key, table);
        Ok(())
    }
}

/// The first LSN of each open transaction (by log id).
pub(crate) type OpenTransactions = BTreeMap<u64, Lsn>;

/// A transaction a session holds between statements, shared with the
/// statement that runs in it (and a COPY's chunks). Dropping the last
/// handle without [`SharedTransaction::commit`] rolls it back.
#[derive(Clone)]
pub struct SharedTransaction {
    key: u64,
    inner: Arc<tokio::sync::Mutex<Option<Transaction>>>,
}

impl std::fmt::Debug for SharedTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTransaction")
            .field("key", &self.key)
            .finish()
    }
}

impl Default for SharedTransaction {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedTransaction {
    /// A new transaction; it takes locks and writes records only when it
    /// first writes.
    pub fn new() -> Self {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        Self {
            key,
            inner: Arc::new(tokio::sync::Mutex::new(Some(Transaction::new(key)))),
        }
    }

    /// The key its pending changes carry.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// COMMIT: every change becomes visible at once, once durable.
    pub async fn commit(&self) -> Result<()> {
        let txn = self.inner.lock().await.take().ok_or_else(ended)?;
        txn.commit().await
    }

    /// ROLLBACK: every change is taken out, now (also when other handles
    /// remain).
    pub async fn rollback(&self) {
        drop(self.inner.lock().await.take());
    }
}

fn ended() -> ConnectorError {
    ConnectorError::LogFailed("the transaction has ended".into())
}

tokio::task_local! {
    /// The transaction of the statement running in this task, for the
    /// DataFusion paths (a table's scan and its DML), which are not handed
    /// one.
    static CURRENT: SharedTransaction;
}

/// Run `statement` in `txn` (`None`: outside any, each write commits on its
/// own).
pub async fn scope<F: Future>(txn: Option<SharedTransaction>, statement: F) -> F::Output {
    match txn {
        Some(txn) => CURRENT.scope(txn, statement).await,
        None => statement.await,
    }
}

/// The transaction of the statement running in this task.
pub fn current() -> Option<SharedTransaction> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The transaction a write runs in: a shared one (its lock held for the
/// write), or one of the write's own, committed by [`Writer::done`].
pub(crate) enum Writer<'a> {
    Shared(tokio::sync::MutexGuard<'a, Option<Transaction>>),
    Own(Transaction),
}

impl<'a> Writer<'a> {
    /// Write in `txn`, or (`None`) in a transaction of the write's own.
    pub(crate) async fn of(txn: Option<&'a SharedTransaction>) -> Result<Self> {
        Ok(match txn {
            Some(txn) => {
                let guard = txn.inner.lock().await;
                if guard.is_none() {
                    return Err(ended());
                }
                Writer::Shared(guard)
            }
            None => Writer::Own(Transaction::new(NEXT_KEY.fetch_add(1, Ordering::Relaxed))),
        })
    }

    /// The transaction to write in.
    pub(crate) fn txn(&mut self) -> &mut Transaction {
        match self {
            Writer::Shared(guard) => guard.as_mut().unwrap_or_else(|| unreachable!()),
            Writer::Own(txn) => txn,
        }
    }

    /// The write succeeded: commit it if the transaction is its own.
    pub(crate) async fn done(self) -> Result<()> {
        match self {
            Writer::Shared(_) => Ok(()),
            Writer::Own(txn) => txn.commit().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_closes_a_cycle_is_a_deadlock() {
        let mut graph = LockGraph::default();
        graph.holders.insert(1, 10);
        graph.holders.insert(2, 20);
        // 10 waits for table 2 (held by 20): fine.
        graph.wait(10, 2, "b").expect("no cycle yet");
        // 20 waits for table 1 (held by 10, who waits for 20): a cycle.
        let err = graph.wait(20, 1, "a").expect_err("deadlock");
        assert!(matches!(err, ConnectorError::Deadlock { .. }), "{err}");
        // A third transaction waiting for table 1 closes no cycle.
        graph.wait(30, 1, "a").expect("no cycle");
    }
}

//! A `COPY t FROM STDIN` in progress: the data the client sends is cut into
//! runs of whole records, parsed on the workers while more arrives, and
//! written to the table Weir owns in chunks of about [`CHUNK_BYTES`] as they
//! fill, so memory stays bounded whatever the input's size. The chunks are
//! written in one transaction: the COPY's own, committed when the client
//! says it is done, or the open block's. A bad row, a dropped connection or
//! a crash before then leaves nothing. `statements::dml::copy_from` checks
//! the table and columns and starts one; the protocol handler feeds it.
//!
//! A COPY is one statement from its `COPY` to the client's CopyDone, and is
//! stopped as any other (CancelRequest, `statement_timeout`, the client
//! gone: [`Running`]) while its data arrives and while it finishes. Its
//! own transaction commits only if the statement's gate lets it
//! (`session::gate`): one stopped first rolls back and reports 57014, and
//! one whose commit began reports success. All or nothing either way.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use weir_connectors::copy_format::{CopyOptions, CopyReader, CopyTarget, Run};
use weir_connectors::table_store::OwnedTable;
use weir_connectors::table_store::txn::SharedTransaction;
use weir_runtime::Executor;

use crate::error::{Result, ServerError};
use crate::pg::activity::Running;
use crate::session::gate::StatementGate;

/// Runs parsed ahead of the ones being received: enough to keep a worker
/// busy while the connection reads, few enough to bound memory.
const PARSE_AHEAD: usize = 2;

/// Parsed rows are written to the table once this much Arrow memory of them
/// has gathered: big enough that a chunk's log record and index work are
/// cheap per row, small enough that a COPY holds little beside the table.
const CHUNK_BYTES: usize = 8 << 20;

/// A `COPY FROM STDIN` in progress, and the statement that stops it.
pub struct CopyIn {
    copying: Copying,
    /// The COPY statement's stop (cancel, timeout, client gone) and gate;
    /// `None` for a session with no connection.
    running: Option<Running>,
}

impl CopyIn {
    /// A COPY of rows in `options`' format into `target`'s columns of
    /// `table`, parsed and inserted on `executor`'s threads, in `txn`
    /// (committed at the end when `autocommit`).
    pub fn new(
        executor: Executor,
        options: CopyOptions,
        target: CopyTarget,
        table: OwnedTable,
        txn: SharedTransaction,
        autocommit: bool,
    ) -> Self {
        Self {
            copying: Copying {
                executor,
                reader: CopyReader::new(options.clone()),
                options,
                target,
                table,
                parsing: std::collections::VecDeque::new(),
                batches: Vec::new(),
                bytes: 0,
                rows: 0,
                txn,
                autocommit,
                error: None,
            },
            running: None,
        }
    }

    /// The number of columns the data has.
    pub fn columns(&self) -> usize {
        self.copying.target.columns.len()
    }

    /// The COPY statement goes on while its data arrives: `running` stops
    /// it (see the module docs).
    pub fn stopped_by(&mut self, running: Running) {
        self.running = Some(running);
    }

    /// Take one CopyData message. An error: the statement was stopped
    /// (57014, or 08006 when the client is gone); drop the COPY, which
    /// rolls its own transaction back.
    pub async fn data(&mut self, bytes: &[u8]) -> Result<()> {
        let copying = &mut self.copying;
        let work = async move {
            copying.data(bytes).await;
            Ok(())
        };
        match &mut self.running {
            Some(running) => running.run(work).await,
            None => work.await,
        }
    }

    /// CopyDone: parse the rest, write it, commit (the COPY's own
    /// transaction, if the statement was not stopped first); the row count.
    /// On an error the transaction goes with `self`: rolled back when it
    /// was the COPY's own.
    pub async fn finish(self) -> Result<usize> {
        match self.running {
            Some(mut running) => {
                let gate = running.gate();
                running.run(self.copying.finish(Some(gate))).await
            }
            None => self.copying.finish(None).await,
        }
    }
}

/// The COPY's data and transaction: data is cut into runs of whole
/// records, parsed on the workers while more arrives, and written in
/// chunks, in one transaction.
struct Copying {
    executor: Executor,
    reader: CopyReader,
    options: CopyOptions,
    target: CopyTarget,
    table: OwnedTable,
    parsing: std::collections::VecDeque<tokio::sync::oneshot::Receiver<Result<RecordBatch>>>,
    /// Parsed rows not yet written, and their size.
    batches: Vec<RecordBatch>,
    bytes: usize,
    /// Rows written so far.
    rows: u64,
    /// The transaction the rows are written in.
    txn: SharedTransaction,
    /// It is the COPY's own: commit it at the end.
    autocommit: bool,
    /// The first error; later data is read and dropped, and the error is
    /// reported when the client ends the COPY (as Postgres does).
    error: Option<ServerError>,
}

impl Copying {
    async fn data(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Some(run) = self.reader.push(bytes) {
            self.parse(run);
        }
        while self.parsing.len() > PARSE_AHEAD {
            self.collect_one().await;
        }
        if self.bytes >= CHUNK_BYTES {
            self.write().await;
        }
    }

    /// Parse and write the rest, then commit the COPY's own transaction if
    /// `gate` (the statement's) lets it: a COPY stopped first rolls back.
    async fn finish(mut self, gate: Option<Arc<StatementGate>>) -> Result<usize> {
        if self.error.is_none()
            && let Some(run) = self.reader.finish()
        {
            self.parse(run);
        }
        while !self.parsing.is_empty() {
            self.collect_one().await;
        }
        self.write().await;
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        if self.autocommit {
            if gate.is_some_and(|gate| !gate.commit()) {
                self.txn.rollback().await;
                return Err(ServerError::QueryCanceled);
            }
            self.txn.commit().await?;
        }
        Ok(self.rows as usize)
    }

    /// Write the parsed rows gathered so far (on a worker: indexing and
    /// encoding them is CPU work).
    async fn write(&mut self) {
        if self.error.is_some() || self.batches.is_empty() {
            return;
        }
        let table = self.table.clone();
        let txn = self.txn.clone();
        let batches = std::mem::take(&mut self.batches);
        self.bytes = 0;
        let written = self
            .executor
            .run(async move { table.insert_in(Some(&txn), batches).await })
            .await;
        match written {
            Ok(Ok(rows)) => self.rows += rows,
            Ok(Err(err)) => {
                self.error.get_or_insert(err.into());
            }
            Err(err) => {
                self.error.get_or_insert(err.into());
            }
        }
    }

    fn parse(&mut self, run: Run) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let options = self.options.clone();
        let target = self.target.clone();
        self.executor.spawn(async move {
            let _ = tx.send(
                weir_connectors::copy_format::parse(run, &options, &target).map_err(Into::into),
            );
        });
        self.parsing.push_back(rx);
    }

    async fn collect_one(&mut self) {
        let Some(next) = self.parsing.pop_front() else {
            return;
        };
        match next.await {
            Ok(Ok(batch)) => {
                self.bytes += batch.get_array_memory_size();
                self.batches.push(batch);
            }
            Ok(Err(err)) => {
                self.error.get_or_insert(err);
            }
            Err(_) => {
                self.error
                    .get_or_insert_with(|| ServerError::internal("a COPY parse task failed"));
            }
        }
    }
}

//! A `COPY t FROM STDIN` in progress: the data the client sends is cut into
//! runs of whole records, parsed on the workers while more arrives, and
//! written to the table Weir owns in chunks of about [`CHUNK_BYTES`] as they
//! fill, so memory stays bounded whatever the input's size. The chunks are
//! written in one transaction: the COPY's own, committed when the client
//! says it is done, or the open block's. A bad row, a dropped connection or
//! a crash before then leaves nothing. `statements::dml::copy_from` checks
//! the table and columns and starts one; the protocol handler feeds it.

use datafusion::arrow::array::RecordBatch;
use weir_connectors::copy_format::{CopyOptions, CopyReader, CopyTarget, Run};
use weir_connectors::table_store::OwnedTable;
use weir_connectors::table_store::txn::SharedTransaction;
use weir_runtime::Executor;

use crate::error::{Result, ServerError};

/// Runs parsed ahead of the ones being received: enough to keep a worker
/// busy while the connection reads, few enough to bound memory.
const PARSE_AHEAD: usize = 2;

/// Parsed rows are written to the table once this much Arrow memory of them
/// has gathered: big enough that a chunk's log record and index work are
/// cheap per row, small enough that a COPY holds little beside the table.
const CHUNK_BYTES: usize = 8 << 20;

/// A `COPY FROM STDIN` in progress: data is cut into runs of whole records,
/// parsed on the workers while more arrives, and written in chunks, in one
/// transaction.
pub struct CopyIn {
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
        }
    }

    /// The number of columns the data has.
    pub fn columns(&self) -> usize {
        self.target.columns.len()
    }

    /// Take one CopyData message.
    pub async fn data(&mut self, bytes: &[u8]) {
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

    /// CopyDone: parse the rest, write it, commit (the COPY's own
    /// transaction); the row count. On an error the transaction goes with
    /// `self`: rolled back when it was the COPY's own.
    pub async fn finish(mut self) -> Result<usize> {
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

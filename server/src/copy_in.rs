//! A `COPY t FROM STDIN` in progress: the data the client sends is cut into
//! runs of whole records, parsed on the workers while more arrives, and
//! inserted into the table Weir owns as one statement when the client says
//! it is done. `statements::dml::copy_from` checks the table and columns and
//! starts one; the protocol handler feeds it.

use datafusion::arrow::array::RecordBatch;
use weir_connectors::copy_format::{CopyOptions, CopyReader, CopyTarget, Run};
use weir_connectors::table_store::OwnedTable;
use weir_runtime::Executor;

use crate::error::{Result, ServerError};

/// Runs parsed ahead of the ones being received: enough to keep a worker
/// busy while the connection reads, few enough to bound memory.
const PARSE_AHEAD: usize = 2;

/// A `COPY FROM STDIN` in progress: data is cut into runs of whole records,
/// parsed on the workers while more arrives, and inserted as one statement
/// when the client says it is done.
pub struct CopyIn {
    executor: Executor,
    reader: CopyReader,
    options: CopyOptions,
    target: CopyTarget,
    table: OwnedTable,
    parsing: std::collections::VecDeque<tokio::sync::oneshot::Receiver<Result<RecordBatch>>>,
    batches: Vec<RecordBatch>,
    /// The first error; later data is read and dropped, and the error is
    /// reported when the client ends the COPY (as Postgres does).
    error: Option<ServerError>,
}

impl CopyIn {
    /// A COPY of rows in `options`' format into `target`'s columns of
    /// `table`, parsed and inserted on `executor`'s threads.
    pub fn new(
        executor: Executor,
        options: CopyOptions,
        target: CopyTarget,
        table: OwnedTable,
    ) -> Self {
        Self {
            executor,
            reader: CopyReader::new(options.clone()),
            options,
            target,
            table,
            parsing: std::collections::VecDeque::new(),
            batches: Vec::new(),
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
    }

    /// CopyDone: parse the rest, insert everything; the row count.
    pub async fn finish(mut self) -> Result<usize> {
        if self.error.is_none()
            && let Some(run) = self.reader.finish()
        {
            self.parse(run);
        }
        while !self.parsing.is_empty() {
            self.collect_one().await;
        }
        if let Some(err) = self.error {
            return Err(err);
        }
        let table = self.table.clone();
        let batches = std::mem::take(&mut self.batches);
        let rows = self
            .executor
            .run(async move { table.insert(batches).await })
            .await??;
        Ok(rows as usize)
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
            Ok(Ok(batch)) => self.batches.push(batch),
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

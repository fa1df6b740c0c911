//! A file table as the table side of a lookup join (`s JOIN t FOR
//! SYSTEM_TIME AS OF s.ts ON ..`, design note 0016).
//!
//! The view's job reads the table's files once, when it starts, as a file
//! stream's job would (its files listed then, dealt to partitions as
//! splits, recorded in its checkpoints): [`TableRows`] only says that those
//! rows are a table's, which is what a lookup join looks rows up in. A
//! bounded source hands on no end of its snapshot of its own: each
//! partition's end is it (the source task sends `Message::SnapshotEnd` when
//! a lookup join's table side ends), so the join probes no stream row before
//! every file is read.
//!
//! A file table has no changes to follow: files written after the job
//! started are not seen by it (a batch query reads them as they are when it
//! runs). Restored, the join's table side is the checkpoint's and the
//! source ends at once, its splits all read.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use weir_runtime::source::{ReadProgress, Source, SourcePosition, SourceReader, Splits};

/// File table `name`'s files, read by a job as the table's rows.
#[derive(Debug)]
pub struct TableRows {
    name: String,
    files: Arc<dyn Source>,
}

impl TableRows {
    /// The rows of file table `name`, read by `files` (its file stream's
    /// source).
    pub fn new(name: &str, files: Arc<dyn Source>) -> Self {
        Self {
            name: name.to_string(),
            files,
        }
    }
}

impl Source for TableRows {
    fn schema(&self) -> SchemaRef {
        self.files.schema()
    }

    fn partitions(&self) -> usize {
        self.files.partitions()
    }

    /// Always: its files are read once.
    fn bounded(&self) -> bool {
        true
    }

    fn open(
        &self,
        partition: usize,
        from: Option<SourcePosition>,
    ) -> Result<Box<dyn SourceReader>> {
        self.files.open(partition, from)
    }

    fn describe(&self) -> String {
        format!("table {}: {}, read once", self.name, self.files.describe())
    }

    fn identity(&self) -> String {
        format!("table {}: {}", self.name, self.files.identity())
    }

    /// A table's rows: a lookup join may look rows up in them.
    fn is_table(&self) -> bool {
        true
    }

    fn resumable(&self, partition: usize, position: SourcePosition) -> bool {
        self.files.resumable(partition, position)
    }

    fn read_progress(&self) -> Option<ReadProgress> {
        self.files.read_progress()
    }

    fn with_splits(&self, splits: Vec<Splits>) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(Self {
            name: self.name.clone(),
            files: self.files.with_splits(splits)?,
        }))
    }
}

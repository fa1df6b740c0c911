//! The file connector as a sink (`CREATE SINK ... WITH (connector =
//! 'file')`): a materialized view's rows written to csv, json lines or
//! parquet files in a folder, exactly once. [`FileSink`] is what the view's
//! job writes into (it implements the runtime's `job::Sink`); each open
//! file is written by a `FormatWriter`.
//!
//! ```text
//!   batches ──> <folder>/.inprogress/<sink>-<epoch>-<run>-<n>.<ext>   (open file)
//!   barrier ──> close + fsync, the file is "pending" in the checkpoint
//!   checkpoint complete ──> rename into <folder>/ (visible to readers)
//! ```
//!
//! # Correctness
//! - A reader of `<folder>/*.<ext>` sees only files whose rows a complete
//!   checkpoint covers: files are renamed into place after the manifest that
//!   lists them is written, and a rename is atomic.
//! - After a crash the job restores the latest checkpoint and renames its
//!   pending files again (a file already in place is fine), then deletes
//!   every other in-progress file of this sink: their rows will be produced
//!   again from the restored state, so nothing is lost or written twice.
//! - An updating view's sink writes its changes with an `op` column
//!   (`insert`/`delete`), as `SUBSCRIBE` does.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::parquet::arrow::ArrowWriter;
use parking_lot::Mutex;
use weir_runtime::checkpoint::StateWrite;
use weir_runtime::job::Sink;

use crate::error::{ConnectorError, Result};
use crate::file::{FileFormatKind, FileSpec};
use crate::options::ConnectorOptions;

/// The folder under the output folder where files are written until their
/// checkpoint completes.
const IN_PROGRESS: &str = ".inprogress";

/// A `CREATE SINK` into files.
pub struct FileSink {
    name: String,
    folder: PathBuf,
    format: FileFormatKind,
    /// What the files hold (the view's columns, plus `op` for a changelog).
    schema: SchemaRef,
    changelog: bool,
    /// Tells this process's files from an earlier run's.
    run: u64,
    writing: Mutex<Writing>,
}

#[derive(Default)]
struct Writing {
    open: Option<Open>,
    /// The last barrier seen.
    epoch: u64,
    /// Files opened since start.
    files: u64,
}

struct Open {
    file: String,
    writer: FormatWriter,
}

/// An open file's encoder, by format.
enum FormatWriter {
    Csv(datafusion::arrow::csv::Writer<File>),
    Json(datafusion::arrow::json::LineDelimitedWriter<File>),
    Parquet(ArrowWriter<File>),
}

fn io(context: &str, err: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!("file sink: {context}: {err}"))
}

impl FileSink {
    /// A sink named `name` writing rows of `schema` (an updating view's when
    /// `changelog`) as the `options` say (`path` is a folder; `format`).
    pub fn new(
        name: &str,
        schema: SchemaRef,
        changelog: bool,
        options: &mut ConnectorOptions,
    ) -> Result<Self> {
        let spec = FileSpec::from_options(options)?;
        if spec.path.contains(['*', '?', '[']) {
            return Err(ConnectorError::InvalidOption {
                option: "path".into(),
                value: spec.path,
                reason: "a sink writes into a folder, not a glob".into(),
            });
        }
        let folder = PathBuf::from(&spec.path);
        std::fs::create_dir_all(folder.join(IN_PROGRESS)).map_err(|e| {
            ConnectorError::InvalidOption {
                option: "path".into(),
                value: spec.path.clone(),
                reason: format!("cannot create the folder: {e}"),
            }
        })?;
        let schema = if changelog {
            let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new("op", DataType::Utf8, false)));
            Arc::new(Schema::new(fields))
        } else {
            schema
        };
        Ok(Self {
            name: name.to_string(),
            folder,
            format: spec.format,
            schema,
            changelog,
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            writing: Mutex::new(Writing::default()),
        })
    }

    fn in_progress(&self, file: &str) -> PathBuf {
        self.folder.join(IN_PROGRESS).join(file)
    }

    fn open(&self, epoch: u64, n: u64) -> DfResult<Open> {
        let extension = self.format.name();
        let file = format!(
            "{}-{:06}-{:x}-{n}.{extension}",
            self.name,
            epoch + 1,
            self.run
        );
        let handle = File::create(self.in_progress(&file)).map_err(|e| io("creating a file", e))?;
        let writer = match self.format {
            FileFormatKind::Csv { header, delimiter } => FormatWriter::Csv(
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(header)
                    .with_delimiter(delimiter)
                    .build(handle),
            ),
            FileFormatKind::Json => {
                FormatWriter::Json(datafusion::arrow::json::LineDelimitedWriter::new(handle))
            }
            FileFormatKind::Parquet => {
                FormatWriter::Parquet(ArrowWriter::try_new(handle, self.schema.clone(), None)?)
            }
        };
        Ok(Open { file, writer })
    }

    /// Close the open file (flushed and synced): it is pending.
    fn close(&self, open: Open) -> DfResult<String> {
        let file = match open.writer {
            FormatWriter::Csv(w) => w.into_inner(),
            FormatWriter::Json(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            FormatWriter::Parquet(w) => w.into_inner()?,
        };
        file.sync_all().map_err(|e| io("syncing a file", e))?;
        Ok(open.file)
    }

    fn output(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        if !self.changelog {
            return Ok(batch);
        }
        let n = batch.num_columns() - 1;
        let ops = batch.column(n).as_primitive::<Int8Type>();
        let ops: ArrayRef = Arc::new(
            ops.iter()
                .map(|o| Some(if o == Some(-1) { "delete" } else { "insert" }))
                .collect::<StringArray>(),
        );
        let mut columns = batch.columns()[..n].to_vec();
        columns.push(ops);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn sync_folder(folder: &Path) {
    // Makes the renames durable across a power cut; a failure here (some
    // filesystems refuse) does not undo them.
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
}

impl Sink for FileSink {
    fn writes_out(&self) -> bool {
        true
    }

    fn apply(&self, batch: RecordBatch) -> DfResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.output(batch)?;
        let mut writing = self.writing.lock();
        if writing.open.is_none() {
            writing.files += 1;
            let open = self.open(writing.epoch, writing.files)?;
            writing.open = Some(open);
        }
        let Some(open) = writing.open.as_mut() else {
            return Ok(());
        };
        match &mut open.writer {
            FormatWriter::Csv(w) => w.write(&batch)?,
            FormatWriter::Json(w) => w.write(&batch)?,
            FormatWriter::Parquet(w) => w.write(&batch)?,
        }
        Ok(())
    }

    fn snapshot(&self, epoch: u64) -> DfResult<Vec<(String, StateWrite)>> {
        let mut writing = self.writing.lock();
        writing.epoch = writing.epoch.max(epoch);
        let pending = match writing.open.take() {
            Some(open) => vec![self.close(open)?],
            None => Vec::new(),
        };
        Ok(vec![(
            "files".to_string(),
            StateWrite {
                pending,
                ..Default::default()
            },
        )])
    }

    fn restore(
        &self,
        _state: &BTreeMap<String, Vec<(String, RecordBatch)>>,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> DfResult<()> {
        self.commit(pending)?;
        // Every other in-progress file of this sink belongs to a checkpoint
        // that never completed: its rows come again from the restored state.
        let prefix = format!("{}-", self.name);
        let entries = std::fs::read_dir(self.folder.join(IN_PROGRESS))
            .map_err(|e| io("listing in-progress files", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| io("removing an uncommitted file", e))?;
            }
        }
        Ok(())
    }

    fn commit(&self, pending: &BTreeMap<String, Vec<String>>) -> DfResult<()> {
        let mut renamed = false;
        for file in pending.values().flatten() {
            let from = self.in_progress(file);
            let to = self.folder.join(file);
            match std::fs::rename(&from, &to) {
                Ok(()) => renamed = true,
                // Committed before the crash: the rename already happened.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => {}
                Err(e) => return Err(io("committing a file", e)),
            }
        }
        if renamed {
            sync_folder(&self.folder);
        }
        Ok(())
    }
}

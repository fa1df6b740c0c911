//! The `file` connector: csv, newline-delimited json and parquet files on
//! the server's disk (one file, a directory, or a glob such as
//! `data/*.csv`), as a table, as a bounded stream, and as a sink.
//!
//! Reads go through DataFusion's `ListingTable`, which already splits files
//! across partitions, prunes parquet row groups and pushes projections down;
//! Weir adds option validation, schema handling and clear errors. Paths are
//! local: no object store is registered for file paths (checkpoints, not
//! tables, go to S3; see `server/src/checkpoints.rs`).
//!
//! # Layout
//! - here: [`FileSpec`] (where the files are, how to decode them) and
//!   [`FileConnector`] (the connector's entry in the registry).
//! - [`scan`]: CSV and JSON-lines files read record by record ([`records`]
//!   cuts them, [`decode`] decodes them), bad records handled by the
//!   `on_error` policy ([`bad_rows`]).
//! - `splits`: a stream's job reads its files as splits, listed once and
//!   recorded in its checkpoints, so that a restore reads what the job
//!   started with (design 0015).
//! - [`sink`]: a view's rows written to files, exactly once.
//! - [`table_rows`]: a file table's files read by a job as a table's rows,
//!   the table side of a lookup join.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::DataFusionError;
use futures::TryStreamExt;
use weir_runtime::metrics::RuntimeMetrics;
use weir_runtime::source::{Source, Split};

use crate::error::{ConnectorError, Result};
use crate::opened_stream::{OpenedStream, SourceFactory};
use crate::options::{ConnectorOptions, OnError};
use crate::registry::{Connector, Opening, OptionSpec, Role};

pub mod bad_rows;
pub mod decode;
pub mod records;
pub mod scan;
pub mod sink;
mod splits;
pub mod table_rows;

/// The name of the file connector in `WITH (connector = 'file')`.
pub const CONNECTOR: &str = "file";

/// The formats the file connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormatKind {
    /// Comma-separated (or any delimiter) text.
    Csv {
        /// Does the first line name the columns?
        header: bool,
        /// Field separator.
        delimiter: u8,
    },
    /// Newline-delimited JSON objects.
    Json,
    /// Apache Parquet.
    Parquet,
}

impl FileFormatKind {
    /// The format's name as users write it.
    pub fn name(&self) -> &'static str {
        match self {
            FileFormatKind::Csv { .. } => "csv",
            FileFormatKind::Json => "json",
            FileFormatKind::Parquet => "parquet",
        }
    }

    fn datafusion_format(&self) -> Arc<dyn FileFormat> {
        match *self {
            FileFormatKind::Csv { header, delimiter } => Arc::new(
                CsvFormat::default()
                    .with_has_header(header)
                    .with_delimiter(delimiter),
            ),
            FileFormatKind::Json => Arc::new(JsonFormat::default()),
            FileFormatKind::Parquet => Arc::new(ParquetFormat::default()),
        }
    }
}

/// Where the files are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// A path, a directory or a glob, relative to the server's working directory.
    pub path: String,
    /// How to decode them.
    pub format: FileFormatKind,
    /// What a record that cannot be decoded does (csv and json).
    pub on_error: OnError,
}

impl FileSpec {
    /// Read `path`, `format` and the format's options out of `options`.
    /// `format` may be omitted when the path's extension names it.
    pub fn from_options(options: &mut ConnectorOptions) -> Result<Self> {
        let path = options.require(CONNECTOR, "path")?;
        let format_name = match options.take("format") {
            Some(name) => name.to_ascii_lowercase(),
            None => guess_format(&path).ok_or(ConnectorError::MissingOption {
                connector: CONNECTOR.to_string(),
                option: "format",
            })?,
        };
        let format = match format_name.as_str() {
            "csv" => FileFormatKind::Csv {
                header: options.take_bool("header")?.unwrap_or(true),
                delimiter: options.take_char("delimiter")?.unwrap_or(b','),
            },
            "json" | "ndjson" | "jsonl" => FileFormatKind::Json,
            "parquet" => FileFormatKind::Parquet,
            _ => {
                return Err(ConnectorError::InvalidOption {
                    option: "format".to_string(),
                    value: format_name,
                    reason: "expected csv, json or parquet".to_string(),
                });
            }
        };
        let on_error = options.take_on_error(CONNECTOR, "dead_letter_path")?;
        if format == FileFormatKind::Parquet && on_error != OnError::Fail {
            return Err(ConnectorError::InvalidOption {
                option: "on_error".into(),
                value: "skip or dead_letter".into(),
                reason: "parquet files have no records to set aside: only csv and json".into(),
            });
        }
        if let OnError::DeadLetter(dead_letters) = &on_error {
            // Written by the server: confined like any path SQL names.
            crate::paths::check(dead_letters)?;
        }
        Ok(Self {
            path,
            format,
            on_error,
        })
    }

    /// Open the files as a table. With `schema` the columns are as declared;
    /// without it they are inferred from the files. With `require_files` at
    /// least one file must match the path, so a typo fails now rather than at
    /// query time (inferring a schema always needs a file).
    pub async fn open_table(
        &self,
        state: &dyn Session,
        schema: Option<SchemaRef>,
        require_files: bool,
    ) -> Result<Arc<dyn TableProvider>> {
        let url = ListingTableUrl::parse(&self.path)?;
        let listing = self.listing(&url);
        if require_files || schema.is_none() {
            self.check_files_exist(state, &url, &listing.file_extension)
                .await?;
        }
        let schema = match schema {
            Some(schema) => schema,
            None => {
                let inferred = listing.infer_schema(state, &url).await?;
                // An empty file infers no column: a table of zero columns
                // would only puzzle whoever queries it.
                if inferred.fields().is_empty() {
                    return Err(ConnectorError::NoColumns {
                        path: self.path.clone(),
                    });
                }
                inferred
            }
        };
        let syntax = match self.format {
            FileFormatKind::Csv { delimiter, .. } => decode::Syntax::Csv { delimiter },
            FileFormatKind::Json => decode::Syntax::Json,
            FileFormatKind::Parquet => {
                let config = ListingTableConfig::new(url)
                    .with_listing_options(listing)
                    .with_schema(schema);
                return Ok(Arc::new(ListingTable::try_new(config)?));
            }
        };
        let header = matches!(self.format, FileFormatKind::Csv { header: true, .. });
        Ok(Arc::new(scan::CheckedFiles::new(
            url,
            listing.file_extension.clone(),
            header,
            decode::RecordDecoder::new(syntax, schema, scan::MAX_RECORD_BYTES),
            bad_rows::BadRows::new(self.on_error.clone()),
        )))
    }

    /// The files opened as `table`, as a bounded stream whose jobs read
    /// them as splits.
    fn stream(&self, table: Arc<dyn TableProvider>) -> Result<OpenedStream> {
        Ok(OpenedStream::new(
            table.clone(),
            true,
            Arc::new(FileSources {
                table,
                url: ListingTableUrl::parse(&self.path)?,
                format: self.format,
                description: format!("file {} ({})", self.path, self.format.name()),
            }),
        ))
    }

    /// How the files are listed: a single file or a glob names its files
    /// exactly; only a directory needs the extension to tell data files
    /// from the rest.
    fn listing(&self, url: &ListingTableUrl) -> ListingOptions {
        let listing = ListingOptions::new(self.format.datafusion_format());
        if !url.is_collection() || is_glob(&self.path) {
            listing.with_file_extension("")
        } else {
            listing
        }
    }

    async fn check_files_exist(
        &self,
        state: &dyn Session,
        url: &ListingTableUrl,
        ext: &str,
    ) -> Result<()> {
        let store = state.runtime_env().object_store(url)?;
        let found = url
            .list_all_files(state, store.as_ref(), ext)
            .await
            .map_err(|_| ConnectorError::NoFiles(self.path.clone()))?
            .try_next()
            .await
            .map_err(|_| ConnectorError::NoFiles(self.path.clone()))?;
        match found {
            Some(_) => Ok(()),
            None => Err(ConnectorError::NoFiles(self.path.clone())),
        }
    }
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

fn guess_format(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let ext = lower.rsplit('.').next()?;
    match ext {
        "csv" | "tsv" => Some("csv".to_string()),
        "json" | "ndjson" | "jsonl" => Some("json".to_string()),
        "parquet" => Some("parquet".to_string()),
        _ => None,
    }
}

/// Count a file table's bad records (skipped or dead-lettered) as `name`
/// in `weir_bad_rows_total`; other tables have none.
pub fn observe_table(table: &dyn TableProvider, name: &str, metrics: &RuntimeMetrics) {
    if let Some(files) = table.downcast_ref::<scan::CheckedFiles>() {
        files.bad_rows().counter().attach(metrics.bad(name));
    }
}

/// A file stream's sources: its files listed when a job starts and dealt
/// to partitions as splits ([`splits`]), whose bad records are counted as
/// the stream's, and whose readers report how far they are for the job's
/// progress: bytes and files (CSV, JSON), rows of the total the Parquet
/// footers give.
#[derive(Debug)]
struct FileSources {
    table: Arc<dyn TableProvider>,
    /// Where the files are.
    url: ListingTableUrl,
    format: FileFormatKind,
    /// The sources' line in EXPLAIN.
    description: String,
}

#[async_trait::async_trait]
impl SourceFactory for FileSources {
    async fn source(&self, state: &dyn Session) -> Result<Arc<dyn Source>> {
        let partitions = state.config().target_partitions();
        let (scan, assigned, counting) = match self.table.downcast_ref::<scan::CheckedFiles>() {
            Some(files) => (
                files.split_scan(state)?,
                splits::deal(
                    files.splits(state).await?,
                    partitions,
                    splits::Dealing::RoundRobin,
                ),
                splits::Counting::Bytes,
            ),
            None => {
                let Some(listing) = self.table.downcast_ref::<ListingTable>() else {
                    return Err(DataFusionError::Internal(format!(
                        "{} is not over a listing table",
                        self.description
                    ))
                    .into());
                };
                let (scan, files) = parquet_splits(state, listing, self.format).await?;
                (
                    scan,
                    splits::deal(files, partitions, splits::Dealing::Runs),
                    splits::Counting::Rows,
                )
            }
        };
        let reading = splits::FileReading {
            schema: self.table.schema(),
            scan,
            store: state.runtime_env().object_store(&self.url)?,
            task: state.task_ctx(),
            description: self.description.clone(),
            counting,
        };
        Ok(Arc::new(splits::SplitSource::new(reading, assigned)))
    }

    fn observe(&mut self, stream: &str, metrics: &RuntimeMetrics) {
        observe_table(self.table.as_ref(), stream, metrics);
    }
}

/// How a job reads a Parquet listing table's files one at a time, and the
/// files, listed now in path order, with the rows their footers say they
/// hold (one small read per file, no row read).
async fn parquet_splits(
    state: &dyn Session,
    listing: &ListingTable,
    format: FileFormatKind,
) -> Result<(Arc<dyn splits::SplitScan>, Vec<Split>)> {
    let options = listing.options();
    let Some(url) = listing.table_paths().first() else {
        return Err(DataFusionError::Internal("a file table without a path".into()).into());
    };
    let store = state.runtime_env().object_store(url)?;
    let mut files = Vec::new();
    for url in listing.table_paths() {
        for meta in splits::list(state, url, &options.file_extension).await? {
            let stats = options
                .format
                .infer_stats(state, &store, listing.schema(), &meta)
                .await?;
            files.push(splits::split_of(
                &meta,
                stats.num_rows.get_value().map(|n| *n as u64),
            ));
        }
    }
    let source = format
        .datafusion_format()
        .file_source(TableSchema::from(listing.schema()));
    let scan = splits::ParquetSplits::new(url.object_store(), store, source);
    Ok((Arc::new(scan), files))
}

/// `WITH (connector = 'file', path = ..., format = ...)`: a table, a
/// bounded stream, or a sink writing into a folder.
#[derive(Debug, Clone, Copy)]
pub struct FileConnector;

#[async_trait::async_trait]
impl Connector for FileConnector {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn can_be(&self) -> &'static [Role] {
        &[Role::Stream, Role::Table, Role::Sink]
    }

    fn options(&self) -> &'static [OptionSpec] {
        const OPTIONS: &[OptionSpec] = &[
            OptionSpec::new(
                "path",
                "a file, a folder or a glob; a sink's folder (relative to the server's working directory)",
            )
            .required(),
            OptionSpec::new(
                "format",
                "csv, json or parquet (may be left out when the path's extension says it)",
            ),
            OptionSpec::new("header", "csv: does the first line name the columns (default true)"),
            OptionSpec::new("delimiter", "csv: the field separator (default ',')"),
            OptionSpec::new(
                "on_error",
                "csv, json: a record that cannot be decoded: fail (default), skip or dead_letter",
            ),
            OptionSpec::new(
                "dead_letter_path",
                "with on_error = 'dead_letter': the file bad records are appended to (json lines)",
            ),
        ];
        OPTIONS
    }

    async fn open_stream(
        &self,
        state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: Option<SchemaRef>,
    ) -> Result<OpenedStream> {
        let spec = FileSpec::from_options(options)?;
        let table = spec.open_table(state, declared, true).await?;
        spec.stream(table)
    }

    /// On a restart the files may all be gone (a folder emptied after the
    /// job read them): the stream opens anyway, says so in the log, and a
    /// job restored over it reads what its checkpoint still names, a new
    /// one nothing.
    async fn reopen_stream(
        &self,
        state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: SchemaRef,
    ) -> Result<OpenedStream> {
        let spec = FileSpec::from_options(options)?;
        let url = ListingTableUrl::parse(&spec.path)?;
        let extension = spec.listing(&url).file_extension;
        if spec
            .check_files_exist(state, &url, &extension)
            .await
            .is_err()
        {
            tracing::warn!(
                path = %spec.path,
                "the file stream's path matches no file now; a job restored over it reads only \
                 what its checkpoint still names, a new job reads nothing"
            );
        }
        let table = spec.open_table(state, Some(declared), false).await?;
        spec.stream(table)
    }

    async fn open_table(
        &self,
        state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: Option<SchemaRef>,
        opening: Opening,
    ) -> Result<Arc<dyn TableProvider>> {
        let spec = FileSpec::from_options(options)?;
        spec.open_table(state, declared, opening == Opening::Create)
            .await
    }

    fn open_sink(
        &self,
        name: &str,
        schema: SchemaRef,
        changelog: bool,
        options: &mut ConnectorOptions,
    ) -> Result<Arc<dyn weir_runtime::job::Sink>> {
        Ok(Arc::new(sink::FileSink::new(
            name, schema, changelog, options,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn opens_csv_with_inferred_schema_and_rejects_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "a,b\n1,x\n2,y\n").expect("write");
        let ctx = SessionContext::new();
        let mut opts = ConnectorOptions::new([("path", path.to_str().expect("utf8"))]);
        let spec = FileSpec::from_options(&mut opts).expect("spec");
        opts.finish(CONNECTOR).expect("all options used");
        let table = spec
            .open_table(&ctx.state(), None, true)
            .await
            .expect("open");
        assert_eq!(table.schema().fields().len(), 2);

        let missing = FileSpec {
            path: dir.path().join("nope.csv").display().to_string(),
            format: FileFormatKind::Json,
            on_error: OnError::Fail,
        };
        let err = missing
            .open_table(&ctx.state(), None, true)
            .await
            .expect_err("missing file");
        assert!(matches!(err, ConnectorError::NoFiles(_)), "{err:?}");
    }
}

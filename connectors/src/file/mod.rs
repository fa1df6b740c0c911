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
//! - [`sink`]: a view's rows written to files, exactly once.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{Expr, ScalarUDF, TableType};
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};

use crate::timestamps::ParseTimestamp;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use futures::TryStreamExt;

use crate::error::{ConnectorError, Result};
use crate::opened_stream::OpenedStream;
use crate::options::ConnectorOptions;
use crate::registry::{Connector, Opening, OptionSpec, Role};

pub mod sink;

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
        Ok(Self { path, format })
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
        let mut listing = ListingOptions::new(self.format.datafusion_format());
        // A single file or a glob names its files exactly; only a directory
        // needs the extension to tell data files from the rest.
        if !url.is_collection() || is_glob(&self.path) {
            listing = listing.with_file_extension("");
        }
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
        // CSV timestamps are read as text and parsed by Weir's fast path
        // (see `timestamps`); other formats carry typed timestamps already.
        let timestamp_columns: Vec<usize> = match self.format {
            FileFormatKind::Csv { .. } => schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| matches!(f.data_type(), DataType::Timestamp(_, None)))
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        };
        let file_schema = if timestamp_columns.is_empty() {
            schema.clone()
        } else {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    if timestamp_columns.contains(&i) {
                        f.as_ref().clone().with_data_type(DataType::Utf8)
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect();
            Arc::new(Schema::new(fields))
        };
        let config = ListingTableConfig::new(url)
            .with_listing_options(listing)
            .with_schema(file_schema);
        let table: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(config)?);
        if timestamp_columns.is_empty() {
            return Ok(table);
        }
        Ok(Arc::new(CsvTimestamps {
            inner: table,
            schema,
            timestamp_columns,
        }))
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

/// A CSV table whose timestamp columns are read as text and parsed by
/// `weir_parse_timestamp` in a projection over the scan.
#[derive(Debug)]
struct CsvTimestamps {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    timestamp_columns: Vec<usize>,
}

#[async_trait::async_trait]
impl TableProvider for CsvTimestamps {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let input = self.inner.scan(state, projection, &[], limit).await?;
        let input_schema = input.schema();
        let indices: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let config = Arc::new(state.config_options().clone());
        let exprs = indices
            .iter()
            .enumerate()
            .map(|(position, &i)| {
                let field = self.schema.field(i);
                let column: Arc<dyn PhysicalExpr> =
                    Arc::new(Column::new(input_schema.field(position).name(), position));
                let expr = if self.timestamp_columns.contains(&i) {
                    let udf = Arc::new(ScalarUDF::new_from_impl(ParseTimestamp::new(
                        field.data_type().clone(),
                    )));
                    Arc::new(ScalarFunctionExpr::new(
                        "weir_parse_timestamp",
                        udf,
                        vec![column],
                        Arc::new(field.clone()),
                        config.clone(),
                    )) as Arc<dyn PhysicalExpr>
                } else {
                    column
                };
                ProjectionExpr {
                    expr,
                    alias: field.name().clone(),
                }
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
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
        let description = format!("file {} ({})", spec.path, spec.format.name());
        let table = spec.open_table(state, declared, true).await?;
        Ok(OpenedStream::scanning(table, true, description))
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
        };
        let err = missing
            .open_table(&ctx.state(), None, true)
            .await
            .expect_err("missing file");
        assert!(matches!(err, ConnectorError::NoFiles(_)), "{err:?}");
    }
}

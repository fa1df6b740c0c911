//! The durable definitions of what users created: tables and views.
//!
//! The catalog records definitions, not data. It is kept in creation order so
//! that replaying it on start rebuilds dependent objects (a view over a table)
//! after what they depend on. The server persists it (write-then-rename); this
//! module only says what it holds and how it changes.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{PlanError, Result};
use crate::statement::ObjectKind;

/// The current on-disk format version of the catalog.
pub const CATALOG_VERSION: u32 = 1;

/// One column of a table: its Arrow type in Arrow's own text form, which
/// `DataType::from_str` reads back exactly (timezones and units included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Arrow data type, e.g. `Int64` or `Timestamp(ns, "UTC")`.
    pub data_type: String,
    /// May hold NULLs.
    pub nullable: bool,
}

/// A table: over files (or another connector's data), or owned by Weir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Normalized name.
    pub name: String,
    /// The schema, as declared or as inferred when the table was created, so
    /// that a restart does not depend on re-reading the files.
    pub columns: Vec<ColumnDef>,
    /// The connector options (`connector`, `path`, `format`, ...).
    pub options: BTreeMap<String, String>,
    /// Set for a table Weir owns (no connector): its rows live in Weir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned: Option<OwnedTableDef>,
}

/// What a table Weir owns adds to its definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedTableDef {
    /// Its id in the table log, never reused.
    pub id: u64,
    /// The primary-key columns; empty: append-only.
    pub primary_key: Vec<String>,
    /// A stream created without a connector: its event-time column and
    /// watermark delay (nanoseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<(String, i64)>,
}

/// The schema of stored columns as Arrow sees it.
pub fn schema_of(name: &str, columns: &[ColumnDef]) -> Result<SchemaRef> {
    let fields = columns
        .iter()
        .map(|c| {
            let data_type: DataType = c.data_type.parse().map_err(|e| {
                PlanError::Invalid(format!(
                    "catalog entry \"{name}\" has an unreadable type \"{}\": {e}",
                    c.data_type
                ))
            })?;
            Ok(Field::new(&c.name, data_type, c.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(std::sync::Arc::new(Schema::new(fields)))
}

impl TableDef {
    /// The schema as Arrow sees it.
    pub fn schema(&self) -> Result<SchemaRef> {
        schema_of(&self.name, &self.columns)
    }

    /// Columns from an Arrow schema.
    pub fn columns_of(schema: &Schema) -> Vec<ColumnDef> {
        schema
            .fields()
            .iter()
            .map(|f| ColumnDef {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect()
    }
}

/// A view: its defining statement, replayed on start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Normalized name.
    pub name: String,
    /// The `CREATE VIEW ...` statement, replayed on start.
    pub sql: String,
    /// The view's query, as `SHOW VIEWS` and `pg_views` show it.
    pub definition: String,
}

/// A stream: its connector, columns and watermark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDef {
    /// Normalized name.
    pub name: String,
    /// The columns (declared, inferred from files, or the connector's).
    pub columns: Vec<ColumnDef>,
    /// The connector options.
    pub options: BTreeMap<String, String>,
    /// The event-time column, if any.
    pub time_column: Option<String>,
    /// The watermark delay in nanoseconds.
    pub watermark_delay_ns: i64,
    /// The WATERMARK clause as written, for SHOW.
    pub watermark: Option<String>,
}

/// A materialized view: its defining statement, rerun on start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterializedViewDef {
    /// Normalized name.
    pub name: String,
    /// The query.
    pub query: String,
    /// `EMIT ON WINDOW CLOSE`.
    pub emit_on_window_close: bool,
    /// Its job: desired state and settings (absent in catalogs written
    /// before jobs had them: running, server defaults).
    #[serde(default)]
    pub job: JobSpec,
}

/// What state a job's owner wants it in; the job manager drives it there
/// and keeps it there across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    /// Reading its inputs and maintaining its output.
    #[default]
    Running,
    /// Stopped with a savepoint; its output keeps its last contents.
    Suspended,
}

impl DesiredState {
    /// As `SHOW JOBS` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Suspended => "suspended",
        }
    }
}

/// The durable part of a job: what its owner asked for. Its status is not
/// stored: it is derived on start from this and from the checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The state the job is driven to.
    #[serde(default)]
    pub desired_state: DesiredState,
    /// Settings given in `WITH (...)` or `ALTER JOB ... SET`, validated,
    /// keys lowercased; what is not set comes from the server's defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatalogEntry {
    /// A table: over files, or owned by Weir.
    Table(TableDef),
    /// A view.
    View(ViewDef),
    /// A stream.
    Stream(StreamDef),
    /// A materialized view.
    MaterializedView(MaterializedViewDef),
    /// A sink.
    Sink(SinkDef),
}

/// A sink: a materialized view's rows, written out by a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDef {
    /// Its name.
    pub name: String,
    /// The materialized view it writes out.
    pub from: String,
    /// Connector options as given.
    pub options: std::collections::BTreeMap<String, String>,
}

impl CatalogEntry {
    /// The object's name.
    pub fn name(&self) -> &str {
        match self {
            CatalogEntry::Table(t) => &t.name,
            CatalogEntry::View(v) => &v.name,
            CatalogEntry::Stream(s) => &s.name,
            CatalogEntry::MaterializedView(m) => &m.name,
            CatalogEntry::Sink(s) => &s.name,
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            CatalogEntry::Table(_) => ObjectKind::Table,
            CatalogEntry::View(_) => ObjectKind::View,
            CatalogEntry::Stream(_) => ObjectKind::Stream,
            CatalogEntry::MaterializedView(_) => ObjectKind::MaterializedView,
            CatalogEntry::Sink(_) => ObjectKind::Sink,
        }
    }
}

/// All definitions, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Format version, checked on load.
    pub version: u32,
    /// The entries.
    pub entries: Vec<CatalogEntry>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            version: CATALOG_VERSION,
            entries: Vec::new(),
        }
    }
}

impl Catalog {
    /// Read a catalog from its JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let catalog: Catalog = serde_json::from_slice(bytes)
            .map_err(|e| PlanError::Invalid(format!("the catalog file is unreadable: {e}")))?;
        if catalog.version != CATALOG_VERSION {
            return Err(PlanError::Invalid(format!(
                "the catalog file has version {}, this server reads version {CATALOG_VERSION}",
                catalog.version
            )));
        }
        Ok(catalog)
    }

    /// The JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, maps and vectors cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Look an object up by name.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.name() == name)
    }

    /// Add an object; its name must be free.
    pub fn insert(&mut self, entry: CatalogEntry) -> Result<()> {
        if let Some(existing) = self.get(entry.name()) {
            return Err(PlanError::DuplicateObject {
                kind: existing.kind().name(),
                name: entry.name().to_string(),
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Replace the object of the same name in place, or add it.
    pub fn upsert(&mut self, entry: CatalogEntry) {
        match self.entries.iter_mut().find(|e| e.name() == entry.name()) {
            Some(slot) => *slot = entry,
            None => self.entries.push(entry),
        }
    }

    /// Remove an object of the given kind.
    pub fn remove(&mut self, kind: ObjectKind, name: &str) -> Result<CatalogEntry> {
        match self.entries.iter().position(|e| e.name() == name) {
            Some(i) if self.entries[i].kind() == kind => Ok(self.entries.remove(i)),
            Some(i) => Err(PlanError::Invalid(format!(
                "\"{name}\" is not a {}, it is a {}",
                kind.name(),
                self.entries[i].kind().name()
            ))),
            None => Err(PlanError::UndefinedObject {
                kind: kind.name(),
                name: name.to_string(),
            }),
        }
    }

    /// Entries of one kind, in creation order.
    pub fn of_kind(&self, kind: ObjectKind) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.iter().filter(move |e| e.kind() == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn types_round_trip_through_text() {
        let schema = Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("price", DataType::Decimal128(10, 2), false),
            Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
        ]);
        let def = TableDef {
            name: "t".into(),
            columns: TableDef::columns_of(&schema),
            options: BTreeMap::new(),
            owned: None,
        };
        let mut catalog = Catalog::default();
        catalog.insert(CatalogEntry::Table(def)).expect("insert");
        let back = Catalog::from_json(&catalog.to_json()).expect("read back");
        let CatalogEntry::Table(t) = &back.entries[0] else {
            panic!("not a table")
        };
        assert_eq!(t.schema().expect("schema").as_ref(), &schema);
    }

    #[test]
    fn names_are_unique_across_kinds() {
        let mut catalog = Catalog::default();
        catalog
            .insert(CatalogEntry::View(ViewDef {
                name: "v".into(),
                sql: "CREATE VIEW v AS SELECT 1".into(),
                definition: "SELECT 1".into(),
            }))
            .expect("insert");
        let err = catalog
            .insert(CatalogEntry::View(ViewDef {
                name: "v".into(),
                sql: String::new(),
                definition: String::new(),
            }))
            .expect_err("duplicate");
        assert_eq!(err.to_string(), "view \"v\" already exists");
        assert!(catalog.remove(ObjectKind::Table, "v").is_err());
        assert!(catalog.remove(ObjectKind::View, "v").is_ok());
    }
}

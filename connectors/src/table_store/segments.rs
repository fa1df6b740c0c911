//! Compaction: every table's durable rows written as one Arrow IPC file, so
//! the log before it can be deleted and a restart reads a file instead of
//! replaying every statement since the beginning.
//!
//! ```text
//! tables/segments/<table id>-<lsn>.arrow   rows as of <lsn>
//! tables/manifest                          "<table id> <lsn> <file>" per line
//! ```
//!
//! # Correctness
//! - A table's segment holds exactly the changes whose records end at or
//!   before its LSN (its durable state, read under the table's lock, so no
//!   change is half in it). Replay applies only records that end after it.
//! - Order on disk: segments are written and fsync'd, then the manifest is
//!   replaced atomically (write, fsync, rename, fsync the directory), and
//!   only then are old log segments and old files deleted. A crash at any
//!   point leaves a manifest whose segments exist and a log that covers
//!   everything after them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;

use super::wal::{Lsn, storage};
use crate::error::{ConnectorError, Result};

const MANIFEST: &str = "manifest";

/// Which segment holds each table's rows, and as of which LSN.
#[derive(Debug, Default, Clone)]
pub(crate) struct Manifest {
    pub(crate) tables: HashMap<u64, (Lsn, String)>,
}

impl Manifest {
    /// Read `dir/manifest`; empty when there is none.
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(storage("read", &path, e)),
        };
        let mut tables = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let parsed = (|| {
                let id = parts.next()?.parse().ok()?;
                let lsn = parts.next()?.parse().ok()?;
                let file = parts.next()?.to_string();
                Some((id, (lsn, file)))
            })();
            let (id, entry) = parsed.ok_or_else(|| {
                ConnectorError::LogFailed(format!(
                    "unreadable line in {}: {line:?}",
                    path.display()
                ))
            })?;
            tables.insert(id, entry);
        }
        Ok(Self { tables })
    }

    /// Replace `dir/manifest` atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let mut text = String::new();
        let mut entries: Vec<_> = self.tables.iter().collect();
        entries.sort();
        for (id, (lsn, file)) in entries {
            text.push_str(&format!("{id} {lsn} {file}\n"));
        }
        let mut out = File::create(&tmp).map_err(|e| storage("create", &tmp, e))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| storage("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| storage("rename into", &path, e))?;
        sync_dir(dir)
    }

    /// The LSN every table's segment covers: the log before it is not needed.
    pub(crate) fn covered(&self) -> Option<Lsn> {
        self.tables.values().map(|(lsn, _)| *lsn).min()
    }
}

/// The segment directory under the store's directory.
pub(crate) fn segment_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

/// Write a table's rows as of `lsn`; returns the file name.
pub(crate) fn write(
    dir: &Path,
    table: u64,
    lsn: Lsn,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<String> {
    fs::create_dir_all(dir).map_err(|e| storage("create", dir, e))?;
    let name = format!("{table}-{lsn:020}.arrow");
    let path = dir.join(&name);
    let file = File::create(&path).map_err(|e| storage("create", &path, e))?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), schema)
        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    for batch in batches {
        writer
            .write(batch)
            .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    }
    writer
        .finish()
        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    let file = writer
        .into_inner()
        .map_err(|e| ConnectorError::DataFusion(e.into()))?
        .into_inner()
        .map_err(|e| storage("write", &path, e.into_error()))?;
    file.sync_all().map_err(|e| storage("sync", &path, e))?;
    sync_dir(dir)?;
    Ok(name)
}

/// Read a segment back.
pub(crate) fn read(dir: &Path, name: &str) -> Result<Vec<RecordBatch>> {
    let path = dir.join(name);
    let file = File::open(&path).map_err(|e| storage("open", &path, e))?;
    let reader = FileReader::try_new(BufReader::new(file), None)
        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    reader
        .map(|b| b.map_err(|e| ConnectorError::DataFusion(e.into())))
        .collect()
}

/// Delete the segment files the manifest does not name.
pub(crate) fn remove_unlisted(dir: &Path, manifest: &Manifest) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let keep: Vec<&String> = manifest.tables.values().map(|(_, f)| f).collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".arrow") && !keep.contains(&&name) {
            fs::remove_file(entry.path()).map_err(|e| storage("remove", &entry.path(), e))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage("sync", dir, e))
}

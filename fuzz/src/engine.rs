//! The targets over Weir's own crates (feature `engine`).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;

/// The columns the decoder targets decode into.
fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("name", DataType::Utf8, true),
                Field::new("price", DataType::Float64, true),
                Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Field::new("ok", DataType::Boolean, true),
            ]))
        })
        .clone()
}

/// SQL text through the parser and, for plain statements, the planner.
pub fn sql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(statements) = weir_planner::parser::parse(text) else {
        return;
    };
    static RUNTIME: OnceLock<(tokio::runtime::Runtime, SessionContext)> = OnceLock::new();
    let (runtime, ctx) = RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        (runtime, SessionContext::new())
    });
    for statement in statements {
        let state = ctx.state();
        let _ = runtime.block_on(state.statement_to_plan(
            datafusion::sql::parser::Statement::Statement(Box::new(statement)),
        ));
    }
}

fn records(syntax: weir_connectors::file::decode::Syntax, data: &[u8]) {
    use weir_connectors::file::decode::RecordDecoder;
    use weir_connectors::file::records::Splitter;
    // A small limit, so that oversized records are reached too.
    let decoder = RecordDecoder::new(syntax, schema(), 4096);
    let mut splitter = Splitter::new(syntax.quote(), 4096);
    // Pieces of uneven sizes, as an object store hands them out.
    for piece in data.chunks(97) {
        splitter.push(piece);
    }
    splitter.finish();
    let block = splitter.take();
    let (batch, bad) = decoder.decode(&block);
    let kept = batch.map_or(0, |b| b.num_rows());
    // Nothing lost: every record is a row or a bad record.
    assert_eq!(kept + bad.len(), block.records.len(), "records lost");
}

/// A CSV file through the record splitter and decoder.
pub fn csv(data: &[u8]) {
    records(
        weir_connectors::file::decode::Syntax::Csv { delimiter: b',' },
        data,
    );
}

/// A JSON-lines file through the record splitter and decoder.
pub fn json(data: &[u8]) {
    records(weir_connectors::file::decode::Syntax::Json, data);
}

/// A damaged table log: a segment of these bytes opened (every intact
/// record replayed, the rest refused or cut), and the bytes as a record.
pub fn wal(data: &[u8]) {
    use weir_connectors::table_store::{record, wal::Wal};
    let _ = record::decode(data, |_| Some(schema()));
    let Ok(dir) = tempfile_dir() else {
        return;
    };
    if std::fs::write(dir.join(format!("{:020}.wal", 0)), data).is_err() {
        return;
    }
    let opened = Wal::open(&dir, |_, _, payload| {
        let _ = record::decode(payload, |_| Some(schema()));
        Ok(())
    });
    drop(opened);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint manifest as the checkpoint store reads it.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = serde_json::from_slice::<weir_runtime::checkpoint::Manifest>(data) {
        let _ = manifest.files().count();
        let _ = manifest.state_bytes();
    }
}

/// A checkpoint chunk (an Arrow IPC stream) as the checkpoint store reads it.
pub fn chunk(data: &[u8]) {
    use datafusion::arrow::ipc::reader::StreamReader;
    if let Ok(reader) = StreamReader::try_new(std::io::Cursor::new(data), None) {
        for batch in reader {
            if batch.is_err() {
                return;
            }
        }
    }
}

/// A fresh folder of this process (no tempfile crate: one folder per call,
/// removed by the caller).
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

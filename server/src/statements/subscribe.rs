//! `SUBSCRIBE TO v` (and `COPY (SUBSCRIBE TO v) TO STDOUT`): a
//! materialized view's current rows, then every change its job makes, as
//! they come. An updating view's rows carry an `op` column (`insert` or
//! `delete`); an append-only view's rows are sent as they are.
//!
//! `DECLARE ... CURSOR FOR SUBSCRIBE` reads the same stream a `FETCH` at a
//! time (see [`super::cursor`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use weir_runtime::job;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::Registry;

/// The columns a subscription sends: the view's, plus `op` for an
/// updating view.
pub fn subscribe_schema(registry: &Registry, name: &str) -> Result<SchemaRef> {
    let live = registry.view(name)?;
    Ok(subscription_schema(
        &live.view.schema(),
        live.view.is_changelog(),
    ))
}

/// A view's columns, plus `op` when it is `updating` (its changes include
/// deletes).
fn subscription_schema(schema: &SchemaRef, updating: bool) -> SchemaRef {
    if !updating {
        return schema.clone();
    }
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("op", DataType::Utf8, false)));
    Arc::new(Schema::new(fields))
}

/// `SUBSCRIBE TO v`: the current rows, then every change, until the job
/// ends (a bounded stream) or the client cancels. A failed job is an error,
/// at once or when it fails.
pub fn subscribe(registry: &Registry, name: &str, copy: bool) -> Result<Output> {
    subscribe_with(registry, name, copy, false)
}

/// [`subscribe`], with the slow-client policy: `block`
/// (`subscribe_slow_client = 'block'`) makes the view's job wait while this
/// client is behind, rather than the client being dropped with 53200 once
/// it falls 4,096 batches behind.
pub fn subscribe_with(registry: &Registry, name: &str, copy: bool, block: bool) -> Result<Output> {
    let live = registry.view(name)?;
    if let Some(failure) = live.job.progress().failed {
        return Err(ServerError::job_failed(name, &failure));
    }
    let updating = live.view.is_changelog();
    let view_schema = live.view.schema();
    let schema = subscription_schema(&view_schema, updating);
    let (snapshot, changes, taken) = if block {
        let blocking = live
            .view
            .subscribe_blocking()
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        (blocking.contents, blocking.changes, Some(blocking.taken))
    } else {
        let (snapshot, changes) = live
            .view
            .subscribe()
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        (snapshot, changes, None)
    };
    let progress = live.job.watch();
    let out_schema = schema.clone();
    let to_output =
        move |batch: RecordBatch, snapshot: bool| -> datafusion::common::Result<RecordBatch> {
            if !updating {
                return Ok(batch);
            }
            let n = view_schema.fields().len();
            let ops: ArrayRef = if snapshot {
                Arc::new(StringArray::from(vec!["insert"; batch.num_rows()]))
            } else {
                let ops = batch.column(n).as_primitive::<Int8Type>();
                Arc::new(
                    ops.iter()
                        .map(|o| Some(if o == Some(-1) { "delete" } else { "insert" }))
                        .collect::<StringArray>(),
                )
            };
            let mut columns: Vec<ArrayRef> = batch.columns()[..n].to_vec();
            columns.push(ops);
            Ok(RecordBatch::try_new(out_schema.clone(), columns)?)
        };
    struct State {
        snapshot: std::vec::IntoIter<RecordBatch>,
        changes: tokio::sync::broadcast::Receiver<RecordBatch>,
        /// A blocking subscriber's count of batches handed on.
        taken: Option<weir_runtime::materialized::BlockingTaken>,
        progress: tokio::sync::watch::Receiver<job::Progress>,
        done: bool,
        /// The job failed: said after the changes it made before.
        failed: Option<job::JobFailure>,
    }
    let state = State {
        snapshot: snapshot.into_iter(),
        changes,
        taken,
        progress,
        done: false,
        failed: None,
    };
    let view_name = name.to_string();
    let batches = futures::stream::unfold(state, move |mut state| {
        let to_output = to_output.clone();
        let view_name = view_name.clone();
        async move {
            if let Some(batch) = state.snapshot.next() {
                return Some((to_output(batch, true), state));
            }
            loop {
                if state.done {
                    // The job ended: deliver what is still queued, then stop
                    // (with the job's error, if it failed).
                    return match state.changes.try_recv() {
                        Ok(batch) => Some((to_output(batch, false), state)),
                        Err(_) => state.failed.take().map(|failure| {
                            let error = weir_runtime::RuntimeError::JobFailed {
                                view: view_name,
                                failure,
                            };
                            (
                                Err(datafusion::error::DataFusionError::External(Box::new(
                                    error,
                                ))),
                                state,
                            )
                        }),
                    };
                }
                tokio::select! {
                    received = state.changes.recv() => match received {
                        Ok(batch) => {
                            if let Some(taken) = &state.taken {
                                taken.took_one();
                            }
                            return Some((to_output(batch, false), state));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            return Some((Err(datafusion::error::DataFusionError::ResourcesExhausted(format!(
                                "the subscriber fell {n} batches behind and was dropped"
                            ))), State { done: true, ..state }));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    changed = state.progress.changed() => {
                        let finished = changed.is_err() || {
                            let p = state.progress.borrow();
                            state.failed = p.failed.clone();
                            p.finished || p.failed.is_some()
                        };
                        if finished {
                            state.done = true;
                        }
                    }
                }
            }
        }
    });
    let batches: SendableRecordBatchStream =
        Box::pin(RecordBatchStreamAdapter::new(schema, batches));
    Ok(Output::Subscribe { batches, copy })
}

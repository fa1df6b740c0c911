//! Keyed aggregates over event-time windows, or over plain groups: three
//! operators, one per kind of state, built from the plan by [`new`].
//!
//! - [`WindowAggregate`] (`window.rs`): tumble, hop and cumulate windows
//!   with `EMIT ON WINDOW CLOSE`, one vectorized table of groups per window.
//! - [`UpdatingAggregate`] (`updating.rs`): plain GROUP BY, or windows
//!   without `EMIT ON WINDOW CLOSE`: a changelog, one accumulator per group.
//! - [`SessionAggregate`] (`session.rs`): session windows, merged per
//!   partition key.
//!
//! What they share: `shared.rs` (keys, accumulators, late rows, output
//! batches), `keyed_state.rs` (the checkpoint chunk layout of updating
//! groups and sessions), `columnar.rs` and `group_store.rs` (the updating
//! aggregate's vectorised groups over an append-only input), `key_index.rs` (group numbers of a window's
//! table), `retract.rs` (accumulators that retract in any order),
//! `filtered.rs` (an aggregate's `FILTER (WHERE ..)`).
//!
//! A row whose window already closed (its close time is at or before the
//! watermark) is late: it is dropped and counted, never silently lost.
//!
//! # Correctness
//! Output for a closed window is emitted before the watermark that closed it
//! is forwarded (the worker forwards watermarks after `on_watermark`
//! returns), so downstream operators never see a watermark ahead of data it
//! covers.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_err};
use prometheus_client::metrics::counter::Counter;

mod columnar;
mod filtered;
mod group_store;
mod key_index;
mod keyed_state;
pub mod retract;
mod session;
mod shared;
mod updating;
mod window;

pub use session::SessionAggregate;
pub use updating::UpdatingAggregate;
pub use window::WindowAggregate;
// The op column's helpers, where code that builds aggregate output used to
// find them; they live in `operators::changes`.
pub use crate::operators::changes::{changelog_schema, with_op};

use crate::operators::StreamOperator;
use crate::plan::{AggregateSpec, Emit, WindowKind};

/// The aggregate operator `spec` asks for, new and empty, for one worker.
/// `late` counts the rows it drops as late.
pub fn new(
    spec: Arc<AggregateSpec>,
    input_schema: &SchemaRef,
    late: Counter,
) -> Result<Box<dyn StreamOperator>> {
    Ok(match (spec.window, spec.emit) {
        (WindowKind::Session { .. }, _) => {
            Box::new(SessionAggregate::new(spec, input_schema, late)?)
        }
        (WindowKind::Fixed { .. }, Emit::OnWindowClose) => {
            Box::new(WindowAggregate::new(spec, input_schema, late)?)
        }
        (WindowKind::None, Emit::OnWindowClose) => {
            return exec_err!("EMIT ON WINDOW CLOSE needs a windowed aggregate");
        }
        (_, Emit::Updates) => Box::new(UpdatingAggregate::new(spec, input_schema, late)?),
    })
}

//! Lowering a stream read: a [`Step::Scan`](super::logical::Step) becomes a
//! [`StreamSource`]. The stream was resolved by the caller; what can fail
//! here is a window over processing time (`PROCTIME()`) where it cannot be.

use datafusion::common::DFSchemaRef;

use super::lowering::{Lowering, arrow_schema, same_stream, unsupported};
use super::nodes::{StreamInput, StreamNode, StreamSource};
use crate::error::Result;

/// The source node of a scan of `name`, keeping the columns in
/// `projection` (all when `None`) as `output`. When the query windows the
/// stream by `PROCTIME()`, its watermark is the clock rather than the
/// stream's own (`StreamSource::processing_time`).
pub(super) fn lower_source(
    name: &str,
    input: &StreamInput,
    projection: &Option<Vec<usize>>,
    output: &DFSchemaRef,
    lowering: &Lowering<'_>,
) -> Result<StreamNode> {
    let mut uses = lowering
        .windows
        .iter()
        .filter(|w| same_stream(&w.source, name));
    let processing_time = uses.clone().any(|w| w.processing_time);
    let mut input = input.clone();
    if processing_time {
        if uses.any(|w| !w.processing_time) {
            return Err(unsupported(
                &format!("windows over both processing time and event time of stream \"{name}\""),
                "a stream's rows have one watermark in a view: build the processing-time windows and the event-time windows as views of their own",
            ));
        }
        if input.source.changelog() {
            return Err(unsupported(
                &format!("a window over PROCTIME() of \"{name}\", an updating input"),
                &format!(
                    "the rows of \"{name}\" can be updated and deleted (a table with a primary key, or a materialized view whose rows change): a deletion would be stamped when it arrives, not when the row it deletes was, and would leave another window than that row's; window an append-only stream by processing time"
                ),
            ));
        }
        // The clock is the watermark: the stream's own event time (and a
        // view's watermark) has no say over windows of processing time.
        input.event_time = None;
        input.time_column = None;
    }
    Ok(StreamNode::Source(StreamSource {
        name: name.to_string(),
        input,
        projection: projection.clone(),
        schema: arrow_schema(output),
        processing_time,
    }))
}

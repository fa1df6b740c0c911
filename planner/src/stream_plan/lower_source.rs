//! Lowering a stream read: a [`Step::Scan`](super::logical::Step) becomes a
//! [`StreamSource`]. The stream was resolved by the caller; nothing here can
//! fail.

use datafusion::common::DFSchemaRef;

use super::lowering::arrow_schema;
use super::nodes::{StreamInput, StreamNode, StreamSource};

/// The source node of a scan of `name`, keeping the columns in
/// `projection` (all when `None`) as `output`.
pub(super) fn lower_source(
    name: &str,
    input: &StreamInput,
    projection: &Option<Vec<usize>>,
    output: &DFSchemaRef,
) -> StreamNode {
    StreamNode::Source(StreamSource {
        name: name.to_string(),
        input: input.clone(),
        projection: projection.clone(),
        schema: arrow_schema(output),
    })
}

//! Lowering a lookup join: `s JOIN t FOR SYSTEM_TIME AS OF s.ts ON s.k =
//! t.k` (or LEFT JOIN), where the right input `t` is a table or a
//! materialized view and the left a stream. Which joins are lookups comes
//! from the query's text (`crate::lookups`); here each is checked and
//! placed: the stream on the left, a table on the right, an inner or left
//! join, the clause's column one of the stream's. A misplaced clause is a
//! 42601 at the clause's column. Design note 0016.

use super::logical::Step;
use super::lower_join::JoinOn;
use super::lowering::Lowering;
use super::nodes::{StreamFilter, StreamNode, StreamProject, StreamUnnest};
use crate::error::{PlanError, Result};
use crate::lookups::LookupUse;
use weir_runtime::plan::JoinKind;

/// The name of the stream or table a chain of steps starts by reading.
fn scanned(steps: &[Step]) -> Option<&str> {
    match steps.first() {
        Some(Step::Scan { name, .. }) => Some(name),
        _ => None,
    }
}

/// A misused `FOR SYSTEM_TIME AS OF`: a syntax error at its column.
fn misused(lookup: &LookupUse, message: String, hint: &str) -> PlanError {
    PlanError::Syntax {
        message,
        detail: Some(hint.to_string()),
        position: lookup.position,
    }
}

/// The lookup a join of `left` and `right` (their steps) is, if the query
/// read its right input `FOR SYSTEM_TIME AS OF`; a lookup on its left
/// input is refused.
pub(super) fn lookup_of<'a>(
    left: &[Step],
    right: &[Step],
    lowering: &Lowering<'a>,
) -> Result<Option<&'a LookupUse>> {
    let find = |steps: &[Step]| {
        scanned(steps).and_then(|name| lowering.lookups.iter().find(|l| l.table == name))
    };
    if let (Some(lookup), None) = (find(left), find(right)) {
        return Err(misused(
            lookup,
            format!(
                "FOR SYSTEM_TIME AS OF on \"{}\", the left input of a join",
                lookup.table
            ),
            "a lookup join looks each row of its left input (a stream) up in its right input (a table): write the stream first, s JOIN t FOR SYSTEM_TIME AS OF s.ts ON ..",
        ));
    }
    Ok(find(right))
}

/// Check that `join` of `left` and `right` can be the lookup `lookup`.
pub(super) fn check_lookup(
    lookup: &LookupUse,
    left: &StreamNode,
    right: &StreamNode,
    join: &JoinOn<'_>,
) -> Result<()> {
    if !matches!(join.kind, JoinKind::Inner | JoinKind::Left) {
        return Err(misused(
            lookup,
            "a RIGHT or FULL lookup join".to_string(),
            "a lookup join keeps no stream rows, so it cannot pad a table row that no stream row matched: use JOIN or LEFT JOIN",
        ));
    }
    let table = source_under(right);
    if !table.is_some_and(|t| t.input.source.is_table()) {
        let name = table.map_or(lookup.table.as_str(), |t| t.name.as_str());
        return Err(misused(
            lookup,
            format!(
                "FOR SYSTEM_TIME AS OF on \"{name}\", which is not a table or a materialized view"
            ),
            "a lookup join looks rows up in a table (CREATE TABLE) or a materialized view; to join two streams, bound their times (an interval join) or join them without FOR SYSTEM_TIME AS OF",
        ));
    }
    if left.changelog() {
        return Err(misused(
            lookup,
            "a lookup join of an updating input".to_string(),
            "a lookup join keeps no stream rows, so it cannot retract a deleted row's pairs: look up rows of an append-only stream",
        ));
    }
    let (qualifier, name) = &lookup.column;
    let qualifier = qualifier
        .as_deref()
        .map(datafusion::common::TableReference::bare);
    let left_schema = &join.schemas[0];
    // The optimizer prunes the columns a query does not use, the time
    // column too when only the clause names it (it is not read: a lookup
    // happens as each row passes): a column of the stream read under the
    // join counts as well.
    let pruned = || {
        source_under(left).is_some_and(|source| {
            source.input.source.schema().field_with_name(name).is_ok()
                && qualifier
                    .as_ref()
                    .is_none_or(|q| left_schema.iter().any(|(at, _)| at == Some(q)))
        })
    };
    if left_schema
        .index_of_column_by_name(qualifier.as_ref(), name)
        .is_none()
        && !pruned()
    {
        return Err(misused(
            lookup,
            format!(
                "FOR SYSTEM_TIME AS OF {} is not a column of the stream joined with \"{}\"",
                lookup.written, lookup.table
            ),
            "name the time column of the join's left input: s JOIN t FOR SYSTEM_TIME AS OF s.ts",
        ));
    }
    Ok(())
}

/// The source under `node` when it is a source with stateless operators
/// on it (a lookup's table side must be).
fn source_under(node: &StreamNode) -> Option<&super::nodes::StreamSource> {
    match node {
        StreamNode::Source(source) => Some(source),
        StreamNode::Filter(StreamFilter { input, .. })
        | StreamNode::Project(StreamProject { input, .. })
        | StreamNode::Unnest(StreamUnnest { input, .. }) => source_under(input),
        _ => None,
    }
}

/// Refuse a `FOR SYSTEM_TIME AS OF` that no join took (a table read on
/// its own, not as a join's right input), in a query's `steps`.
pub(super) fn check_all_used(steps: &[Step], lookups: &[LookupUse]) -> Result<()> {
    fn used<'s>(steps: &'s [Step], out: &mut Vec<&'s str>) {
        for step in steps {
            if let Step::Join { left, right, .. } = step {
                out.extend(scanned(right));
                used(left, out);
                used(right, out);
            }
        }
    }
    let mut names = Vec::new();
    used(steps, &mut names);
    match lookups.iter().find(|l| !names.contains(&l.table.as_str())) {
        Some(lookup) => Err(misused(
            lookup,
            format!(
                "FOR SYSTEM_TIME AS OF on \"{}\", which no join looks rows up in",
                lookup.table
            ),
            "FOR SYSTEM_TIME AS OF marks the right input of a join as a lookup table: s JOIN t FOR SYSTEM_TIME AS OF s.ts ON s.k = t.k",
        )),
        None => Ok(()),
    }
}

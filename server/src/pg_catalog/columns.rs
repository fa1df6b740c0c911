//! Column helpers for the derived catalog tables: typed columns by name,
//! rows taken or replaced, and the list columns Postgres keeps as arrays.

use super::*;

pub(super) fn missing(table: &str, column: &str) -> DataFusionError {
    DataFusionError::Internal(format!("{table}.{column} is missing or has another type"))
}

pub(super) fn int32_column(batch: &RecordBatch, name: &str) -> Result<Int32Array> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| missing("pg_catalog", name))?;
    Ok(cast(column, &DataType::Int32)?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| missing("pg_catalog", name))?
        .clone())
}

pub(super) fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| missing("pg_catalog", name))?;
    Ok(cast(column, &DataType::Utf8)?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| missing("pg_catalog", name))?
        .clone())
}

/// `batch` with the named columns replaced (cast to the column's type).
pub(super) fn replace_columns(
    batch: &RecordBatch,
    with: &[(&str, ArrayRef)],
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, values) in with {
        let index = schema.index_of(name)?;
        columns[index] = cast(values, schema.field(index).data_type())?;
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub(super) fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = datafusion::arrow::array::UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

pub(super) fn int16_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)))
}

pub(super) fn int32_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
}

pub(super) fn int16_lists(lists: impl Iterator<Item = Vec<i16>>) -> ListArray {
    ListArray::from_iter_primitive::<Int16Type, _, _>(
        lists.map(|l| Some(l.into_iter().map(Some).collect::<Vec<_>>())),
    )
}

pub(super) fn int32_lists(lists: impl Iterator<Item = Vec<i32>>) -> ListArray {
    ListArray::from_iter_primitive::<Int32Type, _, _>(
        lists.map(|l| Some(l.into_iter().map(Some).collect::<Vec<_>>())),
    )
}

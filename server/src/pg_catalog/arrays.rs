//! Catalog columns that `datafusion-pg-catalog` serves as text where
//! Postgres has arrays: `pg_attribute.attacl` (an `aclitem[]`) and
//! `pg_policy.polroles` (an `oid[]`).
//!
//! psql's `\dp` (and `\z`) runs `array_to_string(attacl, ..)` and
//! `oid = ANY (polroles)`, which DataFusion refuses on text, so the whole
//! listing failed. Here both columns are lists again (their text, `{a,b}`,
//! parsed). What else `\dp` needs of `pg_policy` is in `super::policies`.

use datafusion::arrow::array::{Int32Builder, ListBuilder, StringBuilder};

use super::*;

/// The array columns by table: (table, column, element type).
pub(super) const ARRAY_COLUMNS: &[(&str, &str, DataType)] = &[
    ("pg_attribute", "attacl", DataType::Utf8),
    ("pg_policy", "polroles", DataType::Int32),
];

/// `table`'s schema as the crate has it, its text array columns as lists.
pub(super) fn with_array_columns(table: &str, schema: SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match element_type(table, field.name()) {
            Some(element) => Field::new(
                field.name(),
                DataType::List(Arc::new(Field::new_list_field(element, true))),
                field.is_nullable(),
            ),
            None => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The crate's rows of `table`, its array columns parsed from their text
/// (`{a,b}`; NULL stays NULL) into `schema`'s lists.
pub(super) fn array_rows(
    table: &str,
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let column = batch.column(index);
        columns.push(match element_type(table, field.name()) {
            Some(element) => {
                let text = cast(column, &DataType::Utf8)?;
                let text = text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| missing(table, field.name()))?;
                parse_arrays(text, &element, table, field.name())?
            }
            None => column.clone(),
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn element_type(table: &str, column: &str) -> Option<DataType> {
    ARRAY_COLUMNS
        .iter()
        .find(|(t, c, _)| *t == table && *c == column)
        .map(|(.., element)| element.clone())
}

/// Postgres's array text (`{a,b}`, `{}`) as a list of `element`s. The
/// items are names and numbers (no quoting or nesting in these columns).
fn parse_arrays(
    text: &StringArray,
    element: &DataType,
    table: &str,
    column: &str,
) -> Result<ArrayRef> {
    let items = |value: &str| -> Vec<String> {
        value
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .map(|item| item.trim().trim_matches('"').to_string())
            .filter(|item| !item.is_empty())
            .collect()
    };
    Ok(match element {
        DataType::Int32 => {
            let mut lists = ListBuilder::new(Int32Builder::new());
            for value in text.iter() {
                match value {
                    Some(value) => {
                        for item in items(value) {
                            let number = item.parse::<i32>().map_err(|_| {
                                DataFusionError::Internal(format!(
                                    "{table}.{column} holds {value:?}, not an array of oids"
                                ))
                            })?;
                            lists.values().append_value(number);
                        }
                        lists.append(true);
                    }
                    None => lists.append(false),
                }
            }
            Arc::new(lists.finish())
        }
        _ => {
            let mut lists = ListBuilder::new(StringBuilder::new());
            for value in text.iter() {
                match value {
                    Some(value) => {
                        for item in items(value) {
                            lists.values().append_value(item);
                        }
                        lists.append(true);
                    }
                    None => lists.append(false),
                }
            }
            Arc::new(lists.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_text_parses_into_lists() {
        let text = StringArray::from(vec![Some("{alice=r/weir,=a/weir}"), None, Some("{}")]);
        let lists = parse_arrays(&text, &DataType::Utf8, "pg_attribute", "attacl").expect("parse");
        let lists = lists.as_any().downcast_ref::<ListArray>().expect("list");
        assert_eq!(lists.value_length(0), 2);
        assert!(lists.is_null(1));
        assert_eq!(lists.value_length(2), 0);
        let oids = StringArray::from(vec![Some("{0}")]);
        let lists = parse_arrays(&oids, &DataType::Int32, "pg_policy", "polroles").expect("parse");
        assert_eq!(lists.len(), 1);
        let bad = StringArray::from(vec![Some("{x}")]);
        assert!(parse_arrays(&bad, &DataType::Int32, "pg_policy", "polroles").is_err());
    }
}

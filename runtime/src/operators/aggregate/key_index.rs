//! Group numbers for a closing window's partition keys: a plain hash map for
//! the common single BIGINT key, Arrow's row format for anything else. The
//! numbers index DataFusion's `GroupsAccumulator`s.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::common::{HashMap, Result, internal_err};

/// Group numbers for partition keys: a plain hash map for the common single
/// BIGINT key, Arrow's row format for anything else.
pub(super) enum KeyIndex {
    /// No partition key: one group.
    Single { exists: bool },
    /// One Int64 key.
    Int64 {
        map: HashMap<i64, usize>,
        null: Option<usize>,
        keys: Vec<Option<i64>>,
    },
    /// Any keys, row-encoded.
    Rows {
        map: HashMap<Box<[u8]>, usize>,
        rows: Rows,
    },
}

impl KeyIndex {
    pub(super) fn new(types: &[DataType], converter: &RowConverter) -> Self {
        match types {
            [] => KeyIndex::Single { exists: false },
            [DataType::Int64] => KeyIndex::Int64 {
                map: HashMap::default(),
                null: None,
                keys: Vec::new(),
            },
            _ => KeyIndex::Rows {
                map: HashMap::default(),
                rows: converter.empty_rows(0, 0),
            },
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            KeyIndex::Single { exists } => usize::from(*exists),
            KeyIndex::Int64 { keys, .. } => keys.len(),
            KeyIndex::Rows { map, .. } => map.len(),
        }
    }

    /// The group number of each selected row, adding new groups.
    pub(super) fn indices(
        &mut self,
        keys: &[ArrayRef],
        rows: Option<&Rows>,
        selected: &[u32],
    ) -> Result<Vec<usize>> {
        Ok(match self {
            KeyIndex::Single { exists } => {
                *exists = true;
                vec![0; selected.len()]
            }
            KeyIndex::Int64 {
                map,
                null,
                keys: stored,
            } => {
                let array = keys[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                selected
                    .iter()
                    .map(|&row| {
                        let row = row as usize;
                        if array.is_null(row) {
                            *null.get_or_insert_with(|| {
                                stored.push(None);
                                stored.len() - 1
                            })
                        } else {
                            let key = array.value(row);
                            *map.entry(key).or_insert_with(|| {
                                stored.push(Some(key));
                                stored.len() - 1
                            })
                        }
                    })
                    .collect()
            }
            KeyIndex::Rows { map, rows: stored } => {
                let Some(rows) = rows else {
                    return internal_err!("a row-format key index was given no row-encoded keys");
                };
                selected
                    .iter()
                    .map(|&row| {
                        let bytes = rows.row(row as usize);
                        match map.get(bytes.as_ref()) {
                            Some(index) => *index,
                            None => {
                                let next = map.len();
                                map.insert(bytes.as_ref().into(), next);
                                stored.push(bytes);
                                next
                            }
                        }
                    })
                    .collect()
            }
        })
    }

    /// The key columns, in group order.
    pub(super) fn columns(&self, converter: &RowConverter) -> Result<Vec<ArrayRef>> {
        Ok(match self {
            KeyIndex::Single { .. } => Vec::new(),
            KeyIndex::Int64 { keys, .. } => {
                vec![Arc::new(datafusion::arrow::array::Int64Array::from(keys.clone())) as ArrayRef]
            }
            KeyIndex::Rows { rows, .. } => converter.convert_rows(rows)?,
        })
    }
}

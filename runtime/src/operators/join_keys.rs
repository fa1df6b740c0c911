//! Join keys as a join's state finds rows by them: a key of one 64-bit
//! integer, the commonest join key, as the integer itself (hashed and
//! compared as one word), any other key as Arrow row-format bytes.
//!
//! # Correctness
//! - Equal keys give equal [`KeyRef`]s on both sides of a join: the
//!   planner casts both sides' keys to one type, and both sides choose the
//!   integer form from those types alone ([`KeyMap::for_types`],
//!   [`JoinKeys::new`]).
//! - A key with a NULL in any column is none ([`JoinKeys::get`]): it
//!   matches nothing, as in SQL.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, internal_err};

/// Does a key of these types take the integer form?
fn integer_key(types: &[DataType]) -> bool {
    matches!(types, [DataType::Int64])
}

/// The row-format converter of a key of `types`.
pub(crate) fn key_converter(types: Vec<DataType>) -> Result<RowConverter> {
    Ok(RowConverter::new(
        types.into_iter().map(SortField::new).collect(),
    )?)
}

/// A batch's join keys, each row's as a [`KeyRef`].
pub(crate) enum JoinKeys {
    /// One 64-bit integer column.
    Int(Int64Array),
    /// Anything else, in Arrow's row format, with the rows where any key
    /// column is NULL.
    Rows(Rows, Option<NullBuffer>),
}

/// One row's join key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum KeyRef<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl JoinKeys {
    /// The keys of the evaluated key `columns` of a batch, by `converter`
    /// (made by [`key_converter`] for the columns' types).
    pub(crate) fn new(converter: &RowConverter, columns: &[ArrayRef]) -> Result<Self> {
        if let [column] = columns
            && column.data_type() == &DataType::Int64
        {
            return Ok(Self::Int(column.as_primitive::<Int64Type>().clone()));
        }
        let nulls = columns.iter().fold(None, |acc: Option<NullBuffer>, c| {
            NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref())
        });
        Ok(Self::Rows(converter.convert_columns(columns)?, nulls))
    }

    /// Row `i`'s key, or none when a key column is NULL there.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<KeyRef<'_>> {
        match self {
            Self::Int(values) => values.is_valid(i).then(|| KeyRef::Int(values.value(i))),
            Self::Rows(rows, nulls) => match nulls {
                Some(nulls) if nulls.is_null(i) => None,
                _ => Some(KeyRef::Bytes(rows.row(i).data())),
            },
        }
    }
}

/// A map from join keys: integers as themselves, other keys as row-format
/// bytes.
pub(crate) enum KeyMap<V> {
    Int(HashMap<i64, V>),
    Bytes(HashMap<Box<[u8]>, V>),
}

impl<V: Default> KeyMap<V> {
    /// An empty map for keys of `types`.
    pub(crate) fn for_types(types: &[DataType]) -> Self {
        if integer_key(types) {
            Self::Int(HashMap::default())
        } else {
            Self::Bytes(HashMap::default())
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<&V> {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => map.get(&k),
            (Self::Bytes(map), KeyRef::Bytes(k)) => map.get(k),
            _ => None,
        }
    }

    /// The value of `key`, a default one inserted when it has none. Keys are
    /// copied only when new.
    pub(crate) fn get_or_default(&mut self, key: KeyRef<'_>) -> Result<&mut V> {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => Ok(map.entry(k).or_default()),
            (Self::Bytes(map), KeyRef::Bytes(k)) => {
                if !map.contains_key(k) {
                    map.insert(k.into(), V::default());
                }
                match map.get_mut(k) {
                    Some(v) => Ok(v),
                    None => internal_err!("a key just inserted is missing"),
                }
            }
            _ => internal_err!("a join key of the wrong form for its map"),
        }
    }

    pub(crate) fn get_mut(&mut self, key: KeyRef<'_>) -> Option<&mut V> {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => map.get_mut(&k),
            (Self::Bytes(map), KeyRef::Bytes(k)) => map.get_mut(k),
            _ => None,
        }
    }

    /// Every value (in no particular order).
    pub(crate) fn values(&self) -> Box<dyn Iterator<Item = &V> + '_> {
        match self {
            Self::Int(map) => Box::new(map.values()),
            Self::Bytes(map) => Box::new(map.values()),
        }
    }

    /// Every value, to change (in no particular order).
    pub(crate) fn values_mut(&mut self) -> Box<dyn Iterator<Item = &mut V> + '_> {
        match self {
            Self::Int(map) => Box::new(map.values_mut()),
            Self::Bytes(map) => Box::new(map.values_mut()),
        }
    }

    pub(crate) fn remove(&mut self, key: KeyRef<'_>) {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => {
                map.remove(&k);
            }
            (Self::Bytes(map), KeyRef::Bytes(k)) => {
                map.remove(k);
            }
            _ => {}
        }
    }
}

/// A key kept beyond its batch (an index from event time to keys).
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum OwnedKey {
    Int(i64),
    Bytes(Box<[u8]>),
}

impl OwnedKey {
    pub(crate) fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Self::Int(k) => KeyRef::Int(*k),
            Self::Bytes(k) => KeyRef::Bytes(k),
        }
    }
}

impl From<KeyRef<'_>> for OwnedKey {
    fn from(key: KeyRef<'_>) -> Self {
        match key {
            KeyRef::Int(k) => Self::Int(k),
            KeyRef::Bytes(k) => Self::Bytes(k.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;

    use super::*;

    #[test]
    fn keys_of_several_columns_use_the_row_format_and_skip_nulls() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(1)])),
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
        ];
        let converter = key_converter(vec![DataType::Int64, DataType::Utf8]).expect("converter");
        let keys = JoinKeys::new(&converter, &columns).expect("keys");
        assert!(matches!(keys.get(0), Some(KeyRef::Bytes(_))));
        assert_eq!(keys.get(1), None);
        assert_eq!(keys.get(0), keys.get(2));
    }

    #[test]
    fn an_integer_key_is_itself_and_a_map_finds_it() {
        let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![Some(5), None]))];
        let keys = JoinKeys::new(
            &key_converter(vec![DataType::Int64]).expect("converter"),
            &columns,
        )
        .expect("keys");
        assert_eq!(keys.get(0), Some(KeyRef::Int(5)));
        assert_eq!(keys.get(1), None);
        let mut map: KeyMap<Vec<u32>> = KeyMap::for_types(&[DataType::Int64]);
        map.get_or_default(KeyRef::Int(5)).expect("insert").push(1);
        assert_eq!(
            map.get(OwnedKey::from(KeyRef::Int(5)).as_ref()),
            Some(&vec![1])
        );
        map.remove(KeyRef::Int(5));
        assert_eq!(map.get(KeyRef::Int(5)), None);
    }
}

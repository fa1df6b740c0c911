//! `format = 'upsert-json'`: a topic whose messages are each key's latest
//! value, and a tombstone (a message without a value) its delete, read as
//! an updating input. What Flink's `upsert-kafka` and Kafka Streams' KTable
//! read.
//!
//! A view needs each change as a retraction of the old row and an insertion
//! of the new one, so each partition's reader keeps the latest value of
//! every key it has read ([`Upserts`]) and pairs each message with the value
//! it replaces. Producers put a key's messages in one partition (Kafka's
//! default partitioner hashes the key), so per-partition state is whole.
//!
//! # Correctness
//! - The latest values are not in Weir's checkpoints: they are what the
//!   topic itself holds up to the checkpoint's offset, so a reader that
//!   resumes at offset `p` first reads `[earliest, p)` again without
//!   emitting (Kafka Streams restores a KTable from its changelog topic the
//!   same way). A compacted topic keeps that replay short.
//! - Only a value that decodes becomes a key's latest: a batch with bad
//!   messages is undone and applied again without them, so a later
//!   retraction never carries bytes that do not decode.
//! - A message's key is its Kafka key when it has one (a JSON object with
//!   the `PRIMARY KEY` columns, or for a one-column key a bare JSON value
//!   or text), else the key columns of its value; both are reduced to the
//!   same canonical bytes, so `{"id": 1}` and `1` name one key.

use std::collections::HashMap;

use serde_json::Value;

use super::format::{BadRecord, Record};

/// The latest value of every key one partition has read.
#[derive(Debug)]
pub(super) struct Upserts {
    /// The `PRIMARY KEY` columns.
    key: Vec<String>,
    /// Canonical key bytes to the latest value's payload.
    latest: HashMap<Vec<u8>, Vec<u8>>,
}

/// What applying a batch did, message by message.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// Per message: the value it replaces (to retract).
    pub retract: Vec<Option<Vec<u8>>>,
    /// Per message: does its own value go out (`false` for a tombstone, a
    /// value equal to the one it replaces, and a message left out)?
    pub insert: Vec<bool>,
    /// Per message: its key, where it changed the latest values (for undo).
    changed: Vec<Option<Vec<u8>>>,
    /// Messages whose key could not be read.
    pub bad: Vec<BadRecord>,
}

impl Applied {
    /// `records` as the decoder takes them: each with the value it retracts,
    /// and without its own value where that does not go out.
    pub fn records<'a>(&'a self, records: &[Record<'a>]) -> Vec<Record<'a>> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                payload: if self.insert[i] { r.payload } else { None },
                retract: self.retract[i].as_deref(),
                ..*r
            })
            .collect()
    }
}

impl Upserts {
    /// A partition's state, empty, for a stream keyed by `key`.
    pub fn new(key: Vec<String>) -> Self {
        Self {
            key,
            latest: HashMap::new(),
        }
    }

    /// How many keys have a value now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.latest.len()
    }

    /// Apply `records` in order, leaving out those marked in `skip`.
    pub fn apply(&mut self, records: &[Record<'_>], skip: &[bool]) -> Applied {
        let mut applied = Applied::default();
        for (i, record) in records.iter().enumerate() {
            let mut retract = None;
            let mut insert = false;
            let mut changed = None;
            if !skip.get(i).copied().unwrap_or(false) {
                match self.key_of(record) {
                    Err(error) => applied.bad.push(BadRecord { index: i, error }),
                    Ok(key) => {
                        let before = match record.payload {
                            Some(value) => {
                                if self.latest.get(&key).map(Vec::as_slice) == Some(value) {
                                    // The same value again: no change.
                                    None
                                } else {
                                    insert = true;
                                    Some(self.latest.insert(key.clone(), value.to_vec()))
                                }
                            }
                            None => Some(self.latest.remove(&key)),
                        };
                        if let Some(before) = before {
                            retract = before;
                            changed = Some(key);
                        }
                    }
                }
            }
            applied.retract.push(retract);
            applied.insert.push(insert);
            applied.changed.push(changed);
        }
        applied
    }

    /// Take back everything `applied` changed, newest first.
    pub fn undo(&mut self, applied: Applied) {
        let changes = applied.changed.into_iter().zip(applied.retract).rev();
        for (key, before) in changes {
            let Some(key) = key else { continue };
            match before {
                Some(value) => self.latest.insert(key, value),
                None => self.latest.remove(&key),
            };
        }
    }

    /// The canonical bytes of `record`'s key.
    fn key_of(&self, record: &Record<'_>) -> Result<Vec<u8>, String> {
        let (source, from_key) = match (record.key, record.payload) {
            (Some(key), _) => (
                serde_json::from_slice(key)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(key).into_owned())),
                true,
            ),
            (None, Some(value)) => (
                serde_json::from_slice(value).map_err(|e| format!("invalid json: {e}"))?,
                false,
            ),
            (None, None) => {
                return Err("a tombstone without a key: an upsert-json message needs a key".into());
            }
        };
        let fields: Vec<&Value> = match &source {
            Value::Object(object) => self
                .key
                .iter()
                .map(|column| {
                    object.get(column).ok_or_else(|| {
                        let whose = if from_key { "key" } else { "value" };
                        format!("the message's {whose} has no \"{column}\" (a PRIMARY KEY column)")
                    })
                })
                .collect::<Result<_, _>>()?,
            scalar if from_key && self.key.len() == 1 => vec![scalar],
            _ => {
                return Err(format!(
                    "the message's key must be a JSON object with {}",
                    self.key.join(", ")
                ));
            }
        };
        serde_json::to_vec(&fields).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: Option<&'a str>, value: Option<&'a str>) -> Record<'a> {
        Record {
            payload: value.map(str::as_bytes),
            key: key.map(str::as_bytes),
            retract: None,
            partition: 0,
            offset: 0,
            timestamp_ms: None,
        }
    }

    fn text(bytes: &Option<Vec<u8>>) -> Option<&str> {
        bytes
            .as_deref()
            .map(|b| std::str::from_utf8(b).expect("utf-8"))
    }

    #[test]
    fn a_value_retracts_the_one_it_replaces_and_a_tombstone_deletes() {
        let mut state = Upserts::new(vec!["id".into()]);
        let records = [
            record(Some("1"), Some(r#"{"id": 1, "v": "a"}"#)),
            record(Some(r#"{"id": 1}"#), Some(r#"{"id": 1, "v": "b"}"#)),
            record(None, Some(r#"{"id": 1, "v": "b"}"#)),
            record(Some("1"), None),
            record(Some("2"), None),
        ];
        let applied = state.apply(&records, &[]);
        assert!(applied.bad.is_empty());
        let retracts: Vec<Option<&str>> = applied.retract.iter().map(text).collect();
        assert_eq!(
            retracts,
            [
                None,
                Some(r#"{"id": 1, "v": "a"}"#),
                None,
                Some(r#"{"id": 1, "v": "b"}"#),
                None
            ]
        );
        // The same value again and the tombstones insert nothing.
        assert_eq!(applied.insert, [true, true, false, false, false]);
        assert_eq!(state.len(), 0);
    }

    #[test]
    fn undo_takes_a_batch_back_and_skipped_messages_change_nothing() {
        let mut state = Upserts::new(vec!["id".into()]);
        state.apply(&[record(Some("1"), Some(r#"{"id":1,"v":0}"#))], &[]);
        let batch = [
            record(Some("1"), Some(r#"{"id":1,"v":1}"#)),
            record(Some("2"), Some(r#"{"id":2,"v":1}"#)),
            record(Some("1"), None),
        ];
        let applied = state.apply(&batch, &[]);
        assert_eq!(state.len(), 1);
        state.undo(applied);
        assert_eq!(state.len(), 1);
        let again = state.apply(&batch, &[false, true, false]);
        assert_eq!(text(&again.retract[0]), Some(r#"{"id":1,"v":0}"#));
        assert_eq!(again.insert, [true, false, false]);
        assert_eq!(text(&again.retract[2]), Some(r#"{"id":1,"v":1}"#));
        assert_eq!(state.len(), 0);
    }

    #[test]
    fn keys_come_from_the_key_or_the_value_and_must_name_every_column() {
        let mut state = Upserts::new(vec!["a".into(), "b".into()]);
        let applied = state.apply(
            &[
                record(
                    Some(r#"{"a": 1, "b": "x"}"#),
                    Some(r#"{"a":1,"b":"x","v":1}"#),
                ),
                record(None, Some(r#"{"b":"x","a":1,"v":2}"#)),
                record(Some("7"), Some(r#"{"a":7,"b":"y"}"#)),
                record(None, None),
                record(None, Some("{not json")),
            ],
            &[],
        );
        assert_eq!(text(&applied.retract[1]), Some(r#"{"a":1,"b":"x","v":1}"#));
        let bad: Vec<usize> = applied.bad.iter().map(|b| b.index).collect();
        assert_eq!(bad, [2, 3, 4]);
        assert!(
            applied.bad[0].error.contains("a, b"),
            "{:?}",
            applied.bad[0]
        );
    }
}

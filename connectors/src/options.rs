//! The `WITH (key = 'value', ...)` options of a connector.
//!
//! Keys are case-insensitive; every key must be consumed by the connector that
//! reads the bag, so a typo (`delimter`) is an error, not silently ignored.
//! Which keys a connector accepts is declared once, in its
//! [`Connector::options`](crate::registry::Connector::options).

use std::collections::BTreeMap;

use crate::error::{ConnectorError, Result};

/// The options of one `CREATE ... WITH (...)`, consumed as they are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorOptions {
    values: BTreeMap<String, String>,
}

impl ConnectorOptions {
    /// Build from key/value pairs; later duplicates win.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let values = pairs
            .into_iter()
            .map(|(k, v)| (k.into().to_ascii_lowercase(), v.into()))
            .collect();
        Self { values }
    }

    /// All options, for storing in the catalog.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Is the bag empty?
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Take an optional string option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    /// Take a required string option.
    pub fn require(&mut self, connector: &str, key: &'static str) -> Result<String> {
        self.take(key).ok_or_else(|| ConnectorError::MissingOption {
            connector: connector.to_string(),
            option: key,
        })
    }

    /// Take an optional boolean option (`true/false`, `on/off`, `yes/no`, `1/0`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" | "t" => Ok(Some(true)),
            "false" | "off" | "no" | "0" | "f" => Ok(Some(false)),
            _ => Err(ConnectorError::InvalidOption {
                option: key.to_string(),
                value,
                reason: "expected a boolean".to_string(),
            }),
        }
    }

    /// Take an optional single-byte option (a delimiter, a quote).
    pub fn take_char(&mut self, key: &str) -> Result<Option<u8>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let decoded = match value.as_str() {
            "\\t" | "tab" => "\t",
            other => other,
        };
        match decoded.as_bytes() {
            [b] if b.is_ascii() => Ok(Some(*b)),
            _ => Err(ConnectorError::InvalidOption {
                option: key.to_string(),
                value,
                reason: "expected a single ASCII character".to_string(),
            }),
        }
    }

    /// Take `on_error` and the option naming where dead letters go
    /// (`dead_letter_key`: a Kafka topic, a file): the same words for every
    /// source that decodes records, so a user learns them once.
    pub fn take_on_error(
        &mut self,
        connector: &str,
        dead_letter_key: &'static str,
    ) -> Result<OnError> {
        let target = self.take(dead_letter_key);
        let on_error = match self
            .take("on_error")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("fail") => OnError::Fail,
            Some("skip") => OnError::Skip,
            Some("dead_letter") => OnError::DeadLetter(target.clone().ok_or_else(|| {
                ConnectorError::MissingOption {
                    connector: connector.to_string(),
                    option: dead_letter_key,
                }
            })?),
            Some(other) => {
                return Err(ConnectorError::InvalidOption {
                    option: "on_error".into(),
                    value: other.to_string(),
                    reason: "expected fail, skip or dead_letter".into(),
                });
            }
        };
        if let (Some(target), false) = (&target, matches!(on_error, OnError::DeadLetter(_))) {
            return Err(ConnectorError::InvalidOption {
                option: dead_letter_key.into(),
                value: target.clone(),
                reason: "only used with on_error = 'dead_letter'".into(),
            });
        }
        Ok(on_error)
    }

    /// Fail on the first option nobody consumed.
    pub fn finish(self, connector: &str) -> Result<()> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(option) => Err(ConnectorError::UnknownOption {
                connector: connector.to_string(),
                option,
                accepts: None,
            }),
        }
    }
}

/// What a source does with a record it cannot decode (`on_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    /// The query or job fails, naming the record (the default: bad input
    /// is never dropped unless the user said so).
    Fail,
    /// It is dropped, and counted in `weir_bad_rows_total`.
    Skip,
    /// Its raw bytes go to this target (a topic, a file), with the error
    /// and its position, and it is counted.
    DeadLetter(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_options_are_errors() {
        let mut opts = ConnectorOptions::new([("Path", "a.csv"), ("delimter", ";")]);
        assert_eq!(opts.take("path").as_deref(), Some("a.csv"));
        let err = opts.finish("file").expect_err("a typo must not pass");
        assert_eq!(
            err.to_string(),
            "unknown option \"delimter\" for connector \"file\""
        );
    }

    #[test]
    fn booleans_and_chars_parse_like_postgres() {
        let mut opts =
            ConnectorOptions::new([("header", "off"), ("delimiter", "\\t"), ("quote", "ab")]);
        assert_eq!(opts.take_bool("header").expect("bool"), Some(false));
        assert_eq!(opts.take_char("delimiter").expect("char"), Some(b'\t'));
        assert!(opts.take_char("quote").is_err());
    }

    #[test]
    fn on_error_needs_its_target_and_only_then() {
        let mut opts = ConnectorOptions::new([("on_error", "Skip")]);
        assert_eq!(
            opts.take_on_error("file", "dead_letter_path")
                .expect("skip"),
            OnError::Skip
        );
        let mut opts = ConnectorOptions::new([("on_error", "dead_letter")]);
        assert!(opts.take_on_error("file", "dead_letter_path").is_err());
        let mut opts = ConnectorOptions::new([("dead_letter_path", "bad.jsonl")]);
        assert!(opts.take_on_error("file", "dead_letter_path").is_err());
        let mut opts =
            ConnectorOptions::new([("on_error", "dead_letter"), ("dead_letter_path", "b")]);
        assert_eq!(
            opts.take_on_error("file", "dead_letter_path")
                .expect("dead letter"),
            OnError::DeadLetter("b".into())
        );
        let mut opts = ConnectorOptions::new([("on_error", "ignore")]);
        assert!(opts.take_on_error("file", "dead_letter_path").is_err());
    }
}

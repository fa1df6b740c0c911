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
}

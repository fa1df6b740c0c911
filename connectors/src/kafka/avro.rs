//! Avro payloads with a schema given inline (`avro_schema = '{...}'`),
//! decoded by `arrow-avro` straight into Arrow columns.
//!
//! A message is one Avro datum: the bare binary encoding (`avro_framing =
//! 'none'`, as Flink's `avro` format writes it) or Confluent's wire format
//! (`'confluent'`: a zero byte and a four-byte schema id before the datum;
//! the id is not looked up, the inline schema is the writer's schema).
//!
//! `arrow-avro`'s streaming decoder reads framed messages only, so each datum
//! is fed behind a fixed synthetic Confluent header naming the one schema it
//! knows: no copy of the payload, one decoder for a whole batch of messages.
//! Columns are matched to the stream's by name (exactly, else ignoring case)
//! and cast to the declared types; the match is checked when the stream is
//! created, so a message can fail only on its own bytes.

use std::sync::Arc;

use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::{ConnectorError, Result};
use crate::options::ConnectorOptions;

/// The schema id of the synthetic header each datum is fed behind.
const ID: u32 = 0;
/// That header: Confluent's magic byte and [`ID`], big-endian.
const HEADER: [u8; 5] = [0, 0, 0, 0, 0];

/// How a datum sits in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The message is the datum.
    None,
    /// A zero byte and a four-byte schema id, then the datum.
    Confluent,
}

/// An Avro payload format: the writer's schema and the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avro {
    /// The schema, as JSON text.
    schema: String,
    framing: Framing,
}

impl Avro {
    /// Take `avro_schema` (required) and `avro_framing` from `options`.
    pub fn from_options(options: &mut ConnectorOptions) -> Result<Self> {
        let schema = options.require(super::CONNECTOR, "avro_schema")?;
        let framing = match options.take("avro_framing") {
            None => Framing::None,
            Some(f) => match f.to_ascii_lowercase().as_str() {
                "none" => Framing::None,
                "confluent" => Framing::Confluent,
                _ => {
                    return Err(ConnectorError::InvalidOption {
                        option: "avro_framing".into(),
                        value: f,
                        reason: "expected none or confluent".into(),
                    });
                }
            },
        };
        let avro = Self { schema, framing };
        // A schema that does not parse is refused when the stream is created.
        avro.decoder(1)?;
        Ok(avro)
    }

    /// No Avro options may be given for another format.
    pub fn refuse_options(options: &mut ConnectorOptions, format: &str) -> Result<()> {
        for option in ["avro_schema", "avro_framing"] {
            if let Some(value) = options.take(option) {
                return Err(ConnectorError::InvalidOption {
                    option: option.into(),
                    value,
                    reason: format!("only the avro format takes it, not {format}"),
                });
            }
        }
        Ok(())
    }

    fn decoder(&self, rows: usize) -> Result<arrow_avro::reader::Decoder> {
        let invalid = |reason: String| ConnectorError::InvalidOption {
            option: "avro_schema".into(),
            value: self.schema.clone(),
            reason,
        };
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store
            .set(Fingerprint::Id(ID), AvroSchema::new(self.schema.clone()))
            .map_err(|e| invalid(e.to_string()))?;
        ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_batch_size(rows.max(1))
            .build_decoder()
            .map_err(|e| invalid(e.to_string()))
    }

    /// Check that every column of `payload` (the stream's columns read from
    /// the message) is a field of the record, of a type that casts to it.
    pub fn check(&self, payload: &SchemaRef) -> Result<()> {
        let record = self.decoder(1)?.schema();
        for field in payload.fields() {
            let invalid = |reason: String| ConnectorError::InvalidOption {
                option: "avro_schema".into(),
                value: self.schema.clone(),
                reason,
            };
            let Some(index) = find(&record, field.name()) else {
                return Err(invalid(format!(
                    "the record has no field \"{}\" for the stream's column of that name",
                    field.name()
                )));
            };
            let from = record.field(index).data_type();
            if !can_cast_types(from, field.data_type()) {
                return Err(invalid(format!(
                    "field \"{}\" is {from} in Avro, which cannot be read as the column's {}",
                    field.name(),
                    field.data_type()
                )));
            }
        }
        Ok(())
    }

    /// The datum in `message`.
    pub fn datum<'a>(&self, message: &'a [u8]) -> std::result::Result<&'a [u8], String> {
        match self.framing {
            Framing::None => Ok(message),
            Framing::Confluent => match message {
                [0, _, _, _, _, datum @ ..] => Ok(datum),
                _ => {
                    Err("not in Confluent's wire format (a zero byte and a schema id first)".into())
                }
            },
        }
    }

    /// Decode `datums`, exactly one row each, into the columns of `payload`.
    pub fn decode<'a>(
        &self,
        datums: impl ExactSizeIterator<Item = &'a [u8]>,
        payload: &SchemaRef,
    ) -> std::result::Result<RecordBatch, String> {
        let rows = datums.len();
        let mut decoder = self.decoder(rows + 1).map_err(|e| e.to_string())?;
        for datum in datums {
            let header = decoder.decode(&HEADER).map_err(|e| e.to_string())?;
            let body = decoder.decode(datum).map_err(|e| e.to_string())?;
            if header != HEADER.len() || body != datum.len() {
                return Err(format!(
                    "not one avro datum of the stream's schema ({} of {} bytes read)",
                    body,
                    datum.len()
                ));
            }
        }
        let record = match decoder.flush().map_err(|e| e.to_string())? {
            Some(batch) => batch,
            None => RecordBatch::new_empty(decoder.schema()),
        };
        if record.num_rows() != rows {
            return Err(format!(
                "expected one row per message, got {} from {rows}",
                record.num_rows()
            ));
        }
        let schema = record.schema();
        let mut columns = Vec::with_capacity(payload.fields().len());
        for field in payload.fields() {
            let index = find(&schema, field.name())
                .ok_or_else(|| format!("the record has no field \"{}\"", field.name()))?;
            let column = record.column(index);
            columns.push(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast(column, field.data_type()).map_err(|e| e.to_string())?
            });
        }
        RecordBatch::try_new(Arc::clone(payload), columns).map_err(|e| e.to_string())
    }
}

/// The record field for column `name`: the same name, else the one name that
/// matches ignoring case (SQL folds unquoted names to lower case, Avro keeps
/// them as written).
fn find(record: &SchemaRef, name: &str) -> Option<usize> {
    if let Some((index, _)) = record.column_with_name(name) {
        return Some(index);
    }
    let mut matches = record
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name().eq_ignore_ascii_case(name));
    match (matches.next(), matches.next()) {
        (Some((index, _)), None) => Some(index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};

    const SCHEMA: &str = r#"{"type": "record", "name": "Bid", "fields": [
        {"name": "auction", "type": "long"},
        {"name": "Price", "type": "double"},
        {"name": "bidder", "type": ["null", "string"]}
    ]}"#;

    /// Avro's zig-zag varint, written here independently of the decoder.
    fn long(v: i64, out: &mut Vec<u8>) {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn bid(auction: i64, price: f64, bidder: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        long(auction, &mut out);
        out.extend_from_slice(&price.to_le_bytes());
        match bidder {
            None => long(0, &mut out),
            Some(s) => {
                long(1, &mut out);
                long(s.len() as i64, &mut out);
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    fn avro(framing: Framing) -> Avro {
        Avro {
            schema: SCHEMA.into(),
            framing,
        }
    }

    fn payload() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("price", DataType::Float64, true),
            Field::new("auction", DataType::Int64, true),
            Field::new("bidder", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn datums_decode_by_name_in_declared_order() {
        let avro = avro(Framing::None);
        avro.check(&payload()).unwrap();
        let messages = [bid(7, 1.5, Some("ann")), bid(-300, 2.25, None)];
        let batch = avro
            .decode(messages.iter().map(|m| m.as_slice()), &payload())
            .unwrap();
        assert_eq!(batch.num_rows(), 2);
        let price = batch.column(0).as_primitive::<Float64Type>();
        assert_eq!(price.values(), &[1.5, 2.25]);
        let auction = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(auction, &Int64Array::from(vec![7, -300]));
        let bidder = batch.column(2).as_string::<i32>();
        assert_eq!(bidder.value(0), "ann");
        assert!(bidder.is_null(1));
    }

    #[test]
    fn confluent_framing_skips_the_header() {
        let avro = avro(Framing::Confluent);
        let mut framed = vec![0, 0, 0, 0, 42];
        framed.extend(bid(1, 0.5, None));
        let datum = avro.datum(&framed).unwrap();
        let batch = avro.decode([datum].into_iter(), &payload()).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert!(avro.datum(b"{\"auction\": 1}").is_err());
    }

    #[test]
    fn short_and_long_datums_are_errors() {
        let avro = avro(Framing::None);
        let good = bid(1, 0.5, Some("bo"));
        let short = &good[..good.len() - 1];
        assert!(avro.decode([short].into_iter(), &payload()).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(
            avro.decode([long.as_slice()].into_iter(), &payload())
                .is_err()
        );
    }

    #[test]
    fn a_column_the_record_lacks_is_refused_up_front() {
        let avro = avro(Framing::None);
        let wrong = Arc::new(Schema::new(vec![Field::new(
            "seller",
            DataType::Int64,
            true,
        )]));
        let err = avro.check(&wrong).unwrap_err().to_string();
        assert!(err.contains("no field \"seller\""), "{err}");
        let bad = Avro {
            schema: "{not json".into(),
            framing: Framing::None,
        };
        assert!(bad.check(&payload()).is_err());
    }
}

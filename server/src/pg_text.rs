//! Postgres's text output for the types where `arrow-pg`/`pgwire` print
//! something else: floats (`30` not `30.0`, `Infinity` not `inf`) and
//! timestamps and times (fractional seconds only when there are any,
//! `timestamptz` in the session's time zone with its offset).
//!
//! Columns sent in text format are converted to strings before encoding; the
//! row description keeps the real type, so clients still see `float8` or
//! `timestamp`. Binary format is untouched.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::temporal_conversions::as_datetime;

/// Does a column of this type need Weir's text form?
pub fn needs_rewrite(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_)
    )
}

/// Replace the columns at `text_columns` by their Postgres text form.
/// `time_zone` is the session's, for `timestamptz`.
pub fn rewrite_batch(batch: &RecordBatch, text_columns: &[usize], time_zone: &str) -> RecordBatch {
    if text_columns.is_empty() {
        return batch.clone();
    }
    let zone: Option<Tz> = time_zone.parse().ok();
    let mut columns = batch.columns().to_vec();
    for &i in text_columns {
        if let Some(text) = column_text(&columns[i], zone) {
            columns[i] = text;
        }
    }
    // Field types stay as they were: only the encoder sees strings.
    let fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    RecordBatch::try_new(schema, columns).unwrap_or_else(|_| batch.clone())
}

fn column_text(array: &ArrayRef, zone: Option<Tz>) -> Option<ArrayRef> {
    let strings: StringArray = match array.data_type() {
        DataType::Float64 => map(array.as_primitive::<Float64Type>().iter(), |v| {
            float_text(v, 15)
        }),
        DataType::Float32 => map(array.as_primitive::<Float32Type>().iter(), |v| {
            float_text(f64::from(v), 6)
        }),
        DataType::Float16 => map(array.as_primitive::<Float16Type>().iter(), |v| {
            float_text(f64::from(v), 3)
        }),
        DataType::Timestamp(unit, tz) => {
            let naive: Vec<Option<NaiveDateTime>> = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .iter()
                    .map(|v| v.and_then(as_datetime::<TimestampSecondType>))
                    .collect(),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .map(|v| v.and_then(as_datetime::<TimestampMillisecondType>))
                    .collect(),
                TimeUnit::Microsecond => array
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .map(|v| v.and_then(as_datetime::<TimestampMicrosecondType>))
                    .collect(),
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .iter()
                    .map(|v| v.and_then(as_datetime::<TimestampNanosecondType>))
                    .collect(),
            };
            match tz {
                None => map(naive.into_iter(), |ts| timestamp_text(&ts)),
                Some(_) => map(naive.into_iter(), |utc| timestamptz_text(utc, zone)),
            }
        }
        DataType::Time32(TimeUnit::Second) => {
            map(array.as_primitive::<Time32SecondType>().iter(), |s| {
                time_text(i64::from(s) * 1_000_000_000)
            })
        }
        DataType::Time32(_) => map(array.as_primitive::<Time32MillisecondType>().iter(), |ms| {
            time_text(i64::from(ms) * 1_000_000)
        }),
        DataType::Time64(TimeUnit::Microsecond) => {
            map(array.as_primitive::<Time64MicrosecondType>().iter(), |us| {
                time_text(us * 1_000)
            })
        }
        DataType::Time64(_) => map(
            array.as_primitive::<Time64NanosecondType>().iter(),
            time_text,
        ),
        _ => return None,
    };
    Some(Arc::new(strings))
}

fn map<T>(values: impl Iterator<Item = Option<T>>, f: impl Fn(T) -> String) -> StringArray {
    values.map(|v| v.map(&f)).collect()
}

/// A float as Postgres 12+ prints it (shortest exact digits; exponent form
/// outside 1e-4 .. 1e`precision`).
pub fn float_text(value: f64, precision: i32) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip.
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if exponent < -4 || exponent >= precision {
        let rest = &digits[1..];
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        return format!(
            "{sign}{}{dot}e{exp_sign}{:02}",
            &digits[..1],
            exponent.abs()
        );
    }
    if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exponent as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

fn fraction(nanos: u32) -> String {
    // Postgres keeps microseconds and prints no trailing zeros.
    let micros = (nanos + 500) / 1000;
    if micros == 0 {
        return String::new();
    }
    let text = format!(".{micros:06}");
    text.trim_end_matches('0').to_string()
}

fn timestamp_text(ts: &NaiveDateTime) -> String {
    format!(
        "{}{}",
        ts.format("%Y-%m-%d %H:%M:%S"),
        fraction(ts.nanosecond())
    )
}

fn timestamptz_text(utc: NaiveDateTime, zone: Option<Tz>) -> String {
    let zone = zone.unwrap_or_else(|| "+00:00".parse().expect("UTC parses"));
    let local: DateTime<Tz> = zone.from_utc_datetime(&utc);
    let offset = local.offset().fix().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let (hours, minutes) = (offset.abs() / 3600, (offset.abs() % 3600) / 60);
    let offset_text = if minutes == 0 {
        format!("{sign}{hours:02}")
    } else {
        format!("{sign}{hours:02}:{minutes:02}")
    };
    format!("{}{offset_text}", timestamp_text(&local.naive_local()))
}

fn time_text(nanos_since_midnight: i64) -> String {
    let secs = nanos_since_midnight.div_euclid(1_000_000_000);
    let nanos = nanos_since_midnight.rem_euclid(1_000_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, nanos) {
        Some(t) => format!("{}{}", t.format("%H:%M:%S"), fraction(nanos)),
        None => "24:00:00".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMicrosecondArray;

    #[test]
    fn floats_print_like_postgres() {
        let cases = [
            (30.0, "30"),
            (12.5, "12.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e20, "1e+20"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_text(value, 15), expected, "{value}");
        }
    }

    #[test]
    fn timestamps_print_like_postgres() {
        let array: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_704_103_200_000_000),
            Some(1_704_103_200_123_400),
            None,
        ]));
        let text = column_text(&array, None).expect("rewritten");
        let text = text.as_string::<i32>();
        assert_eq!(text.value(0), "2024-01-01 10:00:00");
        assert_eq!(text.value(1), "2024-01-01 10:00:00.1234");
        assert!(datafusion::arrow::array::Array::is_null(text, 2));

        let tz: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![1_704_103_200_000_000]).with_timezone("UTC"),
        );
        let berlin = column_text(&tz, "Europe/Berlin".parse().ok()).expect("rewritten");
        assert_eq!(berlin.as_string::<i32>().value(0), "2024-01-01 11:00:00+01");
    }
}

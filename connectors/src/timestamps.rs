//! A fast path for the most common CSV timestamp text,
//! `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`), without a time zone.
//!
//! Reading timestamps from CSV was a fifth of the tumbling-window
//! benchmark's CPU in Arrow's general parser. Timestamp columns of a CSV file
//! are read as text and converted by `weir_parse_timestamp`: the fixed
//! layout above is parsed with integer arithmetic; if any value of a batch
//! has another shape, the whole column goes through Arrow's cast instead, so
//! the result is always exactly what Arrow's parser gives.

use std::sync::Arc;

use crate::error::ConnectorError;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// `weir_parse_timestamp(text)` into `target` (a zone-less timestamp type).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParseTimestamp {
    target: DataType,
    signature: Signature,
}

impl ParseTimestamp {
    /// Parse into `target`.
    pub fn new(target: DataType) -> Self {
        Self {
            target,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ParseTimestamp {
    fn name(&self) -> &str {
        "weir_parse_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(parse(&input, &self.target)?))
    }
}

/// Parse the text in `input` into `target` (see the module's note).
pub(crate) fn parse(input: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    let text = cast(input, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut values = Vec::with_capacity(text.len());
    // Rows of a batch mostly share their day: its date is parsed once.
    let mut day: Option<([u8; 10], i64)> = None;
    for i in 0..text.len() {
        if text.is_null(i) {
            values.push(0);
            continue;
        }
        match fast(text.value(i).as_bytes(), &mut day) {
            Some(ns) => values.push(ns),
            // Another shape: Arrow's parser for the whole column.
            None => return cast_strictly(input, target),
        }
    }
    let nanos: ArrayRef = Arc::new(TimestampNanosecondArray::new(
        values.into(),
        text.nulls().cloned(),
    ));
    if target == &DataType::Timestamp(TimeUnit::Nanosecond, None) {
        Ok(nanos)
    } else {
        Ok(cast(&nanos, target)?)
    }
}

/// Arrow's cast, except that text it cannot read is an error naming the
/// value (as Postgres's), never a NULL that hides bad input.
fn cast_strictly(input: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    let parsed = cast(input, target)?;
    if parsed.null_count() == input.null_count() {
        return Ok(parsed);
    }
    let text = cast(input, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let bad = (0..text.len())
        .find(|&i| !text.is_null(i) && parsed.is_null(i))
        .map_or("", |i| text.value(i));
    Err(bad_timestamp(bad).into())
}

/// Why `text` is not a timestamp, in Postgres's words: a value of the right
/// shape with a field out of range (`2024-02-30 00:00:00`), or anything else.
pub(crate) fn bad_timestamp(text: &str) -> ConnectorError {
    let s = text.as_bytes();
    let shaped = s.len() >= 19
        && s[4] == b'-'
        && s[7] == b'-'
        && (s[10] == b' ' || s[10] == b'T')
        && s[13] == b':'
        && s[16] == b':'
        && [
            &s[0..4],
            &s[5..7],
            &s[8..10],
            &s[11..13],
            &s[14..16],
            &s[17..19],
        ]
        .iter()
        .all(|part| digits(part).is_some());
    if shaped {
        ConnectorError::TimestampOutOfRange {
            value: text.to_string(),
            at: String::new(),
        }
    } else {
        ConnectorError::InvalidTimestamp {
            value: text.to_string(),
            at: String::new(),
        }
    }
}

fn digits(bytes: &[u8]) -> Option<i64> {
    let mut value = 0i64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(value)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}]` as nanoseconds since the epoch.
/// `day` holds the last date seen and its day number.
fn fast(s: &[u8], day: &mut Option<([u8; 10], i64)>) -> Option<i64> {
    if s.len() < 19 || (s[10] != b' ' && s[10] != b'T') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let date: [u8; 10] = s[..10].try_into().ok()?;
    let days = match *day {
        Some((seen, days)) if seen == date => days,
        _ => {
            let days = days_of(&date)?;
            *day = Some((date, days));
            days
        }
    };
    let (hour, minute, second) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut nanos = 0i64;
    if s.len() > 19 {
        let fraction = &s[20..];
        if s[19] != b'.' || fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        nanos = digits(fraction)? * 10i64.pow(9 - fraction.len() as u32);
    }
    // Nanoseconds since the epoch fit an i64 only from 1677 to 2262: a
    // date outside (fuzzing found year 3144) goes to Arrow's parser, which
    // says it is out of range, instead of wrapping round to a wrong time.
    (days * 86_400 + hour * 3600 + minute * 60 + second)
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// `YYYY-MM-DD` as days since 1970-01-01, if it is a real date.
fn days_of(s: &[u8; 10]) -> Option<i64> {
    if s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn agrees_with_arrow() {
        let texts = StringArray::from(vec![
            Some("2024-01-01 10:00:00"),
            Some("2024-02-29T23:59:59.123"),
            Some("1969-12-31 23:59:59.5"),
            None,
            Some("2000-03-01 00:00:00.000000001"),
            Some("2000-03-01 00:00:01"),
            Some("2000-02-29 00:00:01"),
        ]);
        let input: ArrayRef = Arc::new(texts);
        let target = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let ours = parse(&input, &target).expect("parse");
        let arrow = cast(&input, &target).expect("cast");
        assert_eq!(ours.as_ref(), arrow.as_ref());
        // Another shape falls back to Arrow for the whole column.
        let odd: ArrayRef = Arc::new(StringArray::from(vec!["2024-01-01 10:00:00", "2024-01-01"]));
        assert_eq!(
            parse(&odd, &target).expect("parse").as_ref(),
            cast(&odd, &target).expect("cast").as_ref()
        );
        // A date that is not a real one, after a good one of the same
        // batch, is still judged (the remembered day does not hide it).
        let bad: ArrayRef = Arc::new(StringArray::from(vec![
            "2023-02-28 10:00:00",
            "2023-02-29 10:00:00",
        ]));
        assert!(parse(&bad, &target).is_err());
        // Past what nanoseconds since the epoch can hold: an error (from
        // Arrow's parser), never a time wrapped round (found by fuzzing).
        let far: ArrayRef = Arc::new(StringArray::from(vec!["3144-01-01 00:00:01"]));
        assert!(parse(&far, &target).is_err());
    }
}

//! `weir-bench gen-bids`: Nexmark-shaped bids (auction, bidder, price,
//! date_time) as CSV, JSON lines or Parquet, deterministic by seed, with
//! Nexmark's hot-auction and hot-bidder skew and bounded out-of-orderness.
//!
//! The dependencies are `datafusion`, for its re-exported `arrow` and
//! `parquet` (the versions the engine reads with, so they never drift), and
//! `rdkafka` for `produce`; the workspace builds both anyway, so CI pays only
//! for linking.
//!
//! `weir-bench produce` sends them (or live ones) to a Kafka topic: see
//! `produce.rs`.
//!
//! ```text
//! weir-bench gen-bids --rows 20000000 --format csv --out bench/data/bids-20m.csv
//! weir-bench gen-bids --rows 20000000 --format parquet --out bench/data/bids-20m.parquet
//! ```
//!
//! Row `n` (0-based), for seed `s` and `rate` events per second:
//! - `auction`: 90 % among the hottest 1 % of the `n / 10 + 10` auctions so
//!   far, 10 % uniform over all of them (ids from 1000);
//! - `bidder`: 80 % among the hottest 1 % of the `n / 20 + 10` people so far,
//!   20 % uniform (ids from 1000);
//! - `price`: uniform in 100..10100;
//! - `date_time`: 2024-01-01 + `n / rate` seconds, minus a jitter uniform in
//!   `0..disorder_ms` milliseconds: never more than `disorder_ms` behind the
//!   latest event before it, so a watermark that lags by `disorder_ms` drops
//!   nothing.

mod produce;

use std::io::{BufWriter, Write};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

struct Args {
    rows: u64,
    format: String,
    out: String,
    seed: u64,
    /// Events per second of event time.
    rate: u64,
    /// Maximum out-of-orderness in milliseconds.
    disorder_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("gen-bids") => {}
        _ => return Err(usage()),
    }
    let mut parsed = Args {
        rows: 1_000_000,
        format: "csv".into(),
        out: "-".into(),
        seed: 42,
        rate: 10_000,
        disorder_ms: 2000,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--rows" => parsed.rows = number()?,
            "--seed" => parsed.seed = number()?,
            "--rate" => parsed.rate = number()?.max(1),
            "--disorder-ms" => parsed.disorder_ms = number()?,
            "--format" => parsed.format = value,
            "--out" => parsed.out = value,
            _ => return Err(usage()),
        }
    }
    Ok(parsed)
}

fn usage() -> String {
    "usage: weir-bench gen-bids [--rows N] [--format csv|json|parquet] [--out FILE|-] [--seed N] [--rate EVENTS_PER_S] [--disorder-ms MS]".into()
}

fn mix(seed: u64, n: u64, field: u64) -> u64 {
    let mut z =
        seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ field.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn timestamp(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}.{milli:03}")
}

/// One bid: (auction, bidder, price, event time in ms since the epoch).
fn bid(args: &Args, n: u64) -> (u64, u64, u64, i64) {
    const START_MS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let s = args.seed;
    let auctions = n / 10 + 10;
    let r = mix(s, n, 1);
    let auction = 1000
        + if r % 10 < 9 {
            (r >> 8) % (auctions / 100 + 1)
        } else {
            (r >> 8) % auctions
        };
    let people = n / 20 + 10;
    let r = mix(s, n, 2);
    let bidder = 1000
        + if r % 10 < 8 {
            (r >> 8) % (people / 100 + 1)
        } else {
            (r >> 8) % people
        };
    let price = 100 + mix(s, n, 3) % 10_000;
    let in_order = START_MS + (n as i128 * 1000 / args.rate as i128) as i64;
    let jitter = if args.disorder_ms == 0 {
        0
    } else {
        (mix(s, n, 4) % args.disorder_ms) as i64
    };
    (auction, bidder, price, in_order - jitter)
}

fn write_text(args: &Args, out: &mut impl Write, json: bool) -> std::io::Result<()> {
    if !json {
        writeln!(out, "auction,bidder,price,date_time")?;
    }
    for n in 0..args.rows {
        let (auction, bidder, price, ms) = bid(args, n);
        let ts = timestamp(ms);
        if json {
            writeln!(
                out,
                "{{\"auction\":{auction},\"bidder\":{bidder},\"price\":{price},\"date_time\":\"{ts}\"}}"
            )?;
        } else {
            writeln!(out, "{auction},{bidder},{price},{ts}")?;
        }
    }
    Ok(())
}

/// Parquet in row groups of 1M rows (a batch of 64K at a time), snappy.
/// `date_time` is a millisecond timestamp without time zone.
fn write_parquet(args: &Args, out: impl Write + Send) -> Result<(), String> {
    const BATCH: u64 = 65_536;
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut writer =
        ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(|e| e.to_string())?;
    let mut n = 0;
    while n < args.rows {
        let end = (n + BATCH).min(args.rows);
        let rows: Vec<_> = (n..end).map(|i| bid(args, i)).collect();
        let column = |f: fn(&(u64, u64, u64, i64)) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let columns = vec![
            column(|r| r.0 as i64),
            column(|r| r.1 as i64),
            column(|r| r.2 as i64),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.3),
            )) as ArrayRef,
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        writer.write(&batch).map_err(|e| e.to_string())?;
        n = end;
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("produce") {
        let done = produce::parse(std::env::args().skip(2)).and_then(|args| produce::run(&args));
        if let Err(message) = done {
            eprintln!("weir-bench produce: {message}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if !matches!(args.format.as_str(), "csv" | "json" | "parquet") {
        eprintln!(
            "--format: expected csv, json or parquet, not {}\n{}",
            args.format,
            usage()
        );
        std::process::exit(2);
    }
    let out: Box<dyn Write + Send> = if args.out == "-" {
        Box::new(std::io::stdout())
    } else {
        if let Some(parent) = std::path::Path::new(&args.out).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        Box::new(std::fs::File::create(&args.out).unwrap_or_else(|e| {
            eprintln!("could not create {}: {e}", args.out);
            std::process::exit(1);
        }))
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let written = match args.format.as_str() {
        "parquet" => write_parquet(&args, &mut out),
        format => write_text(&args, &mut out, format == "json").map_err(|e| e.to_string()),
    }
    .and_then(|()| out.flush().map_err(|e| e.to_string()));
    if let Err(message) = written {
        // A closed pipe (`| head`) ends the run quietly.
        if !message.contains("Broken pipe") {
            eprintln!("could not write {}: {message}", args.out);
            std::process::exit(1);
        }
    }
}

//! A file's bytes cut into records, each with the line it starts on.
//!
//! Bytes arrive in pieces of any size (the object store's chunks); a record
//! may span pieces. A record ends at a newline outside quotes (CSV may quote
//! a newline into a field; JSON text never holds a raw one). Records are
//! handed out in blocks, so the decoder works on many at once, and each
//! keeps its first line number, so a bad one can be named by file and line.
//!
//! # Correctness
//! - Every byte of the file is in exactly one record, or in a blank line
//!   (nothing but `\r`; in JSON text, nothing but blanks), which is not a
//!   record: no row is lost between pieces.
//! - A record longer than `max_record_bytes` is not kept whole: its first
//!   bytes are, it is marked [`Record::oversized`], and the quote state is
//!   dropped so that an unbalanced quote cannot swallow the rest of the file
//!   into one record. Memory stays bounded whatever the file holds.

use std::ops::Range;

/// How many bytes of an oversized record are kept (for the dead letter).
const OVERSIZED_PREFIX: usize = 1024;

/// One record of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its bytes in [`Block::buf`], without the newline (nor a `\r`).
    pub bytes: Range<usize>,
    /// The line it starts on, from 1.
    pub line: u64,
    /// It was longer than the limit and is cut short.
    pub oversized: bool,
}

/// Records cut from a file, in file order.
#[derive(Debug, Default)]
pub struct Block {
    /// The records' bytes, each followed by a newline: what a decoder of
    /// newline-terminated records can take as it is.
    pub buf: Vec<u8>,
    /// The records.
    pub records: Vec<Record>,
}

impl Block {
    /// The bytes of record `i`.
    pub fn bytes(&self, i: usize) -> &[u8] {
        &self.buf[self.records[i].bytes.clone()]
    }

    /// The records' bytes, each newline-terminated, in one slice, when they
    /// lie one after the other in `buf` with nothing between them (none
    /// oversized, none removed from the middle).
    pub fn contiguous(&self) -> Option<&[u8]> {
        let first = self.records.first()?;
        let mut end = first.bytes.start;
        for record in &self.records {
            if record.oversized || record.bytes.start != end {
                return None;
            }
            end = record.bytes.end + 1;
        }
        self.buf.get(first.bytes.start..end)
    }
}

/// Cuts the bytes of one file into records.
///
/// Bytes are copied once, from the piece into the block being filled; the
/// unfinished record is the block's tail, from `start`.
#[derive(Debug)]
pub struct Splitter {
    /// The CSV quote character (`None`: JSON lines, no quoting).
    quote: Option<u8>,
    max_record_bytes: usize,
    in_quotes: bool,
    /// The line the unfinished record starts on.
    start_line: u64,
    /// Newlines inside the unfinished record (quoted ones).
    lines_inside: u64,
    /// The unfinished record passed the limit.
    oversized: bool,
    /// Where the unfinished record starts in `ready.buf`.
    start: usize,
    /// Records ready to hand out, then the unfinished one.
    ready: Block,
    /// A block handed out earlier and given back: the next one is filled in
    /// its buffer, whose pages are already mapped and whose capacity is a
    /// block's, instead of in a fresh allocation grown by doubling (page
    /// faults and copies that showed in the reader's profile).
    spare: Option<Block>,
}

impl Splitter {
    /// A splitter for CSV quoted with `quote`, or for JSON lines (`None`).
    pub fn new(quote: Option<u8>, max_record_bytes: usize) -> Self {
        Self {
            quote,
            max_record_bytes,
            in_quotes: false,
            start_line: 1,
            lines_inside: 0,
            oversized: false,
            start: 0,
            ready: Block::default(),
            spare: None,
        }
    }

    /// Add the next piece of the file.
    pub fn push(&mut self, piece: &[u8]) {
        let mut rest = piece;
        while !rest.is_empty() {
            // Copy up to the next byte that matters: a newline or a quote.
            let stop = match self.quote {
                Some(quote) => memchr::memchr2(b'\n', quote, rest),
                None => memchr::memchr(b'\n', rest),
            }
            .unwrap_or(rest.len());
            self.keep(&rest[..stop]);
            let Some(&byte) = rest.get(stop) else {
                break;
            };
            rest = &rest[stop + 1..];
            if byte == b'\n' {
                if !self.in_quotes {
                    self.end_record();
                    continue;
                }
                self.lines_inside += 1;
            } else if !self.oversized {
                self.in_quotes = !self.in_quotes;
            }
            self.keep(&[byte]);
        }
    }

    /// Add `bytes` to the unfinished record, up to the limit.
    fn keep(&mut self, bytes: &[u8]) {
        if self.oversized {
            return;
        }
        let held = self.ready.buf.len() - self.start;
        if bytes.len() <= self.max_record_bytes - held {
            self.ready.buf.extend_from_slice(bytes);
        } else {
            // Keep a prefix for whoever reads the dead letter, and stop
            // trusting quotes: the next plain newline ends it.
            self.oversized = true;
            self.in_quotes = false;
            let keep = OVERSIZED_PREFIX.min(self.max_record_bytes);
            if held < keep {
                let more = (keep - held).min(bytes.len());
                self.ready.buf.extend_from_slice(&bytes[..more]);
            }
            self.ready.buf.truncate(self.start + keep);
        }
    }

    /// The file ended: the unfinished record (a last line without a
    /// newline) is a record too.
    pub fn finish(&mut self) {
        if self.ready.buf.len() > self.start || self.oversized {
            self.end_record();
        }
    }

    /// Bytes held in records not handed out yet.
    pub fn ready_bytes(&self) -> usize {
        self.start
    }

    /// Records ready so far.
    pub fn ready_records(&self) -> usize {
        self.ready.records.len()
    }

    /// Hand out the records ready so far.
    pub fn take(&mut self) -> Block {
        let mut next = self.spare.take().unwrap_or_default();
        next.buf.clear();
        next.records.clear();
        // The unfinished record moves to the front of the next block.
        next.buf.extend_from_slice(&self.ready.buf[self.start..]);
        self.ready.buf.truncate(self.start);
        self.start = 0;
        std::mem::replace(&mut self.ready, next)
    }

    /// Give back a block taken earlier, once its records are decoded, so
    /// that its buffer is filled again rather than a new one allocated.
    pub fn recycle(&mut self, block: Block) {
        self.spare = Some(block);
    }

    fn end_record(&mut self) {
        let oversized = std::mem::take(&mut self.oversized);
        let buf = &mut self.ready.buf;
        if !oversized && buf.len() > self.start && buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = self.start_line;
        self.start_line += 1 + self.lines_inside;
        self.lines_inside = 0;
        self.in_quotes = false;
        // A blank line holds no row (in JSON text, nor one of blanks).
        let record = &buf[self.start..];
        let blank = match self.quote {
            Some(_) => record.is_empty(),
            None => record.iter().all(u8::is_ascii_whitespace),
        };
        if blank && !oversized {
            buf.truncate(self.start);
            return;
        }
        self.ready.records.push(Record {
            bytes: self.start..buf.len(),
            line,
            oversized,
        });
        buf.push(b'\n');
        self.start = buf.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(quote: Option<u8>, max: usize, pieces: &[&[u8]]) -> Vec<(String, u64, bool)> {
        // A block is taken after every piece and given back once read, as
        // the reader does, so records also span blocks and reused buffers.
        let mut splitter = Splitter::new(quote, max);
        let mut out = Vec::new();
        let mut read = |block: &Block| {
            for i in 0..block.records.len() {
                out.push((
                    String::from_utf8_lossy(block.bytes(i)).into_owned(),
                    block.records[i].line,
                    block.records[i].oversized,
                ));
            }
        };
        for piece in pieces {
            splitter.push(piece);
            let block = splitter.take();
            read(&block);
            splitter.recycle(block);
        }
        splitter.finish();
        read(&splitter.take());
        out
    }

    #[test]
    fn records_span_pieces_and_keep_their_lines() {
        let got = split(
            Some(b'"'),
            1 << 20,
            &[b"a,b\n1,\"x", b"\ny\"\r\n\n", b"3,z"],
        );
        assert_eq!(
            got,
            vec![
                ("a,b".into(), 1, false),
                ("1,\"x\ny\"".into(), 2, false),
                ("3,z".into(), 5, false),
            ]
        );
    }

    #[test]
    fn json_lines_ignore_quotes_and_a_long_line_is_cut_short() {
        let long = vec![b'x'; 5000];
        let got = split(None, 2048, &[b"{\"a\":\"\\\"\"}\n", &long, b"\n{}\n"]);
        assert_eq!(got[0], ("{\"a\":\"\\\"\"}".into(), 1, false));
        assert_eq!(got[1].1, 2);
        assert!(got[1].2, "oversized");
        assert_eq!(got[1].0.len(), 1024);
        assert_eq!(got[2], ("{}".into(), 3, false));
    }

    #[test]
    fn an_unbalanced_quote_cannot_swallow_the_file() {
        let mut rest = b"1,\"open\n".to_vec();
        rest.extend(std::iter::repeat_n(b"2,ok\n".as_slice(), 100).flatten());
        let got = split(Some(b'"'), 64, &[&rest]);
        // The open quote runs to the limit, then the next newline ends it.
        assert!(got[0].2);
        let total_lines: usize = 1 + 100;
        let covered = got.len() as u64;
        assert!(covered > 80, "{got:?}");
        assert_eq!(got.last().expect("last").1, total_lines as u64);
    }
}

//! The write-ahead log: every change to a table Weir owns, in commit order.
//!
//! Records are framed `[payload length: u32 LE][crc32 of payload: u32 LE]
//! [payload]` and appended to segment files `<dir>/<first lsn, 20 digits>.wal`.
//! A record's LSN is its byte position in the log as a whole (its segment's
//! first LSN plus its offset there); the LSN just after a record is where a
//! reader of the changelog resumes.
//!
//! # Group commit
//! Committers copy their record into a shared buffer under a short lock and
//! then wait until the durable LSN passes their record's end. One flusher
//! thread writes the whole buffer and fsyncs once, so all committers that
//! arrived while the previous fsync ran share the next one: many small
//! INSERTs cost one fsync per round, not one each.
//!
//! # Correctness
//! - A record is acknowledged only once `durable() >= its end`.
//! - On open, the log is read up to the first record whose frame is cut off
//!   or whose checksum fails (a torn write from a crash). The segment is
//!   truncated there and later segments are removed, so a half-written record
//!   is never applied, and new records follow the last good one.
//! - A failed write or fsync poisons the log: the bytes on disk are then
//!   unknown, so it takes no more writes and every waiter gets the error
//!   (as Postgres PANICs on a failed fsync). A restart recovers.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{ConnectorError, Result};

/// A position in the log: bytes since its very first record.
pub type Lsn = u64;

/// Frame header: payload length and checksum.
const HEADER: usize = 8;
/// A segment is closed and a new one started once it is this large, so
/// compaction can delete whole files.
const SEGMENT_BYTES: u64 = 64 << 20;

/// The log of one data directory.
pub struct Wal {
    shared: Arc<Shared>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The end of the last record known to be on disk.
    durable: watch::Sender<Lsn>,
}

struct Pending {
    /// Framed records not yet handed to the flusher.
    buf: Vec<u8>,
    /// The LSN after the last appended record.
    end: Lsn,
    /// Why the log stopped taking writes.
    failed: Option<String>,
    closing: bool,
}

impl Wal {
    /// Open (or create) the log in `dir`: read every intact record, in
    /// order, into `replay(start, end, payload)`, cut off a torn tail, and
    /// start the flusher.
    pub fn open(dir: &Path, mut replay: impl FnMut(Lsn, Lsn, &[u8]) -> Result<()>) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| storage("create", dir, e))?;
        let segments = list_segments(dir)?;
        let mut end: Lsn = segments.first().map_or(0, |(lsn, _)| *lsn);
        let mut tail: Option<(PathBuf, u64)> = None;
        for (i, (first, path)) in segments.iter().enumerate() {
            if *first != end {
                // A gap: a segment went missing. What follows cannot be
                // trusted to be in order; stop here rather than guess.
                warn!(segment = %path.display(), expected = end, "log segment out of sequence; ignoring it and later ones");
                remove_from(&segments[i..])?;
                break;
            }
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| storage("read", path, e))?;
            let mut offset = 0usize;
            while let Some((payload, next)) = frame_at(&bytes, offset) {
                replay(first + offset as u64, first + next as u64, payload)?;
                offset = next;
            }
            end = first + offset as u64;
            if offset < bytes.len() {
                warn!(segment = %path.display(), at = offset, dropped = bytes.len() - offset, "torn record at the end of the log; truncating");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| storage("open", path, e))?;
                file.set_len(offset as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| storage("truncate", path, e))?;
                remove_from(&segments[i + 1..])?;
                tail = Some((path.clone(), offset as u64));
                break;
            }
            tail = Some((path.clone(), offset as u64));
        }
        let (path, len) = match tail {
            Some(tail) => tail,
            None => (segment_path(dir, end), 0),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| storage("open", &path, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| storage("seek", &path, e))?;
        sync_dir(dir)?;
        info!(end, "table log opened");
        let (durable, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                end,
                failed: None,
                closing: false,
            }),
            wake: Condvar::new(),
            durable,
        });
        let flusher = {
            let shared = shared.clone();
            let dir = dir.to_path_buf();
            std::thread::Builder::new()
                .name("weir-wal".into())
                .spawn(move || flush_loop(&shared, &dir, file, len))
        }
        .map_err(|e| storage("start the log writer for", dir, e))?;
        Ok(Self {
            shared,
            flusher: Mutex::new(Some(flusher)),
            dir: dir.to_path_buf(),
        })
    }

    /// Append one record; returns its LSN and the LSN after it. It is not
    /// durable until [`Wal::wait_durable`] of the second returns.
    pub fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        let len = u32::try_from(payload.len())
            .map_err(|_| ConnectorError::LogFailed("a record larger than 4 GiB".into()))?;
        let crc = crc32fast::hash(payload);
        let mut pending = self.shared.pending.lock();
        if let Some(err) = &pending.failed {
            return Err(ConnectorError::LogFailed(err.clone()));
        }
        let start = pending.end;
        pending.buf.extend_from_slice(&len.to_le_bytes());
        pending.buf.extend_from_slice(&crc.to_le_bytes());
        pending.buf.extend_from_slice(payload);
        pending.end = start + (HEADER + payload.len()) as u64;
        let end = pending.end;
        drop(pending);
        self.shared.wake.notify_one();
        Ok((start, end))
    }

    /// Wait until everything up to `lsn` is on disk.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let mut durable = self.shared.durable.subscribe();
        loop {
            if *durable.borrow_and_update() >= lsn {
                return Ok(());
            }
            if let Some(err) = &self.shared.pending.lock().failed {
                return Err(ConnectorError::LogFailed(err.clone()));
            }
            if durable.changed().await.is_err() {
                return Err(ConnectorError::LogFailed("the log writer stopped".into()));
            }
        }
    }

    /// The end of the last record on disk.
    pub fn durable(&self) -> Lsn {
        *self.shared.durable.borrow()
    }

    /// Watch the durable LSN.
    pub fn watch_durable(&self) -> watch::Receiver<Lsn> {
        self.shared.durable.subscribe()
    }

    /// The end of the last appended record.
    pub fn end(&self) -> Lsn {
        self.shared.pending.lock().end
    }

    /// Delete the segments that end at or before `lsn`; their records are no
    /// longer needed (compaction wrote what they said into segments).
    pub fn remove_before(&self, lsn: Lsn) -> Result<()> {
        let segments = list_segments(&self.dir)?;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = &pair[1];
            if *next_first <= lsn {
                fs::remove_file(path).map_err(|e| storage("remove", path, e))?;
            }
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.pending.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.lock().take() {
            let _ = flusher.join();
        }
    }
}

/// The flusher: write what was appended, fsync, publish the durable LSN.
fn flush_loop(shared: &Shared, dir: &Path, mut file: File, mut len: u64) {
    let mut spare = Vec::new();
    loop {
        let (mut buf, end) = {
            let mut pending = shared.pending.lock();
            while pending.buf.is_empty() && !pending.closing {
                shared.wake.wait(&mut pending);
            }
            if pending.buf.is_empty() {
                return;
            }
            let end = pending.end;
            (
                std::mem::replace(&mut pending.buf, std::mem::take(&mut spare)),
                end,
            )
        };
        let written = file
            .write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("could not write the table log: {e}"));
        let rolled = written.and_then(|()| {
            len += buf.len() as u64;
            if len < SEGMENT_BYTES {
                return Ok(());
            }
            let path = segment_path(dir, end);
            file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("could not start log segment {}: {e}", path.display()))?;
            len = 0;
            sync_dir(dir).map_err(|e| e.to_string())
        });
        match rolled {
            Ok(()) => {
                shared.durable.send_replace(end);
            }
            Err(err) => {
                tracing::error!(%err, "the table log failed; no more writes are taken until a restart");
                let mut pending = shared.pending.lock();
                pending.failed = Some(err);
                pending.buf.clear();
                drop(pending);
                // Wake every waiter so it sees the failure.
                shared.durable.send_modify(|_| {});
                return;
            }
        }
        buf.clear();
        spare = buf;
    }
}

/// The record at `offset`, if its frame is whole and its checksum right;
/// returns it and the offset after it.
fn frame_at(bytes: &[u8], offset: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(offset..offset + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let start = offset + HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + len))
}

fn segment_path(dir: &Path, first: Lsn) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| storage("list", dir, e))? {
        let path = entry.map_err(|e| storage("list", dir, e))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<Lsn>().ok());
        if let Some(first) = first {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

fn remove_from(segments: &[(Lsn, PathBuf)]) -> Result<()> {
    for (_, path) in segments {
        fs::remove_file(path).map_err(|e| storage("remove", path, e))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage("sync", dir, e))
}

pub(crate) fn storage(action: &'static str, path: &Path, source: std::io::Error) -> ConnectorError {
    ConnectorError::Storage {
        action,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path) -> Vec<(Lsn, Lsn, Vec<u8>)> {
        let mut out = Vec::new();
        let wal = Wal::open(dir, |s, e, p| {
            out.push((s, e, p.to_vec()));
            Ok(())
        })
        .expect("open");
        drop(wal);
        out
    }

    #[tokio::test]
    async fn appends_are_durable_and_replayed_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), |_, _, _| Ok(())).expect("open");
        let (s1, e1) = wal.append(b"one").expect("append");
        let (s2, e2) = wal.append(b"two").expect("append");
        assert_eq!((s1, e1, s2), (0, 11, 11));
        wal.wait_durable(e2).await.expect("durable");
        assert!(wal.durable() >= e2);
        drop(wal);
        let got = records(dir.path());
        assert_eq!(
            got,
            vec![(0, 11, b"one".to_vec()), (11, 22, b"two".to_vec())]
        );
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_writing_goes_on_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), |_, _, _| Ok(())).expect("open");
        let (_, end) = wal.append(b"kept").expect("append");
        wal.wait_durable(end).await.expect("durable");
        drop(wal);
        // A crash in the middle of the next record: its header and part of it.
        let path = segment_path(dir.path(), 0);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&100u32.to_le_bytes()).expect("write");
        file.write_all(&[1, 2, 3, 4, 5, 6]).expect("write");
        drop(file);
        assert_eq!(records(dir.path()), vec![(0, 12, b"kept".to_vec())]);
        // A whole frame with a wrong checksum is torn too.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&3u32.to_le_bytes()).expect("write");
        file.write_all(&0u32.to_le_bytes()).expect("write");
        file.write_all(b"bad").expect("write");
        drop(file);
        let wal = Wal::open(dir.path(), |_, _, _| Ok(())).expect("reopen");
        assert_eq!(wal.end(), 12);
        let (_, end) = wal.append(b"next").expect("append");
        wal.wait_durable(end).await.expect("durable");
        drop(wal);
        let got: Vec<Vec<u8>> = records(dir.path()).into_iter().map(|r| r.2).collect();
        assert_eq!(got, vec![b"kept".to_vec(), b"next".to_vec()]);
    }

    #[tokio::test]
    async fn concurrent_committers_share_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(Wal::open(dir.path(), |_, _, _| Ok(())).expect("open"));
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let (_, end) = wal.append(&i.to_le_bytes()).expect("append");
                wal.wait_durable(end).await.expect("durable");
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        drop(Arc::into_inner(wal).expect("last reference"));
        assert_eq!(records(dir.path()).len(), 50);
    }
}

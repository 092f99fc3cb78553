//! The reading end of the spool, owned by the InfluxDB writer: records in
//! order, in batches, and the commit that lets segments go.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::record::{self, Frame};
use super::{segment_path, Position, Shared, SpoolStats};

/// A run of records read from the spool, ready to send.
#[derive(Debug, Default)]
pub struct Batch {
    /// The payloads, concatenated (line protocol: one body).
    pub body: Vec<u8>,
    pub records: usize,
    /// Append time of the first record, ms.
    pub first_appended_ms: i64,
    /// Where the reader stands after this batch: commit it once sent.
    pub end: Position,
    start: Position,
}

impl Batch {
    pub fn start(&self) -> Position {
        self.start
    }
}

/// How much the reader reads from a segment at a time.
const READ_CHUNK: u64 = 256 * 1024;

/// What the reader found at its position.
enum Step {
    /// A record of this size, added to the batch.
    Got(usize),
    /// Not enough bytes buffered (this many are): read more.
    More(usize),
    /// A damaged frame: skip this many bytes.
    Bad(usize),
}

/// Reads records from a position, up to the spool's head or a limit: the
/// common part of the writer's [`Reader`] and the engine's [`Tail`].
struct Scanner {
    shared: Arc<Shared>,
    /// Where the next record starts.
    pos: Position,
    /// Bytes read from the current segment but not yet consumed, from `buf_start`.
    buf: Vec<u8>,
    buf_start: Position,
    file: Option<File>,
    /// The writer's scanner keeps the spool's figures (lag, damaged
    /// records); another reader of the same records must not count them again.
    keeps_stats: bool,
}

impl Scanner {
    fn head(&self) -> Position {
        *self.shared.head.lock().expect("spool head")
    }

    /// Reads up to `max_records` records that are on disk, stopping at
    /// `limit` (a record boundary) or the head, whichever comes first.
    fn read(&mut self, batch: &mut Batch, max_records: usize, limit: Position) -> io::Result<()> {
        while batch.records < max_records {
            let head = self.head().min(limit);
            if self.pos >= head {
                return Ok(());
            }
            // Make sure the buffer holds what lies between pos and the end
            // of this segment (or the head, in the active one).
            if self.file.is_none() || self.buf_start.segment != self.pos.segment {
                match File::open(segment_path(&self.shared.dir, self.pos.segment)) {
                    Ok(mut f) => {
                        f.seek(SeekFrom::Start(self.pos.offset))?;
                        self.file = Some(f);
                        self.buf.clear();
                        self.buf_start = self.pos;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound && self.pos.segment < head.segment => {
                        self.pos = Position { segment: self.pos.segment + 1, offset: 0 };
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let consumed = (self.pos.offset - self.buf_start.offset) as usize;
            let step = {
                let avail = &self.buf[consumed..];
                match record::parse(avail) {
                    Frame::Record { appended_at_ms, payload, size } => {
                        if batch.records == 0 {
                            batch.first_appended_ms = appended_at_ms;
                            batch.start = self.pos;
                            if self.keeps_stats {
                                self.shared.stats.oldest_pending_ms.store(appended_at_ms, Ordering::Relaxed);
                            }
                        }
                        batch.body.extend_from_slice(payload);
                        batch.records += 1;
                        Step::Got(size)
                    }
                    Frame::Incomplete => Step::More(avail.len()),
                    Frame::Corrupt => Step::Bad(record::resync(avail).unwrap_or(avail.len())),
                }
            };
            match step {
                Step::Got(size) => {
                    self.pos.offset += size as u64;
                    // Drop consumed bytes now and then.
                    if consumed > 1 << 20 {
                        self.buf.drain(..consumed + size);
                        self.buf_start = self.pos;
                    }
                }
                Step::More(unparsed) => {
                    let file_end = self.buf_start.offset + self.buf.len() as u64;
                    let limit = if self.pos.segment == head.segment { head.offset } else { u64::MAX };
                    let n = if file_end < limit {
                        let want = (limit - file_end).min(READ_CHUNK);
                        let f = self.file.as_mut().expect("segment open");
                        f.take(want).read_to_end(&mut self.buf)?
                    } else {
                        0
                    };
                    if n == 0 {
                        if self.pos.segment < head.segment {
                            // The end of a finished segment: a torn or empty tail.
                            if unparsed > 0 && self.keeps_stats {
                                self.shared.stats.corrupt_frames.fetch_add(1, Ordering::Relaxed);
                            }
                            self.pos = Position { segment: self.pos.segment + 1, offset: 0 };
                            self.file = None;
                            continue;
                        }
                        return Ok(());
                    }
                }
                Step::Bad(skip) => {
                    // Skip to the next frame that checks out (or may), or
                    // past everything read so far.
                    if self.keeps_stats {
                        self.shared.stats.corrupt_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            segment = self.pos.segment,
                            offset = self.pos.offset,
                            "damaged spool record skipped"
                        );
                    }
                    self.pos.offset += skip as u64;
                }
            }
        }
        Ok(())
    }
}

/// The reading end, owned by the InfluxDB writer.
pub struct Reader {
    scan: Scanner,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, start: Position) -> Self {
        let scan =
            Scanner { shared, pos: start, buf: Vec::new(), buf_start: start, file: None, keeps_stats: true };
        Reader { scan }
    }

    pub fn stats(&self) -> Arc<SpoolStats> {
        self.scan.shared.stats.clone()
    }

    fn read_available(&mut self, batch: &mut Batch, max_records: usize) -> io::Result<()> {
        self.scan.read(batch, max_records, Position::MAX)
    }

    /// Waits for records and returns a batch of up to `max_records`: as soon
    /// as it is full, or `linger` after its first record, or when `stop` fires
    /// (then possibly empty).
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        linger: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> io::Result<Batch> {
        let pos = self.scan.pos;
        let mut batch = Batch { end: pos, start: pos, ..Batch::default() };
        let mut deadline = None;
        loop {
            self.read_available(&mut batch, max_records)?;
            batch.end = self.scan.pos;
            if batch.records >= max_records {
                return Ok(batch);
            }
            if batch.records > 0 && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + linger);
            }
            let wait = self.scan.shared.appended.notified();
            match deadline {
                Some(d) => tokio::select! {
                    _ = wait => {}
                    _ = tokio::time::sleep_until(d) => return Ok(batch),
                    _ = stop.cancelled() => return Ok(batch),
                },
                None => tokio::select! {
                    _ = wait => {}
                    _ = stop.cancelled() => return Ok(batch),
                },
            }
        }
    }

    /// Reads what is on disk now without waiting (used to flush at shutdown).
    pub fn try_batch(&mut self, max_records: usize) -> io::Result<Batch> {
        let pos = self.scan.pos;
        let mut batch = Batch { end: pos, start: pos, ..Batch::default() };
        self.read_available(&mut batch, max_records)?;
        batch.end = self.scan.pos;
        Ok(batch)
    }

    /// Marks everything before `batch.end` as stored: writes the cursor and
    /// deletes segments wholly before it.
    pub fn commit(&mut self, batch: &Batch) -> io::Result<()> {
        let shared = &self.scan.shared;
        let dir = &shared.dir;
        let tmp = dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", batch.end.segment, batch.end.offset))?;
        fs::rename(&tmp, dir.join("cursor"))?;
        let stats = &shared.stats;
        stats.pending_records.fetch_sub(batch.records as i64, Ordering::Relaxed);
        let bytes = if batch.start.segment == batch.end.segment {
            batch.end.offset - batch.start.offset
        } else {
            // Across segments: what remained of the first plus what was read of the last.
            let mut total = batch.end.offset;
            for seg in batch.start.segment..batch.end.segment {
                let len = fs::metadata(segment_path(dir, seg)).map(|m| m.len()).unwrap_or(0);
                total +=
                    if seg == batch.start.segment { len.saturating_sub(batch.start.offset) } else { len };
            }
            total
        };
        stats.pending_bytes.fetch_sub(bytes as i64, Ordering::Relaxed);
        stats.oldest_pending_ms.store(0, Ordering::Relaxed);
        shared.retain(WRITER, batch.end);
        shared.collect_garbage()
    }
}

/// The floor name of the InfluxDB writer.
pub(super) const WRITER: &str = "influxdb";

/// A second reader of the same records, for the engine: reads what lies
/// between two positions, keeps no cursor of its own on disk (the engine's
/// is in the state store) and counts nothing in the spool's figures.
pub struct Tail {
    scan: Scanner,
}

impl Tail {
    pub(super) fn new(shared: Arc<Shared>, start: Position) -> Self {
        Tail {
            scan: Scanner {
                shared,
                pos: start,
                buf: Vec::new(),
                buf_start: start,
                file: None,
                keeps_stats: false,
            },
        }
    }

    /// Where the next record read starts.
    pub fn position(&self) -> Position {
        self.scan.pos
    }

    /// The end of what is appended now.
    pub fn head(&self) -> Position {
        self.scan.head()
    }

    /// Moves to `pos` (a record boundary).
    pub fn seek(&mut self, pos: Position) {
        if pos != self.scan.pos {
            self.scan.pos = pos;
            self.scan.file = None;
            self.scan.buf.clear();
            self.scan.buf_start = pos;
        }
    }

    /// Reads up to `max_records` records from the position, not past
    /// `limit` (nor the head): their payloads concatenated.
    pub fn read_until(&mut self, limit: Position, max_records: usize) -> io::Result<Batch> {
        let pos = self.scan.pos;
        let mut batch = Batch { end: pos, start: pos, ..Batch::default() };
        self.scan.read(&mut batch, max_records, limit)?;
        batch.end = self.scan.pos;
        Ok(batch)
    }
}

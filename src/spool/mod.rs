//! The durable spool: an append-only log of line-protocol records on disk,
//! between MQTT and InfluxDB.
//!
//! Ingest appends a record per message and acks the message to the broker
//! once `write` returned: from then on the reading survives a crash of the
//! process. An fsync on a short interval bounds what a power failure can
//! take (`spool.fsync_interval`; `"0s"` syncs before every ack). The InfluxDB
//! writer reads the records in order, and commits its position (`cursor`)
//! only after InfluxDB accepted them; segments wholly before the cursor are
//! deleted. An InfluxDB outage therefore only makes the spool grow.
//!
//! ```text
//! data_dir/spool/00000000000000000001.seg   records (see `record`)
//! data_dir/spool/00000000000000000002.seg   the one being appended to
//! data_dir/spool/cursor                      "<segment> <offset>" committed by the writer
//! ```
//! On open, a torn tail of the last segment is cut off (counted, logged) and
//! appends start in a fresh segment.

pub mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use record::Frame;

/// A position in the spool: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Counters and gauges of the spool, shared with `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Records appended and not yet committed by the writer.
    pub pending_records: AtomicI64,
    /// Bytes of segment files not yet committed by the writer.
    pub pending_bytes: AtomicI64,
    /// Append time (ms) of the oldest record the writer holds, 0 when none.
    pub oldest_pending_ms: AtomicI64,
    pub appended_records: AtomicU64,
    pub appended_bytes: AtomicU64,
    /// Frames found damaged (torn tail or corruption) and skipped.
    pub corrupt_frames: AtomicU64,
    pub fsyncs: AtomicU64,
}

struct Shared {
    dir: PathBuf,
    stats: Arc<SpoolStats>,
    /// The end of what has been appended: readers never read past it.
    head: Mutex<Position>,
    /// Wakes the reader when records were appended.
    appended: Notify,
    /// The file being appended to, for the fsync task.
    active: Mutex<Option<Arc<File>>>,
    dirty: AtomicBool,
}

/// Opens the spool in `dir` (created if missing) and returns its two ends.
pub fn open(dir: &Path, segment_size: u64) -> io::Result<(Appender, Reader)> {
    fs::create_dir_all(dir)?;
    let stats = Arc::new(SpoolStats::default());
    let mut segments = list_segments(dir)?;
    let cursor = read_cursor(dir);
    let first = segments.first().copied();

    // Start reading at the cursor, or at the oldest segment if the cursor is
    // missing, unreadable or points at a segment already gone.
    let start = match (cursor, first) {
        (Some(c), Some(f)) if c.segment >= f && segments.contains(&c.segment) => c,
        (_, Some(f)) => Position {
            segment: f,
            offset: 0,
        },
        (_, None) => Position {
            segment: 1,
            offset: 0,
        },
    };

    // Cut a torn tail off the last segment, count what is pending.
    let mut pending_records = 0i64;
    let mut pending_bytes = 0i64;
    for &seg in &segments {
        if seg < start.segment {
            continue;
        }
        let from = if seg == start.segment {
            start.offset
        } else {
            0
        };
        let scan = scan_segment(&segment_path(dir, seg), from)?;
        if scan.valid_end < scan.file_len {
            stats
                .corrupt_frames
                .fetch_add(scan.corrupt + 1, Ordering::Relaxed);
            tracing::warn!(
                segment = seg,
                valid_bytes = scan.valid_end,
                torn_bytes = scan.file_len - scan.valid_end,
                "spool segment ends in a torn or damaged record (crash while writing?): cutting it off"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(segment_path(dir, seg))?;
            f.set_len(scan.valid_end)?;
            f.sync_all()?;
        } else {
            stats
                .corrupt_frames
                .fetch_add(scan.corrupt, Ordering::Relaxed);
        }
        pending_records += scan.records as i64;
        pending_bytes += (scan.valid_end - from) as i64;
    }
    stats
        .pending_records
        .store(pending_records, Ordering::Relaxed);
    stats.pending_bytes.store(pending_bytes, Ordering::Relaxed);

    // Appends always go to a new segment.
    let next = segments.last().map_or(start.segment.max(1), |l| l + 1);
    let file = create_segment(dir, next)?;
    segments.push(next);

    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        stats,
        head: Mutex::new(Position {
            segment: next,
            offset: 0,
        }),
        appended: Notify::new(),
        active: Mutex::new(Some(file.clone())),
        dirty: AtomicBool::new(false),
    });
    if pending_records > 0 {
        shared.appended.notify_one();
    }
    let appender = Appender {
        shared: shared.clone(),
        file,
        segment: next,
        offset: 0,
        segment_size,
        buf: Vec::new(),
    };
    let reader = Reader {
        shared,
        pos: start,
        buf: Vec::new(),
        buf_start: start,
        file: None,
    };
    Ok((appender, reader))
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:020}.seg"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

fn create_segment(dir: &Path, seg: u64) -> io::Result<Arc<File>> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seg))?;
    // Make the new file's directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Arc::new(f))
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = text.split_whitespace();
    Some(Position {
        segment: it.next()?.parse().ok()?,
        offset: it.next()?.parse().ok()?,
    })
}

struct Scan {
    records: u64,
    corrupt: u64,
    valid_end: u64,
    file_len: u64,
}

/// Reads a segment from `from`, counting good frames, skipping damaged ones;
/// `valid_end` is the end of the last good frame.
fn scan_segment(path: &Path, from: u64) -> io::Result<Scan> {
    let data = fs::read(path)?;
    let mut at = (from as usize).min(data.len());
    let (mut records, mut corrupt, mut valid_end) = (0, 0, at);
    while at < data.len() {
        match record::parse(&data[at..]) {
            Frame::Record { size, .. } => {
                records += 1;
                at += size;
                valid_end = at;
            }
            Frame::Incomplete => break,
            Frame::Corrupt => match record::resync(&data[at..]) {
                Some(skip) => {
                    corrupt += 1;
                    at += skip;
                }
                None => break,
            },
        }
    }
    Ok(Scan {
        records,
        corrupt,
        valid_end: valid_end as u64,
        file_len: data.len() as u64,
    })
}

/// The appending end, owned by ingest.
pub struct Appender {
    shared: Arc<Shared>,
    file: Arc<File>,
    segment: u64,
    offset: u64,
    segment_size: u64,
    buf: Vec<u8>,
}

impl Appender {
    /// Appends `payloads` as records with one `write`. When this returns Ok
    /// the records survive a crash of the process.
    pub fn append<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        now_ms: i64,
    ) -> io::Result<()> {
        self.buf.clear();
        let mut n = 0i64;
        for p in payloads {
            if p.len() > record::MAX_PAYLOAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "spool record too large",
                ));
            }
            record::encode(&mut self.buf, now_ms, p);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        if self.offset > 0 && self.offset + self.buf.len() as u64 > self.segment_size {
            self.roll()?;
        }
        if let Err(e) = (&*self.file).write_all(&self.buf) {
            // A partial write leaves a torn frame: cut it so the next append
            // starts clean.
            let _ = self.file.set_len(self.offset);
            return Err(e);
        }
        self.offset += self.buf.len() as u64;
        let bytes = self.buf.len() as i64;
        let stats = &self.shared.stats;
        stats
            .appended_records
            .fetch_add(n as u64, Ordering::Relaxed);
        stats
            .appended_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        stats.pending_records.fetch_add(n, Ordering::Relaxed);
        stats.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.shared.dirty.store(true, Ordering::Release);
        *self.shared.head.lock().expect("spool head") = Position {
            segment: self.segment,
            offset: self.offset,
        };
        self.shared.appended.notify_one();
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let next = self.segment + 1;
        let file = create_segment(&self.shared.dir, next)?;
        *self.shared.active.lock().expect("spool active") = Some(file.clone());
        self.file = file;
        self.segment = next;
        self.offset = 0;
        *self.shared.head.lock().expect("spool head") = Position {
            segment: next,
            offset: 0,
        };
        Ok(())
    }

    /// Forces what was appended to disk now.
    pub fn sync(&self) -> io::Result<()> {
        self.shared.sync()
    }

    /// A handle that syncs from another task (the fsync timer).
    pub fn syncer(&self) -> Syncer {
        Syncer {
            shared: self.shared.clone(),
        }
    }

    pub fn stats(&self) -> Arc<SpoolStats> {
        self.shared.stats.clone()
    }
}

impl Shared {
    fn sync(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let file = self.active.lock().expect("spool active").clone();
        if let Some(f) = file {
            if let Err(e) = f.sync_data() {
                self.dirty.store(true, Ordering::Release);
                return Err(e);
            }
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Syncs the spool from the fsync task.
#[derive(Clone)]
pub struct Syncer {
    shared: Arc<Shared>,
}

impl Syncer {
    pub fn sync(&self) -> io::Result<()> {
        self.shared.sync()
    }

    /// Syncs every `interval` until `stop` fires, then once more.
    pub async fn run(self, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let s = self.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync()).await {
                tracing::error!(error = %e, "spool fsync failed");
            }
        }
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "spool fsync failed");
        }
    }
}

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

/// The reading end, owned by the InfluxDB writer.
pub struct Reader {
    shared: Arc<Shared>,
    /// Where the next record starts.
    pos: Position,
    /// Bytes read from the current segment but not yet consumed, from `buf_start`.
    buf: Vec<u8>,
    buf_start: Position,
    file: Option<File>,
}

impl Reader {
    pub fn stats(&self) -> Arc<SpoolStats> {
        self.shared.stats.clone()
    }

    fn head(&self) -> Position {
        *self.shared.head.lock().expect("spool head")
    }

    /// Reads up to `max_records` records that are already on disk.
    fn read_available(&mut self, batch: &mut Batch, max_records: usize) -> io::Result<()> {
        while batch.records < max_records {
            let head = self.head();
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
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            && self.pos.segment < head.segment =>
                    {
                        self.pos = Position {
                            segment: self.pos.segment + 1,
                            offset: 0,
                        };
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let consumed = (self.pos.offset - self.buf_start.offset) as usize;
            let step = {
                let avail = &self.buf[consumed..];
                match record::parse(avail) {
                    Frame::Record {
                        appended_at_ms,
                        payload,
                        size,
                    } => {
                        if batch.records == 0 {
                            batch.first_appended_ms = appended_at_ms;
                            batch.start = self.pos;
                            self.shared
                                .stats
                                .oldest_pending_ms
                                .store(appended_at_ms, Ordering::Relaxed);
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
                    let limit = if self.pos.segment == head.segment {
                        head.offset
                    } else {
                        u64::MAX
                    };
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
                            if unparsed > 0 {
                                self.shared
                                    .stats
                                    .corrupt_frames
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            self.pos = Position {
                                segment: self.pos.segment + 1,
                                offset: 0,
                            };
                            self.file = None;
                            continue;
                        }
                        return Ok(());
                    }
                }
                Step::Bad(skip) => {
                    // Skip to the next frame that checks out (or may), or
                    // past everything read so far.
                    self.shared
                        .stats
                        .corrupt_frames
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        segment = self.pos.segment,
                        offset = self.pos.offset,
                        "damaged spool record skipped"
                    );
                    self.pos.offset += skip as u64;
                }
            }
        }
        Ok(())
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
        let mut batch = Batch {
            end: self.pos,
            start: self.pos,
            ..Batch::default()
        };
        let mut deadline = None;
        loop {
            self.read_available(&mut batch, max_records)?;
            batch.end = self.pos;
            if batch.records >= max_records {
                return Ok(batch);
            }
            if batch.records > 0 && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + linger);
            }
            let wait = self.shared.appended.notified();
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
        let mut batch = Batch {
            end: self.pos,
            start: self.pos,
            ..Batch::default()
        };
        self.read_available(&mut batch, max_records)?;
        batch.end = self.pos;
        Ok(batch)
    }

    /// Marks everything before `batch.end` as stored: writes the cursor and
    /// deletes segments wholly before it.
    pub fn commit(&mut self, batch: &Batch) -> io::Result<()> {
        let dir = &self.shared.dir;
        let tmp = dir.join("cursor.tmp");
        fs::write(
            &tmp,
            format!("{} {}\n", batch.end.segment, batch.end.offset),
        )?;
        fs::rename(&tmp, dir.join("cursor"))?;
        let stats = &self.shared.stats;
        stats
            .pending_records
            .fetch_sub(batch.records as i64, Ordering::Relaxed);
        let bytes = if batch.start.segment == batch.end.segment {
            batch.end.offset - batch.start.offset
        } else {
            // Across segments: what remained of the first plus what was read of the last.
            let mut total = batch.end.offset;
            for seg in batch.start.segment..batch.end.segment {
                let len = fs::metadata(segment_path(dir, seg))
                    .map(|m| m.len())
                    .unwrap_or(0);
                total += if seg == batch.start.segment {
                    len.saturating_sub(batch.start.offset)
                } else {
                    len
                };
            }
            total
        };
        stats
            .pending_bytes
            .fetch_sub(bytes as i64, Ordering::Relaxed);
        stats.oldest_pending_ms.store(0, Ordering::Relaxed);
        for seg in list_segments(dir)? {
            if seg >= batch.end.segment {
                break;
            }
            fs::remove_file(segment_path(dir, seg))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

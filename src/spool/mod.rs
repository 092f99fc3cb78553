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

mod reader;
pub mod record;

pub use reader::{Batch, Reader, Tail};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use record::Frame;

/// A position in the spool: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    /// Past every record: "no limit".
    pub const MAX: Position = Position { segment: u64::MAX, offset: u64::MAX };
}

/// Where one append put its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the previous append ended: a reader that stands here has read
    /// everything before this append.
    pub prev_end: Position,
    /// Where the first record starts (a new segment's 0 when it rolled).
    pub start: Position,
    pub end: Position,
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
    /// Bytes of every segment file on disk (what `spool.max_bytes` limits).
    pub disk_bytes: AtomicI64,
}

impl SpoolStats {
    /// Seconds since the oldest record not yet in InfluxDB was spooled.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        let oldest = self.oldest_pending_ms.load(Ordering::Relaxed);
        if oldest == 0 || self.pending_records.load(Ordering::Relaxed) <= 0 {
            0.0
        } else {
            ((now_ms - oldest).max(0) as f64) / 1000.0
        }
    }

    /// The figures `/metrics` shows.
    pub fn figures(&self, now_ms: i64) -> crate::metrics::SpoolFigures {
        crate::metrics::SpoolFigures {
            pending_records: self.pending_records.load(Ordering::Relaxed),
            pending_bytes: self.pending_bytes.load(Ordering::Relaxed),
            lag_seconds: self.lag_seconds(now_ms),
            appended_records: self.appended_records.load(Ordering::Relaxed),
            corrupt_records: self.corrupt_frames.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
        }
    }
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
    /// What each consumer of the records still needs: segments wholly before
    /// every floor are deleted. The writer's floor is its cursor; the
    /// engine's, the position its judgements are committed up to.
    floors: Mutex<Vec<(&'static str, Position)>>,
}

impl Shared {
    /// Sets `who`'s floor: it needs nothing before `pos` any more.
    fn retain(&self, who: &'static str, pos: Position) {
        let mut floors = self.floors.lock().expect("spool floors");
        match floors.iter_mut().find(|(n, _)| *n == who) {
            Some(f) => f.1 = pos,
            None => floors.push((who, pos)),
        }
    }

    /// Deletes the segments no consumer needs: wholly before every floor.
    /// Only the writer's commit calls it, so with no InfluxDB (spool only)
    /// nothing is ever deleted.
    fn collect_garbage(&self) -> io::Result<()> {
        let floor = {
            let floors = self.floors.lock().expect("spool floors");
            floors.iter().map(|(_, p)| p.segment).min().unwrap_or(0)
        };
        for seg in list_segments(&self.dir)? {
            if seg >= floor {
                break;
            }
            let path = segment_path(&self.dir, seg);
            let len = fs::metadata(&path).map_or(0, |m| m.len());
            match fs::remove_file(&path) {
                Ok(()) => {
                    self.stats.disk_bytes.fetch_sub(len as i64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Lets a consumer other than the writer say how far it no longer needs
/// the records (the engine, once its judgements are committed).
#[derive(Clone)]
pub struct Retention {
    shared: Arc<Shared>,
    who: &'static str,
}

impl Retention {
    pub fn set(&self, pos: Position) {
        self.shared.retain(self.who, pos);
    }
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
        (_, Some(f)) => Position { segment: f, offset: 0 },
        (_, None) => Position { segment: 1, offset: 0 },
    };

    // Cut a torn tail off the last segment, count what is pending.
    let mut pending_records = 0i64;
    let mut pending_bytes = 0i64;
    for &seg in &segments {
        if seg < start.segment {
            continue;
        }
        let from = if seg == start.segment { start.offset } else { 0 };
        let scan = scan_segment(&segment_path(dir, seg), from)?;
        if scan.valid_end < scan.file_len {
            stats.corrupt_frames.fetch_add(scan.corrupt + 1, Ordering::Relaxed);
            tracing::warn!(
                segment = seg,
                valid_bytes = scan.valid_end,
                torn_bytes = scan.file_len - scan.valid_end,
                "spool segment ends in a torn or damaged record (crash while writing?): cutting it off"
            );
            let f = OpenOptions::new().write(true).open(segment_path(dir, seg))?;
            f.set_len(scan.valid_end)?;
            f.sync_all()?;
        } else {
            stats.corrupt_frames.fetch_add(scan.corrupt, Ordering::Relaxed);
        }
        pending_records += scan.records as i64;
        pending_bytes += (scan.valid_end - from) as i64;
    }
    stats.pending_records.store(pending_records, Ordering::Relaxed);
    stats.pending_bytes.store(pending_bytes, Ordering::Relaxed);
    let on_disk: u64 =
        segments.iter().filter_map(|&seg| fs::metadata(segment_path(dir, seg)).ok()).map(|m| m.len()).sum();
    stats.disk_bytes.store(on_disk as i64, Ordering::Relaxed);

    // Appends always go to a new segment.
    let next = segments.last().map_or(start.segment.max(1), |l| l + 1);
    let file = create_segment(dir, next)?;
    segments.push(next);

    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        stats,
        head: Mutex::new(Position { segment: next, offset: 0 }),
        appended: Notify::new(),
        active: Mutex::new(Some(file.clone())),
        dirty: AtomicBool::new(false),
        floors: Mutex::new(vec![(reader::WRITER, start)]),
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
        room: None,
    };
    let reader = Reader::new(shared, start);
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
    let f = OpenOptions::new().create(true).append(true).open(segment_path(dir, seg))?;
    // Make the new file's directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Arc::new(f))
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = text.split_whitespace();
    Some(Position { segment: it.next()?.parse().ok()?, offset: it.next()?.parse().ok()? })
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
    Ok(Scan { records, corrupt, valid_end: valid_end as u64, file_len: data.len() as u64 })
}

/// The appending end, owned by ingest.
pub struct Appender {
    shared: Arc<Shared>,
    file: Arc<File>,
    segment: u64,
    offset: u64,
    segment_size: u64,
    buf: Vec<u8>,
    /// The spool's limit, when one is kept (`limit`).
    room: Option<Room>,
}

/// Keeps the spool within `spool.max_bytes`, or 10 % of its filesystem
/// free, and tells `disk` while it cannot write.
struct Room {
    disk: Arc<crate::disk::Disk>,
    max_bytes: Option<u64>,
    /// The filesystem's free and whole size when last measured.
    avail: u64,
    total: u64,
    measured: Option<std::time::Instant>,
    /// Bytes appended since then.
    since: u64,
    full: bool,
}

/// The free space is measured again after this long or this much written.
const MEASURE_EVERY: Duration = Duration::from_millis(100);
const MEASURE_BYTES: u64 = 1 << 20;

impl Room {
    /// `Err` (StorageFull) when `incoming` bytes would pass the limit.
    fn check(&mut self, dir: &Path, spool_bytes: u64, incoming: u64) -> io::Result<()> {
        let stale = self.full
            || self.since >= MEASURE_BYTES
            || self.measured.is_none_or(|t| t.elapsed() >= MEASURE_EVERY);
        if stale && self.max_bytes.is_none_or(|m| m == 0) {
            let (avail, total) = crate::disk::space(dir)?;
            (self.avail, self.total, self.since, self.measured) =
                (avail, total, 0, Some(std::time::Instant::now()));
        }
        let avail = self.avail.saturating_sub(self.since);
        match crate::disk::judge(self.max_bytes, spool_bytes, avail, self.total, incoming) {
            None => Ok(()),
            Some(why) => {
                self.full = true;
                self.disk.report_full("spool", dir, why.clone());
                Err(io::Error::new(io::ErrorKind::StorageFull, format!("spool full: {why}")))
            }
        }
    }

    fn wrote(&mut self, bytes: u64) {
        self.since += bytes;
        if self.full {
            self.full = false;
            self.disk.clear("spool");
        }
    }

    /// A write failed: a full disk is reported as one.
    fn failed(&mut self, dir: &Path, e: &io::Error) {
        if e.kind() == io::ErrorKind::StorageFull || crate::disk::is_full_message(&e.to_string()) {
            self.full = true;
            self.disk.report_full("spool", dir, e.to_string());
        }
    }
}

impl Appender {
    /// Keeps the spool within `max_bytes` (None or 0: as much as leaves 10 %
    /// of its filesystem free); `disk` hears while it is full.
    pub fn limit(&mut self, disk: Arc<crate::disk::Disk>, max_bytes: Option<u64>) {
        self.room = Some(Room { disk, max_bytes, avail: 0, total: 0, measured: None, since: 0, full: false });
    }

    /// Appends `payloads` as records with one `write`. When this returns Ok
    /// the records survive a crash of the process.
    pub fn append<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        now_ms: i64,
    ) -> io::Result<Appended> {
        let prev_end = self.position();
        self.buf.clear();
        let mut n = 0i64;
        for p in payloads {
            if p.len() > record::MAX_PAYLOAD {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "spool record too large"));
            }
            record::encode(&mut self.buf, now_ms, p);
            n += 1;
        }
        if n == 0 {
            return Ok(Appended { prev_end, start: prev_end, end: prev_end });
        }
        if let Some(room) = &mut self.room {
            let on_disk = self.shared.stats.disk_bytes.load(Ordering::Relaxed).max(0) as u64;
            room.check(&self.shared.dir, on_disk, self.buf.len() as u64)?;
        }
        if self.offset > 0 && self.offset + self.buf.len() as u64 > self.segment_size {
            if let Err(e) = self.roll() {
                if let Some(room) = &mut self.room {
                    room.failed(&self.shared.dir, &e);
                }
                return Err(e);
            }
        }
        let start = self.position();
        if let Err(e) = (&*self.file).write_all(&self.buf) {
            // A partial write leaves a torn frame: cut it so the next append
            // starts clean.
            let _ = self.file.set_len(self.offset);
            if let Some(room) = &mut self.room {
                room.failed(&self.shared.dir, &e);
            }
            return Err(e);
        }
        self.offset += self.buf.len() as u64;
        let bytes = self.buf.len() as i64;
        if let Some(room) = &mut self.room {
            room.wrote(bytes as u64);
        }
        let stats = &self.shared.stats;
        stats.disk_bytes.fetch_add(bytes, Ordering::Relaxed);
        stats.appended_records.fetch_add(n as u64, Ordering::Relaxed);
        stats.appended_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        stats.pending_records.fetch_add(n, Ordering::Relaxed);
        stats.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.shared.dirty.store(true, Ordering::Release);
        let end = self.position();
        *self.shared.head.lock().expect("spool head") = end;
        self.shared.appended.notify_one();
        Ok(Appended { prev_end, start, end })
    }

    /// Where the next append goes (the head).
    pub fn position(&self) -> Position {
        Position { segment: self.segment, offset: self.offset }
    }

    /// A reader of the records from `start` on, for the engine.
    pub fn tail(&self, start: Position) -> Tail {
        Tail::new(self.shared.clone(), start)
    }

    /// The oldest position still in the spool: where a reader that has
    /// lost its place starts.
    pub fn oldest(&self) -> Position {
        let first = list_segments(&self.shared.dir).ok().and_then(|v| v.first().copied());
        first.map_or(self.position(), |segment| Position { segment, offset: 0 })
    }

    /// A handle by which `who` (the engine) keeps the records it still
    /// needs from being deleted; it starts needing everything from `from`.
    pub fn retention(&self, who: &'static str, from: Position) -> Retention {
        self.shared.retain(who, from);
        Retention { shared: self.shared.clone(), who }
    }

    fn roll(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let next = self.segment + 1;
        let file = create_segment(&self.shared.dir, next)?;
        *self.shared.active.lock().expect("spool active") = Some(file.clone());
        self.file = file;
        self.segment = next;
        self.offset = 0;
        *self.shared.head.lock().expect("spool head") = Position { segment: next, offset: 0 };
        Ok(())
    }

    /// Forces what was appended to disk now.
    pub fn sync(&self) -> io::Result<()> {
        self.shared.sync()
    }

    /// A handle that syncs from another task (the fsync timer).
    pub fn syncer(&self) -> Syncer {
        Syncer { shared: self.shared.clone() }
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

//! The outlet: the one stage that writes the spool, and the only writer of
//! line protocol. Every intake hands it decoded readings; the alert stage
//! hands it `area_level` and `alert_event` points; the daemon the
//! `site_info` catalogue at start.
//!
//! ```text
//! intake (MQTT, …) ──Submission──┐                   ┌──▶ Confirm (MQTT ack, …)
//! alerts ──Points────────────────┼─▶ outlet thread ──┼──▶ Feed ──▶ engine (try_send;
//! daemon (site_info) ────────────┘   one write per   │             on a full queue the
//!                                    item, fsync     │             engine reads the spool)
//!                                    per policy      └──▶ spooled-points mark ──▶ alerts
//! ```
//! It runs on a thread of its own: a write (or an fsync) never holds up an
//! async worker. A submission is confirmed to its source only once its
//! records are in the spool — an MQTT message is acked, an SL 651 frame
//! confirmed, an HTTP push answered 204 — so what a sender saw accepted
//! survives a crash. On a failing disk nothing is confirmed and the write is
//! retried: the senders keep their data (the broker holds unacked
//! messages) and `/readyz` names the outlet. The engine's copy goes out
//! without waiting: when the engine is behind, its feed drops the copy and
//! the engine reads those records back from the spool, so the engine can
//! fall behind without ever stopping intake.

pub mod points;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::reading::Reading;
use crate::spool::{Appender, Tail};
use crate::stage::{Probe, Wedge};

pub use crate::spool::Position;

/// Told once a submission's records are in the spool: the source may now
/// confirm them to whoever sent them. Called exactly once, from the outlet's
/// thread; it must not block (hand the news to the source's own task).
pub trait Confirm: Send {
    fn confirm(self: Box<Self>);
}

/// Nothing to confirm (readings that need no answer).
pub struct NoConfirm;

impl Confirm for NoConfirm {
    fn confirm(self: Box<Self>) {}
}

/// Decoded readings from an intake.
pub struct Submission {
    /// The catalogue they were decoded with: each site's series key.
    pub catalog: Arc<Catalog>,
    /// One group per source message (one site, one instant): each becomes
    /// one spool record, one line. Messages that failed to decode are left
    /// out but still confirmed (they were counted and dropped).
    pub messages: Vec<Vec<Reading>>,
    pub confirm: Box<dyn Confirm>,
    /// When the intake took the first message, ms.
    pub received_ms: i64,
}

/// Points derived by the daemon: one record per line.
pub struct Points {
    pub lines: String,
    /// The alert stage's row in `points_pending`: once these are spooled
    /// the outlet raises the spooled mark to it, and the row can go.
    pub pending: Option<i64>,
}

/// What the outlet is handed.
pub enum Input {
    Telemetry(Submission),
    Points(Points),
}

impl Input {
    fn received_ms(&self) -> Option<i64> {
        match self {
            Input::Telemetry(s) => Some(s.received_ms),
            Input::Points(_) => None,
        }
    }
}

/// The engine's copy of what was appended.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Where the previous append ended: an engine standing there has seen
    /// everything before this one.
    pub prev_end: Position,
    pub start: Position,
    pub end: Position,
    /// The readings, in spool order (empty for derived points).
    pub readings: Vec<Reading>,
}

/// How many items may wait for the outlet; a full queue makes the intakes
/// wait (and so, not acknowledge).
pub const INPUT_CAPACITY: usize = 16;
/// How many appends may wait for the engine before their copies are dropped
/// (the engine then reads them from the spool).
pub const FEED_CAPACITY: usize = 64;

/// The text buffer kept between items at most (bytes).
const KEEP_BYTES: usize = 256 * 1024;

/// The sending side, for intakes and the alert stage.
#[derive(Clone)]
pub struct Handle {
    tx: flume::Sender<Input>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the outlet has stopped")]
pub struct Stopped;

impl Handle {
    /// Hands a submission over, waiting while the outlet's queue is full.
    pub async fn submit(&self, s: Submission) -> Result<(), Stopped> {
        self.tx.send_async(Input::Telemetry(s)).await.map_err(|_| Stopped)
    }

    /// Hands points over from a thread of its own, waiting while the queue is full.
    pub fn points(&self, p: Points) -> Result<(), Stopped> {
        self.tx.send(Input::Points(p)).map_err(|_| Stopped)
    }

    /// Items waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// The outlet stage, before it runs.
pub struct Outlet {
    appender: Appender,
    rx: flume::Receiver<Input>,
    feed: flume::Sender<Feed>,
    /// fsync before confirming (`spool.fsync_interval = "0s"`).
    fsync_each_write: bool,
    /// The highest `Points::pending` spooled.
    spooled_points: Arc<AtomicI64>,
    probe: Arc<Probe>,
    metrics: Arc<Metrics>,
}

/// The parts of a new outlet.
pub struct Parts {
    pub outlet: Outlet,
    pub handle: Handle,
    pub feed: flume::Receiver<Feed>,
    /// The highest pending-points row spooled so far.
    pub spooled_points: Arc<AtomicI64>,
}

impl Outlet {
    /// A new outlet and the ends wired to it: the intakes' handle and the
    /// engine's feed.
    pub fn wire(
        appender: Appender,
        fsync_each_write: bool,
        probe: Arc<Probe>,
        metrics: Arc<Metrics>,
    ) -> Parts {
        let (tx, rx) = flume::bounded(INPUT_CAPACITY);
        let (feed_tx, feed_rx) = flume::bounded(FEED_CAPACITY);
        let spooled_points = Arc::new(AtomicI64::new(0));
        let depth = rx.clone();
        probe.set_depth(move || depth.len());
        let outlet = Outlet {
            appender,
            rx,
            feed: feed_tx,
            fsync_each_write,
            spooled_points: spooled_points.clone(),
            probe,
            metrics,
        };
        Parts { outlet, handle: Handle { tx }, feed: feed_rx, spooled_points }
    }

    /// Runs until every sender is gone, or `stop` and the queue is empty.
    /// After `stop` it still writes what is queued, but gives up retrying a failing disk
    /// (unconfirmed data stays with its senders; pending points are written
    /// again at the next start).
    pub fn run(mut self, stop: CancellationToken) {
        let wedge = Wedge::from_env("outlet");
        let mut text = String::new();
        let mut bounds: Vec<(usize, usize)> = Vec::new();
        let mut errors = ErrorLog::default();
        loop {
            self.probe.set_queued(self.rx.len());
            let input = match self.rx.recv_timeout(Duration::from_millis(500)) {
                Ok(i) => i,
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.probe.set_oldest(None);
                    self.probe.beat();
                    if stop.is_cancelled() {
                        break;
                    }
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            self.probe.set_oldest(Some(input.received_ms().unwrap_or_else(crate::stage::now_ms)));
            wedge.hold();
            text.clear();
            bounds.clear();
            let (readings, confirm, pending) = match input {
                Input::Telemetry(s) => {
                    for m in &s.messages {
                        let Some(first) = m.first() else { continue };
                        let Some(entry) = s.catalog.get(&first.site) else {
                            tracing::error!(site = %first.site, "a reading of a site the catalogue lacks; not stored");
                            continue;
                        };
                        let start = text.len();
                        points::telemetry(&mut text, &entry.series, m);
                        bounds.push((start, text.len()));
                    }
                    let readings: Vec<Reading> = s.messages.into_iter().flatten().collect();
                    (readings, Some(s.confirm), None)
                }
                Input::Points(p) => {
                    text = p.lines;
                    let mut at = 0;
                    for line in text.split_inclusive('\n') {
                        bounds.push((at, at + line.len()));
                        at += line.len();
                    }
                    (Vec::new(), None, p.pending)
                }
            };
            let Some(appended) = self.write(&text, &bounds, &stop, &mut errors) else {
                // Stopped while the disk kept failing: nothing confirmed.
                break;
            };
            if let Some(c) = confirm {
                c.confirm();
            }
            if let Some(id) = pending {
                self.spooled_points.fetch_max(id, Ordering::Relaxed);
            }
            let feed =
                Feed { prev_end: appended.prev_end, start: appended.start, end: appended.end, readings };
            if let Err(flume::TrySendError::Full(_)) = self.feed.try_send(feed) {
                // The engine reads these from the spool when it gets there.
                self.metrics.outlet_feed_spilled.inc();
            }
            self.probe.set_oldest(None);
            self.probe.done(bounds.len() as u64);
            // Keep the buffers for the next item, but not a big one's (the
            // `site_info` of a large district at start): memory stays what
            // the usual item needs.
            if text.capacity() > KEEP_BYTES {
                text = String::new();
                bounds = Vec::new();
            }
            if stop.is_cancelled() && self.rx.is_empty() {
                break;
            }
        }
        self.probe.set_queued(0);
        if let Err(e) = self.appender.sync() {
            tracing::error!(error = %e, "final spool fsync failed");
        }
    }

    /// Appends the records, retrying a failing disk until it works or `stop`.
    fn write(
        &mut self,
        text: &str,
        bounds: &[(usize, usize)],
        stop: &CancellationToken,
        errors: &mut ErrorLog,
    ) -> Option<crate::spool::Appended> {
        let mut wait = Duration::from_millis(100);
        loop {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let records = bounds.iter().map(|&(a, b)| &text.as_bytes()[a..b]);
            let result = self.appender.append(records, now_ms).and_then(|a| {
                if self.fsync_each_write {
                    self.appender.sync()?;
                }
                Ok(a)
            });
            match result {
                Ok(a) => {
                    if errors.failing {
                        tracing::info!("spool writes work again");
                        errors.failing = false;
                        self.probe.set_problem(None);
                    }
                    return Some(a);
                }
                Err(e) => {
                    self.metrics.spool_append_errors.inc();
                    let msg = format!("cannot write to the spool: {e}; nothing is confirmed, retrying");
                    errors.log(&msg);
                    self.probe.set_problem(Some(msg));
                    if stop.is_cancelled() {
                        tracing::error!(
                            "stopping with the spool failing: unconfirmed data stays with its senders"
                        );
                        return None;
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Reads spooled telemetry back as readings: the engine's way to catch up
/// on what it was too far behind to take from its feed, and on what was
/// spooled but not judged before a crash.
pub struct Replay {
    tail: Tail,
}

impl Replay {
    pub fn new(tail: Tail) -> Replay {
        Replay { tail }
    }

    /// Where the next record read starts.
    pub fn position(&self) -> Position {
        self.tail.position()
    }

    pub fn seek(&mut self, pos: Position) {
        self.tail.seek(pos)
    }

    /// The end of what is spooled now.
    pub fn head(&self) -> Position {
        self.tail.head()
    }

    /// Reads up to `max_records` records, not past `limit`, appending the
    /// readings of the `telemetry` ones to `out`; the position after them.
    pub fn read(
        &mut self,
        limit: Position,
        max_records: usize,
        out: &mut Vec<Reading>,
    ) -> std::io::Result<Position> {
        let batch = self.tail.read_until(limit, max_records)?;
        let bad = points::readings(&batch.body, out);
        if bad > 0 {
            tracing::warn!(records = bad, "spooled telemetry that does not parse; skipped");
        }
        Ok(batch.end)
    }
}

/// Logs a failing disk once every 10 s, not at every retry.
#[derive(Default)]
struct ErrorLog {
    failing: bool,
    last: Option<Instant>,
}

impl ErrorLog {
    fn log(&mut self, msg: &str) {
        self.failing = true;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::error!("{msg}");
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;
    use crate::reading::Value;
    use std::sync::atomic::AtomicUsize;

    struct Count(Arc<AtomicUsize>);

    impl Confirm for Count {
        fn confirm(self: Box<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn reading(site: &str, v: f64, ts: i64) -> Reading {
        Reading { site: site.into(), metric: "water_depth_cm".into(), value: Value::Float(v), ts }
    }

    #[test]
    fn confirms_after_the_write_feeds_the_engine_and_marks_points() {
        let dir = tempfile::tempdir().unwrap();
        let (appender, mut reader) = crate::spool::open(dir.path(), 1 << 20).unwrap();
        let catalog =
            Arc::new(Catalog::from_sites([("A", Kind::Waterlogging, "s1"), ("B", Kind::Waterlogging, "s1")]));
        let parts = Outlet::wire(appender, false, Probe::new("outlet"), Arc::new(Metrics::new()));
        let stop = CancellationToken::new();
        let t = std::thread::spawn({
            let stop = stop.clone();
            move || parts.outlet.run(stop)
        });
        let confirmed = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            parts
                .handle
                .submit(Submission {
                    catalog: catalog.clone(),
                    messages: vec![vec![reading("A", 1.5, 10)], vec![], vec![reading("B", 2.0, 11)]],
                    confirm: Box::new(Count(confirmed.clone())),
                    received_ms: 0,
                })
                .await
                .unwrap();
        });
        parts
            .handle
            .points(Points { lines: "area_level,street=s1 level=1i 12\n".into(), pending: Some(7) })
            .unwrap();
        let first = parts.feed.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(confirmed.load(Ordering::SeqCst), 1);
        assert_eq!(first.readings, vec![reading("A", 1.5, 10), reading("B", 2.0, 11)]);
        let second = parts.feed.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(second.prev_end, first.end);
        assert!(second.readings.is_empty());
        drop(parts.handle);
        t.join().unwrap();
        assert_eq!(parts.spooled_points.load(Ordering::SeqCst), 7);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let batch = rt.block_on(reader.next_batch(10, Duration::from_millis(10), &stop)).unwrap();
        assert_eq!(
            String::from_utf8(batch.body).unwrap(),
            "telemetry,kind=waterlogging,site=A,street=s1 water_depth_cm=1.5 10\n\
             telemetry,kind=waterlogging,site=B,street=s1 water_depth_cm=2.0 11\n\
             area_level,street=s1 level=1i 12\n"
        );
    }
}

//! The engine stage: a thread that judges every spooled reading once, in
//! spool order, and hands the transitions to the alert stage.
//!
//! Its input is the spool. The outlet's feed carries a copy of each append
//! so the engine rarely touches the disk; when the engine falls behind and
//! the feed dropped copies, or after a restart, it reads the records it has
//! not judged from the spool (`outlet::Replay`). Its position is the end
//! of what it judged; each batch of transitions carries it, and the alert
//! stage commits it with them, so after a crash the engine resumes right
//! after the last reading whose consequences are on record.
//!
//! It also ticks every second (sustains, rain windows, silent sites) and
//! applies reloads, so every change of the state happens on this one thread,
//! in order. Handing transitions over may wait for the alert stage; that
//! wait holds up only the engine — intake goes on spooling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::snapshot::{Snapshots, SNAPSHOT_EVERY};
use super::Live;
use crate::clock::Clock;
use crate::engine::{Judged, Progress, Transition, TransitionSink};
use crate::outlet::{Feed, Position, Replay};
use crate::plan::Plan;
use crate::reading::Reading;
use crate::stage::{Probe, Wedge};

/// Records read from the spool per step when catching up.
const CATCH_UP_RECORDS: usize = 2048;
/// Feeds judged before their transitions go to the alert stage, at most.
const DRAIN_FEEDS: usize = 64;
/// How often the engine's position goes to the alert stage when nothing
/// changes (to be committed there).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Asks the engine stage to do something on its thread.
pub enum Control {
    /// Switch to a new plan; answered once applied.
    Reload(Arc<Plan>, flume::Sender<()>),
}

/// A handle to send the stage controls.
#[derive(Clone)]
pub struct Controls {
    tx: flume::Sender<Control>,
}

impl Controls {
    pub fn channel() -> (Controls, flume::Receiver<Control>) {
        let (tx, rx) = flume::unbounded();
        (Controls { tx }, rx)
    }

    /// Applies a new plan on the engine's thread, waiting at most `wait`
    /// for it. False when the stage is gone or did not answer in time.
    pub fn reload(&self, plan: Arc<Plan>, wait: Duration) -> bool {
        let (tx, rx) = flume::bounded(1);
        self.tx.send(Control::Reload(plan, tx)).is_ok() && rx.recv_timeout(wait).is_ok()
    }
}

fn progress(p: Position) -> Progress {
    Progress { segment: p.segment, offset: p.offset }
}

/// Converts the alert stage's committed mark back to a spool position.
pub fn position(p: Progress) -> Position {
    Position { segment: p.segment, offset: p.offset }
}

pub struct EngineStage {
    pub live: Arc<Live>,
    pub feed: flume::Receiver<Feed>,
    pub controls: flume::Receiver<Control>,
    pub replay: Replay,
    pub sink: Arc<dyn TransitionSink>,
    pub probe: Arc<Probe>,
    /// Transitions judged and not yet handed over, and the position after them.
    pub held: (Vec<Transition>, Option<Position>),
    /// At stop, how long the stage may take to judge what intake spooled
    /// before it stopped (0: stop at once, the rest is judged after the
    /// restart).
    pub drain_for: Duration,
    /// floodguard's intakes and whether each is up (the MQTT connection):
    /// a change goes to the engine at the next tick, so a broker down is
    /// one alert about the intake, not one per site.
    pub intakes: Vec<(&'static str, IntakeUp)>,
    /// Where snapshots of the engine's state go (`live::snapshot`).
    pub snapshots: Option<Snapshots>,
    /// Started from a snapshot behind the committed cursor: the readings up
    /// to here were judged and their transitions are on record; they are
    /// judged again to rebuild the state, and nothing is handed on.
    pub rejudge_until: Option<Position>,
    /// The time the engine judges by: the wall, or storm time in the demo.
    pub clock: Clock,
}

/// Says whether an intake is up now.
pub type IntakeUp = Box<dyn Fn() -> bool + Send>;

/// Why the stage stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("the alert stage is gone")]
    SinkClosed,
    #[error("reading the spool: {0}")]
    Spool(String),
}

impl EngineStage {
    /// Runs until `stop`, or until the outlet is gone.
    pub fn run(mut self, stop: CancellationToken) -> Result<(), Stopped> {
        let result = self.work(&stop);
        self.live.close();
        self.probe.set_queued(0);
        self.probe.set_oldest(None);
        result
    }

    fn work(&mut self, stop: &CancellationToken) -> Result<(), Stopped> {
        let wedge = Wedge::from_env("engine");
        if let Some(until) = self.rejudge_until.take() {
            self.rejudge(until, stop)?;
        }
        // The state it starts from, at once: a kill in the next seconds
        // then resumes from here rather than from the alerts' levels.
        self.offer_snapshot();
        // What was spooled and not judged before this start.
        let head = self.replay.head();
        if self.replay.position() < head {
            tracing::info!(from = ?self.replay.position(), to = ?head, "judging the readings spooled before the restart");
            self.catch_up(head, stop)?;
        }
        let mut next_tick = Instant::now();
        // What the engine was last told of each intake.
        let mut known: Vec<Option<bool>> = Vec::new();
        let mut sent_at = Instant::now();
        let mut sent_pos = self.replay.position();
        let mut snapshot_at = Instant::now();
        while !stop.is_cancelled() {
            while let Ok(c) = self.controls.try_recv() {
                self.control(c)?;
            }
            self.probe.set_queued(self.feed.len());
            let wait = next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            match self.feed.recv_timeout(wait) {
                Ok(f) => {
                    self.probe.set_oldest(Some(crate::stage::now_ms()));
                    wedge.hold();
                    // What else waits goes to the alert stage as one batch.
                    self.take(f, stop)?;
                    for _ in 1..DRAIN_FEEDS {
                        match self.feed.try_recv() {
                            Ok(f) => self.take(f, stop)?,
                            Err(_) => break,
                        }
                    }
                    self.flush()?;
                    self.probe.set_oldest(None);
                }
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.probe.beat();
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + Duration::from_secs(1);
                // Appends whose copies the feed dropped and nothing came after.
                let head = self.replay.head();
                if self.feed.is_empty() && self.replay.position() < head {
                    self.catch_up(head, stop)?;
                }
                let now = self.clock.now();
                let mut t = Vec::new();
                for (k, (id, up)) in self.intakes.iter().enumerate() {
                    let up = up();
                    if known.get(k).copied() != Some(Some(up)) {
                        t.extend(self.live.intake(id, up, now));
                        known.resize(self.intakes.len(), None);
                        known[k] = Some(up);
                    }
                }
                t.extend(self.live.tick(now));
                let pos = self.replay.position();
                if !t.is_empty() || (pos != sent_pos && sent_at.elapsed() >= PROGRESS_EVERY) {
                    self.deliver(t, Some(pos))?;
                    sent_pos = pos;
                    sent_at = Instant::now();
                }
                if snapshot_at.elapsed() >= SNAPSHOT_EVERY {
                    snapshot_at = Instant::now();
                    self.offer_snapshot();
                }
                self.probe.beat();
            }
        }
        if stop.is_cancelled() {
            if !self.drain_for.is_zero() {
                self.drain()?;
            }
            self.flush()?;
            let pos = self.replay.position();
            self.deliver(Vec::new(), Some(pos))?;
            self.offer_snapshot();
        }
        Ok(())
    }

    /// Offers the state as it is at the position: everything judged before
    /// it has been handed to the alert stage.
    fn offer_snapshot(&self) {
        debug_assert!(self.held.0.is_empty());
        if let Some(s) = &self.snapshots {
            s.offer(self.replay.position(), self.live.snapshot(s.last_size()));
        }
    }

    /// Judges the spool up to `until` again, handing nothing on (see
    /// `rejudge_until`).
    fn rejudge(&mut self, until: Position, stop: &CancellationToken) -> Result<(), Stopped> {
        tracing::info!(from = ?self.replay.position(), to = ?until, "rebuilding the engine's state from its snapshot");
        let mut readings: Vec<Reading> = Vec::new();
        while self.replay.position() < until && !stop.is_cancelled() {
            let before = self.replay.position();
            readings.clear();
            let end = self.replay.read(until, CATCH_UP_RECORDS, &mut readings).map_err(|e| {
                tracing::error!(error = %e, "cannot read the spool to judge it");
                Stopped::Spool(e.to_string())
            })?;
            if !readings.is_empty() {
                self.live.rejudge(&readings, self.clock.now());
            }
            if end == before {
                break;
            }
        }
        Ok(())
    }

    /// At stop (intake has stopped, so the spool's head stays put): judges
    /// the rest of the spool, for at most `drain_for`, so what intake took
    /// is on record before the daemon ends. What is left is judged after the
    /// restart, from the snapshot taken at stop.
    fn drain(&mut self) -> Result<(), Stopped> {
        let head = self.replay.head();
        if self.replay.position() >= head {
            return Ok(());
        }
        tracing::info!(from = ?self.replay.position(), to = ?head, "stopping: judging what was spooled before intake stopped");
        let give_up = CancellationToken::new();
        let (g, d) = (give_up.clone(), self.drain_for);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            g.cancel();
        });
        self.catch_up(head, &give_up)?;
        if give_up.is_cancelled() {
            tracing::warn!("stopping with readings not yet judged: they are judged after the restart");
        }
        Ok(())
    }

    fn control(&mut self, c: Control) -> Result<(), Stopped> {
        match c {
            Control::Reload(plan, reply) => {
                self.flush()?;
                let t = self.live.reload(plan, self.clock.now());
                let _ = reply.send(());
                self.deliver(t, None)
            }
        }
    }

    /// One append from the feed: judged from memory when it follows what
    /// was judged, after a catch-up from the spool when copies were dropped,
    /// skipped when the catch-up already judged it.
    fn take(&mut self, f: Feed, stop: &CancellationToken) -> Result<(), Stopped> {
        let pos = self.replay.position();
        if f.end <= pos {
            return Ok(());
        }
        if pos < f.prev_end {
            self.catch_up(f.start, stop)?;
            if self.replay.position() < f.prev_end {
                // Stopped before getting there: these records are judged
                // from the spool (at stop, or after the restart), never
                // skipped.
                return Ok(());
            }
        }
        // The roll to a new segment leaves nothing between prev_end and start.
        self.replay.seek(f.end);
        if f.readings.is_empty() {
            self.probe.beat();
            return Ok(());
        }
        let n = f.readings.len() as u64;
        self.judge(&f.readings, f.end)?;
        self.probe.done(n);
        Ok(())
    }

    /// Judges the spooled records from the position up to `limit`.
    fn catch_up(&mut self, limit: Position, stop: &CancellationToken) -> Result<(), Stopped> {
        let mut readings: Vec<Reading> = Vec::new();
        while self.replay.position() < limit && !stop.is_cancelled() {
            let before = self.replay.position();
            readings.clear();
            let end = self.replay.read(limit, CATCH_UP_RECORDS, &mut readings).map_err(|e| {
                tracing::error!(error = %e, "cannot read the spool to judge it");
                Stopped::Spool(e.to_string())
            })?;
            if !readings.is_empty() {
                self.judge(&readings, end)?;
                self.flush()?;
                self.probe.done(readings.len() as u64);
            }
            if end == before {
                // Nothing more on disk before the limit.
                break;
            }
        }
        Ok(())
    }

    /// Judges readings; their transitions wait in `held` for `flush`.
    fn judge(&mut self, readings: &[Reading], end: Position) -> Result<(), Stopped> {
        let t = self.live.readings(readings, self.clock.now());
        if !t.is_empty() {
            self.held.0.extend(t);
            self.held.1 = Some(end);
        }
        Ok(())
    }

    /// Hands the held transitions to the alert stage.
    fn flush(&mut self) -> Result<(), Stopped> {
        if self.held.0.is_empty() {
            return Ok(());
        }
        let (t, end) = std::mem::take(&mut self.held);
        self.deliver(t, end)
    }

    fn deliver(&mut self, transitions: Vec<Transition>, upto: Option<Position>) -> Result<(), Stopped> {
        self.sink.deliver(Judged { transitions, upto: upto.map(progress) }).map_err(|_| Stopped::SinkClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Change;
    use crate::level::Level;
    use crate::metrics::Metrics;
    use crate::outlet::points;
    use crate::reading::Value;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Capture(Mutex<Vec<Judged>>);

    impl TransitionSink for Capture {
        fn deliver(&self, judged: Judged) -> Result<(), crate::engine::sink::Closed> {
            self.0.lock().unwrap().push(judged);
            Ok(())
        }
    }

    fn depth(v: f64, ts: i64) -> Reading {
        Reading { site: "CD-JS-01".into(), metric: "water_depth_cm".into(), value: Value::Float(v), ts }
    }

    fn line(r: &Reading) -> String {
        let mut s = String::new();
        points::telemetry(
            &mut s,
            &points::series_key("waterlogging", "CD-JS-01", "chengdong"),
            std::slice::from_ref(r),
        );
        s
    }

    /// Site level changes seen by the sink, and the last mark.
    fn seen(c: &Capture) -> (Vec<(Option<Level>, Option<Level>)>, Option<Progress>) {
        let all = c.0.lock().unwrap();
        let changes = all
            .iter()
            .flat_map(|j| &j.transitions)
            .filter_map(|t| match &t.change {
                Change::Site(s) if &*s.rule == "depth" => Some((s.from, s.to)),
                _ => None,
            })
            .collect();
        (changes, all.iter().filter_map(|j| j.upto).max())
    }

    #[test]
    fn every_spooled_reading_is_judged_once_in_order_from_memory_or_from_the_spool() {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let config = crate::config::load(&main).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut appender, _reader) = crate::spool::open(dir.path(), 1 << 20).unwrap();
        let start = appender.position();
        let t0 = crate::reading::to_ns(chrono::Utc::now()) - 60_000_000_000;
        let s = 1_000_000_000;
        // Spooled before the engine starts (a crash left them unjudged): Ⅳ.
        for (i, v) in [12.0, 13.0].into_iter().enumerate() {
            appender.append([line(&depth(v, t0 + i as i64 * s)).as_bytes()], 0).unwrap();
        }
        let live = Arc::new(Live::new(config.plan.clone(), Arc::new(Metrics::new()), config.timezone, t0));
        let capture = Arc::new(Capture::default());
        let (feed_tx, feed_rx) = flume::bounded(8);
        let (_controls, controls_rx) = Controls::channel();
        let stage = EngineStage {
            live: live.clone(),
            feed: feed_rx,
            controls: controls_rx,
            replay: Replay::new(appender.tail(start)),
            sink: capture.clone(),
            probe: Probe::new("engine"),
            held: Default::default(),
            clock: Clock::wall(),
            drain_for: Duration::ZERO,
            intakes: Vec::new(),
            snapshots: None,
            rejudge_until: None,
        };
        let stop = CancellationToken::new();
        let t = std::thread::spawn({
            let stop = stop.clone();
            move || stage.run(stop)
        });
        let wait_for = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while seen(&capture).0.len() < n {
                assert!(Instant::now() < deadline, "{:?}", seen(&capture));
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(1);
        assert_eq!(seen(&capture).0, vec![(None, Some(Level::IV))]);
        // Two more appends; the feed dropped the first copy (the engine was
        // behind), so the engine reads it from the spool.
        let r3 = depth(22.0, t0 + 2 * s);
        let r4 = depth(23.0, t0 + 3 * s);
        let a3 = appender.append([line(&r3).as_bytes()], 0).unwrap();
        let a4 = appender.append([line(&r4).as_bytes()], 0).unwrap();
        let f3 = Feed { prev_end: a3.prev_end, start: a3.start, end: a3.end, readings: vec![r3] };
        let f4 = Feed { prev_end: a4.prev_end, start: a4.start, end: a4.end, readings: vec![r4] };
        feed_tx.send(f4).unwrap();
        wait_for(2);
        // The dropped copy turning up late is not judged again.
        feed_tx.send(f3).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.cancel();
        t.join().unwrap().unwrap();
        let (changes, last) = seen(&capture);
        assert_eq!(changes, vec![(None, Some(Level::IV)), (Some(Level::IV), Some(Level::III))]);
        assert_eq!(last, Some(progress(a4.end)), "the mark covers everything judged");
        assert!(live.closed().is_cancelled());
    }

    /// SIGTERM while the engine is behind, in the middle of catching up for
    /// a feed: the records between it and the feed are judged at stop (or
    /// after the restart), never skipped by jumping to the feed.
    #[test]
    fn a_stop_in_the_middle_of_a_catch_up_skips_nothing() {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let config = crate::config::load(&main).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut appender, _reader) = crate::spool::open(dir.path(), 1 << 20).unwrap();
        let start = appender.position();
        let t0 = crate::reading::to_ns(chrono::Utc::now()) - 60_000_000_000;
        let s = 1_000_000_000;
        // Ⅳ, Ⅲ, Ⅱ, two readings each (the sample plan's sustain): the feed
        // carries only the last append, the engine has judged none.
        let values = [12.0, 13.0, 22.0, 23.0, 28.0, 29.0];
        let mut last = None;
        for (i, v) in values.into_iter().enumerate() {
            let r = depth(v, t0 + i as i64 * s);
            let a = appender.append([line(&r).as_bytes()], 0).unwrap();
            last = Some(Feed { prev_end: a.prev_end, start: a.start, end: a.end, readings: vec![r] });
        }
        let live = Arc::new(Live::new(config.plan.clone(), Arc::new(Metrics::new()), config.timezone, t0));
        let capture = Arc::new(Capture::default());
        let (_feed_tx, feed_rx) = flume::bounded(8);
        let (_controls, controls_rx) = Controls::channel();
        let mut stage = EngineStage {
            live,
            feed: feed_rx,
            controls: controls_rx,
            replay: Replay::new(appender.tail(start)),
            sink: capture.clone(),
            probe: Probe::new("engine"),
            held: Default::default(),
            drain_for: Duration::from_secs(10),
            intakes: Vec::new(),
            snapshots: None,
            rejudge_until: None,
            clock: Clock::wall(),
        };
        let stop = CancellationToken::new();
        stop.cancel();
        stage.take(last.unwrap(), &stop).unwrap();
        assert_eq!(stage.replay.position(), start, "nothing skipped, nothing judged yet");
        stage.drain().unwrap();
        stage.flush().unwrap();
        let (changes, _) = seen(&capture);
        assert_eq!(
            changes,
            vec![
                (None, Some(Level::IV)),
                (Some(Level::IV), Some(Level::III)),
                (Some(Level::III), Some(Level::II))
            ]
        );
    }
}

//! The alert stage: a thread of its own that applies the engine's
//! judgements to the alerts in `state.db`, runs the follow-ups every second
//! (repeats, escalations, group flushes), and never loses a batch.
//!
//! Batches queued behind each other are applied in one transaction (a storm
//! of level changes costs a few commits, not thousands). A batch whose
//! transaction fails — `state.db` locked by another process, a full disk —
//! is kept and tried again, with backoff, until it commits: an alert is
//! delayed, never dropped, and `/readyz` names the stage meanwhile. While
//! it retries, its queue fills and the engine waits, behind it the engine's
//! feed; intake goes on spooling. After each commit the engine's progress
//! mark of the batch lets the spool delete what both the engine and
//! InfluxDB are done with.
//!
//! In a cluster (`crate::cluster`) only the leader records: a standby keeps
//! the latest change per alert (`alerts::shadow`) and its own engine
//! cursor, runs no follow-ups, and when it comes to lead, applies what the
//! record lacks (`AlertManager::take_over`) before anything else. A batch
//! refused because the lease was lost meanwhile goes to the shadow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::AlertManager;
use crate::engine::sink::Closed;
use crate::engine::{Judged, Progress, Transition, TransitionSink};
use crate::stage::{now_ms, Probe, Wedge};

/// Batches that may wait for the stage; then the engine waits.
pub const INBOX_CAPACITY: usize = 32;
/// Batches applied in one transaction at most, and transitions: a storm
/// costs few commits, and no commit holds `state.db` for long (the outbox
/// writes between them). An alert changed several times, and a notice
/// waiting in its group, are written once per transaction, so in a storm
/// larger transactions cost less a transition: 1,000 rather than 250 took
/// about a tenth off the stage's CPU in the storm bench (a transaction of
/// 1,000 is some 40 ms of work).
const COALESCE: usize = 256;
const COALESCE_TRANSITIONS: usize = 1000;
/// A commit this recent means a storm…
const BUSY: Duration = Duration::from_millis(50);
/// …in which the stage waits this long at most for more before a commit.
const LINGER: Duration = Duration::from_millis(5);

/// A judgement and when it was handed over (ms).
type Item = (Judged, i64);

/// The engine's side: a bounded queue into the stage.
pub struct Inbox {
    tx: flume::Sender<Item>,
}

impl Inbox {
    pub fn channel() -> (Inbox, flume::Receiver<Item>) {
        let (tx, rx) = flume::bounded(INBOX_CAPACITY);
        (Inbox { tx }, rx)
    }
}

impl TransitionSink for Inbox {
    fn deliver(&self, judged: Judged) -> Result<(), Closed> {
        self.tx.send((judged, now_ms())).map_err(|_| Closed)
    }
}

pub struct AlertStage {
    pub manager: Arc<AlertManager>,
    pub inbox: flume::Receiver<Item>,
    pub probe: Arc<Probe>,
    /// Told the engine's committed progress (the spool keeps what is after it).
    pub committed: Box<dyn Fn(Progress) + Send>,
    /// Told while `state.db` (at the path) cannot be written for a full disk.
    pub disk: Option<(Arc<crate::disk::Disk>, std::path::PathBuf)>,
    /// The time follow-ups are due by: the wall, or storm time in the demo.
    pub clock: crate::clock::Clock,
}

impl AlertStage {
    /// In a shared state: on coming to lead, the record is made to say what
    /// this node judged as a standby (then follow-ups and recording go on
    /// as the leader's); on losing the lead, the next lead takes over again.
    fn take_over_if_due(
        &self,
        term: Option<i64>,
        shadow: &mut super::shadow::Shadow,
        led: &mut Option<i64>,
    ) -> Result<(), super::OpError> {
        if !self.manager.cluster().is_shared() {
            return Ok(());
        }
        let Some(epoch) = term else {
            *led = None;
            return Ok(());
        };
        // A term this node has not taken over in: a new one even when the
        // lead was lost and taken again between two looks (another node
        // may have led and recorded in between).
        if *led != Some(epoch) {
            let n = self.manager.take_over(shadow, self.clock.now())?;
            tracing::info!(applied = n, epoch, "leading: the record has what this node judged as a standby");
            shadow.clear();
            *led = Some(epoch);
        }
        Ok(())
    }

    /// Runs until `stop`; then applies what is queued (unless the store is
    /// failing: the engine judges it again after the restart, from the
    /// committed mark) and returns.
    pub fn run(self, stop: CancellationToken) {
        let wedge = Wedge::from_env("alerts");
        // In a shared state the points on record are the leader's: a node
        // hands them on when it takes over.
        let resend = if self.manager.cluster().is_shared() { Ok(0) } else { self.manager.resend_points() };
        match resend {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                batches = n,
                "alert and area points from before the restart handed to the spool again"
            ),
            Err(e) => tracing::error!(error = %e, "cannot read the pending points"),
        }
        let mut held: Vec<Item> = Vec::new();
        let cluster = self.manager.cluster().clone();
        let mut shadow = super::shadow::Shadow::default();
        // The term this node took over in last (a takeover is due when it
        // comes to lead in a shared state).
        let mut led: Option<i64> = None;
        let mut retry = Duration::from_millis(200);
        let mut next_tick = Instant::now();
        let mut last_log: Option<Instant> = None;
        let mut last_commit: Option<Instant> = None;
        loop {
            self.probe.set_queued(self.inbox.len() + held.len());
            if held.is_empty() {
                let wait = next_tick.saturating_duration_since(Instant::now());
                match self.inbox.recv_timeout(wait) {
                    Ok(first) => {
                        let mut transitions = first.0.transitions.len();
                        held.push(first);
                        // Under load (a commit moments ago) wait a little for
                        // more: a storm is then a commit every few
                        // milliseconds, not one per handful of transitions.
                        // Quiet, a change goes at once.
                        let busy = last_commit.is_some_and(|t| t.elapsed() < BUSY);
                        let until = Instant::now() + if busy { LINGER } else { Duration::ZERO };
                        while held.len() < COALESCE && transitions < COALESCE_TRANSITIONS {
                            let next = match until.checked_duration_since(Instant::now()) {
                                Some(left) if !left.is_zero() => self.inbox.recv_timeout(left).ok(),
                                _ => self.inbox.try_recv().ok(),
                            };
                            match next {
                                Some(more) => {
                                    transitions += more.0.transitions.len();
                                    held.push(more);
                                }
                                None => break,
                            }
                        }
                    }
                    Err(flume::RecvTimeoutError::Timeout) => {}
                    Err(flume::RecvTimeoutError::Disconnected) => {
                        if stop.is_cancelled() || held.is_empty() {
                            break;
                        }
                    }
                }
            }
            if !held.is_empty() {
                self.probe.set_oldest(held.iter().map(|(_, at)| *at).min());
                wedge.hold();
                let term = cluster.term();
                let leads = term.is_some();
                if let Err(e) = self.take_over_if_due(term, &mut shadow, &mut led) {
                    self.probe.set_problem(Some(format!("cannot take over the alerts ({e}); retrying")));
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(Duration::from_secs(2));
                    continue;
                }
                let batches: Vec<(&[Transition], Option<Progress>)> =
                    held.iter().map(|(j, _)| (j.transitions.as_slice(), j.upto)).collect();
                let result = if leads {
                    self.manager.handle_many(&batches)
                } else {
                    Err(super::OpError::Fenced("a standby".into()))
                };
                let result = match result {
                    Err(super::OpError::Fenced(_)) if cluster.is_shared() => {
                        // A standby (or a leader deposed meanwhile): the
                        // leader records; this node keeps what it judged.
                        led = None;
                        for (t, _) in &batches {
                            shadow.record(t);
                        }
                        match batches.iter().filter_map(|(_, p)| *p).max() {
                            Some(p) => self.manager.record_cursor(p),
                            None => Ok(()),
                        }
                    }
                    other => other,
                };
                match result {
                    Ok(()) => {
                        if let Some(p) = held.iter().filter_map(|(j, _)| j.upto).max() {
                            (self.committed)(p);
                        }
                        last_commit = Some(Instant::now());
                        let n: usize = held.iter().map(|(j, _)| j.transitions.len().max(1)).sum();
                        held.clear();
                        retry = Duration::from_millis(200);
                        self.probe.set_problem(None);
                        if let Some((disk, _)) = &self.disk {
                            disk.clear("state.db");
                        }
                        self.probe.set_oldest(None);
                        self.probe.done(n as u64);
                        if last_log.take().is_some() {
                            tracing::info!("alert changes are recorded again");
                        }
                    }
                    Err(e) => {
                        let msg = format!("cannot record alert changes ({e}); holding them and retrying");
                        if let Some((disk, path)) = &self.disk {
                            if crate::disk::is_full_message(&e.to_string()) {
                                disk.report_full("state.db", path, e.to_string());
                            }
                        }
                        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            tracing::error!(batches = held.len(), "{msg}");
                            last_log = Some(Instant::now());
                        }
                        self.probe.set_problem(Some(msg));
                        if stop.is_cancelled() {
                            tracing::warn!("stopping with alert changes unrecorded: the engine judges them again at the next start");
                            break;
                        }
                        std::thread::sleep(retry);
                        retry = (retry * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + Duration::from_secs(1);
                let term = cluster.term();
                let leads = term.is_some();
                let took = self.take_over_if_due(term, &mut shadow, &mut led);
                if let Err(e) = &took {
                    self.probe.set_problem(Some(format!("cannot take over the alerts ({e}); retrying")));
                }
                if !leads || took.is_err() {
                    // Follow-ups are the leader's (a new leader's once it took over).
                    self.probe.beat();
                } else if let Err(e) = self.manager.tick(self.clock.now()) {
                    // Follow-ups are worked out from the state: the next tick does them.
                    if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::error!(error = %e, "cannot run alert follow-ups; trying again each second");
                        last_log = Some(Instant::now());
                    }
                    self.probe.set_problem(Some(format!("cannot run alert follow-ups: {e}")));
                } else {
                    self.probe.beat();
                }
            }
            if stop.is_cancelled() && held.is_empty() && self.inbox.is_empty() {
                break;
            }
        }
        self.probe.set_queued(0);
        self.probe.set_oldest(None);
    }
}

//! The outbox stage: a thread of its own with a small tokio runtime, on
//! which the outbox's SQLite work and its senders run — so a slow disk or a
//! slow provider never holds up an async worker of the daemon.
//!
//! It queues what the alert manager committed (notifications logged with
//! `enqueued = 0`), woken after each commit and every second besides: a
//! failed enqueue is tried again while the daemon runs. The per-channel
//! workers send within budgets, with retries and digests (`Outbox::run`);
//! one more thread asks for receipts and call results (`run_receipts`).
//!
//! In a cluster only the leader does any of it; a node coming to lead
//! first recovers the sends the old leader cut off (same idempotency key),
//! and looks for such rows every second after (`Outbox::recover_deposed`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Outbox, GROUPS};
use crate::stage::{Probe, Wedge};

pub struct OutboxStage {
    pub outbox: Arc<Outbox>,
    /// Woken by the alert manager after a commit with notifications.
    pub wake: Arc<Notify>,
    pub probe: Arc<Probe>,
    /// After stop, how long what is due may still go out.
    pub drain_for: Duration,
}

/// Notifications queued per round, so a storm's thousands are queued in
/// pieces and the figures stay fresh.
const ROUND: usize = 200;

/// How often the leader looks for sends a deposed leader left `sending`.
const RECOVERY_EVERY: Duration = Duration::from_secs(1);

impl OutboxStage {
    /// Runs until `stop`, then lets what is due go out for at most
    /// `drain_for` (the rest goes at the next start). Each channel group
    /// sends from a thread and runtime of its own — a provider or a query
    /// that hangs holds up only its group — while this thread queues what
    /// the alert manager committed.
    pub fn run(self, stop: CancellationToken) -> Result<(), String> {
        let wedge = Wedge::from_env("outbox");
        let workers_stop = CancellationToken::new();
        let mut workers = Vec::new();
        for (g, group) in GROUPS.iter().enumerate() {
            let (outbox, s) = (self.outbox.clone(), workers_stop.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("outbox runtime: {e}"))?;
            let t = std::thread::Builder::new()
                .name(format!("fg-outbox-{}", group[0]))
                .spawn(move || rt.block_on(outbox.run(g, s)))
                .map_err(|e| format!("outbox thread: {e}"))?;
            workers.push(t);
        }
        {
            let (outbox, s) = (self.outbox.clone(), workers_stop.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("outbox runtime: {e}"))?;
            let t = std::thread::Builder::new()
                .name("fg-outbox-receipts".into())
                .spawn(move || rt.block_on(outbox.run_receipts(s)))
                .map_err(|e| format!("outbox thread: {e}"))?;
            workers.push(t);
        }
        let wake_rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| format!("outbox runtime: {e}"))?;
        let mut activity = self.outbox.activity.load(Ordering::Relaxed);
        let mut failing = false;
        let mut more = false;
        // In a shared state: the term whose deposed leaders' sends were
        // taken back last, and when to look again (on coming to lead, and
        // every second: a term lost and taken again between two looks is a
        // new one all the same).
        let shared = self.outbox.is_shared();
        let mut recovered: Option<i64> = None;
        let mut next_recovery = std::time::Instant::now();
        while !stop.is_cancelled() {
            if !more {
                wake_rt.block_on(async {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
            wedge.hold();
            let now = self.outbox.now();
            let term = self.outbox.term();
            if term.is_none() {
                // The leader queues and sends; a standby has nothing due.
                more = false;
                self.probe.set_queued(0);
                self.probe.set_oldest(None);
                self.probe.beat();
                continue;
            }
            if shared && (recovered != term || std::time::Instant::now() >= next_recovery) {
                match self.outbox.recover_deposed() {
                    Ok(_) => {
                        recovered = term;
                        next_recovery = std::time::Instant::now() + RECOVERY_EVERY;
                    }
                    Err(e) => {
                        self.probe.set_problem(Some(format!("cannot take over the outbox: {e}")));
                        continue;
                    }
                }
            }
            match self.outbox.enqueue_pending(now, ROUND) {
                Ok(n) => {
                    more = n == ROUND;
                    if failing {
                        tracing::info!("notifications are queued again");
                        failing = false;
                        self.probe.set_problem(None);
                    }
                }
                Err(e) => {
                    more = false;
                    if !failing {
                        tracing::error!(error = %e, "cannot queue notifications; trying again each second");
                        failing = true;
                    }
                    self.probe.set_problem(Some(e));
                }
            }
            // Progress: nothing due, or an attempt started or finished since.
            let (due, oldest) = self.outbox.due_figures(now);
            self.probe.set_queued(due as usize);
            self.probe.set_oldest(oldest.map(|t| self.outbox.wall_at(t) / 1_000_000));
            let a = self.outbox.activity.load(Ordering::Relaxed);
            if due == 0 || a != activity {
                self.probe.beat();
            }
            activity = a;
        }
        while self.outbox.leads()
            && self.outbox.enqueue_pending(self.outbox.now(), ROUND).is_ok_and(|n| n == ROUND)
        {}
        let until = std::time::Instant::now() + self.drain_for;
        while self.outbox.leads() && !self.outbox.is_drained() {
            if std::time::Instant::now() >= until {
                tracing::warn!("stopping with messages still queued; they go out at the next start");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        workers_stop.cancel();
        for w in workers {
            let _ = w.join();
        }
        self.probe.set_queued(0);
        self.probe.set_oldest(None);
        Ok(())
    }
}

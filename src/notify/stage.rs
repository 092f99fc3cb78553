//! The outbox stage: a thread of its own with a small tokio runtime, on
//! which the outbox's SQLite work and its senders run — so a slow disk or a
//! slow provider never holds up an async worker of the daemon.
//!
//! It queues what the alert manager committed (notifications logged with
//! `enqueued = 0`), woken after each commit and every second besides: a
//! failed enqueue is tried again while the daemon runs. The per-channel
//! workers send with retries, rate limits and merging (`Outbox::run`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Outbox, GROUPS};
use crate::reading::to_ns;
use crate::stage::{Probe, Wedge};

pub struct OutboxStage {
    pub outbox: Arc<Outbox>,
    /// Woken by the alert manager after a commit with notifications.
    pub wake: Arc<Notify>,
    pub probe: Arc<Probe>,
    /// After stop, how long what is due may still go out.
    pub drain_for: Duration,
}

impl OutboxStage {
    /// Runs on the calling thread until `stop`, then lets what is due go
    /// out for at most `drain_for` (the rest goes at the next start).
    pub fn run(self, stop: CancellationToken) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("outbox runtime: {e}"))?;
        rt.block_on(self.serve(stop));
        Ok(())
    }

    async fn serve(self, stop: CancellationToken) {
        let wedge = Wedge::from_env("outbox");
        let workers_stop = CancellationToken::new();
        let workers: Vec<_> = (0..GROUPS.len())
            .map(|g| tokio::spawn(self.outbox.clone().run(g, workers_stop.clone())))
            .collect();
        let mut activity = self.outbox.activity.load(Ordering::Relaxed);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => break,
            }
            wedge.hold();
            let now = to_ns(chrono::Utc::now());
            match self.outbox.enqueue_pending(now) {
                Ok(_) => {
                    if failing {
                        tracing::info!("notifications are queued again");
                        failing = false;
                        self.probe.set_problem(None);
                    }
                }
                Err(e) => {
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
            self.probe.set_oldest(oldest.map(|t| t / 1_000_000));
            let a = self.outbox.activity.load(Ordering::Relaxed);
            if due == 0 || a != activity {
                self.probe.beat();
            }
            activity = a;
        }
        let _ = self.outbox.enqueue_pending(to_ns(chrono::Utc::now()));
        if tokio::time::timeout(self.drain_for, self.outbox.drained()).await.is_err() {
            tracing::warn!("stopping with messages still queued; they go out at the next start");
        }
        workers_stop.cancel();
        for w in workers {
            let _ = w.await;
        }
        self.probe.set_queued(0);
        self.probe.set_oldest(None);
    }
}

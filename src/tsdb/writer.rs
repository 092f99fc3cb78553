//! The writer: drains the spool into InfluxDB, in order, batch by batch.
//!
//! A batch is committed (the spool cursor moves past it) only once InfluxDB
//! accepted it, or once it was moved to `data_dir/rejected/` because
//! InfluxDB refused its content. Everything else is retried with capped
//! exponential backoff and jitter, honouring `Retry-After`: an outage makes
//! the spool grow, never lose a reading.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::client::InfluxClient;
use super::retry::{classify, Decision, Outcome};
use crate::backoff::Backoff;
use crate::config::InfluxApi;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::spool::{Batch, Reader};

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Where refused batches go.
    pub rejected_dir: PathBuf,
    /// v1: create the database at start and when a write says it is missing.
    pub create_database: bool,
    /// After `stop`: how long to go on flushing what is spooled.
    pub shutdown_timeout: Duration,
}

pub struct Writer {
    pub reader: Reader,
    pub client: InfluxClient,
    pub options: WriterOptions,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// Why a batch was not sent before the writer had to stop.
struct Stopped;

impl Writer {
    /// Runs until `stop`, then flushes for at most `shutdown_timeout`.
    pub async fn run(self, stop: CancellationToken) {
        let mut run = Run { w: self, stop, deadline: None };
        run.run().await
    }
}

/// A running writer and its shutdown state.
struct Run {
    w: Writer,
    stop: CancellationToken,
    /// Set when `stop` fires: flushing ends by then.
    deadline: Option<Instant>,
}

impl Run {
    fn deadline(&mut self) -> Option<Instant> {
        if self.deadline.is_none() && self.stop.is_cancelled() {
            self.deadline = Some(Instant::now() + self.w.options.shutdown_timeout);
        }
        self.deadline
    }

    async fn run(&mut self) {
        if self.w.client.api() == InfluxApi::V1 && self.w.options.create_database {
            self.w.create_database().await;
        }
        tracing::info!(endpoint = self.w.client.endpoint(), "writing to InfluxDB");
        loop {
            let flushing = self.deadline().is_some();
            let (size, linger) = (self.w.options.batch_size, self.w.options.flush_interval);
            let batch = if flushing {
                self.w.reader.try_batch(size)
            } else {
                self.w.reader.next_batch(size, linger, &self.stop).await
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.records == 0 {
                if flushing {
                    tracing::info!("spool flushed to InfluxDB");
                    return;
                }
                continue;
            }
            if self.deliver(&batch).await.is_err() {
                let left = self.w.reader.stats().pending_records.load(std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    pending = left,
                    "shutdown timeout reached; the rest stays in the spool for the next start"
                );
                return;
            }
            if let Err(e) = self.w.reader.commit(&batch) {
                // The batch is in InfluxDB; failing to record that only means
                // it is sent again after a restart, which InfluxDB absorbs.
                tracing::error!(error = %e, "cannot write the spool cursor");
            }
        }
    }

    /// Sends one batch until it is accepted or set aside.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(self.w.options.retry_min, self.w.options.retry_max);
        loop {
            let started = Instant::now();
            let outcome = self.w.client.write(&batch.body).await;
            let m = &self.w.metrics;
            m.write_duration.observe(started.elapsed().as_secs_f64());
            match classify(&outcome, SystemTime::now()) {
                Decision::Done => {
                    m.points_written.inc_by(batch.records as u64);
                    m.batches_written.inc();
                    if backoff.attempts() > 0 {
                        tracing::info!(attempts = backoff.attempts() + 1, "InfluxDB accepts writes again");
                    }
                    self.w.health.set_influx_error(None);
                    return Ok(());
                }
                Decision::Reject { reason } => {
                    m.write_failures.with_label_values(&["rejected"]).inc();
                    m.batches_rejected.inc();
                    let path = self.w.set_aside(batch, &reason);
                    tracing::error!(
                        records = batch.records,
                        reason = %reason,
                        file = %path.display(),
                        "InfluxDB refused a batch; moved it aside"
                    );
                    return Ok(());
                }
                Decision::CreateDatabase => {
                    m.write_failures.with_label_values(&["not_found"]).inc();
                    if self.w.options.create_database {
                        self.w.create_database().await;
                    } else {
                        self.w
                            .health
                            .set_influx_error(Some("database not found (create_database = false)".into()));
                        self.pause(&mut backoff, None).await?;
                    }
                }
                Decision::Retry { after, class, reason } => {
                    m.write_failures.with_label_values(&[class]).inc();
                    if backoff.attempts().is_multiple_of(20) {
                        tracing::warn!(class, reason = %reason, records = batch.records, "InfluxDB write failed; retrying");
                    }
                    self.w.health.set_influx_error(Some(reason));
                    self.pause(&mut backoff, after).await?;
                }
            }
        }
    }

    /// Waits before the next attempt; gives up if that would pass the
    /// shutdown deadline.
    async fn pause(&mut self, backoff: &mut Backoff, after: Option<Duration>) -> Result<(), Stopped> {
        let drawn = backoff.next_delay();
        let until = Instant::now() + after.unwrap_or(drawn);
        loop {
            if let Some(d) = self.deadline() {
                if until >= d {
                    return Err(Stopped);
                }
                tokio::time::sleep_until(until.into()).await;
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => return Ok(()),
                _ = self.stop.cancelled() => {} // now with a deadline: check again
            }
        }
    }
}

impl Writer {
    async fn create_database(&self) {
        match self.client.create_database().await {
            Outcome::Status { code, .. } if (200..300).contains(&code) => {
                tracing::info!("InfluxDB database ready");
            }
            other => {
                tracing::warn!(outcome = ?other, "CREATE DATABASE failed; writes will retry");
            }
        }
    }

    /// Writes a refused batch and the reason to `rejected/`.
    fn set_aside(&self, batch: &Batch, reason: &str) -> PathBuf {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let start = batch.start();
        let base = format!("{stamp}-{}-{}", start.segment, start.offset);
        let path = self.options.rejected_dir.join(format!("{base}.lp"));
        if let Err(e) = write_rejected(&self.options.rejected_dir, &path, &base, batch, reason) {
            tracing::error!(error = %e, "cannot write the rejected batch to disk; it is dropped");
        }
        path
    }
}

fn write_rejected(dir: &Path, path: &Path, base: &str, batch: &Batch, reason: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(path, &batch.body)?;
    std::fs::write(dir.join(format!("{base}.reason.txt")), format!("{reason}\n"))
}

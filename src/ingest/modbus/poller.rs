//! Polling: one task per device. Every `interval` it reads the device's
//! blocks (`map::blocks`), turns the answers into one message of readings
//! at the poll time and hands it to the outlet, and waits until it is
//! spooled before the next poll — a slow spool slows the polls instead of
//! piling up readings.
//!
//! Every network wait is bounded by the device's `timeout` and, like the
//! waits between polls, ends at once on the stop token, so SIGTERM never
//! waits for a PLC. A connect that fails, a request that times out, a
//! connection that breaks or an answer that does not fit is counted by
//! cause; the connection is dropped (a late answer would be taken for the
//! next request's) and opened again with backoff. An exception answer
//! (illegal address, device busy …) is counted too, but the connection is
//! fine and the other blocks' readings still go out. No readings are made
//! up for a device that does not answer: its site simply hears nothing,
//! and the plan's `stale_after` turns it offline.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_modbus::client::{Client as _, Context, Reader};
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;

use super::map::{self, Block, Point, Raw};
use crate::backoff::Backoff;
use crate::config::{ModbusDevice, RegisterTable};
use crate::ingest::intake::{DropLog, Intake};
use crate::ingest::mqtt::Decoder;
use crate::metrics::Metrics;
use crate::outlet::Confirm;
use crate::reading::{to_ns, Reading};

/// Every cause the error counter may carry, shown at 0 from the start.
pub const CAUSES: [&str; 7] =
    ["connect", "timeout", "io", "exception", "protocol", "bad_value", "unknown_site"];

/// A device whose task panicked starts again after its interval, or this.
const RESTART: Duration = Duration::from_secs(1);
/// At shutdown, how long closing a connection may take.
const CLOSE: Duration = Duration::from_millis(500);

/// Everything the pollers need.
pub struct Modbus {
    pub devices: Vec<ModbusDevice>,
    /// The running configuration's decoder: its catalogue (a device's site
    /// after a reload) and its checks of timestamps.
    pub decoder: Arc<RwLock<Arc<Decoder>>>,
    pub intake: Intake,
    pub metrics: Arc<Metrics>,
}

/// What every device's task shares.
struct Shared {
    decoder: Arc<RwLock<Arc<Decoder>>>,
    intake: Intake,
    metrics: Arc<Metrics>,
}

/// Told by the outlet that a poll's readings are spooled.
struct Spooled(tokio::sync::oneshot::Sender<()>);

impl Confirm for Spooled {
    fn confirm(self: Box<Self>) {
        let _ = self.0.send(());
    }
}

impl Modbus {
    /// Polls every device until `stop`. A device task that panics (a bug,
    /// or a device answering what the client cannot take) is logged and
    /// started again after its interval; the others never notice.
    pub async fn run(self, stop: CancellationToken) -> Result<(), String> {
        let shared =
            Arc::new(Shared { decoder: self.decoder, intake: self.intake, metrics: self.metrics.clone() });
        let mut tasks = tokio::task::JoinSet::new();
        let mut by_task = HashMap::new();
        let spawn = |tasks: &mut tokio::task::JoinSet<()>, device: Arc<ModbusDevice>, pause: Duration| {
            let (shared, stop) = (shared.clone(), stop.clone());
            tasks
                .spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    Poller::new(&device, shared).run(stop).await
                })
                .id()
        };
        for d in self.devices {
            self.metrics.modbus_device(&d.id, &CAUSES);
            tracing::info!(device = %d.id, address = %d.address, unit = d.unit, site = %d.site, interval = %d.interval, "Modbus polling");
            let d = Arc::new(d);
            by_task.insert(spawn(&mut tasks, d.clone(), Duration::ZERO), d);
        }
        while let Some(ended) = tasks.join_next_with_id().await {
            let (id, panicked) = match ended {
                Ok((id, ())) => (id, false),
                Err(e) => (e.id(), e.is_panic()),
            };
            let Some(device) = by_task.remove(&id) else { continue };
            if panicked && !stop.is_cancelled() {
                let pause = device.interval.get().max(RESTART);
                tracing::error!(device = %device.id, "Modbus device task panicked; polling it again in {pause:?}");
                by_task.insert(spawn(&mut tasks, device.clone(), pause), device);
            }
        }
        tracing::info!("Modbus polling stopped");
        Ok(())
    }
}

/// One device's poll loop and connection.
struct Poller {
    id: String,
    address: String,
    unit: u8,
    site: String,
    interval: Duration,
    timeout: Duration,
    points: Vec<Point>,
    blocks: Vec<Block>,
    shared: Arc<Shared>,
    /// Open while the device answers; dropped on any transport failure.
    conn: Option<Context>,
    backoff: Backoff,
    drops: DropLog,
    /// Polls failed in a row (for the log line when it answers again).
    failed: u32,
}

/// An answer to one read.
enum Answer {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

impl Answer {
    fn raw(&self) -> Raw<'_> {
        match self {
            Answer::Words(w) => Raw::Words(w),
            Answer::Bits(b) => Raw::Bits(b),
        }
    }
}

async fn read(ctx: &mut Context, b: &Block) -> tokio_modbus::Result<Answer> {
    let (start, n) = (b.start, b.count);
    Ok(match b.table {
        RegisterTable::Holding => ctx.read_holding_registers(start, n).await?.map(Answer::Words),
        RegisterTable::Input => ctx.read_input_registers(start, n).await?.map(Answer::Words),
        RegisterTable::Coil => ctx.read_coils(start, n).await?.map(Answer::Bits),
        RegisterTable::Discrete => ctx.read_discrete_inputs(start, n).await?.map(Answer::Bits),
    })
}

impl Poller {
    fn new(d: &ModbusDevice, shared: Arc<Shared>) -> Poller {
        let points: Vec<Point> = d.registers.iter().map(Point::from_config).collect();
        let blocks = map::blocks(&points, d.max_gap);
        let interval = d.interval.get();
        Poller {
            id: d.id.clone(),
            address: d.address.clone(),
            unit: d.unit,
            site: d.site.clone(),
            interval,
            timeout: d.timeout.get(),
            points,
            blocks,
            shared,
            conn: None,
            // The first retry after one interval, then up to six.
            backoff: Backoff::new(
                interval,
                interval.saturating_mul(6).min(Duration::from_secs(300)).max(interval),
            ),
            drops: DropLog::default(),
            failed: 0,
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            let reachable = tokio::select! {
                _ = stop.cancelled() => break,
                r = self.poll() => r,
            };
            let now = Instant::now();
            next = if reachable {
                self.backoff.reset();
                // On the interval's beat; polls missed while one was slow are skipped.
                let mut n = next + self.interval;
                while n <= now {
                    n += self.interval;
                }
                n
            } else {
                now + self.backoff.next_delay()
            };
        }
        if let Some(mut c) = self.conn.take() {
            let _ = timeout(CLOSE, c.disconnect()).await;
        }
    }

    /// Counts and logs (once per cause and 10 s) one failure.
    fn fail(&mut self, cause: &'static str, error: &dyn std::fmt::Display) {
        self.shared.metrics.modbus_errors.with_label_values(&[&self.id, cause]).inc();
        self.drops.log(cause, &self.id, error);
    }

    /// A transport failure: the connection is done for.
    fn lost(&mut self, cause: &'static str, error: &dyn std::fmt::Display) {
        self.fail(cause, error);
        self.conn = None;
    }

    /// One poll; whether the device could be reached.
    async fn poll(&mut self) -> bool {
        let m = self.shared.metrics.clone();
        m.modbus_polls.with_label_values(&[&self.id]).inc();
        let up = m.modbus_up.with_label_values(&[&self.id]);
        let decoder = self.shared.decoder.read().expect("decoder lock").clone();
        // The site may have left sites.toml in a reload: nothing to read for.
        let site = match decoder.site(&self.site) {
            Ok(s) => s,
            Err(e) => {
                self.fail("unknown_site", &e);
                return true;
            }
        };
        if self.conn.is_none() && !self.connect().await {
            up.set(0);
            self.failed += 1;
            return false;
        }
        let ts = to_ns(chrono::Utc::now());
        let mut values: Vec<(usize, crate::reading::Value)> = Vec::with_capacity(self.points.len());
        let mut answered = true;
        for bi in 0..self.blocks.len() {
            let Some(ctx) = self.conn.as_mut() else { break };
            let b = &self.blocks[bi];
            let what = || format!("{} {}+{}", b.table, b.start, b.count);
            match timeout(self.timeout, read(ctx, b)).await {
                Ok(Ok(Ok(answer))) => {
                    let got = b.values(&self.points, answer.raw());
                    for (i, v) in got {
                        match v {
                            Ok(v) => values.push((i, v)),
                            Err(e) => {
                                answered &= e.cause() != "protocol";
                                let error = format!("{}: {e}", self.points[i].metric);
                                self.fail(e.cause(), &error);
                            }
                        }
                    }
                }
                Ok(Ok(Err(exception))) => {
                    answered = false;
                    let error = format!("{}: exception {exception}", what());
                    self.fail("exception", &error);
                }
                Ok(Err(tokio_modbus::Error::Transport(e))) => {
                    let error = format!("{}: {e}", what());
                    self.lost("io", &error);
                }
                Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                    let error = format!("{}: {e}", what());
                    self.lost("protocol", &error);
                }
                Err(_) => {
                    let error = format!("{}: no answer within {:?}", what(), self.timeout);
                    self.lost("timeout", &error);
                }
            }
        }
        let reachable = self.conn.is_some();
        up.set(i64::from(reachable && answered));
        if reachable {
            if self.failed > 0 {
                tracing::info!(device = %self.id, failed_polls = self.failed, "Modbus device answering again");
            }
            self.failed = 0;
        } else {
            self.failed += 1;
        }
        if values.is_empty() {
            return reachable;
        }
        // In the map's order, what was read before a failure too: true
        // values at the poll time.
        values.sort_by_key(|(i, _)| *i);
        // As the site's kind holds each metric: a register of 0/1 mapped
        // to a flag (pump1_fault) is a flag.
        let entry = decoder.catalog().get(&site).cloned();
        let mut readings: Vec<Reading> = Vec::with_capacity(values.len());
        for (i, value) in values {
            let metric = self.points[i].metric.clone();
            let ty = entry.as_ref().and_then(|e| e.metric_type(&metric));
            let coerced = match value {
                crate::reading::Value::Float(v) => crate::coerce::number(ty, v),
                crate::reading::Value::Bool(b) => crate::coerce::flag(ty, b),
            };
            match coerced {
                Ok(value) => readings.push(Reading { site: site.clone(), metric, value, ts }),
                Err(e) => {
                    let e = crate::ingest::mqtt::decode::DecodeError::from_coerce(&metric, e);
                    self.fail("bad_value", &e);
                }
            }
        }
        if readings.is_empty() {
            return reachable;
        }
        let received = to_ns(chrono::Utc::now());
        match decoder.checked(readings, received) {
            Ok(readings) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let catalog = decoder.catalog().clone();
                let sent = self
                    .shared
                    .intake
                    .submit(catalog, vec![readings], Box::new(Spooled(tx)), received / 1_000_000)
                    .await;
                // Spooled before the next poll (the outlet stopping ends
                // the wait too: its sender is dropped).
                if sent.is_ok() {
                    let from = format!("device {} at {}", self.id, self.address);
                    self.shared.intake.seen(&site, &from, received / 1_000_000);
                    let _ = rx.await;
                }
            }
            Err(e) => self.fail(e.cause(), &e),
        }
        reachable
    }

    /// Opens the connection, within the timeout.
    async fn connect(&mut self) -> bool {
        match timeout(self.timeout, TcpStream::connect(&self.address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.conn = Some(tokio_modbus::client::tcp::attach_slave(stream, Slave(self.unit)));
                tracing::info!(device = %self.id, address = %self.address, "Modbus device connected");
                true
            }
            Ok(Err(e)) => {
                let error = format!("{}: {e}", self.address);
                self.fail("connect", &error);
                false
            }
            Err(_) => {
                let error = format!("{}: no connection within {:?}", self.address, self.timeout);
                self.fail("connect", &error);
                false
            }
        }
    }
}

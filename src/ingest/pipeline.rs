//! The ingest pipeline: the MQTT event loop, and the worker that decodes,
//! spools and acks.
//!
//! ```text
//! poll task ── (Publish, received_at) ──▶ worker: decode → line protocol
//!   (rumqttc event loop,   unbounded       → one spool write for the group
//!    reconnect, resubscribe) channel       → ack each message (manual acks)
//! ```
//! The poll task never waits on anything but the network: acks are sent by
//! the worker through the client's request channel, which the event loop
//! drains (waiting for an ack inside the poll task deadlocks — see
//! PITFALLS.md). Mosquitto sends at most `max_inflight_messages` unacked
//! QoS1 messages, so acks go out within milliseconds of the spool write,
//! never held for a big batch; that window also bounds the channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::decode::{DecodeError, Decoder};
use crate::backoff::Backoff;
use crate::config::MqttSection;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reading::{to_ns, Reading, TimestampNs};
use crate::spool::Appender;
use crate::tsdb::line_protocol;

/// Messages handled per spool write at most.
const GROUP: usize = 512;
/// Past this many messages waiting for the worker, the poll task pauses
/// reading (QoS0 publishers are not bounded by the broker's inflight window).
const HIGH_WATER: usize = 50_000;
/// Capacity of rumqttc's request channel (acks and subscribes). Above
/// `HIGH_WATER`, so the worker can queue the acks of everything waiting
/// while the poll task pauses, without blocking.
const REQUEST_CAPACITY: usize = 65_536;

/// Everything the pipeline needs.
pub struct Ingest {
    pub mqtt: MqttSection,
    /// Swapped on reload.
    pub decoder: Arc<RwLock<Arc<Decoder>>>,
    /// Shared with the engine, which spools `area_level` points.
    pub appender: Arc<Mutex<Appender>>,
    /// fsync before acking (`spool.fsync_interval = "0s"`).
    pub fsync_each_write: bool,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Readings that reached the spool, for the engine and the live state.
    pub readings_out: Option<mpsc::UnboundedSender<Vec<Reading>>>,
    /// Notified after a reload swapped the decoder.
    pub resubscribe: Arc<tokio::sync::Notify>,
}

impl Ingest {
    /// Runs until `stop` fires: then finishes the group in hand (spooled and
    /// acked), disconnects, and returns.
    pub async fn run(self, stop: CancellationToken) -> Result<(), String> {
        let options = super::mqtt::options(&self.mqtt)?;
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (tx, rx) = mpsc::unbounded_channel::<(Publish, TimestampNs)>();
        let mut filters = self.decoder.read().expect("decoder lock").filters();
        tracing::info!(broker = %self.mqtt.url, client_id = %self.mqtt.client_id, ?filters, "connecting to the MQTT broker");

        let worker_done = CancellationToken::new();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            queued: queued.clone(),
            client: client.clone(),
            decoder: self.decoder.clone(),
            appender: self.appender,
            fsync_each_write: self.fsync_each_write,
            metrics: self.metrics.clone(),
            readings_out: self.readings_out,
            limiter: LogLimiter::default(),
        };
        let worker_task = tokio::spawn({
            let stop = stop.clone();
            let done = worker_done.clone();
            async move {
                worker.run(rx, stop).await;
                done.cancel();
            }
        });

        let mut backoff = Backoff::new(self.mqtt.reconnect_min.get(), self.mqtt.reconnect_max.get());
        let mut subscribed_once = false;
        let m = &self.metrics;
        loop {
            if queued.load(Ordering::Relaxed) > HIGH_WATER {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = worker_done.cancelled() => break,
                _ = self.resubscribe.notified() => {
                    // A reload changed the topics: subscribe to the new, leave the old.
                    let next = self.decoder.read().expect("decoder lock").filters();
                    let added: Vec<_> = next.iter().filter(|f| !filters.contains(f)).cloned().collect();
                    let removed: Vec<_> = filters.iter().filter(|f| !next.contains(f)).cloned().collect();
                    if !added.is_empty() {
                        let subs = added.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(subs) {
                            tracing::error!(error = %e, "cannot queue the new subscriptions");
                        }
                    }
                    for f in &removed {
                        let _ = client.try_unsubscribe(f.clone());
                    }
                    if !added.is_empty() || !removed.is_empty() {
                        tracing::info!(?added, ?removed, "subscriptions changed by reload");
                    }
                    filters = next;
                    continue;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    m.mqtt_messages.inc();
                    queued.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send((p, to_ns(chrono::Utc::now())));
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    m.mqtt_connections.inc();
                    m.mqtt_connected.set(1);
                    self.health.mqtt_connected.store(true, Ordering::Relaxed);
                    // The broker forgot us (restart, expiry, first contact):
                    // subscribe again — rumqttc does not. Also once per start,
                    // in case the filters changed since the session was made.
                    if !ack.session_present || !subscribed_once {
                        let subs = filters.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        match client.try_subscribe_many(subs) {
                            Ok(()) => {
                                subscribed_once = true;
                                m.mqtt_subscribes.inc();
                            }
                            Err(e) => tracing::error!(error = %e, "cannot queue the subscription"),
                        }
                    }
                    tracing::info!(session_present = ack.session_present, "connected to the MQTT broker");
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    for (f, code) in filters.iter().zip(&ack.return_codes) {
                        if matches!(code, SubscribeReasonCode::Failure) {
                            tracing::error!(filter = %f, "the broker refused the subscription (ACL?)");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    m.mqtt_connected.set(0);
                    m.mqtt_connection_errors.inc();
                    self.health.mqtt_connected.store(false, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    if backoff.attempts() <= 3 || backoff.attempts() % 20 == 0 {
                        tracing::warn!(error = %e, retry_in = ?delay, attempt = backoff.attempts(), "MQTT connection lost or refused");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = worker_done.cancelled() => break,
                    }
                }
            }
        }
        // The worker has spooled and acked its last group; let the event loop
        // send those acks and the disconnect.
        let _ = worker_task.await;
        let _ = client.try_disconnect();
        let flush = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        self.health.mqtt_connected.store(false, Ordering::Relaxed);
        m.mqtt_connected.set(0);
        tracing::info!("disconnected from the MQTT broker");
        Ok(())
    }
}

struct Worker {
    /// Messages sent to the worker and not yet taken.
    queued: Arc<AtomicUsize>,
    client: AsyncClient,
    decoder: Arc<RwLock<Arc<Decoder>>>,
    appender: Arc<Mutex<Appender>>,
    fsync_each_write: bool,
    metrics: Arc<Metrics>,
    readings_out: Option<mpsc::UnboundedSender<Vec<Reading>>>,
    limiter: LogLimiter,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(Publish, TimestampNs)>, stop: CancellationToken) {
        let mut group: Vec<(Publish, TimestampNs)> = Vec::with_capacity(GROUP);
        let mut text = String::new();
        let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(GROUP);
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = stop.cancelled() => return,
            };
            group.push(first);
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(group.len(), Ordering::Relaxed);
            text.clear();
            bounds.clear();
            let mut accepted: Vec<Reading> = Vec::new();
            let decoder = self.decoder.read().expect("decoder lock").clone();
            for (p, received_at) in &group {
                match decoder.decode(&p.topic, &p.payload, *received_at) {
                    Ok(readings) => {
                        let series =
                            &decoder.catalog().get(&readings[0].site).expect("decoded site is known").series;
                        let start = text.len();
                        line_protocol::telemetry(&mut text, series, &readings);
                        bounds.push((start, text.len()));
                        self.metrics.readings.inc_by(readings.len() as u64);
                        if self.readings_out.is_some() {
                            accepted.extend(readings);
                        }
                    }
                    Err(e) => {
                        self.metrics.decode_errors.with_label_values(&[e.cause()]).inc();
                        self.limiter.log(&p.topic, &e);
                    }
                }
            }
            // Until the spool has them, nothing is acked: on a full or
            // failing disk the messages stay with the broker.
            let now_ms = chrono::Utc::now().timestamp_millis();
            loop {
                let records = bounds.iter().map(|&(a, b)| text[a..b].as_bytes());
                let result = {
                    let mut appender = self.appender.lock().expect("spool lock");
                    appender.append(records, now_ms).and_then(|()| {
                        if self.fsync_each_write {
                            appender.sync()
                        } else {
                            Ok(())
                        }
                    })
                };
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        self.metrics.spool_append_errors.inc();
                        tracing::error!(error = %e, "cannot write to the spool; holding the messages unacked and retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
            for (p, _) in group.drain(..) {
                if let Err(e) = self.client.ack(&p).await {
                    tracing::warn!(error = %e, "cannot queue an ack; the broker will send the message again");
                }
            }
            if let (Some(out), false) = (&self.readings_out, accepted.is_empty()) {
                let _ = out.send(accepted);
            }
        }
    }
}

/// Logs a bad message once per cause and interval, with the count of the
/// ones it kept quiet about: a broken device sending 10 msgs/s must not
/// flood the log.
#[derive(Default)]
struct LogLimiter {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn log(&mut self, topic: &str, e: &DecodeError) {
        let now = Instant::now();
        let entry = self.last.entry(e.cause()).or_insert((now - Self::INTERVAL * 2, 0));
        if now.duration_since(entry.0) >= Self::INTERVAL {
            tracing::warn!(cause = e.cause(), topic, error = %e, suppressed = entry.1, "message dropped");
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}

//! The MQTT client: a poll task that owns rumqttc's event loop, and a worker
//! that decodes and hands messages to the intake.
//!
//! ```text
//! broker ─▶ poll task ──(Publish, received_at)──▶ worker: decode, group
//!   ▲        │  never waits on anything but         │
//!   │        │  the network                         ▼
//!   └─ acks ─┘◀── pkids ── Confirm (outlet thread) ◀── outlet: spooled
//! ```
//! Why it cannot deadlock (PITFALLS.md: a poll task that paused reading
//! while the worker waited in `client.ack().await` for room in the request
//! channel stopped intake for good under an alert storm):
//! - nothing ever waits for the poll task: the outlet's confirmation sends
//!   the packet ids over an unbounded channel (bounded in practice by what is
//!   in flight), and the poll task itself moves them into rumqttc's request
//!   channel with `try_ack`, keeping the rest for after its next poll;
//! - the poll task stops *reading* when the worker is `HIGH_WATER` messages
//!   behind, but goes on polling while acks are owed or queued, so acks drain
//!   while reads are paused. rumqttc cannot poll for writes alone: a poll made
//!   to send an ack may read a few more messages (up to ten per read); those
//!   are queued too, and only past `2 × HIGH_WATER` (never reached with QoS1,
//!   whose unacked messages the broker's inflight window bounds) does it stop
//!   polling altogether — the worker empties the queue without needing any
//!   ack, so that wait always ends;
//! - the worker waits only for room in the outlet's queue, and the outlet
//!   waits only for the disk.
//!
//! Mosquitto sends at most `max_inflight_messages` unacked QoS1 messages, so
//! acks go out within milliseconds of the spool write, never held for a batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decode::Decoder;
use super::link::{Ev, Link, Message};
use crate::backoff::Backoff;
use crate::config::MqttSection;
use crate::health::Health;
use crate::ingest::intake::{DropLog, Intake};
use crate::metrics::Metrics;
use crate::outlet::Confirm;
use crate::reading::{Reading, TimestampNs};
use crate::stage::Probe;

/// How long the worker waits for more messages before it hands a small
/// group to the outlet (MQTT 5 only, see `Worker::linger_for`): at 35,000
/// messages a second a group then holds dozens, not a handful, and each
/// hand-off's wake-ups are shared by all of them — a third of the CPU a
/// message costs (docs/performance.md). An alert waits this much longer.
const LINGER: Duration = Duration::from_millis(2);
/// Messages handed to the outlet per submission at most.
const GROUP: usize = 512;
/// Past this many messages waiting for the worker, the poll task stops
/// reading (QoS0 publishers are not bounded by the broker's inflight window).
const HIGH_WATER: usize = 4096;
/// Capacity of rumqttc's request channel (acks, subscribes). Acks beyond it
/// wait in the poll task's own queue, never in a blocked sender.
const REQUEST_CAPACITY: usize = 8192;
/// At shutdown, how long the poll task waits for the acks of what was
/// handed to the outlet before it disconnects (unacked messages come back).
const ACK_FLUSH: Duration = Duration::from_secs(3);

/// Everything the MQTT source needs.
pub struct Mqtt {
    pub mqtt: MqttSection,
    /// Swapped on reload.
    pub decoder: Arc<RwLock<Arc<Decoder>>>,
    pub intake: Intake,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Notified after a reload swapped the decoder.
    pub resubscribe: Arc<tokio::sync::Notify>,
    /// The intake stage's probe.
    pub probe: Arc<Probe>,
    /// Receive times: the wall, or storm time in the demo.
    pub clock: crate::clock::Clock,
}

/// Events handled per turn of the poll loop at most.
const DRAIN: usize = 64;

/// The connection's state across events.
struct Conn {
    backoff: Backoff,
    /// Set after a connection error: when to try again.
    retry_at: Option<Instant>,
    subscribed_once: bool,
    /// Acks in rumqttc's request channel not yet written.
    unsent: u64,
    filters: Vec<String>,
}

/// The packet ids of QoS1 messages to acknowledge, sent by the outlet's
/// confirmation to the poll task.
type Acks = flume::Sender<Vec<u16>>;

/// The confirmation of one submission: its QoS1 packet ids go back to the
/// poll task. Never blocks (the channel is unbounded).
struct AckOnSpool {
    pkids: Vec<u16>,
    acks: Acks,
    confirmed: Arc<AtomicU64>,
    messages: u64,
}

impl Confirm for AckOnSpool {
    fn confirm(self: Box<Self>) {
        let this = *self;
        if !this.pkids.is_empty() {
            let _ = this.acks.send(this.pkids);
        }
        this.confirmed.fetch_add(this.messages, Ordering::Relaxed);
    }
}

impl Mqtt {
    /// Runs until `stop` fires: then stops reading, lets the worker hand over
    /// the group in hand, sends the acks of everything spooled (for at most
    /// `ACK_FLUSH`), disconnects, and returns.
    pub async fn run(self, stop: CancellationToken) -> Result<(), String> {
        let mut link = Link::new(&self.mqtt, REQUEST_CAPACITY)?;
        let (fwd_tx, fwd_rx) = flume::unbounded::<(Message, TimestampNs)>();
        let (ack_tx, ack_rx) = flume::unbounded::<Vec<u16>>();
        let depth = fwd_rx.clone();
        self.probe.set_depth(move || depth.len());
        let filters = self.decoder.read().expect("decoder lock").filters();
        tracing::info!(broker = %self.mqtt.url, client_id = %self.mqtt.client_id, protocol = %self.mqtt.protocol, ?filters, "connecting to the MQTT broker");

        // Messages the worker handed to the outlet, and those confirmed.
        let submitted = Arc::new(AtomicU64::new(0));
        let confirmed = Arc::new(AtomicU64::new(0));
        let worker_stop = CancellationToken::new();
        let worker = Worker {
            decoder: self.decoder.clone(),
            intake: self.intake.clone(),
            metrics: self.metrics.clone(),
            probe: self.probe.clone(),
            acks: ack_tx,
            submitted: submitted.clone(),
            confirmed: confirmed.clone(),
            drops: DropLog::default(),
            // With MQTT 5 floodguard sets the broker's window, and waits a
            // moment for more to come in groups; with 3.1.1 the broker's
            // window (20 on Mosquitto) would make any wait a lost round trip.
            linger_for: match self.mqtt.protocol {
                crate::config::MqttProtocol::V5 => usize::from(self.mqtt.receive_maximum / 2).min(GROUP / 2),
                crate::config::MqttProtocol::V311 => 0,
            },
        };
        let mut worker_task = tokio::spawn(worker.run(fwd_rx, worker_stop.clone()));
        let mut worker_done = false;

        let mut conn = Conn {
            backoff: Backoff::new(self.mqtt.reconnect_min.get(), self.mqtt.reconnect_max.get()),
            retry_at: None,
            subscribed_once: false,
            unsent: 0,
            filters,
        };
        // Acks confirmed but not yet in rumqttc's request channel, and those
        // in it not yet written to the socket.
        let mut owed: Vec<u16> = Vec::new();
        let mut stopping_since: Option<Instant> = None;
        let m = &self.metrics;
        loop {
            // Hand confirmed acks to rumqttc without ever waiting.
            while let Ok(more) = ack_rx.try_recv() {
                owed.extend(more);
            }
            let mut moved = 0;
            for pkid in &owed {
                if link.try_ack(*pkid).is_err() {
                    break;
                }
                moved += 1;
            }
            owed.drain(..moved);
            conn.unsent += moved as u64;

            if let Some(since) = stopping_since {
                let all_back =
                    worker_done && confirmed.load(Ordering::Relaxed) >= submitted.load(Ordering::Relaxed);
                if (all_back && owed.is_empty() && conn.unsent == 0) || since.elapsed() > ACK_FLUSH {
                    break;
                }
            }
            let queued = fwd_tx.len();
            let reading_paused = stopping_since.is_some() || queued >= HIGH_WATER;
            let acks_pending = !owed.is_empty() || conn.unsent > 0;
            let connect_due = conn.retry_at.is_none_or(|t| Instant::now() >= t);
            let poll = connect_due && (!reading_paused || acks_pending) && queued < 2 * HIGH_WATER;
            self.probe.set_queued(queued);
            let event = tokio::select! {
                biased;
                _ = stop.cancelled(), if stopping_since.is_none() => {
                    tracing::info!("MQTT: stopping intake");
                    stopping_since = Some(Instant::now());
                    worker_stop.cancel();
                    continue;
                }
                r = &mut worker_task, if !worker_done => {
                    worker_done = true;
                    if let Err(e) = r {
                        return Err(format!("the MQTT worker failed: {e}"));
                    }
                    if stopping_since.is_none() {
                        return Err("the MQTT worker stopped: the outlet is gone".into());
                    }
                    continue;
                }
                more = ack_rx.recv_async(), if owed.is_empty() => {
                    if let Ok(more) = more {
                        owed.extend(more);
                    }
                    continue;
                }
                _ = self.resubscribe.notified() => {
                    conn.filters = self.resubscribe_changed(&link, std::mem::take(&mut conn.filters));
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_millis(5)), if !poll => {
                    // Paused, or waiting to reconnect: look again soon.
                    self.probe.beat();
                    continue;
                }
                e = link.poll(), if poll => e,
            };
            self.probe.beat();
            // Take what else is ready without going round the select:
            // a read brings up to ten packets, and the select's futures cost
            // more than the packets.
            let now = self.clock.now();
            let mut event = event;
            for k in 0..DRAIN {
                let publish = self.on_event(&mut conn, &link, event);
                if let Some(p) = publish {
                    // After stop, what is read is not taken: unacked, the
                    // broker sends it again to the next session.
                    if stopping_since.is_none() {
                        let _ = fwd_tx.send((p, now));
                    }
                }
                // (Fetch the next only if it will be handled: an event
                // taken and dropped would be a message never acked.)
                if k + 1 == DRAIN || fwd_tx.len() >= HIGH_WATER || conn.retry_at.is_some() {
                    break;
                }
                match link.poll().now_or_never() {
                    Some(e) => event = e,
                    None => break,
                }
            }
        }
        if !worker_done {
            worker_task.abort();
        }
        let left = submitted.load(Ordering::Relaxed).saturating_sub(confirmed.load(Ordering::Relaxed));
        if left > 0 || !owed.is_empty() {
            tracing::warn!(
                unconfirmed = left,
                unsent_acks = owed.len(),
                "disconnecting with messages unacked; the broker sends them again"
            );
        }
        let _ = link.try_disconnect();
        let flush = async {
            loop {
                match link.poll().await {
                    Ok(Ev::DisconnectSent) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        self.health.mqtt_connected.store(false, Ordering::Relaxed);
        m.mqtt_connected.set(0);
        self.probe.set_queued(0);
        tracing::info!("disconnected from the MQTT broker");
        Ok(())
    }

    /// One event of the event loop; a publish is handed back to be queued.
    fn on_event(&self, c: &mut Conn, link: &Link, event: Result<Ev, String>) -> Option<Message> {
        let m = &self.metrics;
        match event {
            Ok(Ev::Publish(p)) => {
                m.mqtt_messages.inc();
                return Some(p);
            }
            Ok(Ev::PubAckSent) => {
                c.unsent = c.unsent.saturating_sub(1);
                m.mqtt_acks.inc();
            }
            Ok(Ev::ConnAck { session_present }) => {
                c.backoff.reset();
                c.retry_at = None;
                m.mqtt_connections.inc();
                m.mqtt_connected.set(1);
                self.health.mqtt_connected.store(true, Ordering::Relaxed);
                // The broker forgot us (restart, expiry, first contact):
                // subscribe again — rumqttc does not. Also once per start,
                // in case the filters changed since the session was made.
                if !session_present || !c.subscribed_once {
                    match link.try_subscribe(&c.filters) {
                        Ok(()) => {
                            c.subscribed_once = true;
                            m.mqtt_subscribes.inc();
                        }
                        Err(_) => tracing::error!("cannot queue the subscription"),
                    }
                }
                tracing::info!(session_present, "connected to the MQTT broker");
            }
            Ok(Ev::SubAck(taken)) => {
                for (f, ok) in c.filters.iter().zip(&taken) {
                    if !ok {
                        tracing::error!(filter = %f, "the broker refused the subscription (ACL?)");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                m.mqtt_connected.set(0);
                m.mqtt_connection_errors.inc();
                self.health.mqtt_connected.store(false, Ordering::Relaxed);
                // rumqttc keeps the queued acks for the next connection
                // of the same session; count them as sent or lost.
                c.unsent = 0;
                let delay = c.backoff.next_delay();
                if c.backoff.attempts() <= 3 || c.backoff.attempts().is_multiple_of(20) {
                    tracing::warn!(error = %e, retry_in = ?delay, attempt = c.backoff.attempts(), "MQTT connection lost or refused");
                }
                c.retry_at = Some(Instant::now() + delay);
            }
        }
        None
    }

    /// A reload changed the topics: subscribe to the new, leave the old.
    fn resubscribe_changed(&self, link: &Link, filters: Vec<String>) -> Vec<String> {
        let next = self.decoder.read().expect("decoder lock").filters();
        let added: Vec<_> = next.iter().filter(|f| !filters.contains(f)).cloned().collect();
        let removed: Vec<_> = filters.iter().filter(|f| !next.contains(f)).cloned().collect();
        if !added.is_empty() && link.try_subscribe(&added).is_err() {
            tracing::error!("cannot queue the new subscriptions");
        }
        for f in &removed {
            let _ = link.try_unsubscribe(f);
        }
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(?added, ?removed, "subscriptions changed by reload");
        }
        next
    }
}

struct Worker {
    decoder: Arc<RwLock<Arc<Decoder>>>,
    intake: Intake,
    metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    acks: Acks,
    submitted: Arc<AtomicU64>,
    confirmed: Arc<AtomicU64>,
    drops: DropLog,
    /// Below this many messages in hand, wait up to `LINGER` for more.
    linger_for: usize,
}

impl Worker {
    /// Decodes groups of messages and submits them, until `stop` (the group
    /// in hand is still submitted) or the outlet is gone.
    async fn run(mut self, rx: flume::Receiver<(Message, TimestampNs)>, stop: CancellationToken) {
        let mut group: Vec<(Message, TimestampNs)> = Vec::with_capacity(GROUP);
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                m = rx.recv_async() => match m { Ok(m) => m, Err(_) => return },
            };
            group.push(first);
            let until = Instant::now() + LINGER;
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) if group.len() >= self.linger_for => break,
                    Err(_) => match tokio::time::timeout_at(until, rx.recv_async()).await {
                        Ok(Ok(m)) => group.push(m),
                        _ => break,
                    },
                }
            }
            let received_ms = group[0].1 / 1_000_000;
            self.probe.set_oldest(Some(received_ms));
            let decoder = self.decoder.read().expect("decoder lock").clone();
            let mut messages: Vec<Vec<Reading>> = Vec::with_capacity(group.len());
            let mut pkids = Vec::with_capacity(group.len());
            for (p, received_at) in group.drain(..) {
                if let Some(pkid) = p.pkid {
                    pkids.push(pkid);
                }
                let topic = p.topic();
                match decoder.decode(topic, &p.payload, received_at) {
                    Ok(d) => {
                        // Fields left out; the rest of the message is kept.
                        for e in &d.skipped {
                            self.metrics.decode_errors.with_label_values(&[e.cause()]).inc();
                            self.drops.log(e.cause(), topic, e);
                        }
                        self.intake.seen(&d.readings[0].site, topic, received_at / 1_000_000);
                        messages.push(d.readings);
                    }
                    Err(e) => {
                        self.metrics.decode_errors.with_label_values(&[e.cause()]).inc();
                        self.drops.log(e.cause(), topic, &e);
                    }
                }
            }
            let n = pkids.len() as u64;
            let confirm = Box::new(AckOnSpool {
                pkids,
                acks: self.acks.clone(),
                confirmed: self.confirmed.clone(),
                messages: n,
            });
            self.submitted.fetch_add(n, Ordering::Relaxed);
            // Even after stop, the group in hand goes to the outlet: its
            // acks follow while the poll task flushes.
            if self.intake.submit(decoder.catalog().clone(), messages, confirm, received_ms).await.is_err() {
                self.submitted.fetch_sub(n, Ordering::Relaxed);
                return;
            }
            self.probe.set_oldest(None);
            self.probe.done(n);
        }
    }
}

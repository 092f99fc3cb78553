//! Notifications out: the alert manager's notifications become messages —
//! per member and channel, and per team robot — in a durable outbox that
//! per-channel workers drain with retries, rate limits and merging.
//!
//! - [`message`]: the words, per channel and language;
//! - [`send`]: the senders and the pure reading of providers' answers;
//! - [`sign`]: Aliyun, Tencent and DingTalk signatures;
//! - [`outbox`]: the rows in SQLite and their delivery log;
//! - [`acklink`]: signed, expiring, single-use ack links;
//! - [`robots`]: robot rows name their robot; its URL and key stay in config;
//! - [`drill`]: `notify-test`, a drill message to a whole team;
//! - [`operator`]: floodguard's own problems (a full disk) to the duty officers.

pub mod acklink;
pub mod drill;
pub mod merge;
pub mod message;
pub mod operator;
pub mod outbox;
pub mod robots;
pub mod send;
pub mod sign;
pub mod stage;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alerts::model::{Notification, Recipient};
use crate::alerts::{Notifier, Places};
use crate::config::{ChannelsSection, Language, TeamsFile};
use crate::metrics::Metrics;
use crate::reading::{to_ns, TimestampNs};
use message::{Context, Rendered};
use outbox::{Body, NewRow, OutboxDb, Row};
use send::{Outcome, Senders};

/// The worker groups: a failing channel never holds up the others.
pub const GROUPS: [&[&str]; 3] = [&["sms"], &["email"], &["wecom", "dingtalk", "webhook"]];

fn now() -> TimestampNs {
    to_ns(chrono::Utc::now())
}

fn ns(d: Duration) -> i64 {
    crate::plan::ns(d)
}

/// Per-recipient pacing, in memory (after a restart it starts afresh).
#[derive(Default)]
struct Limits {
    /// Recipient → time of its last SMS.
    last_sms: HashMap<String, TimestampNs>,
    /// Robot → its sends in the last minute.
    robot_window: HashMap<String, VecDeque<TimestampNs>>,
    /// Recipient → not before (a provider said "too fast").
    throttled: HashMap<String, TimestampNs>,
}

/// `[channels]` and the senders made from it, replaced whole on reload.
struct Channels {
    section: ChannelsSection,
    senders: Senders,
}

/// Every channel a message can go out on (the `channel` label of the metrics).
pub const CHANNELS: [&str; 5] = ["sms", "email", "wecom", "dingtalk", "webhook"];

/// How an attempt ended (the `result` label of the metrics).
pub const RESULTS: [&str; 6] = ["sent", "retry", "throttled", "merged", "failed", "gave_up"];

/// Connections to `state.db`, one per concurrent user (the channel
/// workers, the stage's queueing, the API), so a query waiting on the disk
/// holds up only its own user.
const CONNECTIONS: usize = 5;

pub struct Outbox {
    dbs: Vec<Mutex<OutboxDb>>,
    channels: RwLock<Arc<Channels>>,
    teams: RwLock<TeamsFile>,
    places: RwLock<Places>,
    language: Language,
    limits: Mutex<Limits>,
    wake: [Notify; 3],
    metrics: Option<Arc<Metrics>>,
    /// Nonces of the ack links made for the rows being queued:
    /// (nonce, alert id, member).
    nonces: Mutex<Vec<(String, i64, String)>>,
    /// Attempts started or finished, for the stage's heartbeat.
    pub(crate) activity: std::sync::atomic::AtomicU64,
    /// When rows are due and were sent: the wall, or storm time in the demo.
    clock: crate::clock::Clock,
}

/// One row to make for a notification.
struct Planned {
    channel: &'static str,
    recipient: String,
    name: String,
    body: Body,
}

impl Outbox {
    pub fn new(
        db_path: &Path,
        channels: ChannelsSection,
        teams: TeamsFile,
        places: Places,
        language: Language,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, String> {
        let dbs = (0..CONNECTIONS)
            .map(|_| {
                OutboxDb::open(db_path).map(Mutex::new).map_err(|e| format!("{}: {e}", db_path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let senders = Senders::new(&channels)?;
        Ok(Outbox {
            dbs,
            channels: RwLock::new(Arc::new(Channels { section: channels, senders })),
            teams: RwLock::new(teams),
            places: RwLock::new(places),
            language,
            limits: Mutex::new(Limits::default()),
            wake: [Notify::new(), Notify::new(), Notify::new()],
            metrics,
            activity: std::sync::atomic::AtomicU64::new(0),
            nonces: Mutex::new(Vec::new()),
            clock: crate::clock::Clock::wall(),
        })
    }

    /// The outbox on `clock` (the demo's storm time) instead of the wall.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The outbox's time now.
    pub fn now(&self) -> TimestampNs {
        self.clock.now()
    }

    /// The wall time of `t` on the outbox's clock (for stall figures).
    pub fn wall_at(&self, t: TimestampNs) -> TimestampNs {
        self.clock.wall_at(t)
    }

    /// Takes a reloaded configuration. New channels apply to the next send;
    /// if their senders cannot be made the old channels stay (and the error
    /// is returned) while the teams are taken all the same.
    pub fn reload(&self, teams: TeamsFile, places: Places, channels: &ChannelsSection) -> Result<(), String> {
        *self.teams.write().expect("teams lock") = teams;
        *self.places.write().expect("places lock") = places;
        if *channels == self.ch().section {
            return Ok(());
        }
        let senders = Senders::new(channels)?;
        *self.channels.write().expect("channels lock") =
            Arc::new(Channels { section: channels.clone(), senders });
        Ok(())
    }

    /// Leaves checkpoints to the daemon's checkpoint thread.
    pub fn background_checkpoints(&self) -> Result<(), String> {
        for d in &self.dbs {
            d.lock().expect("outbox lock").background_checkpoints().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// A free connection (or, all busy, the first once it is free).
    fn db(&self) -> std::sync::MutexGuard<'_, OutboxDb> {
        for m in &self.dbs {
            if let Ok(g) = m.try_lock() {
                return g;
            }
        }
        self.dbs[0].lock().expect("outbox lock")
    }

    /// The language of messages and of the ack page.
    pub fn language(&self) -> Language {
        self.language
    }

    fn ch(&self) -> Arc<Channels> {
        self.channels.read().expect("channels lock").clone()
    }

    fn count(&self, channel: &str, result: &str) {
        if let Some(m) = &self.metrics {
            m.notifications_sent.with_label_values(&[channel, result]).inc();
        }
    }

    /// After a crash: sends cut off are queued again (same idempotency key).
    pub fn recover(&self) -> Result<(), String> {
        let n = self.db().requeue_sending(self.now()).map_err(|e| e.to_string())?;
        if n > 0 {
            tracing::warn!(rows = n, "messages cut off mid-send are queued again (same idempotency key)");
        }
        Ok(())
    }

    /// Turns up to `max` of the notifications the alert manager logged (and
    /// committed) into outbox rows; how many it took. A failure leaves them
    /// logged and unqueued: the next call queues them.
    pub fn enqueue_pending(&self, now: TimestampNs, max: usize) -> Result<usize, String> {
        let pending = self.db().unqueued_notifications(max).map_err(|e| e.to_string())?;
        let done = pending.len();
        for (id, body) in pending {
            match serde_json::from_str::<Notification>(&body) {
                Ok(mut n) => {
                    n.id = id;
                    self.enqueue(&n, now)?;
                }
                Err(e) => {
                    tracing::error!(id, error = %e, "cannot read a logged notification; marking it queued");
                    let _ = self.db().enqueue(id, &[], &[], now);
                }
            }
        }
        Ok(done)
    }

    /// An ack link for `alert_id` sent to `member`, if links are configured.
    fn link(&self, alert_id: i64, member: &str, now: TimestampNs) -> Option<String> {
        let ch = self.ch();
        let ack = &ch.section.ack;
        if ack.secret.is_empty() || ack.base_url.trim().is_empty() || alert_id <= 0 {
            return None;
        }
        let nonce = acklink::nonce();
        let claims = acklink::Claims {
            a: alert_id,
            m: member.to_string(),
            e: now / 1_000_000_000 + ack.ttl.get().as_secs() as i64,
            n: nonce.clone(),
        };
        // Stored with the rows that carry it, in the same transaction.
        self.nonces.lock().expect("nonces lock").push((nonce, alert_id, member.to_string()));
        Some(format!(
            "{}/ack/{}",
            ack.base_url.trim_end_matches('/'),
            acklink::sign(ack.secret.expose().as_bytes(), &claims)
        ))
    }

    fn render(&self, n: &Notification, member: &str, drill: bool, now: TimestampNs) -> Rendered {
        let places = self.places.read().expect("places lock");
        let streets: BTreeMap<String, String> =
            places.streets.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let link = |id: i64| if drill { None } else { self.link(id, member, now) };
        let ctx = Context {
            district: &places.district_name,
            language: self.language,
            streets: &streets,
            ack_link: &link,
            drill,
        };
        message::render(&ctx, n)
    }

    /// Who gets what for a notification: each member on each of their
    /// channels, and the team's robots.
    fn plan(&self, n: &Notification, drill: bool, now: TimestampNs) -> Vec<Planned> {
        let alert_ids: Vec<i64> = n.intents.iter().map(|i| i.alert.id).collect();
        let mut out = Vec::new();
        let recipients: Vec<Recipient> = n.recipients();
        let teams = self.teams.read().expect("teams lock").clone();
        let senders = &self.ch().senders;
        for r in &recipients {
            let member = teams.team(&r.team).and_then(|t| t.members.iter().find(|m| m.name == r.name));
            let wants =
                |c: &str| member.and_then(|m| m.channels.as_ref()).is_none_or(|cs| cs.iter().any(|x| x == c));
            let rendered = self.render(n, &r.name, drill, now);
            if let (Some(phone), true, true) = (&r.phone, wants("sms"), senders.has("sms")) {
                let body = Body {
                    rendered: rendered.clone(),
                    to: phone.clone(),
                    secret: None,
                    alert_ids: alert_ids.clone(),
                    merged: 1,
                };
                out.push(Planned { channel: "sms", recipient: phone.clone(), name: r.name.clone(), body });
            }
            if let (Some(email), true, true) = (&r.email, wants("email"), senders.has("email")) {
                let body = Body {
                    rendered,
                    to: email.clone(),
                    secret: None,
                    alert_ids: alert_ids.clone(),
                    merged: 1,
                };
                out.push(Planned { channel: "email", recipient: email.clone(), name: r.name.clone(), body });
            }
        }
        if let Some(team) = teams.team(&n.team) {
            for (k, robot) in team.robots.iter().enumerate() {
                let name = format!("{}（群）", team.name);
                let rendered = self.render(n, &name, drill, now);
                // The row names the robot; its URL and key stay in teams.toml.
                let body = Body {
                    rendered,
                    to: robots::reference(&team.id, k),
                    secret: None,
                    alert_ids: alert_ids.clone(),
                    merged: 1,
                };
                let channel = match robot.kind {
                    crate::config::RobotKind::Wecom => "wecom",
                    crate::config::RobotKind::Dingtalk => "dingtalk",
                    crate::config::RobotKind::Webhook => "webhook",
                };
                out.push(Planned { channel, recipient: format!("{}#{k}", team.id), name, body });
            }
        }
        out
    }

    /// Puts a notification's messages in the outbox.
    pub fn enqueue(&self, n: &Notification, now: TimestampNs) -> Result<(), String> {
        let planned = self.plan(n, false, now);
        let keys: Vec<String> =
            planned.iter().map(|p| format!("n{}:{}:{}", n.id, p.channel, p.recipient)).collect();
        let rows: Vec<NewRow<'_>> = planned
            .iter()
            .zip(&keys)
            .map(|(p, key)| NewRow {
                notification_id: n.id,
                channel: p.channel,
                recipient: &p.recipient,
                recipient_name: &p.name,
                team: &n.team,
                body: &p.body,
                key,
                priority: n.priority(),
            })
            .collect();
        let nonces = std::mem::take(&mut *self.nonces.lock().expect("nonces lock"));
        let result = self.db().enqueue(n.id, &rows, &nonces, now);
        for w in &self.wake {
            w.notify_one();
        }
        match result {
            Ok(added) => {
                tracing::debug!(notification = n.id, messages = added, "queued");
                Ok(())
            }
            Err(e) => Err(format!("cannot queue the messages of notification {}: {e}", n.id)),
        }
    }

    /// When `row`'s recipient may be sent to again (None: now).
    fn held_until(&self, row: &Row, now: TimestampNs) -> Option<TimestampNs> {
        let ch = self.ch();
        let limits = self.limits.lock().expect("limits lock");
        let mut until = limits.throttled.get(&row.recipient).copied().filter(|t| *t > now);
        match row.channel.as_str() {
            "sms" => {
                if let Some(last) = limits.last_sms.get(&row.recipient) {
                    let next =
                        last + ns(ch.section.sms.as_ref().map_or(Duration::ZERO, |s| s.min_interval.get()));
                    if next > now {
                        until = until.max(Some(next));
                    }
                }
            }
            "wecom" | "dingtalk" => {
                if let Some(w) = limits.robot_window.get(&row.recipient) {
                    let per_minute = ch.section.robots.per_minute.max(1) as usize;
                    let recent: Vec<&TimestampNs> = w.iter().filter(|t| now - **t < 60_000_000_000).collect();
                    if recent.len() >= per_minute {
                        until = until.max(Some(*recent[recent.len() - per_minute] + 60_000_000_000));
                    }
                }
            }
            _ => {}
        }
        until
    }

    fn record_sent(&self, row: &Row, now: TimestampNs) {
        let mut limits = self.limits.lock().expect("limits lock");
        match row.channel.as_str() {
            "sms" => {
                limits.last_sms.insert(row.recipient.clone(), now);
            }
            "wecom" | "dingtalk" => {
                let w = limits.robot_window.entry(row.recipient.clone()).or_default();
                w.push_back(now);
                while w.front().is_some_and(|t| now - *t >= 60_000_000_000) {
                    w.pop_front();
                }
            }
            _ => {}
        }
    }

    /// Merges the queued messages of `row`'s recipient into it.
    fn merge_into(&self, row: &mut Row) {
        let others = match self.db().queued_for(&row.channel, &row.recipient, row.id) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return;
            }
        };
        if others.is_empty() {
            return;
        }
        // Oldest first, as they happened.
        let mut all: Vec<(i64, &Body)> = others.iter().map(|o| (o.id, &o.body)).collect();
        all.push((row.id, &row.body));
        all.sort_by_key(|(id, _)| *id);
        let bodies: Vec<Body> = all.into_iter().map(|(_, b)| b.clone()).collect();
        row.body = merge::merge(&bodies, self.language);
        let ids: Vec<i64> = others.iter().map(|o| o.id).collect();
        match self.db().merge(row.id, &row.body, &ids) {
            Ok(true) => {}
            Ok(false) => return, // the queue changed meanwhile; the next round merges
            Err(e) => {
                tracing::error!(error = %e, "cannot merge queued messages");
                return;
            }
        }
        for _ in &ids {
            self.count(&row.channel, "merged");
        }
        tracing::info!(channel = %row.channel, recipient = %row.recipient_name, merged = ids.len() + 1, "throttled recipient: queued messages merged");
    }

    /// Sends one due row and records how it went.
    async fn deliver(&self, mut row: Row) {
        let now = self.now();
        if let Some(until) = self.held_until(&row, now) {
            self.merge_into(&mut row);
            if let Err(e) = self.db().hold(row.id, until) {
                tracing::error!(error = %e, "cannot hold a message back");
            }
            return;
        }
        let attempt = row.attempts + 1;
        let delivery = match self.db().start(row.id, attempt, now) {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a send before making it; not sending");
                return;
            }
        };
        self.activity.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ch = self.ch();
        let resolved =
            robots::resolve(&self.teams.read().expect("teams lock"), &row.body).map(|b| b.into_owned());
        let outcome = match resolved {
            Ok(body) => ch.senders.send(&row.channel, &body, &row.recipient_name, &row.key).await,
            Err(reason) => Outcome::Failed(reason),
        };
        self.activity.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let done = self.now();
        let (state, next, label, text) = match &outcome {
            Outcome::Sent(r) => {
                self.record_sent(&row, done);
                ("sent", done, "sent", r.clone())
            }
            Outcome::Throttled { after, reason } => {
                let until = done + ns(*after);
                self.limits.lock().expect("limits lock").throttled.insert(row.recipient.clone(), until);
                ("queued", until, "throttled", reason.clone())
            }
            Outcome::Retry { after, reason } => {
                let r = &ch.section.retry;
                let backoff = crate::backoff::delay(
                    r.min.get(),
                    r.max.get(),
                    attempt.saturating_sub(1),
                    rand::random::<f64>(),
                );
                let wait = after.map_or(backoff, |a| a.max(backoff));
                if done - row.created_at > ns(r.give_up_after.get()) {
                    ("failed", done, "gave_up", reason.clone())
                } else {
                    ("queued", done + ns(wait), "retry", reason.clone())
                }
            }
            Outcome::Failed(reason) => ("failed", done, "failed", reason.clone()),
        };
        self.count(&row.channel, label);
        match label {
            "sent" => tracing::info!(channel = %row.channel, to = %row.recipient_name, attempt, "delivered"),
            "failed" | "gave_up" => {
                tracing::error!(channel = %row.channel, to = %row.recipient_name, reason = %text, "not delivered; given up")
            }
            _ => {
                tracing::warn!(channel = %row.channel, to = %row.recipient_name, attempt, reason = %text, "delivery delayed")
            }
        }
        if let Err(e) = self.db().finish(row.id, delivery, state, next, label, &text, done) {
            tracing::error!(error = %e, "cannot record a send's result");
        }
    }

    /// The worker of one channel group: sends what is due, sleeps until the
    /// next is due or something new is queued.
    pub async fn run(self: Arc<Self>, group: usize, stop: CancellationToken) {
        let channels = GROUPS[group];
        loop {
            if stop.is_cancelled() {
                return;
            }
            let due = self.db().due(channels, self.now(), 20).unwrap_or_default();
            if due.is_empty() {
                let next = self.db().next_due(channels).ok().flatten();
                let wait = next.map_or(Duration::from_secs(1), |t| {
                    self.clock
                        .wall_duration(Duration::from_nanos((t - self.now()).max(0) as u64))
                        .min(Duration::from_secs(1))
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake[group].notified() => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            for row in due {
                tokio::select! {
                    _ = self.deliver(row) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    /// Rows due now or being sent, and when the oldest was made (the stage's figures).
    pub fn due_figures(&self, now: TimestampNs) -> (i64, Option<TimestampNs>) {
        self.db().due_figures(now).unwrap_or((0, None))
    }

    /// Nothing due or being sent (messages waiting for a retry later do not count).
    pub fn is_drained(&self) -> bool {
        self.db().in_flight(self.now()).unwrap_or(0) == 0
    }

    /// Returns once nothing is due or being sent (messages waiting for a
    /// retry later do not count).
    pub async fn drained(&self) {
        loop {
            if self.db().in_flight(self.now()).unwrap_or(0) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Checks an ack link (signature, expiry, not used).
    pub fn check_link(&self, token: &str, now: TimestampNs) -> Result<acklink::Claims, acklink::TokenError> {
        let claims = acklink::verify(self.ch().section.ack.secret.expose().as_bytes(), token, now)?;
        match self.db().nonce_unused(&claims.n, claims.a, &claims.m) {
            Ok(true) => Ok(claims),
            _ => Err(acklink::TokenError::Used),
        }
    }

    /// Uses an ack link: valid once.
    pub fn use_link(&self, token: &str, now: TimestampNs) -> Result<acklink::Claims, acklink::TokenError> {
        let claims = acklink::verify(self.ch().section.ack.secret.expose().as_bytes(), token, now)?;
        match self.db().use_nonce(&claims.n, claims.a, &claims.m, now) {
            Ok(true) => Ok(claims),
            _ => Err(acklink::TokenError::Used),
        }
    }

    /// Sets the outbox gauges (at each scrape of `/metrics`).
    pub fn observe(&self, metrics: &Metrics, now: TimestampNs) {
        let waiting = self.db().waiting().unwrap_or_default();
        let mut oldest = None;
        for ch in CHANNELS {
            let row = waiting.iter().find(|(c, _, _)| c == ch);
            metrics.outbox_waiting.with_label_values(&[ch]).set(row.map_or(0, |r| r.1));
            if let Some((_, _, t)) = row {
                oldest = Some(oldest.map_or(*t, |o: TimestampNs| o.min(*t)));
            }
        }
        let age = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e9);
        metrics.outbox_oldest_waiting_seconds.set(age);
    }

    /// The latest messages with their state, for the page and the API.
    pub fn recent(&self, limit: usize, tz: chrono_tz::Tz) -> Vec<serde_json::Value> {
        let rows = self.db().recent(limit).unwrap_or_default();
        let time = |t: TimestampNs| crate::engine::rfc3339(t, tz);
        rows.into_iter()
            .map(|(r, error, sent_at)| {
                serde_json::json!({
                    "id": r.id, "notification": r.notification_id, "channel": r.channel, "to": r.recipient_name,
                    "team": r.team, "state": r.state, "attempts": r.attempts, "subject": r.body.rendered.subject,
                    "text": r.body.rendered.sms, "error": error.map(|e| crate::redact::text(&e)),
                    "created_at": time(r.created_at),
                    "sent_at": sent_at.map(time),
                })
            })
            .collect()
    }
}

/// The alert manager's notifier in the daemon: the notification is in
/// `state.db` already (committed with the alert); this only wakes the
/// outbox stage, which queues it from there.
#[derive(Clone, Default)]
pub struct Wake(pub Arc<Notify>);

impl Notifier for Wake {
    fn notify(&self, _: &Notification) {
        self.0.notify_one();
    }
}

#[cfg(test)]
mod tests;

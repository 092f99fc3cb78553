//! Notifications out: the alert manager's notifications become messages —
//! per member and channel, and per team robot — in a durable outbox that
//! per-channel workers drain within each recipient's carrier budget, with
//! retries, digests, delivery receipts, phone calls and fallbacks to
//! another channel or person when a message does not reach its person.
//!
//! - [`message`]: the words, per channel and language; [`merge`]: digests;
//! - [`budget`], [`fallback`], [`classify`]: the pure decisions — budget
//!   planning, the next channel and what a receipt means, providers' answers;
//! - [`send`], [`providers`]: the senders and the signed provider requests
//!   (`sign`), receipts and call-detail queries included;
//! - [`outbox`], [`ledger`]: the rows in SQLite, their delivery log, budget
//!   spends and holds, receipts, alarms;
//! - `deliver.rs` (sending within budgets), `reroute.rs` (fallbacks),
//!   `receipts.rs` (asking what became of a message), `alarm.rs` (refused
//!   credentials): the outbox's work, on the stage's threads;
//! - [`acklink`]: signed, expiring, single-use ack links;
//! - [`robots`]: robot rows name their robot; its URL and key stay in config;
//! - [`drill`]: `notify-test`, a drill message to a whole team;
//! - [`operator`]: floodguard's own problems (a full disk) to the duty officers.

pub mod acklink;
mod alarm;
pub mod budget;
pub mod classify;
mod deliver;
pub mod drill;
pub mod fallback;
pub mod ledger;
mod links;
pub mod merge;
pub mod message;
pub mod operator;
pub mod outbox;
pub mod parts;
pub mod providers;
mod receipts;
mod reroute;
pub mod robots;
pub mod send;
pub mod sign;
pub mod stage;
pub mod trail;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::alerts::model::{IntentKind, Notification, Recipient};
use crate::alerts::{Notifier, Places};
use crate::config::{ChannelsSection, Language, TeamsFile};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reading::{to_ns, TimestampNs};
use message::{Context, Rendered};
use outbox::{Body, NewRow, OutboxDb};
use send::Senders;

/// The worker groups: a failing channel never holds up the others.
pub const GROUPS: [&[&str]; 4] = [&["sms"], &["email"], &["wecom", "dingtalk", "webhook"], &["voice"]];

fn now() -> TimestampNs {
    to_ns(chrono::Utc::now())
}

fn ns(d: Duration) -> i64 {
    crate::plan::ns(d)
}

/// `[channels]` and the senders made from it, replaced whole on reload.
struct Channels {
    section: ChannelsSection,
    senders: Senders,
}

/// Every channel a message can go out on (the `channel` label of the metrics).
pub const CHANNELS: [&str; 6] = ["sms", "email", "wecom", "dingtalk", "webhook", "voice"];

/// How an attempt ended (the `result` label of the metrics): `throttled`
/// is a provider's limit answer, `held` the recipient's own budget,
/// `unknown` a send whose answer never came, `refused` credentials the
/// provider refused, `rerouted` an urgent notice handed to another channel
/// or person.
pub const RESULTS: [&str; 11] = [
    "sent",
    "retry",
    "throttled",
    "held",
    "merged",
    "unknown",
    "refused",
    "split",
    "rerouted",
    "failed",
    "gave_up",
];

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
    wake: [Notify; 4],
    metrics: Option<Arc<Metrics>>,
    /// Where a refused channel shows as a `/readyz` warning.
    health: Mutex<Option<Arc<Health>>>,
    /// Nonces of the ack links made for the rows being queued:
    /// (nonce, alert id, member).
    nonces: Mutex<Vec<(String, i64, String)>>,
    /// Attempts started or finished, for the stage's heartbeat.
    pub(crate) activity: std::sync::atomic::AtomicU64,
    /// When rows are due and were sent: the wall, or storm time in the demo.
    clock: crate::clock::Clock,
    /// Whether this node leads: only the leader queues, sends and asks for
    /// receipts (`Outbox::leads`).
    cluster: Arc<crate::cluster::Cluster>,
    /// Rows this process has between recording a send's start and its
    /// end: never taken back as a deposed leader's (`recover_deposed`).
    in_flight: Mutex<std::collections::HashSet<i64>>,
}

/// A row in [`Outbox::in_flight`] while this guard lives.
pub(crate) struct InFlight<'a>(&'a Mutex<std::collections::HashSet<i64>>, i64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("in-flight lock").remove(&self.1);
    }
}

/// One row to make for a notification.
struct Planned {
    channel: &'static str,
    recipient: String,
    name: String,
    body: Body,
    /// The idempotency key: `n{notification}:{channel}:{recipient}`, for a
    /// call `v{alert}:{level}:{phone}` (once per person, alert and level).
    key: String,
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
            .map(|_| OutboxDb::open(db_path).map_err(|e| format!("{}: {e}", db_path.display())))
            .collect::<Result<Vec<_>, _>>()?;
        Self::on(dbs, channels, teams, places, language, metrics)
    }

    /// The outbox on the PostgreSQL state at `target`, as this node of
    /// `cluster`: it queues, sends and asks only while it leads.
    #[allow(clippy::too_many_arguments)]
    pub fn postgres(
        target: &crate::state::pg::Target,
        cluster: Arc<crate::cluster::Cluster>,
        channels: ChannelsSection,
        teams: TeamsFile,
        places: Places,
        language: Language,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, String> {
        let lease = cluster.timing().lease;
        let dbs = (0..CONNECTIONS)
            .map(|_| {
                OutboxDb::postgres(target, lease)
                    .map(|d| d.in_cluster(cluster.clone()))
                    .map_err(|e| format!("state {}: {e}", target.url))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut o = Self::on(dbs, channels, teams, places, language, metrics)?;
        o.cluster = cluster;
        Ok(o)
    }

    fn on(
        dbs: Vec<OutboxDb>,
        channels: ChannelsSection,
        teams: TeamsFile,
        places: Places,
        language: Language,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, String> {
        let senders = Senders::new(&channels)?;
        Ok(Outbox {
            dbs: dbs.into_iter().map(Mutex::new).collect(),
            channels: RwLock::new(Arc::new(Channels { section: channels, senders })),
            teams: RwLock::new(teams),
            places: RwLock::new(places),
            language,
            wake: [Notify::new(), Notify::new(), Notify::new(), Notify::new()],
            metrics,
            health: Mutex::new(None),
            activity: std::sync::atomic::AtomicU64::new(0),
            nonces: Mutex::new(Vec::new()),
            clock: crate::clock::Clock::wall(),
            cluster: crate::cluster::Cluster::single(String::new()),
            in_flight: Mutex::new(Default::default()),
        })
    }

    /// Whether this node leads now (by its own clock: it stops a margin
    /// before its lease can lapse). A single node always leads.
    pub fn leads(&self) -> bool {
        self.cluster.term().is_some()
    }

    /// This node's epoch while it leads.
    pub fn term(&self) -> Option<i64> {
        self.cluster.term()
    }

    /// Whether nodes share the state (a takeover recovers the sends the old
    /// leader cut off).
    pub fn is_shared(&self) -> bool {
        self.cluster.is_shared()
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
        // New credentials: what waited for them is tried now.
        match self.db().wake_refused(self.now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                messages = n,
                "new channel settings: messages held for refused credentials are tried again"
            ),
            Err(e) => tracing::error!(error = %e, "cannot wake the messages held for refused credentials"),
        }
        self.wake_all();
        Ok(())
    }

    /// Shows refused credentials as `/readyz` warnings (and the ones on
    /// record from before a restart at once).
    pub fn set_health(&self, health: Arc<Health>) {
        *self.health.lock().expect("health lock") = Some(health);
        self.restore_alarms();
    }

    fn wake_all(&self) {
        for w in &self.wake {
            w.notify_one();
        }
    }

    /// Wakes the worker group of `channel`.
    fn wake_channel(&self, channel: &str) {
        if let Some(g) = GROUPS.iter().position(|g| g.contains(&channel)) {
            self.wake[g].notify_one();
        }
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

    /// After a crash, the sends cut off: where a receipt query can tell
    /// whether the provider took them, they are `unknown` until it does;
    /// calls are never placed twice; the rest are queued again with the
    /// same idempotency key.
    pub fn recover(&self) -> Result<(), String> {
        let ch = self.ch();
        let ask: Vec<&str> =
            ch.section.sms.as_ref().filter(|s| s.has_receipts()).map(|_| "sms").into_iter().collect();
        let n = self.db().recover_sending(&ask, &["voice"], self.now()).map_err(|e| e.to_string())?;
        if n > 0 {
            tracing::warn!(rows = n, "messages cut off mid-send: asked about where the provider can tell, else queued again (same idempotency key)");
        }
        Ok(())
    }

    /// In a cluster, every second: the rows a deposed leader left
    /// `sending` — its start committed before this node took over, its
    /// outcome unknown — are resolved as after a crash ([`Self::recover`]),
    /// except those this process still has in flight. Without it such a row
    /// stayed `sending` (unsent, on record) when this node's lead was lost
    /// and taken again between two looks of the stage, or its own send was
    /// cut off by a lost lease and it led again.
    pub fn recover_deposed(&self) -> Result<usize, String> {
        let ch = self.ch();
        let ask: Vec<&str> =
            ch.section.sms.as_ref().filter(|s| s.has_receipts()).map(|_| "sms").into_iter().collect();
        let in_flight: Vec<i64> = self.in_flight.lock().expect("in-flight lock").iter().copied().collect();
        let n = self
            .db()
            .reclaim_sending(&ask, &["voice"], outbox::Reclaim::Deposed { in_flight: &in_flight }, self.now())
            .map_err(|e| e.to_string())?;
        if n > 0 {
            tracing::warn!(rows = n, "messages a deposed leader left mid-send: asked about where the provider can tell, else queued again (same idempotency key)");
        }
        Ok(n)
    }

    /// Marks `id` in flight until the guard is dropped.
    pub(crate) fn in_flight(&self, id: i64) -> InFlight<'_> {
        self.in_flight.lock().expect("in-flight lock").insert(id);
        InFlight(&self.in_flight, id)
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

    fn render(&self, n: &Notification, member: &str, drill: bool, now: TimestampNs) -> Rendered {
        let places = self.places.read().expect("places lock");
        let streets: BTreeMap<String, String> =
            places.streets.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let link = |id: i64| if drill { None } else { self.link_many(&[id], member, now) };
        let all = |ids: &[i64]| if drill { None } else { self.link_many(ids, member, now) };
        let ctx = Context {
            district: &places.district_name,
            language: self.language,
            streets: &streets,
            ack_link: &link,
            ack_all: &all,
            drill,
        };
        message::render(&ctx, n)
    }

    fn labels(&self, n: &Notification) -> Vec<String> {
        let places = self.places.read().expect("places lock");
        let streets: BTreeMap<String, String> =
            places.streets.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let none = |_: i64| None;
        let none_all = |_: &[i64]| None;
        let ctx = Context {
            district: &places.district_name,
            language: self.language,
            streets: &streets,
            ack_link: &none,
            ack_all: &none_all,
            drill: false,
        };
        message::labels(&ctx, n)
    }

    /// Who gets what for a notification: each member on each of their
    /// channels, and the team's robots; for a call, a call to each.
    fn plan(&self, n: &Notification, drill: bool, now: TimestampNs) -> Vec<Planned> {
        let alert_ids: Vec<i64> = n.intents.iter().map(|i| i.alert.id).collect();
        let labels = self.labels(n);
        let mut out = Vec::new();
        let recipients: Vec<Recipient> = n.recipients();
        let teams = self.teams.read().expect("teams lock").clone();
        let senders = &self.ch().senders;
        let key = |channel: &str, to: &str| format!("n{}:{channel}:{to}", n.id);
        if !n.intents.is_empty() && n.intents.iter().all(|i| i.kind == IntentKind::Call) {
            let top = &n.intents[0].alert;
            let level = top.level.map_or("none", |l| l.as_str());
            for r in &recipients {
                let member = teams
                    .teams
                    .iter()
                    .find(|t| t.id == r.team)
                    .and_then(|t| t.members.iter().find(|m| m.name == r.name));
                let wants =
                    member.and_then(|m| m.channels.as_ref()).is_none_or(|cs| cs.iter().any(|x| x == "voice"));
                if let (Some(phone), true, true) = (&r.phone, wants, senders.has("voice")) {
                    let body = Body {
                        rendered: self.render(n, &r.name, drill, now),
                        to: phone.clone(),
                        secret: None,
                        alert_ids: alert_ids.clone(),
                        merged: 1,
                        labels: labels.clone(),
                    };
                    let key = format!("v{}:{level}:{phone}", top.id);
                    out.push(Planned {
                        channel: "voice",
                        recipient: phone.clone(),
                        name: r.name.clone(),
                        body,
                        key,
                    });
                }
            }
            return out;
        }
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
                    labels: labels.clone(),
                };
                let key = key("sms", phone);
                out.push(Planned {
                    channel: "sms",
                    recipient: phone.clone(),
                    name: r.name.clone(),
                    body,
                    key,
                });
            }
            if let (Some(email), true, true) = (&r.email, wants("email"), senders.has("email")) {
                let body = Body {
                    rendered,
                    to: email.clone(),
                    secret: None,
                    alert_ids: alert_ids.clone(),
                    merged: 1,
                    labels: labels.clone(),
                };
                let key = key("email", email);
                out.push(Planned {
                    channel: "email",
                    recipient: email.clone(),
                    name: r.name.clone(),
                    body,
                    key,
                });
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
                    labels: labels.clone(),
                };
                let channel = match robot.kind {
                    crate::config::RobotKind::Wecom => "wecom",
                    crate::config::RobotKind::Dingtalk => "dingtalk",
                    crate::config::RobotKind::Webhook => "webhook",
                };
                let recipient = format!("{}#{k}", team.id);
                let key = key(channel, &recipient);
                out.push(Planned { channel, recipient, name, body, key });
            }
        }
        out
    }

    /// Puts a notification's messages in the outbox.
    pub fn enqueue(&self, n: &Notification, now: TimestampNs) -> Result<(), String> {
        let planned = self.plan(n, false, now);
        let rows: Vec<NewRow<'_>> = planned
            .iter()
            .map(|p| NewRow {
                notification_id: n.id,
                channel: p.channel,
                recipient: &p.recipient,
                recipient_name: &p.name,
                team: &n.team,
                body: &p.body,
                key: &p.key,
                priority: n.priority(),
                fallback_of: None,
            })
            .collect();
        let nonces = std::mem::take(&mut *self.nonces.lock().expect("nonces lock"));
        let result = self.db().enqueue(n.id, &rows, &nonces, now);
        self.wake_all();
        match result {
            Ok(added) => {
                tracing::debug!(notification = n.id, messages = added, "queued");
                Ok(())
            }
            Err(e) => Err(format!("cannot queue the messages of notification {}: {e}", n.id)),
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
                    "created_at": time(r.created_at), "sent_at": sent_at.map(time), "receipt": r.receipt,
                    "provider_id": r.provider_id, "alert_ids": r.body.alert_ids, "merged": r.body.merged,
                    "fallback_of": r.fallback_of, "held": r.held,
                })
            })
            .collect()
    }

    /// Every message about `alerts`, oldest first (the page, the API, the report).
    pub fn deliveries(&self, alerts: &[i64]) -> Vec<ledger::Delivery> {
        self.db().deliveries(alerts).unwrap_or_default()
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

//! The alert manager: engine transitions in, alerts kept in SQLite,
//! notifications out — once per level change, repeated and escalated until
//! someone acks, quiet under silences and inhibition, grouped per team.
//!
//! Every decision is a function of `decide`; this file applies them, in one
//! SQLite transaction per batch of transitions or per tick, and only after
//! the commit tells the [`Notifier`] and hands the batch's `alert_event` and
//! `area_level` points to the outlet. Those points are written to
//! `points_pending` in the same transaction and deleted once the outlet
//! says they are spooled, so a crash in between only writes them again
//! (identical points: InfluxDB keeps one). The engine's progress mark of the
//! batch is committed with it (`cursors`): what is on record and how far
//! the engine had judged never disagree.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use super::decide::{self, Action, Mute};
use super::model::*;
use super::route;
use super::store::{Store, Tx};
use crate::config::{Role, TeamsFile};
use crate::engine::{Change, Progress, SiteChange, Transition};
use crate::level::Level;
use crate::metrics::Metrics;
use crate::outlet::{self, points};
use crate::reading::TimestampNs;

/// The name of the engine's cursor in `cursors`.
pub const ENGINE_CURSOR: &str = "engine";

/// Where the manager's points go: the outlet, and the mark of what it has spooled.
#[derive(Clone)]
pub struct PointsOut {
    pub outlet: outlet::Handle,
    /// The highest `points_pending` row the outlet has spooled.
    pub spooled: Arc<AtomicI64>,
}

/// Where notifications go: the outbox of the notifications issue; a log until then.
pub trait Notifier: Send + Sync {
    fn notify(&self, n: &Notification);
}

/// Logs each notification.
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, n: &Notification) {
        let alerts: Vec<String> = n
            .intents
            .iter()
            .map(|i| {
                format!(
                    "#{} {} {} {}",
                    i.alert.id,
                    i.kind,
                    i.alert.site,
                    i.alert.level.map_or("—", |l| l.as_str())
                )
            })
            .collect();
        let to: Vec<String> = n.recipients().into_iter().map(|r| r.name).collect();
        tracing::info!(team = %n.team, id = n.id, ?alerts, ?to, "notification");
    }
}

/// Measurement of alert lifecycle events in InfluxDB.
pub const ALERT_EVENT: &str = points::ALERT_EVENT;

/// Why an API operation on an alert or a silence failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("no alert {0}")]
    NoAlert(i64),
    #[error("no silence {0}")]
    NoSilence(i64),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(String),
    /// The database refused a deposed leader's write: another node leads.
    #[error("fenced: {0}")]
    Fenced(String),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Storage(e.to_string())
    }
}

impl From<crate::state::db::Error> for OpError {
    fn from(e: crate::state::db::Error) -> Self {
        if e.is_fenced() {
            OpError::Fenced(e.to_string())
        } else {
            OpError::Storage(e.to_string())
        }
    }
}

/// Names of places, from the plan.
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub district_id: String,
    pub district_name: String,
    /// Street id → name.
    pub streets: HashMap<String, String>,
    /// Site id → (name, street id, kind): the plan's own strings, shared.
    pub sites: HashMap<Arc<str>, (Arc<str>, Arc<str>, &'static str)>,
    /// The district's time zone: the duty roster is in local time.
    pub tz: chrono_tz::Tz,
    /// Site id → (lat, lon): where the nearest depots are looked up from.
    pub locations: HashMap<Arc<str>, (f64, f64)>,
}

impl Places {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Places { tz: config.timezone, ..Places::from_plan(&config.plan) }
    }

    /// The places of `plan`, in Asia/Shanghai.
    pub fn from_plan(plan: &crate::plan::Plan) -> Self {
        Places {
            tz: chrono_tz::Asia::Shanghai,
            district_id: plan.district_id.to_string(),
            district_name: plan.district_name.to_string(),
            streets: plan.streets.iter().map(|s| (s.id.to_string(), s.name.to_string())).collect(),
            sites: plan
                .sites
                .iter()
                .map(|s| (s.id.clone(), (s.name.clone(), plan.streets[s.street].id.clone(), s.kind.as_str())))
                .collect(),
            locations: plan.sites.iter().map(|s| (s.id.clone(), s.location)).collect(),
        }
    }
}

struct Inner {
    store: Store,
    teams: TeamsFile,
    config_silences: Vec<Silence>,
    places: Places,
    /// Active alerts by (site, rule), timelines left out.
    active: HashMap<(String, String), Alert>,
    /// Sites offline now.
    offline: HashSet<String>,
    /// Intents waiting per team: (row id, intent, wait).
    pending: Vec<(i64, Intent, i64)>,
    /// `points_pending` rows up to this one are deleted.
    points_deleted: i64,
    /// A rollback left the memory unlike the record and re-reading failed.
    stale: bool,
    /// When each team was last told (storm mode's gap; after a restart
    /// the first message goes as `group_wait` says).
    last_told: HashMap<String, TimestampNs>,
    /// Flood materials and their stock, for messages and the API.
    supplies: Supplies,
    /// Operators' acts on record (`fg_changes`, PostgreSQL) when the
    /// memory was last read: another node's ack moves it.
    seen_changes: Option<i64>,
}

impl Inner {
    /// Active alerts, offline sites, waiting intents and the stock as
    /// `tx` sees them.
    fn reload_in(
        tx: &Tx<'_>,
        active: &mut Active,
        offline: &mut HashSet<String>,
        pending: &mut Vec<(i64, Intent, i64)>,
        supplies: &mut Supplies,
    ) -> Result<(), OpError> {
        let (a, o) = split_memory(tx.active_bare()?);
        *active = a;
        *offline = o;
        *pending = tx.pending_intents()?;
        supplies.stock = crate::materials::Stock::new(&supplies.materials, &tx.movements()?);
        Ok(())
    }

    /// Active alerts, offline sites and waiting intents as on record.
    fn reload_memory(&mut self) -> Result<(), OpError> {
        let (active, offline) = memory(&self.store)?;
        self.pending = self.store.pending_intents()?;
        self.active = active;
        self.offline = offline;
        let moves = self.store.movements()?;
        self.supplies.stock = crate::materials::Stock::new(&self.supplies.materials, &moves);
        self.stale = false;
        Ok(())
    }
}

type Active = HashMap<(String, String), Alert>;

/// The active alerts (timelines left out) and offline sites on record.
fn memory(store: &Store) -> Result<(Active, HashSet<String>), crate::state::db::Error> {
    Ok(split_memory(store.active_bare()?))
}

fn split_memory(alerts: Vec<Alert>) -> (Active, HashSet<String>) {
    let active: Active = alerts
        .into_iter()
        .map(|mut a| {
            a.timeline.clear();
            ((a.site.clone(), a.rule.clone()), a)
        })
        .collect();
    let offline =
        active.values().filter(|a| a.kind == Some(AlertKind::Offline)).map(|a| a.site.clone()).collect();
    (active, offline)
}

/// What a batch of work produced, to hand on after the commit.
#[derive(Default)]
struct Out {
    notifications: Vec<Notification>,
    lines: String,
    /// The `points_pending` row of `lines`.
    points_row: Option<i64>,
    /// Lifecycle events for the live page (`/api/v1/events`).
    changes: Vec<crate::events::AlertChange>,
}

pub struct AlertManager {
    inner: Mutex<Inner>,
    notifier: Arc<dyn Notifier>,
    points: Option<PointsOut>,
    metrics: Option<Arc<Metrics>>,
    /// Alert changes for the live page, sent after each commit.
    events: tokio::sync::broadcast::Sender<crate::events::Event>,
    /// Whether this node leads (only the leader records the engine's
    /// changes and runs follow-ups), and its epoch for the fence.
    cluster: Arc<crate::cluster::Cluster>,
    /// The name of this node's engine cursor (`engine`, or
    /// `engine:<node>` in a shared state).
    cursor_name: String,
}

fn config_silences(teams: &TeamsFile) -> Vec<Silence> {
    teams
        .silences
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let start = chrono::DateTime::parse_from_rfc3339(&s.starts_at).ok()?;
            let end = chrono::DateTime::parse_from_rfc3339(&s.ends_at).ok()?;
            Some(Silence {
                // Negative ids: not in the database, not deletable.
                id: -(i as i64) - 1,
                matchers: Matchers {
                    site: s.site.clone(),
                    rule: s.rule.clone(),
                    street: s.street.clone(),
                    kind: s.kind.clone(),
                    unreadable: false,
                },
                starts_at: start.timestamp_nanos_opt()?,
                ends_at: end.timestamp_nanos_opt()?,
                created_by: s.created_by.clone(),
                comment: s.comment.clone(),
                from_config: true,
            })
        })
        .collect()
}

impl AlertManager {
    pub fn new(
        store: Store,
        teams: TeamsFile,
        places: Places,
        notifier: Arc<dyn Notifier>,
        points: Option<PointsOut>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, crate::state::db::Error> {
        let (active, offline) = memory(&store)?;
        let pending = store.pending_intents()?;
        let config_silences = config_silences(&teams);
        let supplies = Supplies {
            stock: crate::materials::Stock::new(&Default::default(), &store.movements()?),
            ..Default::default()
        };
        Ok(AlertManager {
            inner: Mutex::new(Inner {
                store,
                teams,
                config_silences,
                places,
                active,
                offline,
                pending,
                points_deleted: 0,
                stale: false,
                last_told: HashMap::new(),
                supplies,
                seen_changes: None,
            }),
            notifier,
            points,
            metrics,
            events: tokio::sync::broadcast::channel(crate::events::CHANNEL_CAPACITY).0,
            cluster: crate::cluster::Cluster::single(String::new()),
            cursor_name: ENGINE_CURSOR.to_string(),
        })
    }

    /// Alert changes (created, escalated, acked, disposed, resolved …) as
    /// they are committed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.events.subscribe()
    }

    /// Levels of active site alerts, and sites offline, for seeding the
    /// engine after a restart so it carries on where it stopped.
    pub fn seed(&self) -> (Vec<(String, String, Level)>, Vec<String>) {
        let inner = self.lock();
        let levels = inner
            .active
            .values()
            // Gateways' and intakes' alerts too: the engine keeps them down until heard from.
            .filter(|a| matches!(a.kind, Some(AlertKind::Site | AlertKind::Gateway)))
            .filter_map(|a| Some((a.site.clone(), a.rule.clone(), a.level?)))
            .collect();
        (levels, inner.offline.iter().cloned().collect())
    }

    /// New teams, silences from config and place names (a reload).
    pub fn reload(&self, teams: TeamsFile, places: Places) {
        let mut inner = self.lock();
        inner.config_silences = config_silences(&teams);
        inner.teams = teams;
        inner.places = places;
    }

    fn finish(&self, out: Out) {
        if let Some(m) = &self.metrics {
            for n in &out.notifications {
                m.alert_notifications.inc();
                for i in &n.intents {
                    m.alert_intents.with_label_values(&[i.kind.as_str()]).inc();
                }
            }
        }
        for n in &out.notifications {
            self.notifier.notify(n);
        }
        for c in out.changes {
            let _ = self.events.send(crate::events::Event::Alert(c));
        }
        if let (Some(p), false) = (&self.points, out.lines.is_empty()) {
            if p.outlet.points(outlet::Points { lines: out.lines, pending: out.points_row }).is_err() {
                tracing::warn!("the outlet has stopped: points go out at the next start");
            }
        }
    }

    /// Points committed but perhaps not spooled (a crash between the two):
    /// handed to the outlet again.
    pub fn resend_points(&self) -> Result<usize, OpError> {
        let Some(p) = &self.points else { return Ok(0) };
        let rows = self.lock().store.pending_points()?;
        let n = rows.len();
        for (id, lines) in rows {
            if p.outlet.points(outlet::Points { lines, pending: Some(id) }).is_err() {
                break;
            }
        }
        Ok(n)
    }

    /// How far the engine's judgements are on record.
    pub fn engine_cursor(&self) -> Result<Option<Progress>, OpError> {
        let c = self.lock().store.cursor(&self.cursor_name)?;
        Ok(c.map(|(segment, offset)| Progress { segment, offset }))
    }

    /// The manager's state, its connection to the state opened again first
    /// if it broke (reads on a standby, the memory re-read after a failure).
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().expect("alerts lock");
        if let Err(e) = inner.store.reconnect() {
            tracing::warn!(error = %e, "alert store: cannot connect to the state yet");
        }
        inner
    }

    /// An operator's act (any node), in one transaction; see [`Self::with_as`].
    fn with<T>(&self, f: impl FnOnce(&mut Work<'_>) -> Result<T, OpError>) -> Result<T, OpError> {
        self.with_as(Whose::Operator, f)
    }

    /// Handles a batch of transitions, and records how far the engine had
    /// judged when it made them. On an error nothing changed: the caller
    /// keeps the batch and tries again.
    pub fn handle(&self, transitions: &[Transition], upto: Option<Progress>) -> Result<(), OpError> {
        self.handle_many(&[(transitions, upto)])
    }

    /// Several batches in one transaction, each applied as `handle` would.
    pub fn handle_many(&self, batches: &[(&[Transition], Option<Progress>)]) -> Result<(), OpError> {
        if batches.iter().all(|(t, u)| t.is_empty() && u.is_none()) {
            return Ok(());
        }
        let fold = self.lock().teams.alerting.fold_sites_into_street;
        let cursor = self.cursor_name.clone();
        self.with_as(Whose::Leader, |w| {
            for (transitions, upto) in batches {
                if !transitions.is_empty() {
                    let now = transitions.iter().map(|t| t.at).max().unwrap_or(0);
                    // Folding: the street's change first, so its sites fold
                    // into it at once. Otherwise the sites first, so the
                    // street knows its members.
                    let area =
                        |t: &&Transition| matches!(t.change, Change::Street { .. } | Change::District { .. });
                    let ordered: Vec<&Transition> = if fold {
                        transitions
                            .iter()
                            .filter(area)
                            .chain(transitions.iter().filter(|t| !area(t)))
                            .collect()
                    } else {
                        transitions.iter().collect()
                    };
                    for t in ordered {
                        w.transition(t)?;
                    }
                    w.flush_due(now)?;
                }
                if let Some(p) = upto {
                    w.tx.set_cursor(&cursor, p.segment, p.offset)?;
                }
            }
            Ok(())
        })
    }

    /// Follow-ups due at `now`: unmuted alerts told at last, repeats,
    /// escalations, groups whose wait is over.
    pub fn tick(&self, now: TimestampNs) -> Result<(), OpError> {
        self.with_as(Whose::Leader, |w| w.tick(now))
    }

    pub fn ack(&self, id: i64, by: &str, note: Option<&str>, now: TimestampNs) -> Result<Alert, OpError> {
        self.with(|w| w.ack(id, by, note, now))?;
        self.alert(id)?.ok_or(OpError::NoAlert(id))
    }

    pub fn dispose(&self, id: i64, by: &str, note: &str, now: TimestampNs) -> Result<Alert, OpError> {
        self.with(|w| w.dispose(id, by, note, now))?;
        self.alert(id)?.ok_or(OpError::NoAlert(id))
    }

    pub fn alert(&self, id: i64) -> Result<Option<Alert>, OpError> {
        Ok(self.lock().store.alert(id)?)
    }

    /// Active alerts (or the latest `limit` of all), with timelines.
    pub fn alerts(&self, active_only: bool, limit: usize) -> Result<Vec<Alert>, OpError> {
        let inner = self.lock();
        Ok(if active_only { inner.store.active()? } else { inner.store.recent(limit)? })
    }

    pub fn between(&self, since: TimestampNs, until: TimestampNs) -> Result<Vec<Alert>, OpError> {
        Ok(self.lock().store.between(since, until)?)
    }

    /// Silences in force or to come (config and API), or all with `all`.
    pub fn silences(&self, now: TimestampNs, all: bool) -> Result<Vec<Silence>, OpError> {
        let inner = self.lock();
        let mut v: Vec<Silence> =
            inner.config_silences.iter().filter(|s| all || s.ends_at > now).cloned().collect();
        v.extend(inner.store.silences(if all { None } else { Some(now) })?);
        Ok(v)
    }

    pub fn add_silence(&self, s: Silence, now: TimestampNs) -> Result<Silence, OpError> {
        if s.matchers.is_empty() {
            return Err(OpError::Invalid("a silence needs a matcher: site, rule, street or kind".into()));
        }
        if s.ends_at <= s.starts_at || s.ends_at <= now {
            return Err(OpError::Invalid("ends_at must be after starts_at and in the future".into()));
        }
        if s.created_by.trim().is_empty() || s.comment.trim().is_empty() {
            return Err(OpError::Invalid("say who silences and why (created_by, comment)".into()));
        }
        // A matcher naming nothing that exists would silently silence nothing.
        {
            let inner = self.lock();
            let m = &s.matchers;
            if let Some(site) = m.site.as_ref().filter(|x| !inner.places.sites.contains_key(x.as_str())) {
                return Err(OpError::Invalid(format!("matchers.site: no site {site:?}")));
            }
            if let Some(street) = m.street.as_ref().filter(|x| !inner.places.streets.contains_key(*x)) {
                return Err(OpError::Invalid(format!("matchers.street: no street {street:?}")));
            }
            if let Some(kind) = m.kind.as_ref().filter(|k| k.parse::<crate::config::Kind>().is_err()) {
                return Err(OpError::Invalid(format!(
                    "matchers.kind: {kind:?} is not a site kind (waterlogging, rain_gauge, river, pump_station, manhole)"
                )));
            }
        }
        let id = self.with(|w| Ok(w.tx.insert_silence(&s, now)?))?;
        tracing::info!(id, matchers = ?s.matchers, by = %s.created_by, "silence added");
        Ok(Silence { id, ..s })
    }

    pub fn expire_silence(&self, id: i64, now: TimestampNs) -> Result<(), OpError> {
        if id < 0 {
            return Err(OpError::Conflict("a silence from teams.toml ends by editing the file".into()));
        }
        self.with(|w| {
            if !w.tx.silence_exists(id)? {
                return Err(OpError::NoSilence(id));
            }
            w.tx.expire_silence(id, now)?;
            Ok(())
        })?;
        // Alerts it held back may now be told: at once on the leader; on a
        // standby the leader's next tick (each second) tells them.
        if self.cluster.term().is_some() {
            self.tick(now)?;
        }
        Ok(())
    }

    /// The drills on record (`floodguard notify-test`), oldest first.
    pub fn drills(&self) -> Result<Vec<crate::drills::Drill>, OpError> {
        Ok(self.lock().store.drills(None)?)
    }

    pub fn notifications(&self, limit: usize) -> Result<Vec<Notification>, OpError> {
        Ok(self.lock().store.notifications(limit)?)
    }
}

/// One batch of work inside a transaction.
struct Work<'a> {
    tx: &'a Tx<'a>,
    teams: &'a TeamsFile,
    silences: &'a [Silence],
    places: &'a Places,
    active: &'a mut HashMap<(String, String), Alert>,
    offline: &'a mut HashSet<String>,
    pending: &'a mut Vec<(i64, Intent, i64)>,
    out: &'a mut Out,
    db_silences: Option<Vec<Silence>>,
    /// Alerts changed in this transaction, by id: written at its end.
    dirty: HashMap<i64, Alert>,
    /// Waiting intents on disk that this transaction changed (by row).
    pending_changed: HashSet<i64>,
    last_told: &'a mut HashMap<String, TimestampNs>,
    supplies: &'a mut Supplies,
}

#[path = "work.rs"]
mod work;

#[path = "followup.rs"]
mod followup;

#[path = "takeover.rs"]
mod takeover;
use takeover::Whose;

#[path = "supply.rs"]
mod supply;
pub use supply::{NewMovement, Supplies};

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;

pub(super) fn alert_event_line(out: &mut String, a: &Alert, event: &str, ts: TimestampNs) {
    let level = a.level.or(a.peak_level).map_or("none", |l| l.as_str());
    let message = format!("{} {} {}", a.site_name, a.rule_name, event);
    let e = points::AlertEvent {
        site: &a.site,
        rule: &a.rule,
        level,
        event,
        alert_id: a.id,
        value: a.value,
        threshold: a.threshold,
        message: &message,
    };
    points::alert_event(out, &e, ts);
}

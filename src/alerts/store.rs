//! The alert manager's memory: alerts and their timelines, silences, the
//! notification log — in `data_dir/state.db` (SQLite, WAL mode) or in the
//! PostgreSQL state shared by a cluster's nodes, through the backend trait
//! (`state::db::Backend`). Every change the manager makes for one batch of
//! transitions or one tick is one transaction, so a crash leaves either all
//! of it or none; the leader's transactions carry its epoch (the fence).

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use super::model::{Alert, AlertKind, Event, Intent, Matchers, Notification, Silence, StoredIntent};
use crate::level::Level;
use crate::reading::TimestampNs;
use crate::state::db::{Backend, Fence, Row, Value};
use crate::vals;

pub use crate::state::db::Error;
pub type Result<T> = std::result::Result<T, Error>;

use super::schema::MIGRATIONS;

/// Opens a new connection when the old one broke (PostgreSQL restarted).
type Reopen = Box<dyn Fn() -> Result<Box<dyn Backend>> + Send>;

pub struct Store {
    db: Box<dyn Backend>,
    reopen: Option<Reopen>,
    cards: CardCache,
}

/// A failure of another kind than SQLite's, for callers that speak rusqlite.
impl From<Error> for rusqlite::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Sqlite(e) => e,
            other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
        }
    }
}

/// The turn to write `state.db` in this process. SQLite lets one writer in
/// at a time and makes the others wait in a busy handler that sleeps and
/// polls: under an alert storm the alert stage, committing back to back,
/// won every race and the outbox's writes timed out. Every write
/// transaction of the alert manager and the outbox takes this fair lock
/// first (held only for the transaction, never nested), so they take turns;
/// SQLite's busy timeout is left to other processes (`notify-test`).
/// Waits for this process's turn to write `state.db`.
pub fn write_turn() -> parking_lot::FairMutexGuard<'static, ()> {
    crate::state::db::sqlite_write_turn()
}

fn level(s: Option<String>) -> Option<Level> {
    s.and_then(|s| s.parse().ok())
}

fn level_str(l: Option<Level>) -> Option<&'static str> {
    l.map(|l| l.as_str())
}

const ALERT_COLUMNS: &str =
    "id, kind, site, site_name, site_kind, street, rule, rule_name, state, level, peak_level, \
    value, threshold, unit, peak_value, peak_at, started_at, updated_at, acked_at, acked_by, disposed_at, \
    disposed_by, resolved_at, notified_level, last_notified_at, escalation_step, next_escalation_at, \
    next_repeat_at, card, trend_per_hour, eta_level, eta_seconds, voice_step, voice_level, next_voice_at";

fn alert_from_row(r: &Row) -> Result<Alert> {
    let card: Option<String> = r.opt_string(28)?;
    Ok(Alert {
        id: r.i64(0)?,
        kind: r.string(1)?.parse().ok(),
        site: r.string(2)?,
        site_name: r.string(3)?,
        site_kind: r.string(4)?,
        street: r.string(5)?,
        rule: r.string(6)?,
        rule_name: r.string(7)?,
        state: r.string(8)?.parse().unwrap_or_default(),
        level: level(r.opt_string(9)?),
        peak_level: level(r.opt_string(10)?),
        value: r.opt_f64(11)?,
        threshold: r.opt_f64(12)?,
        unit: r.string(13)?,
        peak_value: r.opt_f64(14)?,
        peak_at: r.opt_i64(15)?,
        started_at: r.i64(16)?,
        updated_at: r.i64(17)?,
        acked_at: r.opt_i64(18)?,
        acked_by: r.opt_string(19)?,
        disposed_at: r.opt_i64(20)?,
        disposed_by: r.opt_string(21)?,
        resolved_at: r.opt_i64(22)?,
        notified_level: level(r.opt_string(23)?),
        last_notified_at: r.opt_i64(24)?,
        escalation_step: r.i64(25)? as _,
        next_escalation_at: r.opt_i64(26)?,
        next_repeat_at: r.opt_i64(27)?,
        card: card.and_then(|c| serde_json::from_str(&c).ok()).map(Arc::new),
        trend_per_hour: r.opt_f64(29)?,
        eta_level: level(r.opt_string(30)?),
        eta_seconds: r.opt_f64(31)?,
        voice_step: r.i64(32)? as _,
        voice_level: level(r.opt_string(33)?),
        next_voice_at: r.opt_i64(34)?,
        timeline: Vec::new(),
        suspect: None,
    })
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// An in-memory store, for tests and replays.
    pub fn memory() -> Result<Store> {
        Self::setup(Connection::open_in_memory()?)
    }

    /// The PostgreSQL state at `target` (made and migrated when new); a
    /// connection that breaks is opened again before the next use.
    pub fn postgres(target: &crate::state::pg::Target, lease: std::time::Duration) -> Result<Store> {
        let db = crate::state::open_postgres(target, lease)?;
        let (t, l) = (target.clone(), lease);
        let reopen: Reopen =
            Box::new(move || Ok(Box::new(crate::state::open_postgres(&t, l)?) as Box<dyn Backend>));
        Ok(Store { db: Box::new(db), reopen: Some(reopen), cards: CardCache::default() })
    }

    fn setup(conn: Connection) -> Result<Store> {
        // WAL: readers never block the writer; NORMAL: a committed
        // transaction survives a crash of the process (power loss may take
        // the last ones, as with the spool's fsync interval).
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Switching a new file to WAL wants it alone and does not wait on
        // the busy handler: retry while another process does the same.
        let mut tries = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            tries += 1;
            if tries > 100 || e.sqlite_error_code() != Some(rusqlite::ErrorCode::DatabaseBusy) {
                return Err(e.into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&conn)?;
        Ok(Store { db: Box::new(conn), reopen: None, cards: CardCache::default() })
    }

    /// Leaves checkpoints to a [`checkpoint`] loop on a thread of its own:
    /// a checkpoint writes the database file and fsyncs it, and under an
    /// alert storm that wait would sit in the alert stage's commits.
    pub fn background_checkpoints(&self) -> Result<()> {
        if self.db.dialect() == crate::state::db::Dialect::Sqlite {
            self.db.batch("PRAGMA wal_autocheckpoint = 0")?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<usize> {
        match self.db.dialect() {
            crate::state::db::Dialect::Sqlite => {
                let v = self.db.query_one("PRAGMA user_version", &[])?.i64(0)?;
                Ok(usize::try_from(v).unwrap_or(0))
            }
            crate::state::db::Dialect::Postgres => {
                let v = self.db.query_opt("SELECT version FROM fg_schema", &[])?;
                Ok(v.map_or(Ok(0), |r| r.i64(0))?.try_into().unwrap_or(0))
            }
        }
    }

    /// Opens the connection again if it broke (PostgreSQL restarted); a
    /// no-op otherwise.
    pub fn reconnect(&mut self) -> Result<()> {
        self.ready()
    }

    /// Opens the connection again if it broke.
    fn ready(&mut self) -> Result<()> {
        if self.db.is_broken() {
            if let Some(reopen) = &self.reopen {
                self.db = reopen()?;
                tracing::info!("state store: connected again");
            }
        }
        Ok(())
    }

    /// Runs `f` in one transaction: committed if it returns Ok, rolled back
    /// otherwise. An operator's or a command's work ([`Fence::Open`]).
    pub fn transaction<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction_as(Fence::Open, f)
    }

    /// [`Store::transaction`] as the leader at its epoch, or open.
    pub fn transaction_as<T, E: From<Error>>(
        &mut self,
        fence: Fence,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.ready()?;
        let _turn = self.db.write_turn();
        self.db.begin(fence)?;
        if self.db.dialect() == crate::state::db::Dialect::Postgres {
            if let Err(e) = self.db.batch(crate::cluster::sql::ALERTS_TURN) {
                let _ = self.db.rollback();
                return Err(e.into());
            }
        }
        let out = f(&Tx { db: &*self.db, cards: &self.cards });
        match out {
            Ok(v) => match self.db.commit() {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = self.db.rollback();
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.db.rollback();
                Err(e)
            }
        }
    }

    /// The connection, for the records kept beside the alerts (`records`).
    pub(super) fn db(&self) -> &dyn Backend {
        &*self.db
    }

    /// A stored cursor: (segment, offset).
    pub fn cursor(&self, name: &str) -> Result<Option<(u64, u64)>> {
        self.db
            .query_opt("SELECT segment, \"offset\" FROM cursors WHERE name = ?1", &vals![name])?
            .map(|r| Ok((r.i64(0)? as u64, r.i64(1)? as u64)))
            .transpose()
    }

    /// Records a cursor outside any other work (a standby's engine cursor).
    pub fn put_cursor(&mut self, name: &str, segment: u64, offset: u64) -> Result<()> {
        self.transaction(|tx| tx.set_cursor(name, segment, offset))
    }

    /// Points made by committed transactions that may not be spooled yet.
    pub fn pending_points(&self) -> Result<Vec<(i64, String)>> {
        self.db
            .query("SELECT id, lines FROM points_pending ORDER BY id", &[])?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.string(1)?)))
            .collect()
    }

    /// Alerts not resolved, with their timelines.
    pub fn active(&self) -> Result<Vec<Alert>> {
        self.query_alerts(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state != 'resolved' ORDER BY id"),
            &[],
        )
    }

    /// Alerts not resolved, without their timelines (the manager's memory).
    pub fn active_bare(&self) -> Result<Vec<Alert>> {
        active_bare(&*self.db)
    }

    /// Whether several nodes share this state (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.db.dialect() == crate::state::db::Dialect::Postgres
    }

    /// Alerts that overlap `[since, until)`, with their timelines.
    pub fn between(&self, since: TimestampNs, until: TimestampNs) -> Result<Vec<Alert>> {
        self.query_alerts(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE started_at < ?2 AND (resolved_at IS NULL OR resolved_at >= ?1) ORDER BY started_at, id"
            ),
            &vals![since, until],
        )
    }

    /// The last `limit` alerts, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Alert>> {
        self.query_alerts(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY id DESC LIMIT ?1"),
            &vals![limit],
        )
    }

    pub fn alert(&self, id: i64) -> Result<Option<Alert>> {
        Ok(self.query_alerts(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), &vals![id])?.pop())
    }

    fn query_alerts(&self, sql: &str, p: &[Value]) -> Result<Vec<Alert>> {
        query_alerts(&*self.db, sql, p)
    }

    /// Silences stored through the API, not yet ended at `now`… or all.
    pub fn silences(&self, now: Option<TimestampNs>) -> Result<Vec<Silence>> {
        silences(&*self.db, now)
    }

    /// Intents waiting in a team's group: (row id, intent, wait).
    pub fn pending_intents(&self) -> Result<Vec<(i64, Intent, i64)>> {
        pending_intents(&*self.db)
    }

    pub fn notifications(&self, limit: usize) -> Result<Vec<Notification>> {
        self.db
            .query("SELECT id, body FROM notifications ORDER BY id DESC LIMIT ?1", &vals![limit])?
            .iter()
            .map(|r| {
                let id = r.i64(0)?;
                let mut n: Notification = serde_json::from_str(&r.string(1)?)
                    .map_err(|e| Error::Decode(format!("notification {id}: {e}")))?;
                n.id = id;
                Ok(n)
            })
            .collect()
    }
}

/// Applies the missing migrations, each in an IMMEDIATE transaction that
/// re-reads the version: two processes opening a new database at once (the
/// daemon and `notify-test`) take turns instead of both creating the tables.
fn migrate(conn: &Connection) -> Result<()> {
    let version = |c: &Connection| -> Result<usize> {
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    };
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        if version(conn)? > i {
            continue;
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = (|| {
            if version(conn)? <= i {
                conn.execute_batch(sql)?;
                conn.pragma_update(None, "user_version", (i + 1) as i64)?;
            }
            Ok::<_, Error>(())
        })();
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

fn active_bare(db: &dyn Backend) -> Result<Vec<Alert>> {
    db.query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state != 'resolved' ORDER BY id"), &[])?
        .iter()
        .map(alert_from_row)
        .collect()
}

/// A waiting intent's row: the alert by reference ([`StoredIntent`]).
fn stored(i: &Intent) -> String {
    serde_json::to_string(&StoredIntent::from(i)).unwrap_or_default()
}

/// The waiting intents, partial: their alerts' snapshots are filled from
/// the record when they go out. (Rows written before intents were stored
/// by reference hold the whole snapshot; they read the same way.)
fn pending_intents(db: &dyn Backend) -> Result<Vec<(i64, Intent, i64)>> {
    db.query("SELECT id, body, wait_ns FROM pending_intents ORDER BY id", &[])?
        .iter()
        .map(|r| {
            let body = r.string(1)?;
            let stored: StoredIntent = serde_json::from_str(&body)
                .map_err(|e| Error::Decode(format!("pending intent {}: {e}", r.i64(0).unwrap_or(0))))?;
            Ok((r.i64(0)?, Intent::from(stored), r.i64(2)?))
        })
        .collect()
}

fn query_alerts(db: &dyn Backend, sql: &str, p: &[Value]) -> Result<Vec<Alert>> {
    let mut alerts: Vec<Alert> = db.query(sql, p)?.iter().map(alert_from_row).collect::<Result<_>>()?;
    // The timelines in few queries (one per 500 alerts), not one per alert.
    let mut at: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for (i, a) in alerts.iter().enumerate() {
        at.insert(a.id, i);
    }
    let ids: Vec<i64> = alerts.iter().map(|a| a.id).collect();
    for chunk in ids.chunks(500) {
        let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let rows = db.query(
            &format!("SELECT alert_id, ts, event, level, by, note FROM events WHERE alert_id IN ({list}) ORDER BY id"),
            &[],
        )?;
        for r in rows {
            if let Some(&i) = at.get(&r.i64(0)?) {
                alerts[i].timeline.push(Event {
                    ts: r.i64(1)?,
                    event: r.string(2)?,
                    level: level(r.opt_string(3)?),
                    by: r.opt_string(4)?,
                    note: r.opt_string(5)?,
                });
            }
        }
    }
    Ok(alerts)
}

fn silences(db: &dyn Backend, now: Option<TimestampNs>) -> Result<Vec<Silence>> {
    db.query(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM silences
         WHERE CAST(?1 AS BIGINT) IS NULL OR ends_at > ?1 ORDER BY id",
        &vals![now],
    )?
    .iter()
    .map(|r| {
        let m = r.string(1)?;
        let id = r.i64(0)?;
        Ok(Silence {
            id,
            matchers: serde_json::from_str(&m).unwrap_or_else(|e: serde_json::Error| {
                report_unreadable(id, &e.to_string());
                Matchers::unreadable()
            }),
            starts_at: r.i64(2)?,
            ends_at: r.i64(3)?,
            created_by: r.string(4)?,
            comment: r.string(5)?,
            from_config: false,
        })
    })
    .collect()
}

/// Logs a stored silence that cannot be read, once per silence: it fails
/// closed (silences nothing) and shows as `unreadable` in the API.
fn report_unreadable(id: i64, error: &str) {
    static REPORTED: std::sync::Mutex<Vec<i64>> = std::sync::Mutex::new(Vec::new());
    let mut seen = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&id) {
        seen.push(id);
        tracing::error!(
            silence = id,
            error,
            "a stored silence cannot be read: it silences nothing until replaced"
        );
    }
}

/// Copies the write-ahead log of `state.db` into the database every half
/// second (a passive checkpoint: it never waits for, nor blocks, a writer)
/// until `stop`; the connections of the daemon do no checkpoints of their
/// own (`background_checkpoints`).
pub fn checkpoint(path: &Path, stop: &tokio_util::sync::CancellationToken) {
    let conn = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "state.db checkpoints: cannot open; SQLite's own checkpoints are off");
            return;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_millis(100));
    let _ = conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024);
    let mut failing = false;
    while !stop.is_cancelled() {
        std::thread::sleep(std::time::Duration::from_millis(500));
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                tracing::warn!(error = %e, "state.db checkpoint failed; trying again");
                failing = true;
            }
            Err(_) => {}
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
}

/// Writes inside one transaction.
pub struct Tx<'a> {
    db: &'a dyn Backend,
    cards: &'a CardCache,
}

/// Plan cards as JSON, made once per card: an alert's row is written at
/// every change, and a storm makes tens of thousands.
#[derive(Default)]
struct CardCache(std::cell::RefCell<Vec<(Arc<crate::plan::Card>, Arc<str>)>>);

impl CardCache {
    fn json(&self, card: &Arc<crate::plan::Card>) -> Arc<str> {
        let mut v = self.0.borrow_mut();
        if let Some((_, j)) = v.iter().find(|(c, _)| Arc::ptr_eq(c, card)) {
            return j.clone();
        }
        let j: Arc<str> = Arc::from(serde_json::to_string(&**card).unwrap_or_default());
        // A reload brings new cards; the old ones are let go now and then.
        if v.len() >= 256 {
            v.clear();
        }
        v.push((card.clone(), j.clone()));
        j
    }
}

impl Tx<'_> {
    /// The transaction's connection, for the records kept beside the alerts (`records`).
    pub(crate) fn db(&self) -> &dyn Backend {
        self.db
    }

    /// Runs a statement.
    fn exec(&self, sql: &str, p: &[Value]) -> Result<u64> {
        self.db.execute(sql, p)
    }

    pub fn alert(&self, id: i64) -> Result<Option<Alert>> {
        Ok(query_alerts(self.db, &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), &vals![id])?
            .pop())
    }

    pub fn silences(&self, now: TimestampNs) -> Result<Vec<Silence>> {
        silences(self.db, Some(now))
    }

    /// The active alerts as this transaction sees them (no timelines).
    pub fn active_bare(&self) -> Result<Vec<Alert>> {
        active_bare(self.db)
    }

    pub fn pending_intents(&self) -> Result<Vec<(i64, Intent, i64)>> {
        pending_intents(self.db)
    }

    /// Per active alert, when its last level change on record was judged
    /// (a takeover finds there where the record stands: `shadow`).
    pub fn last_level_changes(&self) -> Result<std::collections::HashMap<i64, TimestampNs>> {
        self.db
            .query(
                "SELECT e.alert_id, MAX(e.ts) FROM alerts a JOIN events e ON e.alert_id = a.id
                 WHERE a.state != 'resolved' AND e.event IN ('firing', 'escalated', 'deescalated')
                 GROUP BY e.alert_id",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
            .collect()
    }

    /// Operators' acts counted so far (`fg_changes`); `None` on SQLite,
    /// where one process makes them all.
    pub fn changes_seq(&self) -> Result<Option<i64>> {
        if self.db.dialect() != crate::state::db::Dialect::Postgres {
            return Ok(None);
        }
        Ok(Some(self.db.query_one("SELECT seq FROM fg_changes WHERE id = 1", &[])?.i64(0)?))
    }

    /// Counts an operator's act (PostgreSQL); the count after it.
    pub fn bump_changes(&self) -> Result<Option<i64>> {
        if self.db.dialect() != crate::state::db::Dialect::Postgres {
            return Ok(None);
        }
        Ok(Some(
            self.db
                .query_one("UPDATE fg_changes SET seq = seq + 1 WHERE id = 1 RETURNING seq", &[])?
                .i64(0)?,
        ))
    }

    pub fn insert_alert(&self, a: &Alert) -> Result<i64> {
        let id = self.db.insert(
            "INSERT INTO alerts (kind, site, site_name, site_kind, street, rule, rule_name, state, unit, started_at, updated_at, escalation_step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0) RETURNING id",
            &vals![
                a.kind.unwrap_or(AlertKind::Site).as_str(),
                a.site.as_str(),
                a.site_name.as_str(),
                a.site_kind.as_str(),
                a.street.as_str(),
                a.rule.as_str(),
                a.rule_name.as_str(),
                a.state.as_str(),
                a.unit.as_str(),
                a.started_at,
                a.updated_at
            ],
        )?;
        self.update_alert(&Alert { id, ..a.clone() })?;
        Ok(id)
    }

    pub fn update_alert(&self, a: &Alert) -> Result<()> {
        let card = a.card.as_ref().map(|c| self.cards.json(c));
        let card = card.as_deref();
        self.exec(
            "UPDATE alerts SET state = ?2, level = ?3, peak_level = ?4, value = ?5, threshold = ?6, unit = ?7,
                peak_value = ?8, peak_at = ?9, updated_at = ?10, acked_at = ?11, acked_by = ?12, disposed_at = ?13,
                disposed_by = ?14, resolved_at = ?15, notified_level = ?16, last_notified_at = ?17,
                escalation_step = ?18, next_escalation_at = ?19, next_repeat_at = ?20, card = ?21,
                trend_per_hour = ?22, eta_level = ?23, eta_seconds = ?24,
                voice_step = ?25, voice_level = ?26, next_voice_at = ?27
             WHERE id = ?1",
            &vals![
                a.id,
                a.state.as_str(),
                level_str(a.level),
                level_str(a.peak_level),
                a.value,
                a.threshold,
                a.unit.as_str(),
                a.peak_value,
                a.peak_at,
                a.updated_at,
                a.acked_at,
                a.acked_by.as_deref(),
                a.disposed_at,
                a.disposed_by.as_deref(),
                a.resolved_at,
                level_str(a.notified_level),
                a.last_notified_at,
                a.escalation_step,
                a.next_escalation_at,
                a.next_repeat_at,
                card,
                a.trend_per_hour,
                level_str(a.eta_level),
                a.eta_seconds,
                a.voice_step,
                level_str(a.voice_level),
                a.next_voice_at
            ],
        )?;
        Ok(())
    }

    pub fn add_event(&self, alert_id: i64, e: &Event) -> Result<()> {
        self.exec(
            "INSERT INTO events (alert_id, ts, event, level, by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &vals![alert_id, e.ts, e.event.as_str(), level_str(e.level), e.by.as_deref(), e.note.as_deref()],
        )?;
        Ok(())
    }

    pub fn insert_silence(&self, s: &Silence, now: TimestampNs) -> Result<i64> {
        self.db.insert(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            &vals![
                serde_json::to_string(&s.matchers).unwrap_or_default(),
                s.starts_at,
                s.ends_at,
                s.created_by.as_str(),
                s.comment.as_str(),
                now
            ],
        )
    }

    /// Ends a silence now; whether there was one to end.
    pub fn expire_silence(&self, id: i64, now: TimestampNs) -> Result<bool> {
        let n = self.exec(
            "UPDATE silences SET ends_at = CASE WHEN ends_at < ?2 THEN ends_at ELSE ?2 END
             WHERE id = ?1 AND ends_at > ?2",
            &vals![id, now],
        )?;
        Ok(n > 0)
    }

    pub fn silence_exists(&self, id: i64) -> Result<bool> {
        Ok(self.db.query_opt("SELECT id FROM silences WHERE id = ?1", &vals![id])?.is_some())
    }

    /// Parks an intent in its team's group; its row id.
    pub fn insert_pending(&self, i: &Intent, wait_ns: i64) -> Result<i64> {
        self.db.insert(
            "INSERT INTO pending_intents (team, created_at, wait_ns, body) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            &vals![i.team.as_str(), i.created_at, wait_ns, stored(i)],
        )
    }

    /// Replaces a waiting intent (folded with a newer one of the same alert).
    pub fn update_pending(&self, id: i64, i: &Intent, wait_ns: i64) -> Result<()> {
        self.exec(
            "UPDATE pending_intents SET wait_ns = ?2, body = ?3 WHERE id = ?1",
            &vals![id, wait_ns, stored(i)],
        )?;
        Ok(())
    }

    pub fn delete_pending(&self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            self.exec(&format!("DELETE FROM pending_intents WHERE id IN ({list})"), &[])?;
        }
        Ok(())
    }

    pub fn set_cursor(&self, name: &str, segment: u64, offset: u64) -> Result<()> {
        self.exec(
            "INSERT INTO cursors (name, segment, \"offset\") VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET segment = excluded.segment, \"offset\" = excluded.\"offset\"",
            &vals![name, segment as i64, offset as i64],
        )?;
        Ok(())
    }

    /// Keeps points until the spool has them; their row id.
    pub fn insert_points(&self, lines: &str) -> Result<i64> {
        self.db.insert("INSERT INTO points_pending (lines) VALUES (?1) RETURNING id", &vals![lines])
    }

    /// Forgets the points the spool has: rows up to `id`.
    pub fn delete_points_upto(&self, id: i64) -> Result<()> {
        self.exec("DELETE FROM points_pending WHERE id <= ?1", &vals![id])?;
        Ok(())
    }

    /// Logs a notification; its id.
    pub fn insert_notification(&self, n: &Notification) -> Result<i64> {
        self.db.insert(
            "INSERT INTO notifications (team, created_at, body, priority) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            &vals![n.team.as_str(), n.created_at, serde_json::to_string(n).unwrap_or_default(), n.priority()],
        )
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

//! The alert manager's memory in SQLite (`data_dir/state.db`): alerts and
//! their timelines, silences, the notification log. WAL mode; every change
//! the manager makes for one transition or one tick is one transaction, so
//! a crash leaves either all of it or none.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::model::{Alert, AlertKind, Event, Intent, Matchers, Notification, Silence};
use crate::level::Level;
use crate::reading::TimestampNs;

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

use super::schema::MIGRATIONS;

pub struct Store {
    conn: Connection,
    cards: CardCache,
}

/// The turn to write `state.db` in this process. SQLite lets one writer in
/// at a time and makes the others wait in a busy handler that sleeps and
/// polls: under an alert storm the alert stage, committing back to back,
/// won every race and the outbox's writes timed out. Every write
/// transaction of the alert manager and the outbox takes this fair lock
/// first (held only for the transaction, never nested), so they take turns;
/// SQLite's busy timeout is left to other processes (`notify-test`).
static WRITES: parking_lot::FairMutex<()> = parking_lot::const_fair_mutex(());

/// Waits for this process's turn to write `state.db`.
pub fn write_turn() -> parking_lot::FairMutexGuard<'static, ()> {
    WRITES.lock()
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
    next_repeat_at, card, trend_per_hour, eta_level, eta_seconds";

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<Alert> {
    let card: Option<String> = r.get(28)?;
    Ok(Alert {
        id: r.get(0)?,
        kind: r.get::<_, String>(1)?.parse().ok(),
        site: r.get(2)?,
        site_name: r.get(3)?,
        site_kind: r.get(4)?,
        street: r.get(5)?,
        rule: r.get(6)?,
        rule_name: r.get(7)?,
        state: r.get::<_, String>(8)?.parse().unwrap_or_default(),
        level: level(r.get(9)?),
        peak_level: level(r.get(10)?),
        value: r.get(11)?,
        threshold: r.get(12)?,
        unit: r.get(13)?,
        peak_value: r.get(14)?,
        peak_at: r.get(15)?,
        started_at: r.get(16)?,
        updated_at: r.get(17)?,
        acked_at: r.get(18)?,
        acked_by: r.get(19)?,
        disposed_at: r.get(20)?,
        disposed_by: r.get(21)?,
        resolved_at: r.get(22)?,
        notified_level: level(r.get(23)?),
        last_notified_at: r.get(24)?,
        escalation_step: r.get(25)?,
        next_escalation_at: r.get(26)?,
        next_repeat_at: r.get(27)?,
        card: card.and_then(|c| serde_json::from_str(&c).ok()).map(Arc::new),
        trend_per_hour: r.get(29)?,
        eta_level: level(r.get(30)?),
        eta_seconds: r.get(31)?,
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
        let mut store = Store { conn, cards: CardCache::default() };
        store.migrate()?;
        Ok(store)
    }

    /// Applies the missing migrations, each in an IMMEDIATE transaction
    /// that re-reads the version: two processes opening a new database at
    /// once (the daemon and `notify-test`) take turns instead of both
    /// creating the tables.
    fn migrate(&mut self) -> Result<()> {
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            if self.schema_version()? > i {
                continue;
            }
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let v: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if usize::try_from(v).unwrap_or(0) <= i {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// Leaves checkpoints to a [`checkpoint`] loop on a thread of its own:
    /// a checkpoint writes the database file and fsyncs it, and under an
    /// alert storm that wait would sit in the alert stage's commits.
    pub fn background_checkpoints(&self) -> Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    /// Runs `f` in one transaction: committed if it returns Ok, rolled back otherwise.
    pub fn transaction<T, E: From<rusqlite::Error>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        let out = f(&Tx { tx: &tx, cards: &self.cards })?;
        tx.commit()?;
        Ok(out)
    }

    /// The connection, for the records kept beside the alerts (`records`).
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A stored cursor: (segment, offset).
    pub fn cursor(&self, name: &str) -> Result<Option<(u64, u64)>> {
        self.conn
            .query_row("SELECT segment, offset FROM cursors WHERE name = ?1", params![name], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .optional()
    }

    /// Points made by committed transactions that may not be spooled yet.
    pub fn pending_points(&self) -> Result<Vec<(i64, String)>> {
        let mut s = self.conn.prepare("SELECT id, lines FROM points_pending ORDER BY id")?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Alerts not resolved, with their timelines.
    pub fn active(&self) -> Result<Vec<Alert>> {
        self.query_alerts(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state != 'resolved' ORDER BY id"),
            [],
        )
    }

    /// Alerts that overlap `[since, until)`, with their timelines.
    pub fn between(&self, since: TimestampNs, until: TimestampNs) -> Result<Vec<Alert>> {
        self.query_alerts(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE started_at < ?2 AND (resolved_at IS NULL OR resolved_at >= ?1) ORDER BY started_at, id"
            ),
            params![since, until],
        )
    }

    /// The last `limit` alerts, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Alert>> {
        self.query_alerts(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY id DESC LIMIT ?1"),
            params![limit as i64],
        )
    }

    pub fn alert(&self, id: i64) -> Result<Option<Alert>> {
        Ok(self
            .query_alerts(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), params![id])?
            .pop())
    }

    fn query_alerts(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Alert>> {
        query_alerts(&self.conn, sql, p)
    }

    /// Silences stored through the API, not yet ended at `now`… or all.
    pub fn silences(&self, now: Option<TimestampNs>) -> Result<Vec<Silence>> {
        silences(&self.conn, now)
    }

    /// Intents waiting in a team's group: (row id, intent, wait).
    pub fn pending_intents(&self) -> Result<Vec<(i64, Intent, i64)>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, body, wait_ns FROM pending_intents ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let body: String = r.get(1)?;
            let intent: Intent = serde_json::from_str(&body).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
            })?;
            Ok((r.get(0)?, intent, r.get(2)?))
        })?;
        rows.collect()
    }

    pub fn notifications(&self, limit: usize) -> Result<Vec<Notification>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, body FROM notifications ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            let id: i64 = r.get(0)?;
            let body: String = r.get(1)?;
            let mut n: Notification = serde_json::from_str(&body).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
            })?;
            n.id = id;
            Ok(n)
        })?;
        rows.collect()
    }
}

fn query_alerts(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Alert>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut alerts: Vec<Alert> = stmt.query_map(p, alert_from_row)?.collect::<Result<_>>()?;
    let mut ev =
        conn.prepare_cached("SELECT ts, event, level, by, note FROM events WHERE alert_id = ?1 ORDER BY id")?;
    for a in &mut alerts {
        a.timeline = ev
            .query_map(params![a.id], |r| {
                Ok(Event {
                    ts: r.get(0)?,
                    event: r.get(1)?,
                    level: level(r.get(2)?),
                    by: r.get(3)?,
                    note: r.get(4)?,
                })
            })?
            .collect::<Result<_>>()?;
    }
    Ok(alerts)
}

fn silences(conn: &Connection, now: Option<TimestampNs>) -> Result<Vec<Silence>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM silences WHERE ?1 IS NULL OR ends_at > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![now], |r| {
        let m: String = r.get(1)?;
        let id: i64 = r.get(0)?;
        Ok(Silence {
            id,
            matchers: serde_json::from_str(&m).unwrap_or_else(|e: serde_json::Error| {
                report_unreadable(id, &e.to_string());
                Matchers::unreadable()
            }),
            starts_at: r.get(2)?,
            ends_at: r.get(3)?,
            created_by: r.get(4)?,
            comment: r.get(5)?,
            from_config: false,
        })
    })?;
    rows.collect()
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
    tx: &'a Transaction<'a>,
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
    /// The transaction, for the records kept beside the alerts (`records`).
    pub(super) fn raw(&self) -> &Transaction<'_> {
        self.tx
    }

    /// Runs a statement, compiled once per connection.
    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
        self.tx.prepare_cached(sql)?.execute(p)
    }

    pub fn alert(&self, id: i64) -> Result<Option<Alert>> {
        Ok(query_alerts(self.tx, &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), params![id])?
            .pop())
    }

    pub fn silences(&self, now: TimestampNs) -> Result<Vec<Silence>> {
        silences(self.tx, Some(now))
    }

    pub fn insert_alert(&self, a: &Alert) -> Result<i64> {
        self.exec(
            "INSERT INTO alerts (kind, site, site_name, site_kind, street, rule, rule_name, state, unit, started_at, updated_at, escalation_step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0)",
            params![
                a.kind.unwrap_or(AlertKind::Site).as_str(),
                a.site,
                a.site_name,
                a.site_kind,
                a.street,
                a.rule,
                a.rule_name,
                a.state.as_str(),
                a.unit,
                a.started_at,
                a.updated_at
            ],
        )?;
        let id = self.tx.last_insert_rowid();
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
                trend_per_hour = ?22, eta_level = ?23, eta_seconds = ?24
             WHERE id = ?1",
            params![
                a.id,
                a.state.as_str(),
                level_str(a.level),
                level_str(a.peak_level),
                a.value,
                a.threshold,
                a.unit,
                a.peak_value,
                a.peak_at,
                a.updated_at,
                a.acked_at,
                a.acked_by,
                a.disposed_at,
                a.disposed_by,
                a.resolved_at,
                level_str(a.notified_level),
                a.last_notified_at,
                a.escalation_step,
                a.next_escalation_at,
                a.next_repeat_at,
                card,
                a.trend_per_hour,
                level_str(a.eta_level),
                a.eta_seconds
            ],
        )?;
        Ok(())
    }

    pub fn add_event(&self, alert_id: i64, e: &Event) -> Result<()> {
        self.exec(
            "INSERT INTO events (alert_id, ts, event, level, by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![alert_id, e.ts, e.event, level_str(e.level), e.by, e.note],
        )?;
        Ok(())
    }

    pub fn insert_silence(&self, s: &Silence, now: TimestampNs) -> Result<i64> {
        self.exec(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                serde_json::to_string(&s.matchers).unwrap_or_default(),
                s.starts_at,
                s.ends_at,
                s.created_by,
                s.comment,
                now
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Ends a silence now; whether there was one to end.
    pub fn expire_silence(&self, id: i64, now: TimestampNs) -> Result<bool> {
        let n = self.exec(
            "UPDATE silences SET ends_at = MIN(ends_at, ?2) WHERE id = ?1 AND ends_at > ?2",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    pub fn silence_exists(&self, id: i64) -> Result<bool> {
        Ok(self
            .tx
            .query_row("SELECT 1 FROM silences WHERE id = ?1", params![id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Parks an intent in its team's group; its row id.
    pub fn insert_pending(&self, i: &Intent, wait_ns: i64) -> Result<i64> {
        self.exec(
            "INSERT INTO pending_intents (team, created_at, wait_ns, body) VALUES (?1, ?2, ?3, ?4)",
            params![i.team, i.created_at, wait_ns, serde_json::to_string(i).unwrap_or_default()],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Replaces a waiting intent (folded with a newer one of the same alert).
    pub fn update_pending(&self, id: i64, i: &Intent, wait_ns: i64) -> Result<()> {
        self.exec(
            "UPDATE pending_intents SET wait_ns = ?2, body = ?3 WHERE id = ?1",
            params![id, wait_ns, serde_json::to_string(i).unwrap_or_default()],
        )?;
        Ok(())
    }

    pub fn delete_pending(&self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            self.tx.execute(&format!("DELETE FROM pending_intents WHERE id IN ({list})"), [])?;
        }
        Ok(())
    }

    pub fn set_cursor(&self, name: &str, segment: u64, offset: u64) -> Result<()> {
        self.exec(
            "INSERT INTO cursors (name, segment, offset) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET segment = excluded.segment, offset = excluded.offset",
            params![name, segment as i64, offset as i64],
        )?;
        Ok(())
    }

    /// Keeps points until the spool has them; their row id.
    pub fn insert_points(&self, lines: &str) -> Result<i64> {
        self.exec("INSERT INTO points_pending (lines) VALUES (?1)", params![lines])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Forgets the points the spool has: rows up to `id`.
    pub fn delete_points_upto(&self, id: i64) -> Result<()> {
        self.exec("DELETE FROM points_pending WHERE id <= ?1", params![id])?;
        Ok(())
    }

    /// Logs a notification; its id.
    pub fn insert_notification(&self, n: &Notification) -> Result<i64> {
        self.exec(
            "INSERT INTO notifications (team, created_at, body, priority) VALUES (?1, ?2, ?3, ?4)",
            params![n.team, n.created_at, serde_json::to_string(n).unwrap_or_default(), n.priority()],
        )?;
        Ok(self.tx.last_insert_rowid())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

//! Retention of the state (`state.db` or the shared PostgreSQL): once a
//! day, what is older than `state.retention` (default 400 days: a flood
//! season and its report) and finished goes —
//!
//! - outbox rows that ended (sent, failed, merged, rerouted, unknown for
//!   good) and their delivery logs;
//! - the notification log entries whose rows all ended;
//! - ack-link nonces spent, or expired (past the longest link life);
//! - resolved alerts, with their timelines;
//! - silences that ended.
//!
//! Nothing open is touched: an active alert, a queued message, a waiting
//! intent stays whatever its age. Deletes run in small transactions
//! through the state backend (`state::db::Backend`), so a prune never
//! holds up the alert stage or the outbox for long: on SQLite each takes
//! the process's write turn; on PostgreSQL only the leader prunes, each
//! transaction under its epoch, so the database refuses a deposed
//! leader's deletes (FG001, `cluster::sql`) and a standby deletes nothing.
//! An alert that overlaps the retained period is kept, so `floodguard
//! report` over that period reads what it read before.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::reading::TimestampNs;
use crate::state::db::{Backend, Dialect, Fence, Result};
use crate::vals;

/// Rows deleted per transaction.
const BATCH: i64 = 2000;

/// What one prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: usize,
    pub deliveries: usize,
    pub notifications: usize,
    pub ack_tokens: usize,
    pub alerts: usize,
    pub events: usize,
    pub silences: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.outbox
            + self.deliveries
            + self.notifications
            + self.ack_tokens
            + self.alerts
            + self.events
            + self.silences
    }
}

/// Runs `f` in one transaction under `fence` (and, on SQLite, the write
/// turn; on PostgreSQL with `alerts_turn`, the alert store's turn).
fn transaction<T>(
    db: &dyn Backend,
    fence: Fence,
    alerts_turn: bool,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let _turn = db.write_turn();
    db.begin(fence)?;
    let out = (|| {
        if alerts_turn && db.dialect() == Dialect::Postgres {
            db.batch(crate::cluster::sql::ALERTS_TURN)?;
        }
        f()
    })();
    match out {
        Ok(v) => match db.commit() {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = db.rollback();
                Err(e)
            }
        },
        Err(e) => {
            let _ = db.rollback();
            Err(e)
        }
    }
}

/// Deletes in batches until `select` (the ids to go, `?1` the cutoff, `?2`
/// the batch size) finds none; `delete` runs per batch with the ids in a
/// temporary table `prune_ids`.
fn batches(
    db: &dyn Backend,
    fence: Fence,
    alerts_turn: bool,
    select: &str,
    cutoff: TimestampNs,
    deletes: &[&str],
    counts: &mut [&mut usize],
) -> Result<()> {
    let fill = format!("INSERT INTO prune_ids (id) {select}");
    loop {
        let done = transaction(db, fence, alerts_turn, || {
            db.execute("DELETE FROM prune_ids", &[])?;
            if db.execute(&fill, &vals![cutoff, BATCH])? == 0 {
                return Ok(true);
            }
            for (sql, count) in deletes.iter().zip(counts.iter_mut()) {
                **count += db.execute(sql, &[])? as usize;
            }
            Ok(false)
        })?;
        if done {
            return Ok(());
        }
    }
}

/// Removes what ended before `cutoff`; ack nonces unused but issued before
/// `expired` (no link can still be valid) go too. `fence`: the leader's
/// epoch on PostgreSQL (every delete is refused once it no longer leads).
pub fn prune(db: &dyn Backend, fence: Fence, cutoff: TimestampNs, expired: TimestampNs) -> Result<Pruned> {
    db.batch(match db.dialect() {
        Dialect::Sqlite => "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY)",
        Dialect::Postgres => "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id BIGINT PRIMARY KEY)",
    })?;
    let mut p = Pruned::default();
    // The rows' alert index goes with them (not counted apart).
    let mut links = 0;
    batches(
        db,
        fence,
        false,
        "SELECT id FROM outbox WHERE created_at < ?1
            AND (state IN ('sent', 'failed', 'merged', 'rerouted') OR (state = 'unknown' AND check_at IS NULL))
            LIMIT ?2",
        cutoff,
        &[
            "DELETE FROM deliveries WHERE outbox_id IN (SELECT id FROM prune_ids)",
            "DELETE FROM outbox WHERE id IN (SELECT id FROM prune_ids)",
            "DELETE FROM outbox_alerts WHERE outbox_id IN (SELECT id FROM prune_ids)",
        ],
        &mut [&mut p.deliveries, &mut p.outbox, &mut links],
    )?;
    batches(
        db,
        fence,
        false,
        "SELECT id FROM notifications n WHERE created_at < ?1 AND enqueued = 1
            AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.notification_id = n.id) LIMIT ?2",
        cutoff,
        &["DELETE FROM notifications WHERE id IN (SELECT id FROM prune_ids)"],
        &mut [&mut p.notifications],
    )?;
    // Silences are an operator's table (no fence of their own): they go
    // in the transaction of the nonces, which the fence guards.
    (p.ack_tokens, p.silences) = transaction(db, fence, false, || {
        let tokens = db.execute(
            "DELETE FROM ack_tokens WHERE (used_at IS NOT NULL AND used_at < ?1)
                OR (used_at IS NULL AND created_at < ?1 AND created_at < ?2)",
            &vals![cutoff, expired],
        )?;
        let silences = db.execute("DELETE FROM silences WHERE ends_at < ?1", &vals![cutoff])?;
        Ok((tokens as usize, silences as usize))
    })?;
    batches(
        db,
        fence,
        true,
        "SELECT id FROM alerts WHERE state = 'resolved' AND resolved_at < ?1 LIMIT ?2",
        cutoff,
        &[
            "DELETE FROM events WHERE alert_id IN (SELECT id FROM prune_ids)",
            "DELETE FROM alerts WHERE id IN (SELECT id FROM prune_ids)",
        ],
        &mut [&mut p.events, &mut p.alerts],
    )?;
    Ok(p)
}

/// Where the state to prune lives.
#[derive(Debug, Clone)]
pub enum State {
    /// `data_dir/state.db`: the one node prunes.
    Sqlite(PathBuf),
    /// The shared PostgreSQL: the node leading (by `cluster`) prunes.
    Postgres { target: Box<crate::state::pg::Target>, cluster: Arc<Cluster> },
}

/// One prune of `state` as of `now`: `None` when this node does not lead
/// (a standby leaves the pruning to the leader).
pub fn once(state: &State, retention: Duration, now: TimestampNs) -> Result<Option<Pruned>> {
    let cutoff = now - crate::plan::ns(retention);
    let expired = now - crate::plan::ns(crate::config::MAX_ACK_TTL.get());
    match state {
        State::Sqlite(path) => {
            let c = rusqlite::Connection::open(path)?;
            c.busy_timeout(Duration::from_secs(5))?;
            c.pragma_update(None, "foreign_keys", "ON")?;
            prune(&c, Fence::Open, cutoff, expired).map(Some)
        }
        State::Postgres { target, cluster } => {
            let Some(epoch) = cluster.term() else {
                return Ok(None);
            };
            let c = crate::state::pg::Conn::connect(
                target,
                &crate::cluster::sql::session_setup(cluster.timing().lease),
            )?;
            prune(&c, Fence::Leader(epoch), cutoff, expired).map(Some)
        }
    }
}

/// Prunes `state` a minute after start and then once a day, until `stop`.
/// A standby looks again every hour, so a node that comes to lead prunes
/// within the hour.
pub fn run(state: &State, retention: Duration, stop: &CancellationToken) {
    let day = Duration::from_secs(24 * 3600);
    let mut wait = Duration::from_secs(60);
    loop {
        let end = std::time::Instant::now() + wait;
        while std::time::Instant::now() < end {
            if stop.is_cancelled() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        wait = day;
        match once(state, retention, crate::reading::to_ns(chrono::Utc::now())) {
            Ok(Some(p)) if p.total() > 0 => tracing::info!(
                retention = %humantime::format_duration(retention),
                outbox = p.outbox,
                deliveries = p.deliveries,
                notifications = p.notifications,
                ack_links = p.ack_tokens,
                alerts = p.alerts,
                events = p.events,
                silences = p.silences,
                "state: pruned what is older than the retention"
            ),
            Ok(Some(_)) => {}
            Ok(None) => wait = Duration::from_secs(3600),
            Err(e) if e.is_fenced() => {
                tracing::info!("state: pruning stopped, this node no longer leads");
                wait = Duration::from_secs(3600);
            }
            Err(e) => tracing::warn!(error = %e, "state: pruning failed; trying again tomorrow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::store::Store;
    use rusqlite::{params, Connection};

    const DAY: i64 = 24 * 3600 * 1_000_000_000;

    fn exec(c: &Connection, sql: &str) {
        c.execute_batch(sql).unwrap();
    }

    fn count(c: &Connection, table: &str) -> i64 {
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn what_ended_before_the_retention_goes_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        let now = 1000 * DAY;
        let old = now - 500 * DAY;
        let recent = now - 10 * DAY;
        let alert = |id: i64, state: &str, started: i64, resolved: Option<i64>| {
            c.execute(
                "INSERT INTO alerts (id, kind, site, site_name, site_kind, street, rule, rule_name, state, unit,
                    started_at, updated_at, resolved_at, escalation_step)
                 VALUES (?1, 'site', 'CD-JS-01', 'x', 'waterlogging', 'chengdong', 'depth', 'd', ?2, 'cm', ?3, ?3, ?4, 0)",
                params![id, state, started, resolved],
            )
            .unwrap();
            c.execute(
                "INSERT INTO events (alert_id, ts, event) VALUES (?1, ?2, 'firing')",
                params![id, started],
            )
            .unwrap();
        };
        alert(1, "resolved", old, Some(old + DAY)); // gone
        alert(2, "resolved", old, Some(recent)); // overlaps the retained period: kept
        alert(3, "firing", old, None); // active: kept whatever its age
        let row = |id: i64, n: i64, state: &str, created: i64| {
            c.execute(
                "INSERT INTO outbox (id, notification_id, channel, recipient, recipient_name, team, body,
                    idempotency_key, state, next_attempt_at, created_at)
                 VALUES (?1, ?2, 'sms', '138', '张', 'cd', '{}', ?1, ?3, ?4, ?4)",
                params![id, n, state, created],
            )
            .unwrap();
            c.execute(
                "INSERT INTO deliveries (outbox_id, attempt, started_at) VALUES (?1, 1, ?2)",
                params![id, created],
            )
            .unwrap();
        };
        for (id, created) in [(1, old), (2, recent), (3, old)] {
            c.execute(
                "INSERT INTO notifications (id, team, created_at, body, enqueued) VALUES (?1, 'cd', ?2, '{}', 1)",
                params![id, created],
            )
            .unwrap();
        }
        row(10, 1, "sent", old); // gone, and notification 1 with it
        row(11, 2, "sent", recent); // kept
        row(12, 3, "queued", old); // still to send: kept, and notification 3
        exec(
            &c,
            &format!(
                "INSERT INTO ack_tokens VALUES ('used-old', 1, 'a', {old}, {});
                 INSERT INTO ack_tokens VALUES ('used-recent', 2, 'a', {old}, {recent});
                 INSERT INTO ack_tokens VALUES ('unused-old', 2, 'a', {old}, NULL);
                 INSERT INTO ack_tokens VALUES ('unused-recent', 2, 'a', {recent}, NULL);
                 INSERT INTO silences VALUES (1, '{{}}', {old}, {}, 'a', 'b', {old});
                 INSERT INTO silences VALUES (2, '{{}}', {old}, {now}, 'a', 'b', {old});",
                old + DAY,
                old + DAY
            ),
        );
        let expired = now - 180 * DAY;
        let p = prune(&c, Fence::Open, now - 400 * DAY, expired).unwrap();
        assert_eq!(
            p,
            Pruned {
                outbox: 1,
                deliveries: 1,
                notifications: 1,
                ack_tokens: 2,
                alerts: 1,
                events: 1,
                silences: 1
            }
        );
        let ids = |sql: &str| -> Vec<String> {
            let mut s = c.prepare(sql).unwrap();
            s.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|r| r.unwrap()).collect()
        };
        assert_eq!(ids("SELECT CAST(id AS TEXT) FROM alerts ORDER BY id"), ["2", "3"]);
        assert_eq!(ids("SELECT CAST(id AS TEXT) FROM outbox ORDER BY id"), ["11", "12"]);
        assert_eq!(ids("SELECT CAST(id AS TEXT) FROM notifications ORDER BY id"), ["2", "3"]);
        assert_eq!(ids("SELECT nonce FROM ack_tokens ORDER BY nonce"), ["unused-recent", "used-recent"]);
        assert_eq!(count(&c, "events"), 2);
        assert_eq!(count(&c, "deliveries"), 2);
        // A second prune finds nothing more.
        assert_eq!(prune(&c, Fence::Open, now - 400 * DAY, expired).unwrap().total(), 0);
        // The report of the retained period reads the alerts it read before.
        let s = Store::open(&path).unwrap();
        let seen: Vec<i64> = s.between(now - 400 * DAY, now).unwrap().iter().map(|a| a.id).collect();
        assert_eq!(seen, [2, 3]);
    }

    #[test]
    fn many_rows_go_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for id in 0..(BATCH * 2 + 7) {
            tx.execute(
                "INSERT INTO outbox (id, notification_id, channel, recipient, recipient_name, team, body,
                    idempotency_key, state, next_attempt_at, created_at)
                 VALUES (?1, 1, 'sms', '138', '张', 'cd', '{}', ?1, 'sent', 0, 0)",
                params![id],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let p = prune(&c, Fence::Open, DAY, 0).unwrap();
        assert_eq!(p.outbox as i64, BATCH * 2 + 7);
        assert_eq!(count(&c, "outbox"), 0);
    }
}

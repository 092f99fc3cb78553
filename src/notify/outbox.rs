//! The outbox's rows in `state.db` (tables made by the alert store's
//! migrations): one row per message per recipient per channel, a delivery
//! log of every attempt, the alerts each row tells of, and the nonces of
//! ack links. Budgets, holds, receipts and alarms: `ledger.rs`.
//!
//! A row is `queued` → `sending` (recorded before the request) → `sent`
//! (recorded after the provider took it), or back to `queued` with a later
//! attempt time, or `failed`, or `merged` into another row for the same
//! recipient, or `rerouted` to a row on another channel or for another
//! person (an urgent notice its channel could not carry). A send whose
//! answer never came is `unknown` until a receipt query tells whether the
//! provider took it (then `sent`, or `queued` again with the same key). A
//! row found `sending` at start was cut off mid-request: `unknown` where a
//! query can tell, else queued again with the same idempotency key. In a
//! cluster a row records the epoch it was started under; the leader takes
//! back, the same way, the rows a deposed leader left `sending` — when it
//! comes to lead and every second after (`stage.rs`).
//!
//! The rows live in the state backend (`state::db`): `state.db`, or the
//! PostgreSQL state two nodes share. Every write the senders make is the
//! leader's, in a transaction under its epoch: a deposed leader's is
//! refused by the database (`cluster::sql`), one asked of a standby by
//! this node ([`Error::NotLeader`]). Using an ack link's nonce is an
//! operator's act, allowed on any node.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::message::Rendered;
use crate::reading::TimestampNs;
use crate::state::db::{Backend, Fence};
use crate::vals;

pub use crate::state::db::Error;
pub type Result<T> = std::result::Result<T, Error>;

/// What a row carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    pub rendered: Rendered,
    /// Phone number, e-mail address or robot URL.
    pub to: String,
    /// For DingTalk robots: the signing secret.
    pub secret: Option<String>,
    pub alert_ids: Vec<i64>,
    /// How many messages this one stands for (more than 1 once merged).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub merged: u32,
    /// One short line per alert ("Ⅲ级 人民路铁路桥下穿"), for digests that
    /// must name every alert in one SMS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub notification_id: i64,
    /// sms, email, wecom, dingtalk, webhook
    pub channel: String,
    /// A stable name of the address (robots: `team#n`), for rate limits.
    pub recipient: String,
    pub recipient_name: String,
    pub team: String,
    pub body: Body,
    pub key: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: TimestampNs,
    pub created_at: TimestampNs,
    /// `Notification::priority`: the rank of its most severe level (Ⅰ = 4).
    pub priority: i64,
    /// The provider's id of the message or call (BizId, SerialNo, CallId).
    pub provider_id: Option<String>,
    /// What became of it after the provider took it (`classify::Receipt`).
    pub receipt: Option<String>,
    /// When a receipt or the result of a call is to be asked for next.
    pub check_at: Option<TimestampNs>,
    /// Of a message sent in parts (a long robot message): the bytes of its
    /// markdown already sent.
    pub sent_bytes: usize,
    /// The largest part the provider took so far (after a too-large answer).
    pub part_max: Option<usize>,
    /// The row this one stands in for (another channel, another person).
    pub fallback_of: Option<i64>,
    /// Why a queued row waits: budget, limit, refused.
    pub held: Option<String>,
    pub sent_at: Option<TimestampNs>,
}

impl Row {
    /// A Ⅱ/Ⅰ notice.
    pub fn urgent(&self) -> bool {
        self.priority >= i64::from(crate::level::Level::II.rank())
    }
}

/// Opens the connection again (PostgreSQL restarted).
type Reopen = Box<dyn Fn() -> Result<Box<dyn Backend>> + Send>;

pub struct OutboxDb {
    /// The connection; opened again before a use once it broke.
    conn: std::cell::RefCell<Box<dyn Backend>>,
    reopen: Option<Reopen>,
    /// Whether this node leads, and its epoch for the fence.
    cluster: Arc<crate::cluster::Cluster>,
}

pub(super) const ROW: &str = "id, notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, attempts, next_attempt_at, created_at, priority, provider_id, receipt, check_at, sent_bytes, part_max, fallback_of, held, sent_at";

pub(super) fn row(r: &crate::state::db::Row) -> Result<Row> {
    row_at(r, 0)
}

/// A row whose columns ([`ROW`]) start at index `b` of the result.
pub(super) fn row_at(r: &crate::state::db::Row, b: usize) -> Result<Row> {
    let body = r.string(b + 6)?;
    Ok(Row {
        id: r.i64(b)?,
        notification_id: r.i64(b + 1)?,
        channel: r.string(b + 2)?,
        recipient: r.string(b + 3)?,
        recipient_name: r.string(b + 4)?,
        team: r.string(b + 5)?,
        body: serde_json::from_str(&body)
            .map_err(|e| Error::Decode(format!("outbox row {}: body: {e}", r.i64(b).unwrap_or(0))))?,
        key: r.string(b + 7)?,
        state: r.string(b + 8)?,
        attempts: r.i64(b + 9)? as u32,
        next_attempt_at: r.i64(b + 10)?,
        created_at: r.i64(b + 11)?,
        priority: r.i64(b + 12)?,
        provider_id: r.opt_string(b + 13)?,
        receipt: r.opt_string(b + 14)?,
        check_at: r.opt_i64(b + 15)?,
        sent_bytes: r.i64(b + 16)? as usize,
        part_max: r.opt_i64(b + 17)?.map(|n| n as usize),
        fallback_of: r.opt_i64(b + 18)?,
        held: r.opt_string(b + 19)?,
        sent_at: r.opt_i64(b + 20)?,
    })
}

/// Which rows left `sending` to take back ([`OutboxDb::reclaim_sending`]).
#[derive(Debug, Clone, Copy)]
pub enum Reclaim<'a> {
    /// Every one (at start: nothing is in flight).
    All,
    /// Those a deposed leader started, but not these ids (in flight here).
    Deposed { in_flight: &'a [i64] },
}

/// Where an attempt left a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish<'a> {
    /// sent, queued, unknown or failed.
    pub state: &'a str,
    pub next_attempt_at: TimestampNs,
    /// The result label of the attempt (sent, retry, throttled, …).
    pub outcome: &'a str,
    pub response: &'a str,
    /// The provider's id of what it took.
    pub provider_id: Option<&'a str>,
    /// Ask for a receipt then (and mark it waiting).
    pub check_at: Option<TimestampNs>,
    /// Why a queued row waits.
    pub held: Option<&'a str>,
    /// Bytes sent so far of a message in parts.
    pub sent_bytes: usize,
    pub part_max: Option<usize>,
}

/// A row to add.
pub struct NewRow<'a> {
    pub notification_id: i64,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub recipient_name: &'a str,
    pub team: &'a str,
    pub body: &'a Body,
    pub key: &'a str,
    /// Sent before rows of lower priority (`Notification::priority`).
    pub priority: i64,
    /// The row it stands in for (a fallback).
    pub fallback_of: Option<i64>,
}

/// Adds rows (and the alerts they tell of) inside a transaction; how many
/// were new.
fn insert_rows(db: &dyn Backend, rows: &[NewRow<'_>], now: TimestampNs) -> Result<usize> {
    let mut n = 0;
    for r in rows {
        let added = db.query_opt(
            "INSERT INTO outbox (notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, next_attempt_at, created_at, priority, fallback_of)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?9, ?10)
             ON CONFLICT DO NOTHING RETURNING id",
            &vals![
                r.notification_id,
                r.channel,
                r.recipient,
                r.recipient_name,
                r.team,
                serde_json::to_string(r.body).unwrap_or_default(),
                r.key,
                now,
                r.priority,
                r.fallback_of
            ],
        )?;
        if let Some(added) = added {
            let id = added.i64(0)?;
            for a in &r.body.alert_ids {
                db.execute(
                    "INSERT INTO outbox_alerts (alert_id, outbox_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    &vals![*a, id],
                )?;
            }
            n += 1;
        }
    }
    Ok(n)
}

/// `'a','b'` of channel names (no quotes inside).
fn channel_list(c: &[&str]) -> String {
    c.iter().map(|c| format!("'{}'", c.replace('\'', ""))).collect::<Vec<_>>().join(",")
}

impl OutboxDb {
    /// Opens the database the alert store made (and migrated).
    pub fn open(path: &Path) -> Result<OutboxDb> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self::on(Box::new(conn)))
    }

    /// The PostgreSQL state at `target` (made and migrated by the alert store).
    pub fn postgres(target: &crate::state::pg::Target, lease: std::time::Duration) -> Result<OutboxDb> {
        let mut db = Self::on(Box::new(crate::state::open_postgres(target, lease)?));
        let t = target.clone();
        db.reopen =
            Some(Box::new(move || Ok(Box::new(crate::state::open_postgres(&t, lease)?) as Box<dyn Backend>)));
        Ok(db)
    }

    /// Over a backend, as the single node (SQLite: always the leader).
    pub fn on(db: Box<dyn Backend>) -> OutboxDb {
        OutboxDb {
            conn: std::cell::RefCell::new(db),
            reopen: None,
            cluster: crate::cluster::Cluster::single(String::new()),
        }
    }

    /// The connection, opened again first if it broke (a failure to is
    /// the next statement's error).
    pub(super) fn db(&self) -> std::cell::Ref<'_, Box<dyn Backend>> {
        if self.conn.borrow().is_broken() {
            if let Some(reopen) = &self.reopen {
                match reopen() {
                    Ok(db) => {
                        *self.conn.borrow_mut() = db;
                        tracing::info!("outbox: connected to the state again");
                    }
                    Err(e) => tracing::warn!(error = %e, "outbox: cannot connect to the state yet"),
                }
            }
        }
        self.conn.borrow()
    }

    /// This node in a cluster: its writes are the leader's, under its epoch.
    pub fn in_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The leader's write: `f` in one transaction under this node's epoch,
    /// committed when it returns Ok.
    pub(super) fn write<T>(&self, f: impl FnOnce(&dyn Backend) -> Result<T>) -> Result<T> {
        self.write_or_undo(|db| f(db).map(|v| (v, true)))
    }

    /// [`Self::write`] where `f` may also say "undo" (false): rolled back.
    pub(super) fn write_or_undo<T>(&self, f: impl FnOnce(&dyn Backend) -> Result<(T, bool)>) -> Result<T> {
        let epoch = self.cluster.term().ok_or(Error::NotLeader)?;
        self.transaction(Fence::Leader(epoch), f)
    }

    /// An operator's act (any node): `f` in one transaction, no epoch.
    pub(super) fn write_open<T>(&self, f: impl FnOnce(&dyn Backend) -> Result<T>) -> Result<T> {
        self.transaction(Fence::Open, |db| f(db).map(|v| (v, true)))
    }

    fn transaction<T>(&self, fence: Fence, f: impl FnOnce(&dyn Backend) -> Result<(T, bool)>) -> Result<T> {
        let db = self.db();
        let _turn = db.write_turn();
        db.begin(fence)?;
        match f(&**db) {
            Ok((v, true)) => match db.commit() {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = db.rollback();
                    Err(e)
                }
            },
            Ok((v, false)) => {
                db.rollback()?;
                Ok(v)
            }
            Err(e) => {
                let _ = db.rollback();
                Err(e)
            }
        }
    }

    /// See `Store::background_checkpoints`.
    pub fn background_checkpoints(&self) -> Result<()> {
        if self.db().dialect() == crate::state::db::Dialect::Sqlite {
            self.db().batch("PRAGMA wal_autocheckpoint = 0")?;
        }
        Ok(())
    }

    /// Notifications logged but not yet turned into outbox rows (a crash
    /// between the two), as (id, body).
    pub fn unqueued_notifications(&self, max: usize) -> Result<Vec<(i64, String)>> {
        self.db()
            .query(
                "SELECT id, body FROM notifications WHERE enqueued = 0 ORDER BY priority DESC, id LIMIT ?1",
                &vals![max as i64],
            )?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.string(1)?)))
            .collect()
    }

    /// Adds the rows of one notification and marks it queued, at once.
    /// A row whose key exists already is left as it is.
    /// With them, the nonces of the ack links they carry.
    pub fn enqueue(
        &mut self,
        notification_id: i64,
        rows: &[NewRow<'_>],
        nonces: &[(String, i64, String)],
        now: TimestampNs,
    ) -> Result<usize> {
        self.write(|db| {
            for (nonce, alert_id, member) in nonces {
                db.execute(
                    "INSERT INTO ack_tokens (nonce, alert_id, member, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    &vals![nonce, *alert_id, member, now],
                )?;
            }
            let n = insert_rows(db, rows, now)?;
            db.execute("UPDATE notifications SET enqueued = 1 WHERE id = ?1", &vals![notification_id])?;
            Ok(n)
        })
    }

    /// Adds rows outside a notification (fallbacks, the IT contact's
    /// alarm); the ids of the rows with these keys, new or not.
    pub fn add_rows(&mut self, rows: &[NewRow<'_>], now: TimestampNs) -> Result<Vec<i64>> {
        self.write(|db| {
            insert_rows(db, rows, now)?;
            rows.iter()
                .map(|r| {
                    db.query_one("SELECT id FROM outbox WHERE idempotency_key = ?1", &vals![r.key])?.i64(0)
                })
                .collect()
        })
    }

    /// After a crash: rows cut off mid-send. Those on `ask` channels become
    /// `unknown` (a receipt query tells whether the provider took them),
    /// those on `never_again` channels are done with an unknown result
    /// (calls: at most once), the rest go back to the queue (same key).
    pub fn recover_sending(&self, ask: &[&str], never_again: &[&str], now: TimestampNs) -> Result<usize> {
        self.reclaim_sending(ask, never_again, Reclaim::All, now)
    }

    /// Rows left `sending` (see [`Self::recover_sending`]): all of them
    /// (at start, nothing in flight yet), or in a cluster those a deposed
    /// leader started — under an epoch older than this node's — except the
    /// rows this process still has in flight (started under an epoch of its
    /// own it has since lost and taken again).
    pub fn reclaim_sending(
        &self,
        ask: &[&str],
        never_again: &[&str],
        which: Reclaim<'_>,
        now: TimestampNs,
    ) -> Result<usize> {
        let epoch = self.cluster.term().ok_or(Error::NotLeader)?;
        let only = match which {
            Reclaim::All => String::new(),
            Reclaim::Deposed { in_flight } => {
                let mut w = format!(" AND (epoch IS NULL OR epoch < {epoch})");
                if !in_flight.is_empty() {
                    let ids: Vec<String> = in_flight.iter().map(i64::to_string).collect();
                    w += &format!(" AND id NOT IN ({})", ids.join(","));
                }
                w
            }
        };
        self.transaction(Fence::Leader(epoch), |db| {
            let mut n = 0;
            if !ask.is_empty() {
                n += db.execute(
                    &format!(
                        "UPDATE outbox SET state = 'unknown', check_at = ?1, receipt = 'waiting' WHERE state = 'sending' AND channel IN ({}){only}",
                        channel_list(ask)
                    ),
                    &vals![now],
                )?;
            }
            if !never_again.is_empty() {
                n += db.execute(
                    &format!(
                        "UPDATE outbox SET state = 'unknown', receipt = 'unknown', receipt_at = ?1, receipt_note = 'cut off by a restart' WHERE state = 'sending' AND channel IN ({}){only}",
                        channel_list(never_again)
                    ),
                    &vals![now],
                )?;
            }
            n += db.execute(
                &format!("UPDATE outbox SET state = 'queued', next_attempt_at = ?1 WHERE state = 'sending'{only}"),
                &vals![now],
            )?;
            Ok((n as usize, true))
        })
    }

    /// After a crash: rows cut off mid-send go back to the queue.
    pub fn requeue_sending(&self, now: TimestampNs) -> Result<usize> {
        self.recover_sending(&[], &[], now)
    }

    /// One row.
    pub fn get(&self, id: i64) -> Result<Option<Row>> {
        self.db()
            .query_opt(&format!("SELECT {ROW} FROM outbox WHERE id = ?1"), &vals![id])?
            .as_ref()
            .map(row)
            .transpose()
    }

    /// Rows of `channels` due at `now`, oldest first.
    pub fn due(&self, channels: &[&str], now: TimestampNs, limit: usize) -> Result<Vec<Row>> {
        let list = channel_list(channels);
        // The ids from the index alone (a storm leaves thousands of rows,
        // their bodies large), then the rows chosen.
        let ids: Vec<i64> = self
            .db()
            .query(
                &format!(
                    "SELECT id FROM outbox INDEXED BY outbox_open
                     WHERE state IN ('queued', 'sending') AND state = 'queued' AND channel IN ({list}) AND next_attempt_at <= ?1
                     ORDER BY priority DESC, id LIMIT ?2"
                ),
                &vals![now, limit as i64],
            )?
            .iter()
            .map(|r| r.i64(0))
            .collect::<Result<_>>()?;
        let sql = format!("SELECT {ROW} FROM outbox WHERE id = ?1");
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.push(row(&self.db().query_one(&sql, &vals![id])?)?);
        }
        Ok(rows)
    }

    /// When the next row of `channels` is due.
    pub fn next_due(&self, channels: &[&str]) -> Result<Option<TimestampNs>> {
        let list = channel_list(channels);
        match self.db().query_opt(
            &format!(
                "SELECT MIN(next_attempt_at) FROM outbox INDEXED BY outbox_open WHERE state IN ('queued', 'sending') AND state = 'queued' AND channel IN ({list})"
            ),
            &[],
        )? {
            Some(r) => r.opt_i64(0),
            None => Ok(None),
        }
    }

    /// How many rows are due now or being sent.
    pub fn in_flight(&self, now: TimestampNs) -> Result<i64> {
        self.db()
            .query_one(
                "SELECT COUNT(*) FROM outbox INDEXED BY outbox_open
                 WHERE state IN ('queued', 'sending') AND (state = 'sending' OR next_attempt_at <= ?1)",
                &vals![now],
            )?
            .i64(0)
    }

    /// Rows due now or being sent, and when the oldest of them was made.
    pub fn due_figures(&self, now: TimestampNs) -> Result<(i64, Option<TimestampNs>)> {
        let r = self.db().query_one(
            "SELECT COUNT(*), MIN(created_at) FROM outbox INDEXED BY outbox_open
             WHERE state IN ('queued', 'sending') AND (state = 'sending' OR next_attempt_at <= ?1)",
            &vals![now],
        )?;
        Ok((r.i64(0)?, r.opt_i64(1)?))
    }

    /// Other queued rows for the same channel and recipient (to merge;
    /// not those half sent in parts).
    pub fn queued_for(&self, channel: &str, recipient: &str, except: i64) -> Result<Vec<Row>> {
        self.db()
            .query(
                &format!(
                    "SELECT {ROW} FROM outbox INDEXED BY outbox_recipient WHERE state = 'queued' AND channel = ?1 AND recipient = ?2 AND id != ?3 AND sent_bytes = 0 ORDER BY id"
                ),
                &vals![channel, recipient, except],
            )?
            .iter()
            .map(row)
            .collect()
    }

    /// Folds `others` into `keep`: its body becomes the merged one. Nothing
    /// changes (false) unless `keep` and all of `others` are still queued.
    pub fn merge(&mut self, keep: i64, body: &Body, others: &[i64]) -> Result<bool> {
        let json = serde_json::to_string(body).unwrap_or_default();
        self.write_or_undo(|db| {
            if db.execute("UPDATE outbox SET body = ?2 WHERE id = ?1 AND state = 'queued'", &vals![keep, json])? == 0 {
                return Ok((false, false));
            }
            for o in others {
                let n = db.execute(
                    "UPDATE outbox SET state = 'merged', merged_into = ?2 WHERE id = ?1 AND state = 'queued' AND sent_bytes = 0",
                    &vals![*o, keep],
                )?;
                if n == 0 {
                    return Ok((false, false));
                }
                db.execute(
                    "INSERT INTO outbox_alerts (alert_id, outbox_id)
                     SELECT alert_id, CAST(?2 AS BIGINT) FROM outbox_alerts WHERE outbox_id = ?1
                     ON CONFLICT DO NOTHING",
                    &vals![*o, keep],
                )?;
            }
            Ok((true, true))
        })
    }

    /// A merged row takes the priority of the most urgent it stands for.
    pub fn set_priority(&self, id: i64, priority: i64) -> Result<()> {
        self.write(|db| {
            db.execute(
                "UPDATE outbox SET priority = CASE WHEN priority > ?2 THEN priority ELSE ?2 END WHERE id = ?1",
                &vals![id, priority],
            )?;
            Ok(())
        })
    }

    /// Holds a queued row back until `until` (a recipient rate limit).
    pub fn hold(&self, id: i64, until: TimestampNs) -> Result<()> {
        self.hold_for(id, until, None)
    }

    /// Holds a queued row back until `until`, saying why (budget, limit, refused).
    pub fn hold_for(&self, id: i64, until: TimestampNs, why: Option<&str>) -> Result<()> {
        self.write(|db| {
            db.execute(
                "UPDATE outbox SET next_attempt_at = ?2, held = COALESCE(?3, held) WHERE id = ?1 AND state = 'queued'",
                &vals![id, until, why],
            )?;
            Ok(())
        })
    }

    /// An urgent row its channel could not carry now: `to` carries it.
    pub fn reroute(&self, id: i64, to: i64, why: &str, now: TimestampNs) -> Result<bool> {
        self.write(|db| {
            Ok(db.execute(
                "UPDATE outbox SET state = CASE WHEN state = 'queued' THEN 'rerouted' ELSE state END, rerouted_to = ?2,
                    last_error = ?3, check_at = NULL, receipt_at = COALESCE(receipt_at, ?4)
                 WHERE id = ?1 AND state IN ('queued', 'sent', 'unknown')",
                &vals![id, to, crate::redact::text(why), now],
            )? == 1)
        })
    }

    /// Records the start of an attempt (before the request goes out); the
    /// delivery row's id, or None when the row is no longer queued (merged
    /// into another meanwhile).
    /// The row carries the epoch it was started under: a row a deposed
    /// leader left `sending` is told from this node's own
    /// ([`Self::reclaim_sending`]).
    pub fn start(&mut self, id: i64, attempt: u32, now: TimestampNs) -> Result<Option<i64>> {
        let epoch = self.cluster.term().ok_or(Error::NotLeader)?;
        self.transaction(Fence::Leader(epoch), |db| {
            let n = db.execute(
                "UPDATE outbox SET state = 'sending', attempts = ?2, epoch = ?3 WHERE id = ?1 AND state = 'queued'",
                &vals![id, attempt, epoch],
            )?;
            if n == 0 {
                return Ok((None, true));
            }
            Ok((
                Some(db.insert(
                    "INSERT INTO deliveries (outbox_id, attempt, started_at) VALUES (?1, ?2, ?3) RETURNING id",
                    &vals![id, attempt, now],
                )?),
                true,
            ))
        })
    }

    /// Records how an attempt ended (`f`); with `spend`, what the provider
    /// took counts against the recipient's budget.
    pub fn finish(
        &mut self,
        id: i64,
        delivery: i64,
        f: &Finish<'_>,
        spend: bool,
        now: TimestampNs,
    ) -> Result<()> {
        // Providers' answers and errors may carry URLs with keys, or the
        // phone number: stored only as redacted.
        let response = &crate::redact::text(f.response);
        self.write(|db| {
            db.execute(
                "UPDATE outbox SET state = ?2, next_attempt_at = ?3,
                    sent_at = CASE WHEN ?2 IN ('sent', 'unknown') THEN ?4 ELSE sent_at END,
                    last_error = CASE WHEN ?2 = 'sent' THEN NULL ELSE ?5 END,
                    provider_id = COALESCE(?6, provider_id),
                    check_at = ?7,
                    receipt = CASE WHEN CAST(?7 AS BIGINT) IS NOT NULL THEN 'waiting' ELSE receipt END,
                    held = ?8, sent_bytes = ?9, part_max = ?10
                 WHERE id = ?1",
                &vals![
                    id,
                    f.state,
                    f.next_attempt_at,
                    now,
                    response,
                    f.provider_id,
                    f.check_at,
                    f.held,
                    f.sent_bytes as i64,
                    f.part_max.map(|n| n as i64)
                ],
            )?;
            db.execute(
                "UPDATE deliveries SET finished_at = ?2, outcome = ?3, response = ?4 WHERE id = ?1",
                &vals![delivery, now, f.outcome, response],
            )?;
            if spend {
                db.execute(
                    "INSERT INTO budget_spends (channel, recipient, at, outbox_id)
                     SELECT channel, recipient, CAST(?2 AS BIGINT), id FROM outbox WHERE id = ?1",
                    &vals![id, now],
                )?;
            }
            Ok(())
        })
    }

    /// One part of a message in parts was taken: its bytes and the budget.
    pub fn part_sent(
        &mut self,
        id: i64,
        sent_bytes: usize,
        part_max: Option<usize>,
        now: TimestampNs,
    ) -> Result<()> {
        self.write(|db| {
            db.execute(
                "UPDATE outbox SET sent_bytes = ?2, part_max = ?3 WHERE id = ?1",
                &vals![id, sent_bytes as i64, part_max.map(|n| n as i64)],
            )?;
            db.execute(
                "INSERT INTO budget_spends (channel, recipient, at, outbox_id)
                 SELECT channel, recipient, CAST(?2 AS BIGINT), id FROM outbox WHERE id = ?1",
                &vals![id, now],
            )?;
            Ok(())
        })
    }

    /// (state, count) of the outbox, for metrics and the page.
    pub fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        self.db()
            .query(
                "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state ORDER BY channel, state",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.string(0)?, r.string(1)?, r.i64(2)?)))
            .collect()
    }

    /// Per channel: messages not yet sent (queued or in flight) and when
    /// the oldest of them was made — what an operator watches.
    pub fn waiting(&self) -> Result<Vec<(String, i64, TimestampNs)>> {
        self.db()
            .query(
                "SELECT channel, COUNT(*), MIN(created_at) FROM outbox INDEXED BY outbox_open WHERE state IN ('queued', 'sending') GROUP BY channel",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.string(0)?, r.i64(1)?, r.i64(2)?)))
            .collect()
    }

    /// The latest rows with their last outcome, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<(Row, Option<String>, Option<TimestampNs>)>> {
        self.db()
            .query(
                &format!("SELECT {ROW}, last_error FROM outbox ORDER BY id DESC LIMIT ?1"),
                &vals![limit as i64],
            )?
            .iter()
            .map(|r| {
                let row = row(r)?;
                let sent_at = row.sent_at;
                Ok((row, r.opt_string(21)?, sent_at))
            })
            .collect()
    }

    /// Remembers the nonce of an ack link.
    pub fn add_nonce(&self, nonce: &str, alert_id: i64, member: &str, now: TimestampNs) -> Result<()> {
        self.write(|db| {
            db.execute(
                "INSERT INTO ack_tokens (nonce, alert_id, member, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                &vals![nonce, alert_id, member, now],
            )?;
            Ok(())
        })
    }

    /// Whether the nonce was issued for this alert and member, and is unused
    /// (a nonce re-signed for another alert or name is unknown).
    pub fn nonce_unused(&self, nonce: &str, alert_id: i64, member: &str) -> Result<bool> {
        match self.db().query_opt(
            "SELECT CASE WHEN used_at IS NULL THEN 1 ELSE 0 END FROM ack_tokens WHERE nonce = ?1 AND alert_id = ?2 AND member = ?3",
            &vals![nonce, alert_id, member],
        )? {
            Some(r) => Ok(r.i64(0)? == 1),
            None => Ok(false),
        }
    }

    /// Uses a nonce issued for this alert and member; false when it was
    /// unknown, issued for another, or used before. An operator's act: on
    /// any node.
    pub fn use_nonce(&self, nonce: &str, alert_id: i64, member: &str, now: TimestampNs) -> Result<bool> {
        self.write_open(|db| {
            Ok(db.execute(
                "UPDATE ack_tokens SET used_at = ?4 WHERE nonce = ?1 AND alert_id = ?2 AND member = ?3 AND used_at IS NULL",
                &vals![nonce, alert_id, member, now],
            )? == 1)
        })
    }
}

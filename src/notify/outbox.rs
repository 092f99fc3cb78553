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
//! query can tell, else queued again with the same idempotency key.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::message::Rendered;
use crate::alerts::store::write_turn;
use crate::reading::TimestampNs;

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

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

pub struct OutboxDb {
    pub(super) conn: Connection,
}

pub(super) const ROW: &str = "id, notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, attempts, next_attempt_at, created_at, priority, provider_id, receipt, check_at, sent_bytes, part_max, fallback_of, held, sent_at";

pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    row_at(r, 0)
}

/// A row whose columns ([`ROW`]) start at index `b` of the result.
pub(super) fn row_at(r: &rusqlite::Row<'_>, b: usize) -> rusqlite::Result<Row> {
    let body: String = r.get(b + 6)?;
    Ok(Row {
        id: r.get(b)?,
        notification_id: r.get(b + 1)?,
        channel: r.get(b + 2)?,
        recipient: r.get(b + 3)?,
        recipient_name: r.get(b + 4)?,
        team: r.get(b + 5)?,
        body: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(b + 6, rusqlite::types::Type::Text, Box::new(e))
        })?,
        key: r.get(b + 7)?,
        state: r.get(b + 8)?,
        attempts: r.get(b + 9)?,
        next_attempt_at: r.get(b + 10)?,
        created_at: r.get(b + 11)?,
        priority: r.get(b + 12)?,
        provider_id: r.get(b + 13)?,
        receipt: r.get(b + 14)?,
        check_at: r.get(b + 15)?,
        sent_bytes: r.get::<_, i64>(b + 16)? as usize,
        part_max: r.get::<_, Option<i64>>(b + 17)?.map(|n| n as usize),
        fallback_of: r.get(b + 18)?,
        held: r.get(b + 19)?,
        sent_at: r.get(b + 20)?,
    })
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
fn insert_rows(tx: &rusqlite::Transaction<'_>, rows: &[NewRow<'_>], now: TimestampNs) -> Result<usize> {
    let mut n = 0;
    for r in rows {
        let added = tx.execute(
            "INSERT OR IGNORE INTO outbox (notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, next_attempt_at, created_at, priority, fallback_of)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?9, ?10)",
            params![
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
        if added == 1 {
            let id = tx.last_insert_rowid();
            for a in &r.body.alert_ids {
                tx.execute(
                    "INSERT OR IGNORE INTO outbox_alerts (alert_id, outbox_id) VALUES (?1, ?2)",
                    params![a, id],
                )?;
            }
        }
        n += added;
    }
    Ok(n)
}

impl OutboxDb {
    /// Opens the database the alert store made (and migrated).
    pub fn open(path: &Path) -> Result<OutboxDb> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(OutboxDb { conn })
    }

    /// See `Store::background_checkpoints`.
    pub fn background_checkpoints(&self) -> Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)
    }

    /// Notifications logged but not yet turned into outbox rows (a crash
    /// between the two), as (id, body).
    pub fn unqueued_notifications(&self, max: usize) -> Result<Vec<(i64, String)>> {
        let mut s = self.conn.prepare_cached(
            "SELECT id, body FROM notifications WHERE enqueued = 0 ORDER BY priority DESC, id LIMIT ?1",
        )?;
        let rows = s.query_map(params![max as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
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
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        for (nonce, alert_id, member) in nonces {
            tx.execute(
                "INSERT OR IGNORE INTO ack_tokens (nonce, alert_id, member, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![nonce, alert_id, member, now],
            )?;
        }
        let n = insert_rows(&tx, rows, now)?;
        tx.execute("UPDATE notifications SET enqueued = 1 WHERE id = ?1", params![notification_id])?;
        tx.commit()?;
        Ok(n)
    }

    /// Adds rows outside a notification (fallbacks, the IT contact's
    /// alarm); the ids of the rows with these keys, new or not.
    pub fn add_rows(&mut self, rows: &[NewRow<'_>], now: TimestampNs) -> Result<Vec<i64>> {
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        insert_rows(&tx, rows, now)?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            ids.push(tx.query_row(
                "SELECT id FROM outbox WHERE idempotency_key = ?1",
                params![r.key],
                |x| x.get(0),
            )?);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// After a crash: rows cut off mid-send. Those on `ask` channels become
    /// `unknown` (a receipt query tells whether the provider took them),
    /// those on `never_again` channels are done with an unknown result
    /// (calls: at most once), the rest go back to the queue (same key).
    pub fn recover_sending(&self, ask: &[&str], never_again: &[&str], now: TimestampNs) -> Result<usize> {
        let _turn = write_turn();
        let list =
            |c: &[&str]| c.iter().map(|c| format!("'{}'", c.replace('\'', ""))).collect::<Vec<_>>().join(",");
        let mut n = 0;
        if !ask.is_empty() {
            n += self.conn.execute(
                &format!(
                    "UPDATE outbox SET state = 'unknown', check_at = ?1, receipt = 'waiting' WHERE state = 'sending' AND channel IN ({})",
                    list(ask)
                ),
                params![now],
            )?;
        }
        if !never_again.is_empty() {
            n += self.conn.execute(
                &format!(
                    "UPDATE outbox SET state = 'unknown', receipt = 'unknown', receipt_at = ?1, receipt_note = 'cut off by a restart' WHERE state = 'sending' AND channel IN ({})",
                    list(never_again)
                ),
                params![now],
            )?;
        }
        n += self.conn.execute(
            "UPDATE outbox SET state = 'queued', next_attempt_at = ?1 WHERE state = 'sending'",
            params![now],
        )?;
        Ok(n)
    }

    /// After a crash: rows cut off mid-send go back to the queue.
    pub fn requeue_sending(&self, now: TimestampNs) -> Result<usize> {
        self.recover_sending(&[], &[], now)
    }

    /// One row.
    pub fn get(&self, id: i64) -> Result<Option<Row>> {
        self.conn.query_row(&format!("SELECT {ROW} FROM outbox WHERE id = ?1"), params![id], row).optional()
    }

    /// Rows of `channels` due at `now`, oldest first.
    pub fn due(&self, channels: &[&str], now: TimestampNs, limit: usize) -> Result<Vec<Row>> {
        let list =
            channels.iter().map(|c| format!("'{}'", c.replace('\'', ""))).collect::<Vec<_>>().join(",");
        // The ids from the index alone (a storm leaves thousands of rows,
        // their bodies large), then the rows chosen.
        let ids: Vec<i64> = {
            let mut s = self.conn.prepare_cached(&format!(
                "SELECT id FROM outbox INDEXED BY outbox_open
                 WHERE state IN ('queued', 'sending') AND state = 'queued' AND channel IN ({list}) AND next_attempt_at <= ?1
                 ORDER BY priority DESC, id LIMIT ?2"
            ))?;
            let ids = s.query_map(params![now, limit as i64], |r| r.get(0))?;
            ids.collect::<Result<_>>()?
        };
        let mut s = self.conn.prepare_cached(&format!("SELECT {ROW} FROM outbox WHERE id = ?1"))?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.push(s.query_row(params![id], row)?);
        }
        Ok(rows)
    }

    /// When the next row of `channels` is due.
    pub fn next_due(&self, channels: &[&str]) -> Result<Option<TimestampNs>> {
        let list =
            channels.iter().map(|c| format!("'{}'", c.replace('\'', ""))).collect::<Vec<_>>().join(",");
        self.conn
            .query_row(
                &format!(
                    "SELECT MIN(next_attempt_at) FROM outbox INDEXED BY outbox_open WHERE state IN ('queued', 'sending') AND state = 'queued' AND channel IN ({list})"
                ),
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
    }

    /// How many rows are due now or being sent.
    pub fn in_flight(&self, now: TimestampNs) -> Result<i64> {
        self.conn.query_row(
            "SELECT COUNT(*) FROM outbox INDEXED BY outbox_open
             WHERE state IN ('queued', 'sending') AND (state = 'sending' OR next_attempt_at <= ?1)",
            params![now],
            |r| r.get(0),
        )
    }

    /// Rows due now or being sent, and when the oldest of them was made.
    pub fn due_figures(&self, now: TimestampNs) -> Result<(i64, Option<TimestampNs>)> {
        self.conn.query_row(
            "SELECT COUNT(*), MIN(created_at) FROM outbox INDEXED BY outbox_open
             WHERE state IN ('queued', 'sending') AND (state = 'sending' OR next_attempt_at <= ?1)",
            params![now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Other queued rows for the same channel and recipient (to merge;
    /// not those half sent in parts).
    pub fn queued_for(&self, channel: &str, recipient: &str, except: i64) -> Result<Vec<Row>> {
        let mut s = self.conn.prepare(&format!(
            "SELECT {ROW} FROM outbox INDEXED BY outbox_recipient WHERE state = 'queued' AND channel = ?1 AND recipient = ?2 AND id != ?3 AND sent_bytes = 0 ORDER BY id"
        ))?;
        let rows = s.query_map(params![channel, recipient, except], row)?;
        rows.collect()
    }

    /// Folds `others` into `keep`: its body becomes the merged one. Nothing
    /// changes (false) unless `keep` and all of `others` are still queued.
    pub fn merge(&mut self, keep: i64, body: &Body, others: &[i64]) -> Result<bool> {
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        let json = serde_json::to_string(body).unwrap_or_default();
        if tx
            .execute("UPDATE outbox SET body = ?2 WHERE id = ?1 AND state = 'queued'", params![keep, json])?
            == 0
        {
            return Ok(false);
        }
        for o in others {
            let n = tx.execute(
                "UPDATE outbox SET state = 'merged', merged_into = ?2 WHERE id = ?1 AND state = 'queued' AND sent_bytes = 0",
                params![o, keep],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR IGNORE INTO outbox_alerts (alert_id, outbox_id) SELECT alert_id, ?2 FROM outbox_alerts WHERE outbox_id = ?1",
                params![o, keep],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// A merged row takes the priority of the most urgent it stands for.
    pub fn set_priority(&self, id: i64, priority: i64) -> Result<()> {
        let _turn = write_turn();
        self.conn
            .execute("UPDATE outbox SET priority = MAX(priority, ?2) WHERE id = ?1", params![id, priority])?;
        Ok(())
    }

    /// Holds a queued row back until `until` (a recipient rate limit).
    pub fn hold(&self, id: i64, until: TimestampNs) -> Result<()> {
        self.hold_for(id, until, None)
    }

    /// Holds a queued row back until `until`, saying why (budget, limit, refused).
    pub fn hold_for(&self, id: i64, until: TimestampNs, why: Option<&str>) -> Result<()> {
        let _turn = write_turn();
        self.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?2, held = COALESCE(?3, held) WHERE id = ?1 AND state = 'queued'",
            params![id, until, why],
        )?;
        Ok(())
    }

    /// An urgent row its channel could not carry now: `to` carries it.
    pub fn reroute(&self, id: i64, to: i64, why: &str, now: TimestampNs) -> Result<bool> {
        let _turn = write_turn();
        Ok(self.conn.execute(
            "UPDATE outbox SET state = CASE WHEN state = 'queued' THEN 'rerouted' ELSE state END, rerouted_to = ?2,
                last_error = ?3, check_at = NULL, receipt_at = COALESCE(receipt_at, ?4)
             WHERE id = ?1 AND state IN ('queued', 'sent', 'unknown')",
            params![id, to, crate::redact::text(why), now],
        )? == 1)
    }

    /// Records the start of an attempt (before the request goes out); the
    /// delivery row's id, or None when the row is no longer queued (merged
    /// into another meanwhile).
    pub fn start(&mut self, id: i64, attempt: u32, now: TimestampNs) -> Result<Option<i64>> {
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE outbox SET state = 'sending', attempts = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, attempt],
        )?;
        if n == 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO deliveries (outbox_id, attempt, started_at) VALUES (?1, ?2, ?3)",
            params![id, attempt, now],
        )?;
        let d = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(d))
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
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE outbox SET state = ?2, next_attempt_at = ?3,
                sent_at = CASE WHEN ?2 IN ('sent', 'unknown') THEN ?4 ELSE sent_at END,
                last_error = CASE WHEN ?2 = 'sent' THEN NULL ELSE ?5 END,
                provider_id = COALESCE(?6, provider_id),
                check_at = ?7,
                receipt = CASE WHEN ?7 IS NOT NULL THEN 'waiting' ELSE receipt END,
                held = ?8, sent_bytes = ?9, part_max = ?10
             WHERE id = ?1",
            params![
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
        tx.execute(
            "UPDATE deliveries SET finished_at = ?2, outcome = ?3, response = ?4 WHERE id = ?1",
            params![delivery, now, f.outcome, response],
        )?;
        if spend {
            tx.execute(
                "INSERT INTO budget_spends (channel, recipient, at, outbox_id) SELECT channel, recipient, ?2, id FROM outbox WHERE id = ?1",
                params![id, now],
            )?;
        }
        tx.commit()
    }

    /// One part of a message in parts was taken: its bytes and the budget.
    pub fn part_sent(
        &mut self,
        id: i64,
        sent_bytes: usize,
        part_max: Option<usize>,
        now: TimestampNs,
    ) -> Result<()> {
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE outbox SET sent_bytes = ?2, part_max = ?3 WHERE id = ?1",
            params![id, sent_bytes as i64, part_max.map(|n| n as i64)],
        )?;
        tx.execute(
            "INSERT INTO budget_spends (channel, recipient, at, outbox_id) SELECT channel, recipient, ?2, id FROM outbox WHERE id = ?1",
            params![id, now],
        )?;
        tx.commit()
    }

    /// (state, count) of the outbox, for metrics and the page.
    pub fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        let mut s = self.conn.prepare(
            "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state ORDER BY channel, state",
        )?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Per channel: messages not yet sent (queued or in flight) and when
    /// the oldest of them was made — what an operator watches.
    pub fn waiting(&self) -> Result<Vec<(String, i64, TimestampNs)>> {
        let mut s = self.conn.prepare(
            "SELECT channel, COUNT(*), MIN(created_at) FROM outbox INDEXED BY outbox_open WHERE state IN ('queued', 'sending') GROUP BY channel",
        )?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// The latest rows with their last outcome, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<(Row, Option<String>, Option<TimestampNs>)>> {
        let mut s =
            self.conn.prepare(&format!("SELECT {ROW}, last_error FROM outbox ORDER BY id DESC LIMIT ?1"))?;
        let rows = s.query_map(params![limit as i64], |r| {
            let row = row(r)?;
            let sent_at = row.sent_at;
            Ok((row, r.get(21)?, sent_at))
        })?;
        rows.collect()
    }

    /// Remembers the nonce of an ack link.
    pub fn add_nonce(&self, nonce: &str, alert_id: i64, member: &str, now: TimestampNs) -> Result<()> {
        let _turn = write_turn();
        self.conn.execute(
            "INSERT OR IGNORE INTO ack_tokens (nonce, alert_id, member, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![nonce, alert_id, member, now],
        )?;
        Ok(())
    }

    /// Whether the nonce was issued for this alert and member, and is unused
    /// (a nonce re-signed for another alert or name is unknown).
    pub fn nonce_unused(&self, nonce: &str, alert_id: i64, member: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT used_at IS NULL FROM ack_tokens WHERE nonce = ?1 AND alert_id = ?2 AND member = ?3",
                params![nonce, alert_id, member],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Uses a nonce issued for this alert and member; false when it was
    /// unknown, issued for another, or used before.
    pub fn use_nonce(&self, nonce: &str, alert_id: i64, member: &str, now: TimestampNs) -> Result<bool> {
        let _turn = write_turn();
        Ok(self.conn.execute(
            "UPDATE ack_tokens SET used_at = ?4 WHERE nonce = ?1 AND alert_id = ?2 AND member = ?3 AND used_at IS NULL",
            params![nonce, alert_id, member, now],
        )? == 1)
    }
}

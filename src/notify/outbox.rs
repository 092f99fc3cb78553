//! The outbox's rows in `state.db` (tables made by the alert store's
//! migrations): one row per message per recipient per channel, a delivery
//! log of every attempt, and the nonces of ack links.
//!
//! A row is `queued` → `sending` (recorded before the request) → `sent`
//! (recorded after the provider accepted it), or back to `queued` with a
//! later attempt time, or `failed`, or `merged` into another row for the
//! same recipient. A row found `sending` at start was cut off mid-request:
//! it is sent again with the same idempotency key.

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
}

pub struct OutboxDb {
    conn: Connection,
}

const ROW: &str = "id, notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, attempts, next_attempt_at, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let body: String = r.get(6)?;
    Ok(Row {
        id: r.get(0)?,
        notification_id: r.get(1)?,
        channel: r.get(2)?,
        recipient: r.get(3)?,
        recipient_name: r.get(4)?,
        team: r.get(5)?,
        body: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
        })?,
        key: r.get(7)?,
        state: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at: r.get(10)?,
        created_at: r.get(11)?,
    })
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
        let mut n = 0;
        for r in rows {
            n += tx.execute(
                "INSERT OR IGNORE INTO outbox (notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, next_attempt_at, created_at, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?9)",
                params![
                    r.notification_id,
                    r.channel,
                    r.recipient,
                    r.recipient_name,
                    r.team,
                    serde_json::to_string(r.body).unwrap_or_default(),
                    r.key,
                    now,
                    r.priority
                ],
            )?;
        }
        tx.execute("UPDATE notifications SET enqueued = 1 WHERE id = ?1", params![notification_id])?;
        tx.commit()?;
        Ok(n)
    }

    /// After a crash: rows cut off mid-send go back to the queue.
    pub fn requeue_sending(&self, now: TimestampNs) -> Result<usize> {
        let _turn = write_turn();
        self.conn.execute(
            "UPDATE outbox SET state = 'queued', next_attempt_at = ?1 WHERE state = 'sending'",
            params![now],
        )
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

    /// Other queued rows for the same channel and recipient (to merge).
    pub fn queued_for(&self, channel: &str, recipient: &str, except: i64) -> Result<Vec<Row>> {
        let mut s = self.conn.prepare(&format!(
            "SELECT {ROW} FROM outbox INDEXED BY outbox_recipient WHERE state = 'queued' AND channel = ?1 AND recipient = ?2 AND id != ?3 ORDER BY id"
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
                "UPDATE outbox SET state = 'merged', merged_into = ?2 WHERE id = ?1 AND state = 'queued'",
                params![o, keep],
            )?;
            if n == 0 {
                return Ok(false);
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Holds a queued row back until `until` (a recipient rate limit).
    pub fn hold(&self, id: i64, until: TimestampNs) -> Result<()> {
        let _turn = write_turn();
        self.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, until],
        )?;
        Ok(())
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

    /// Records how an attempt ended: `state` sent, queued (with the next
    /// attempt time) or failed.
    pub fn finish(
        &mut self,
        id: i64,
        delivery: i64,
        state: &str,
        next_attempt_at: TimestampNs,
        outcome: &str,
        response: &str,
        now: TimestampNs,
    ) -> Result<()> {
        // Providers' answers and errors may carry URLs with keys, or the
        // phone number: stored only as redacted.
        let response = &crate::redact::text(response);
        let _turn = write_turn();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE outbox SET state = ?2, next_attempt_at = ?3, sent_at = CASE WHEN ?2 = 'sent' THEN ?4 ELSE sent_at END,
                last_error = CASE WHEN ?2 = 'sent' THEN NULL ELSE ?5 END WHERE id = ?1",
            params![id, state, next_attempt_at, now, response],
        )?;
        tx.execute(
            "UPDATE deliveries SET finished_at = ?2, outcome = ?3, response = ?4 WHERE id = ?1",
            params![delivery, now, outcome, response],
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
        let mut s = self
            .conn
            .prepare(&format!("SELECT {ROW}, last_error, sent_at FROM outbox ORDER BY id DESC LIMIT ?1"))?;
        let rows = s.query_map(params![limit as i64], |r| Ok((row(r)?, r.get(12)?, r.get(13)?)))?;
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

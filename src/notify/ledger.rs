//! The outbox's ledger in `state.db`, beside its rows: what each recipient
//! was sent on each channel (`budget_spends`, the record budgets are
//! decided from), holds after a provider's limit answer (`budget_holds`),
//! receipts and call results on the rows, channels whose credentials were
//! refused (`channel_alarms`), and the history of each alert's messages for
//! the page, the API and the report. Every query of these tables is here,
//! so another state backend ports one file.

use rusqlite::{params, OptionalExtension};

use super::outbox::{row, row_at, OutboxDb, Result, Row, ROW};
use crate::alerts::store::write_turn;
use crate::reading::TimestampNs;

/// One message of an alert's history: to whom, how, what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub alert_id: i64,
    pub row: Row,
    pub last_error: Option<String>,
    pub receipt_at: Option<TimestampNs>,
    pub receipt_note: Option<String>,
    pub rerouted_to: Option<i64>,
    pub merged_into: Option<i64>,
}

impl OutboxDb {
    /// When `recipient` was sent something on `channel` since `since`.
    pub fn spends(&self, channel: &str, recipient: &str, since: TimestampNs) -> Result<Vec<TimestampNs>> {
        let mut s = self.conn.prepare_cached(
            "SELECT at FROM budget_spends WHERE channel = ?1 AND recipient = ?2 AND at > ?3 ORDER BY at",
        )?;
        let rows = s.query_map(params![channel, recipient, since], |r| r.get(0))?;
        rows.collect()
    }

    /// A provider's hold on `recipient` (until, reason), if it lasts past `now`.
    pub fn hold_of(
        &self,
        channel: &str,
        recipient: &str,
        now: TimestampNs,
    ) -> Result<Option<(TimestampNs, String)>> {
        self.conn
            .query_row(
                "SELECT until, reason FROM budget_holds WHERE channel = ?1 AND recipient = ?2 AND until > ?3",
                params![channel, recipient, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
    }

    /// Records a provider's limit answer: `recipient` waits until `until`.
    pub fn set_hold(&self, channel: &str, recipient: &str, until: TimestampNs, reason: &str) -> Result<()> {
        let _turn = write_turn();
        self.conn.execute(
            "INSERT INTO budget_holds (channel, recipient, until, reason) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel, recipient) DO UPDATE SET until = MAX(until, excluded.until), reason = excluded.reason",
            params![channel, recipient, until, reason],
        )?;
        Ok(())
    }

    /// Forgets spends and holds older than `before` (no window is longer).
    pub fn prune_budget(&self, before: TimestampNs) -> Result<usize> {
        let _turn = write_turn();
        let n = self.conn.execute("DELETE FROM budget_spends WHERE at < ?1", params![before])?;
        Ok(n + self.conn.execute("DELETE FROM budget_holds WHERE until < ?1", params![before])?)
    }

    /// Rows whose receipt or call result is due to be asked for, on `channel`.
    pub fn checks_due(&self, channel: &str, now: TimestampNs, limit: usize) -> Result<Vec<Row>> {
        let mut s = self.conn.prepare_cached(&format!(
            "SELECT {ROW} FROM outbox INDEXED BY outbox_checks
             WHERE check_at IS NOT NULL AND check_at <= ?1 AND channel = ?2 AND state IN ('sent', 'unknown')
             ORDER BY check_at LIMIT ?3"
        ))?;
        let rows = s.query_map(params![now, channel, limit as i64], row)?;
        rows.collect()
    }

    /// Whether any row on `channel` waits for a receipt.
    pub fn awaiting(&self, channel: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM outbox INDEXED BY outbox_checks WHERE check_at IS NOT NULL AND channel = ?1 LIMIT 1",
                params![channel],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The row on `channel` with the provider's id, or else with this
    /// idempotency key, still waiting for its receipt.
    pub fn awaiting_row(&self, channel: &str, provider_id: &str, key: &str) -> Result<Option<Row>> {
        let by_id = self
            .conn
            .query_row(
                &format!(
                    "SELECT {ROW} FROM outbox WHERE channel = ?1 AND provider_id = ?2 AND provider_id != '' AND check_at IS NOT NULL"
                ),
                params![channel, provider_id],
                row,
            )
            .optional()?;
        if by_id.is_some() || key.is_empty() {
            return Ok(by_id);
        }
        self.conn
            .query_row(
                &format!("SELECT {ROW} FROM outbox WHERE idempotency_key = ?1 AND channel = ?2 AND check_at IS NOT NULL"),
                params![key, channel],
                row,
            )
            .optional()
    }

    /// Records a receipt (or call result): `check_at` the next question
    /// (None: no more). A row still `unknown` that the provider knows was
    /// taken becomes `sent`.
    pub fn set_receipt(
        &self,
        id: i64,
        receipt: Option<&str>,
        note: &str,
        provider_id: Option<&str>,
        check_at: Option<TimestampNs>,
        now: TimestampNs,
    ) -> Result<()> {
        let _turn = write_turn();
        self.conn.execute(
            "UPDATE outbox SET receipt = COALESCE(?2, receipt), receipt_note = CASE WHEN ?2 IS NULL THEN receipt_note ELSE ?3 END,
                receipt_at = CASE WHEN ?2 IS NULL OR ?2 = 'waiting' THEN receipt_at ELSE ?6 END,
                provider_id = COALESCE(provider_id, ?4), check_at = ?5,
                state = CASE WHEN state = 'unknown' AND ?2 IN ('waiting', 'delivered', 'failed', 'answered', 'busy', 'no_answer', 'unreachable') THEN 'sent' ELSE state END
             WHERE id = ?1",
            params![id, receipt, crate::redact::text(note), provider_id, check_at, now],
        )?;
        Ok(())
    }

    /// An `unknown` row the provider never took: queued again, same key.
    pub fn resend(&self, id: i64, now: TimestampNs) -> Result<bool> {
        let _turn = write_turn();
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'queued', next_attempt_at = ?2, check_at = NULL, receipt = NULL WHERE id = ?1 AND state = 'unknown'",
            params![id, now],
        )? == 1)
    }

    /// The other rows of a notification for the same member (by name) and
    /// the team's robot rows of it: what else tells them of it.
    pub fn siblings(&self, notification_id: i64, member: &str, except: i64) -> Result<Vec<Row>> {
        let mut s = self.conn.prepare_cached(&format!(
            "SELECT {ROW} FROM outbox WHERE notification_id = ?1 AND id != ?3
                AND (recipient_name = ?2 OR channel IN ('wecom', 'dingtalk', 'webhook')) ORDER BY id"
        ))?;
        let rows = s.query_map(params![notification_id, member, except], row)?;
        rows.collect()
    }

    /// A logged notification, as the alert manager wrote it.
    pub fn notification(&self, id: i64) -> Result<Option<crate::alerts::model::Notification>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM notifications WHERE id = ?1", params![id], |r| r.get(0))
            .optional()?;
        Ok(body.and_then(|b| serde_json::from_str::<crate::alerts::model::Notification>(&b).ok()).map(
            |mut n| {
                n.id = id;
                n
            },
        ))
    }

    /// Rows standing in for `id` (its fallbacks).
    pub fn fallbacks_of(&self, id: i64) -> Result<Vec<Row>> {
        let mut s = self
            .conn
            .prepare_cached(&format!("SELECT {ROW} FROM outbox WHERE fallback_of = ?1 ORDER BY id"))?;
        let rows = s.query_map(params![id], row)?;
        rows.collect()
    }

    /// Whether every one of `alerts` is acknowledged, disposed or resolved
    /// (nobody needs chasing any more). Alerts not on record count as open.
    pub fn all_answered(&self, alerts: &[i64]) -> Result<bool> {
        let mut s = self.conn.prepare_cached("SELECT state FROM alerts WHERE id = ?1")?;
        for a in alerts {
            let state: Option<String> = s.query_row(params![a], |r| r.get(0)).optional()?;
            if !matches!(state.as_deref(), Some("acked" | "disposed" | "resolved")) {
                return Ok(false);
            }
        }
        Ok(!alerts.is_empty())
    }

    /// Records that `channel`'s credentials are refused; true when this is new.
    pub fn set_alarm(&self, channel: &str, reason: &str, now: TimestampNs) -> Result<bool> {
        let _turn = write_turn();
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO channel_alarms (channel, since, reason) VALUES (?1, ?2, ?3)",
            params![channel, now, reason],
        )? == 1)
    }

    /// `channel` works again; true when it had an alarm.
    pub fn clear_alarm(&self, channel: &str) -> Result<bool> {
        let _turn = write_turn();
        Ok(self.conn.execute("DELETE FROM channel_alarms WHERE channel = ?1", params![channel])? == 1)
    }

    /// Channels whose credentials are refused: (channel, since, reason).
    pub fn alarms(&self) -> Result<Vec<(String, TimestampNs, String)>> {
        let mut s =
            self.conn.prepare_cached("SELECT channel, since, reason FROM channel_alarms ORDER BY channel")?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Rows held because their credentials were refused: due now (new
    /// credentials came with a reload).
    pub fn wake_refused(&self, now: TimestampNs) -> Result<usize> {
        let _turn = write_turn();
        self.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?1 WHERE state = 'queued' AND held = 'refused'",
            params![now],
        )
    }

    /// Every message about `alerts`, oldest first.
    pub fn deliveries(&self, alerts: &[i64]) -> Result<Vec<Delivery>> {
        let mut s = self.conn.prepare_cached(&format!(
            "SELECT oa.alert_id, {}, last_error, receipt_at, receipt_note, rerouted_to, merged_into
             FROM outbox_alerts oa JOIN outbox o ON o.id = oa.outbox_id WHERE oa.alert_id = ?1 ORDER BY o.id",
            ROW.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ")
        ))?;
        let mut out = Vec::new();
        for a in alerts {
            let rows = s.query_map(params![a], |r| {
                Ok(Delivery {
                    alert_id: r.get(0)?,
                    row: row_at(r, 1)?,
                    last_error: r.get(22)?,
                    receipt_at: r.get(23)?,
                    receipt_note: r.get(24)?,
                    rerouted_to: r.get(25)?,
                    merged_into: r.get(26)?,
                })
            })?;
            for d in rows {
                out.push(d?);
            }
        }
        Ok(out)
    }
}

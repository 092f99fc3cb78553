//! The outbox's ledger in `state.db`, beside its rows: what each recipient
//! was sent on each channel (`budget_spends`, the record budgets are
//! decided from), holds after a provider's limit answer (`budget_holds`),
//! receipts and call results on the rows, channels whose credentials were
//! refused (`channel_alarms`), and the history of each alert's messages for
//! the page, the API and the report. Every query of these tables is here,
//! in the SQL both backends speak (`state::db`); the writes are the
//! leader's, fenced by its epoch, but for receipts (providers call any node).

use super::outbox::{row, row_at, OutboxDb, Result, Row, ROW};
use crate::reading::TimestampNs;
use crate::vals;

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
        self.db()
            .query(
                "SELECT at FROM budget_spends WHERE channel = ?1 AND recipient = ?2 AND at > ?3 ORDER BY at",
                &vals![channel, recipient, since],
            )?
            .iter()
            .map(|r| r.i64(0))
            .collect()
    }

    /// A provider's hold on `recipient` (until, reason), if it lasts past `now`.
    pub fn hold_of(
        &self,
        channel: &str,
        recipient: &str,
        now: TimestampNs,
    ) -> Result<Option<(TimestampNs, String)>> {
        self.db()
            .query_opt(
                "SELECT until, reason FROM budget_holds WHERE channel = ?1 AND recipient = ?2 AND until > ?3",
                &vals![channel, recipient, now],
            )?
            .map(|r| Ok((r.i64(0)?, r.string(1)?)))
            .transpose()
    }

    /// Records a provider's limit answer: `recipient` waits until `until`.
    pub fn set_hold(&self, channel: &str, recipient: &str, until: TimestampNs, reason: &str) -> Result<()> {
        self.write(|db| {
            db.execute(
                "INSERT INTO budget_holds (channel, recipient, until, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (channel, recipient) DO UPDATE SET
                    until = CASE WHEN budget_holds.until > excluded.until THEN budget_holds.until ELSE excluded.until END,
                    reason = excluded.reason",
                &vals![channel, recipient, until, reason],
            )?;
            Ok(())
        })
    }

    /// Forgets spends and holds older than `before` (no window is longer).
    pub fn prune_budget(&self, before: TimestampNs) -> Result<usize> {
        self.write(|db| {
            let n = db.execute("DELETE FROM budget_spends WHERE at < ?1", &vals![before])?;
            Ok((n + db.execute("DELETE FROM budget_holds WHERE until < ?1", &vals![before])?) as usize)
        })
    }

    /// Rows whose receipt or call result is due to be asked for, on `channel`.
    pub fn checks_due(&self, channel: &str, now: TimestampNs, limit: usize) -> Result<Vec<Row>> {
        self.db()
            .query(
                &format!(
                    "SELECT {ROW} FROM outbox INDEXED BY outbox_checks
                     WHERE check_at IS NOT NULL AND check_at <= ?1 AND channel = ?2 AND state IN ('sent', 'unknown')
                     ORDER BY check_at LIMIT ?3"
                ),
                &vals![now, channel, limit as i64],
            )?
            .iter()
            .map(row)
            .collect()
    }

    /// Whether any row on `channel` waits for a receipt.
    pub fn awaiting(&self, channel: &str) -> Result<bool> {
        Ok(self
            .db()
            .query_opt(
                "SELECT 1 FROM outbox INDEXED BY outbox_checks WHERE check_at IS NOT NULL AND channel = ?1 LIMIT 1",
                &vals![channel],
            )?
            .is_some())
    }

    /// The row on `channel` with the provider's id, or else with this
    /// idempotency key, still waiting for its receipt.
    pub fn awaiting_row(&self, channel: &str, provider_id: &str, key: &str) -> Result<Option<Row>> {
        let by_id = self
            .db()
            .query_opt(
                &format!(
                    "SELECT {ROW} FROM outbox WHERE channel = ?1 AND provider_id = ?2 AND provider_id != '' AND check_at IS NOT NULL"
                ),
                &vals![channel, provider_id],
            )?
            .as_ref()
            .map(row)
            .transpose()?;
        if by_id.is_some() || key.is_empty() {
            return Ok(by_id);
        }
        self.db()
            .query_opt(
                &format!("SELECT {ROW} FROM outbox WHERE idempotency_key = ?1 AND channel = ?2 AND check_at IS NOT NULL"),
                &vals![key, channel],
            )?
            .as_ref()
            .map(row)
            .transpose()
    }

    /// Records a receipt (or call result): `check_at` the next question
    /// (None: no more). A row still `unknown` that the provider knows was
    /// taken becomes `sent`. A fact the provider tells, to whichever node
    /// it calls: written on any node.
    pub fn set_receipt(
        &self,
        id: i64,
        receipt: Option<&str>,
        note: &str,
        provider_id: Option<&str>,
        check_at: Option<TimestampNs>,
        now: TimestampNs,
    ) -> Result<()> {
        self.write_open(|db| {
            db.execute(
                "UPDATE outbox SET receipt = COALESCE(?2, receipt), receipt_note = CASE WHEN ?2 IS NULL THEN receipt_note ELSE ?3 END,
                    receipt_at = CASE WHEN ?2 IS NULL OR ?2 = 'waiting' THEN receipt_at ELSE ?6 END,
                    provider_id = COALESCE(provider_id, ?4), check_at = ?5,
                    state = CASE WHEN state = 'unknown' AND ?2 IN ('waiting', 'delivered', 'failed', 'answered', 'busy', 'no_answer', 'unreachable') THEN 'sent' ELSE state END
                 WHERE id = ?1",
                &vals![id, receipt, crate::redact::text(note), provider_id, check_at, now],
            )?;
            Ok(())
        })
    }

    /// An `unknown` row the provider never took: queued again, same key.
    pub fn resend(&self, id: i64, now: TimestampNs) -> Result<bool> {
        self.write(|db| {
            Ok(db.execute(
                "UPDATE outbox SET state = 'queued', next_attempt_at = ?2, check_at = NULL, receipt = NULL WHERE id = ?1 AND state = 'unknown'",
                &vals![id, now],
            )? == 1)
        })
    }

    /// The other rows of a notification for the same member (by name) and
    /// the team's robot rows of it: what else tells them of it.
    pub fn siblings(&self, notification_id: i64, member: &str, except: i64) -> Result<Vec<Row>> {
        self.db()
            .query(
                &format!(
                    "SELECT {ROW} FROM outbox WHERE notification_id = ?1 AND id != ?3
                        AND (recipient_name = ?2 OR channel IN ('wecom', 'dingtalk', 'webhook')) ORDER BY id"
                ),
                &vals![notification_id, member, except],
            )?
            .iter()
            .map(row)
            .collect()
    }

    /// A logged notification, as the alert manager wrote it.
    pub fn notification(&self, id: i64) -> Result<Option<crate::alerts::model::Notification>> {
        let body = match self.db().query_opt("SELECT body FROM notifications WHERE id = ?1", &vals![id])? {
            Some(r) => Some(r.string(0)?),
            None => None,
        };
        Ok(body.and_then(|b| serde_json::from_str::<crate::alerts::model::Notification>(&b).ok()).map(
            |mut n| {
                n.id = id;
                n
            },
        ))
    }

    /// Rows standing in for `id` (its fallbacks).
    pub fn fallbacks_of(&self, id: i64) -> Result<Vec<Row>> {
        self.db()
            .query(&format!("SELECT {ROW} FROM outbox WHERE fallback_of = ?1 ORDER BY id"), &vals![id])?
            .iter()
            .map(row)
            .collect()
    }

    /// Whether every one of `alerts` is acknowledged, disposed or resolved
    /// (nobody needs chasing any more). Alerts not on record count as open.
    pub fn all_answered(&self, alerts: &[i64]) -> Result<bool> {
        for a in alerts {
            let state = match self.db().query_opt("SELECT state FROM alerts WHERE id = ?1", &vals![*a])? {
                Some(r) => Some(r.string(0)?),
                None => None,
            };
            if !matches!(state.as_deref(), Some("acked" | "disposed" | "resolved")) {
                return Ok(false);
            }
        }
        Ok(!alerts.is_empty())
    }

    /// Records that `channel`'s credentials are refused; true when this is new.
    pub fn set_alarm(&self, channel: &str, reason: &str, now: TimestampNs) -> Result<bool> {
        self.write(|db| {
            Ok(db.execute(
                "INSERT INTO channel_alarms (channel, since, reason) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &vals![channel, now, reason],
            )? == 1)
        })
    }

    /// `channel` works again; true when it had an alarm.
    pub fn clear_alarm(&self, channel: &str) -> Result<bool> {
        self.write(
            |db| Ok(db.execute("DELETE FROM channel_alarms WHERE channel = ?1", &vals![channel])? == 1),
        )
    }

    /// Channels whose credentials are refused: (channel, since, reason).
    pub fn alarms(&self) -> Result<Vec<(String, TimestampNs, String)>> {
        self.db()
            .query("SELECT channel, since, reason FROM channel_alarms ORDER BY channel", &[])?
            .iter()
            .map(|r| Ok((r.string(0)?, r.i64(1)?, r.string(2)?)))
            .collect()
    }

    /// Rows held because their credentials were refused: due now (new
    /// credentials came with a reload).
    pub fn wake_refused(&self, now: TimestampNs) -> Result<usize> {
        self.write(|db| {
            Ok(db.execute(
                "UPDATE outbox SET next_attempt_at = ?1 WHERE state = 'queued' AND held = 'refused'",
                &vals![now],
            )? as usize)
        })
    }

    /// Every message about `alerts`, oldest first.
    pub fn deliveries(&self, alerts: &[i64]) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT oa.alert_id, {}, last_error, receipt_at, receipt_note, rerouted_to, merged_into
             FROM outbox_alerts oa JOIN outbox o ON o.id = oa.outbox_id WHERE oa.alert_id = ?1 ORDER BY o.id",
            ROW.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ")
        );
        let mut out = Vec::new();
        for a in alerts {
            for r in self.db().query(&sql, &vals![*a])? {
                out.push(Delivery {
                    alert_id: r.i64(0)?,
                    row: row_at(&r, 1)?,
                    last_error: r.opt_string(22)?,
                    receipt_at: r.opt_i64(23)?,
                    receipt_note: r.opt_string(24)?,
                    rerouted_to: r.opt_i64(25)?,
                    merged_into: r.opt_i64(26)?,
                });
            }
        }
        Ok(out)
    }
}

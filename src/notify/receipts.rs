//! Asking what became of a message, on a thread of its own: delivery
//! receipts of SMS (Aliyun QuerySendDetails per message, Tencent
//! PullSmsSendStatus for the whole application) and results of calls
//! (Aliyun QueryCallDetailByCallId; Tencent tells through its callback,
//! `Outbox::call_result`). A send whose answer was lost is resolved here
//! before it is ever sent again. `fallback::after_report` says what each
//! answer means; an urgent SMS that did not reach its person is rerouted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::classify::{Receipt, Report};
use super::deliver::CALL_RESULT_TIMEOUT;
use super::fallback::{self, Case, Next};
use super::outbox::Row;
use super::{providers, Channels, Outbox};
use crate::config::{SmsProvider, VoiceProvider};
use crate::reading::TimestampNs;

/// Rows asked about per round and channel.
const ROUND: usize = 50;

impl Outbox {
    /// Asks for receipts and call results until `stop`.
    pub async fn run_receipts(self: Arc<Self>, stop: CancellationToken) {
        let mut last_pull: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        loop {
            if !self.leads() {
                // The leader asks; a standby waits to lead.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            let ch = self.ch();
            self.sms_receipts(&ch, &mut last_pull).await;
            self.call_results(&ch).await;
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(Instant::now());
                // Budgets look back a day at most (a configured window longer
                // than that would keep more; none of the providers has one).
                let keep = ch
                    .section
                    .sms
                    .iter()
                    .flat_map(|s| s.windows())
                    .chain(ch.section.voice.iter().flat_map(|v| v.budget.clone()))
                    .map(|w| w.per.get())
                    .max()
                    .unwrap_or_default()
                    .max(Duration::from_secs(86_400));
                if let Err(e) = self.db().prune_budget(self.now() - super::ns(keep)) {
                    tracing::warn!(error = %e, "cannot prune old budget spends");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn sms_receipts(&self, ch: &Channels, last_pull: &mut Option<Instant>) {
        let Some(sms) = ch.section.sms.as_ref().filter(|s| s.has_receipts()) else { return };
        let now = self.now();
        let http = &ch.senders.http;
        match sms.provider {
            SmsProvider::Aliyun => {
                let rows = self.db().checks_due("sms", now, ROUND).unwrap_or_default();
                for row in rows {
                    // The provider's date is the wall's (storm time in the demo).
                    let sent = self.wall_at(row.sent_at.unwrap_or(row.created_at));
                    let phone = row.recipient.trim_start_matches("+86").to_string();
                    let report = providers::aliyun_sms_report(
                        http,
                        sms,
                        &phone,
                        &row.key,
                        row.provider_id.as_deref(),
                        sent,
                    )
                    .await;
                    self.apply(ch, &row, &report, now);
                }
            }
            SmsProvider::Tencent => {
                // Pulled statuses are given once, for the whole application:
                // one pull per `receipt_poll` while anything waits.
                let due = last_pull.is_none_or(|t| t.elapsed() >= sms.receipt_poll.get());
                if due && self.db().awaiting("sms").unwrap_or(false) {
                    *last_pull = Some(Instant::now());
                    match providers::tencent_sms_pull(http, sms).await {
                        Ok(pulled) => {
                            for p in pulled {
                                match self.db().awaiting_row("sms", &p.serial_no, &p.session) {
                                    Ok(Some(row)) => {
                                        let report = Report::Found {
                                            receipt: p.receipt,
                                            note: p.note.clone(),
                                            id: Some(p.serial_no.clone()),
                                        };
                                        self.apply(ch, &row, &report, now);
                                    }
                                    Ok(None) => {
                                        tracing::debug!(serial = %p.serial_no, "a status for a message not waiting here")
                                    }
                                    Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot pull Tencent SMS statuses; trying again")
                        }
                    }
                }
                // What got no status in time.
                let rows = self.db().checks_due("sms", now, ROUND).unwrap_or_default();
                for row in rows {
                    self.apply(ch, &row, &Report::NotFound, now);
                }
            }
            _ => {}
        }
    }

    async fn call_results(&self, ch: &Channels) {
        let Some(v) = ch.section.voice.as_ref() else { return };
        let now = self.now();
        let rows = self.db().checks_due("voice", now, ROUND).unwrap_or_default();
        for row in rows {
            let report = match (v.provider, row.provider_id.as_deref()) {
                (VoiceProvider::Aliyun, Some(id)) => {
                    providers::aliyun_call_report(
                        &ch.senders.http,
                        v,
                        id,
                        self.wall_at(row.sent_at.unwrap_or(row.created_at)),
                    )
                    .await
                }
                _ => Report::NotFound,
            };
            self.apply(ch, &row, &report, now);
        }
    }

    /// Records what a query said of `row` and takes the next step.
    fn apply(&self, ch: &Channels, row: &Row, report: &Report, now: TimestampNs) {
        let voice = row.channel == "voice";
        let (poll, timeout) = match (voice, ch.section.sms.as_ref(), ch.section.voice.as_ref()) {
            (true, _, Some(v)) => (v.result_poll.get(), CALL_RESULT_TIMEOUT),
            (false, Some(s), _) => (s.receipt_poll.get(), s.receipt_timeout.get()),
            _ => (Duration::from_secs(15), Duration::from_secs(300)),
        };
        let case = Case {
            urgent: row.urgent() && !voice,
            answer_lost: row.state == "unknown",
            lists_waiting: !voice && Self::sms_lists_waiting(ch),
            since: row.sent_at.unwrap_or(row.created_at),
            now,
            poll,
            timeout,
        };
        let (receipt, next) = fallback::after_report(case, report);
        let (note, id) = match report {
            Report::Found { note, id, .. } => (note.clone(), id.clone()),
            Report::NotFound => ("no record at the provider".to_string(), None),
            Report::QueryFailed(e) => (e.clone(), None),
        };
        let check_at = match next {
            Next::Poll(t) => Some(t),
            _ => None,
        };
        if next == Next::Resend {
            match self.db().resend(row.id, now) {
                Ok(true) => {
                    tracing::warn!(channel = %row.channel, to = %row.recipient_name, "the provider never took it (its answer was lost): sent again, same key");
                    self.wake_channel(&row.channel);
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot queue a message again"),
            }
            return;
        }
        let r = receipt.map(Receipt::as_str);
        if let Err(e) = self.db().set_receipt(row.id, r, &note, id.as_deref(), check_at, now) {
            tracing::error!(error = %e, "cannot record a receipt");
            return;
        }
        if let (Some(r), Some(m)) = (receipt.filter(|r| r.is_final()), &self.metrics) {
            m.notify_receipts.with_label_values(&[&row.channel, r.as_str()]).inc();
            tracing::info!(channel = %row.channel, to = %row.recipient_name, receipt = r.as_str(), note = %note, "receipt");
        }
        if next == Next::Fallback {
            let why = match receipt {
                Some(Receipt::Failed) => format!("the handset did not get it ({note})"),
                _ => "no delivery receipt in time".to_string(),
            };
            self.reroute(row, &why, now);
        }
    }

    /// A call's result from the provider's callback (Tencent VMS): false
    /// when no call waits for one under that id.
    pub fn call_result(&self, call_id: &str, receipt: Receipt, note: &str) -> bool {
        let now = self.now();
        match self.db().awaiting_row("voice", call_id, "") {
            Ok(Some(row)) => {
                let report = Report::Found { receipt, note: note.to_string(), id: Some(call_id.to_string()) };
                let ch = self.ch();
                self.apply(&ch, &row, &report, now);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                false
            }
        }
    }

    /// The secret path segment of the Tencent voice callback, if configured.
    pub fn callback_token(&self) -> Option<String> {
        self.ch()
            .section
            .voice
            .as_ref()
            .map(|v| v.callback_token.expose().to_string())
            .filter(|t| !t.is_empty())
    }
}

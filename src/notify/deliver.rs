//! Sending what is due, within each recipient's carrier budget: the
//! workers of the channel groups. For a due row the budget (`budget::step`,
//! over the spends on record) says send, wait — merging what else is
//! queued for the recipient into one digest — or, for an urgent SMS with
//! no room, take another channel (`reroute.rs`). Long robot messages go in
//! parts. The provider's answer (`classify`) decides what the row becomes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::budget::{self, Step};
use super::classify::{Hold, Outcome};
use super::outbox::{Body, Finish, Row};
use super::send::{dingtalk_body, DINGTALK_MAX_BODY, WECOM_MAX_BYTES};
use super::{merge, ns, parts, Channels, Outbox, GROUPS};
use crate::config::{SmsProvider, VoiceProvider, Window};
use crate::reading::TimestampNs;

/// How long the result of a call may take before it counts as unknown.
pub const CALL_RESULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A channel's budget: its windows and the reserve kept for Ⅱ/Ⅰ.
pub(super) fn budget_of(ch: &Channels, channel: &str) -> (Vec<Window>, u32) {
    let s = &ch.section;
    match channel {
        "sms" => s.sms.as_ref().map_or((Vec::new(), 0), |c| (c.windows(), c.reserve)),
        "voice" => s.voice.as_ref().map_or((Vec::new(), 0), |v| (v.budget.clone(), 0)),
        "wecom" | "dingtalk" => (s.robots.windows(), 0),
        _ => (Vec::new(), 0),
    }
}

/// What the recipient was sent within the longest window.
fn since(windows: &[Window], now: TimestampNs) -> TimestampNs {
    let longest = windows.iter().map(|w| w.per.get()).max().unwrap_or(Duration::from_secs(86_400));
    now - ns(longest.max(Duration::from_secs(86_400)))
}

/// When a row's receipt or call result is first asked for, if ever.
pub(super) fn first_check(ch: &Channels, channel: &str, now: TimestampNs) -> Option<TimestampNs> {
    match channel {
        "sms" => ch.section.sms.as_ref().filter(|s| s.has_receipts()).map(|s| now + ns(s.receipt_poll.get())),
        "voice" => ch.section.voice.as_ref().and_then(|v| match v.provider {
            VoiceProvider::Aliyun => Some(now + ns(v.result_poll.get())),
            VoiceProvider::Tencent if !v.callback_token.is_empty() => Some(now + ns(CALL_RESULT_TIMEOUT)),
            _ => None,
        }),
        _ => None,
    }
}

/// What a send whose answer never came becomes, per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// `unknown` until a receipt query tells whether the provider took it.
    Ask,
    /// `unknown` for good: never sent again (calls: at most once).
    Keep,
    /// Sent again with the same idempotency key (at least once).
    Resend,
}

/// The promise per channel (docs/architecture.md, "Exactly what is promised").
pub fn on_lost_answer(channel: &str, sms_has_receipts: bool) -> Lost {
    match channel {
        "sms" if sms_has_receipts => Lost::Ask,
        "voice" => Lost::Keep,
        _ => Lost::Resend,
    }
}

/// How an attempt on a row came out, besides the provider's outcome.
enum Attempt {
    Done(Outcome),
    /// Some parts went; the rest wait for the robot's budget until then.
    PartsWait(TimestampNs),
}

impl Outbox {
    /// The worker of one channel group: sends what is due, sleeps until the
    /// next is due or something new is queued.
    pub async fn run(self: Arc<Self>, group: usize, stop: CancellationToken) {
        let channels = GROUPS[group];
        loop {
            if stop.is_cancelled() {
                return;
            }
            if !self.leads() {
                // The leader sends; a standby waits to lead.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            let due = self.db().due(channels, self.now(), 20).unwrap_or_default();
            if due.is_empty() {
                let next = self.db().next_due(channels).ok().flatten();
                let wait = next.map_or(Duration::from_secs(1), |t| {
                    self.clock
                        .wall_duration(Duration::from_nanos((t - self.now()).max(0) as u64))
                        .min(Duration::from_secs(1))
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake[group].notified() => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            for row in due {
                tokio::select! {
                    _ = self.deliver(row) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    /// Merges the queued messages of `row`'s recipient into it: all of
    /// them when it is about to go, only the less urgent ones when it waits
    /// (an urgent notice due now is not held back with a digest).
    pub(super) fn merge_into(&self, row: &mut Row, everything: bool, now: TimestampNs) {
        if row.sent_bytes > 0 || row.channel == "voice" {
            return;
        }
        let others = match self.db().queued_for(&row.channel, &row.recipient, row.id) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return;
            }
        };
        let others: Vec<Row> =
            others.into_iter().filter(|o| everything || !o.urgent() || row.urgent()).collect();
        if others.is_empty() {
            return;
        }
        // Oldest first, as they happened.
        let mut all: Vec<&Row> = others.iter().collect();
        all.push(row);
        all.sort_by_key(|r| r.id);
        let bodies: Vec<super::outbox::Body> = all.iter().map(|r| r.body.clone()).collect();
        let mut alert_ids: Vec<i64> = bodies.iter().flat_map(|b| b.alert_ids.iter().copied()).collect();
        alert_ids.sort_unstable();
        alert_ids.dedup();
        let link =
            if row.channel == "sms" { self.link_all(&alert_ids, &row.recipient_name, now) } else { None };
        let body = merge::merge_with(&bodies, self.language, link.as_deref());
        let priority = all.iter().map(|r| r.priority).max().unwrap_or(row.priority);
        let ids: Vec<i64> = others.iter().map(|o| o.id).collect();
        match self.db().merge(row.id, &body, &ids) {
            Ok(true) => {}
            Ok(false) => return, // the queue changed meanwhile; the next round merges
            Err(e) => {
                tracing::error!(error = %e, "cannot merge queued messages");
                return;
            }
        }
        let _ = self.db().set_priority(row.id, priority);
        row.body = body;
        row.priority = priority;
        for _ in &ids {
            self.count(&row.channel, "merged");
        }
        tracing::info!(channel = %row.channel, recipient = %row.recipient_name, merged = ids.len() + 1, "queued messages merged into one digest");
    }

    /// Sends one due row within its recipient's budget and records how it went.
    pub(super) async fn deliver(&self, mut row: Row) {
        let now = self.now();
        let ch = self.ch();
        let (windows, reserve) = budget_of(&ch, &row.channel);
        let hold = self.db().hold_of(&row.channel, &row.recipient, now).ok().flatten();
        let urgent = row.urgent() && row.channel == "sms";
        if !windows.is_empty() || hold.is_some() {
            let spends =
                self.db().spends(&row.channel, &row.recipient, since(&windows, now)).unwrap_or_default();
            let at = hold.as_ref().map(|h| h.0);
            match budget::step(&windows, reserve, &spends, at, urgent, urgent, now) {
                Step::Send => {}
                Step::Wait(until) => {
                    self.merge_into(&mut row, false, now);
                    let why = if hold.is_some() { "limit" } else { "budget" };
                    if let Err(e) = self.db().hold_for(row.id, until, Some(why)) {
                        tracing::error!(error = %e, "cannot hold a message back");
                    }
                    self.count(&row.channel, "held");
                    return;
                }
                Step::Fallback => {
                    let why = match &hold {
                        Some((_, reason)) => format!("the provider's limit: {reason}"),
                        None => "the recipient's SMS budget is spent".to_string(),
                    };
                    if !self.reroute(&row, &why, now) {
                        // Nowhere else to go: it waits for the budget.
                        let until = budget::next_free(&windows, &spends, at, true, reserve, now);
                        let _ = self.db().hold_for(row.id, until, Some("budget"));
                    }
                    return;
                }
            }
        }
        // A digest: what waited for this recipient goes with it.
        if matches!(row.channel.as_str(), "sms" | "wecom" | "dingtalk") {
            self.merge_into(&mut row, true, now);
        }
        let attempt = row.attempts + 1;
        // Before the start is recorded, until the end is: the leader never
        // takes it back as a deposed leader's meanwhile.
        let _in_flight = self.in_flight(row.id);
        let delivery = match self.db().start(row.id, attempt, now) {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a send before making it; not sending");
                return;
            }
        };
        if !self.leads() {
            // The lease ran out (by this node's clock) since the send was
            // recorded: the next leader finds the row cut off mid-send and
            // recovers it; this node sends nothing more.
            tracing::warn!(row = row.id, "no longer the leader: not sending");
            return;
        }
        self.activity.fetch_add(1, Ordering::Relaxed);
        // A robot row names its robot: the URL and key come from teams.toml now.
        let resolved = {
            let teams = self.teams.read().expect("teams lock");
            super::robots::resolve(&teams, &row.body).map(|b| b.into_owned())
        };
        let result = match resolved {
            Err(reason) => Attempt::Done(Outcome::Failed(reason)),
            Ok(body) if matches!(row.channel.as_str(), "wecom" | "dingtalk") => {
                self.send_parts(&ch, &mut row, &body, &windows).await
            }
            Ok(body) => {
                Attempt::Done(ch.senders.send(&row.channel, &body, &row.recipient_name, &row.key).await)
            }
        };
        self.activity.fetch_add(1, Ordering::Relaxed);
        match result {
            Attempt::Done(outcome) => self.settle(&ch, &row, delivery, attempt, &windows, outcome).await,
            Attempt::PartsWait(until) => {
                let f = Finish {
                    state: "queued",
                    next_attempt_at: until,
                    outcome: "held",
                    response: "the robot's minute is spent: the next part waits",
                    provider_id: None,
                    check_at: None,
                    held: Some("budget"),
                    sent_bytes: row.sent_bytes,
                    part_max: row.part_max,
                };
                self.count(&row.channel, "held");
                if let Err(e) = self.db().finish(row.id, delivery, &f, false, now) {
                    tracing::error!(error = %e, "cannot record a send's result");
                }
            }
        }
    }

    /// Sends a robot message part by part (each within the robot's budget
    /// and size limit), from where the last attempt stopped.
    async fn send_parts(&self, ch: &Channels, row: &mut Row, body: &Body, windows: &[Window]) -> Attempt {
        let title = body.rendered.subject.clone();
        let md = body.rendered.markdown.clone();
        let continued =
            if self.language == crate::config::Language::ZhCn { "（续）\n" } else { "(continued)\n" };
        loop {
            let rest = &md[row.sent_bytes.min(md.len())..];
            if rest.is_empty() {
                return Attempt::Done(Outcome::sent("every part sent"));
            }
            let (max, json) = match row.channel.as_str() {
                "wecom" => (row.part_max.unwrap_or(WECOM_MAX_BYTES), false),
                _ => {
                    let envelope = dingtalk_body(&title, "").to_string().len() + continued.len() + 64;
                    (row.part_max.unwrap_or(DINGTALK_MAX_BODY.saturating_sub(envelope)), true)
                }
            };
            let room = max.saturating_sub(if row.sent_bytes > 0 { continued.len() } else { 0 });
            let n = if json {
                parts::first_part(rest, room, parts::json_len)
            } else {
                parts::first_part(rest, room, str::len)
            };
            let text =
                if row.sent_bytes > 0 { format!("{continued}{}", &rest[..n]) } else { rest[..n].to_string() };
            let last = n == rest.len();
            match ch.senders.robot(&row.channel, body, &text).await {
                Outcome::Sent { .. } if last => {
                    row.sent_bytes = md.len();
                    return Attempt::Done(Outcome::sent(
                        if row.part_max.is_some() || text.len() < md.len() {
                            "sent in parts"
                        } else {
                            "sent"
                        },
                    ));
                }
                Outcome::Sent { .. } => {
                    row.sent_bytes += n;
                    let now = self.now();
                    if let Err(e) = self.db().part_sent(row.id, row.sent_bytes, row.part_max, now) {
                        tracing::error!(error = %e, "cannot record a part sent");
                    }
                    // The next part, within the robot's minute.
                    let spends = self
                        .db()
                        .spends(&row.channel, &row.recipient, since(windows, now))
                        .unwrap_or_default();
                    let free = budget::next_free(windows, &spends, None, false, 0, now);
                    if free > now {
                        return Attempt::PartsWait(free);
                    }
                }
                Outcome::TooLarge(reason) => {
                    // Smaller parts, down to a size any robot takes.
                    if room <= 512 {
                        return Attempt::Done(Outcome::Failed(reason));
                    }
                    row.part_max = Some(max / 2);
                    tracing::warn!(channel = %row.channel, to = %row.recipient_name, part = max / 2, "the robot refused a part as too large: smaller parts");
                }
                other => return Attempt::Done(other),
            }
        }
    }

    /// Records how an attempt ended and acts on it.
    async fn settle(
        &self,
        ch: &Channels,
        row: &Row,
        delivery: i64,
        attempt: u32,
        windows: &[Window],
        outcome: Outcome,
    ) {
        let done = self.now();
        let label = outcome.label();
        let text = outcome.text().to_string();
        let sms_receipts = ch.section.sms.as_ref().is_some_and(|s| s.has_receipts());
        let mut f = Finish {
            state: "queued",
            next_attempt_at: done,
            outcome: label,
            response: &text,
            provider_id: None,
            check_at: None,
            held: None,
            sent_bytes: row.sent_bytes,
            part_max: row.part_max,
        };
        let mut spend = false;
        let mut reroute = None;
        let mut alarm = None;
        match &outcome {
            Outcome::Sent { id: provider_id, .. } => {
                f.state = "sent";
                f.provider_id = provider_id.as_deref();
                f.check_at = first_check(ch, &row.channel, done);
                spend = true;
                self.clear_alarm(&row.channel);
            }
            Outcome::Limited { hold, reason } => {
                let until = match hold {
                    Hold::For(d) => done + ns(*d),
                    Hold::Window(w) => {
                        let spends = self
                            .db()
                            .spends(&row.channel, &row.recipient, since(windows, done))
                            .unwrap_or_default();
                        budget::limit_until(windows, &spends, *w, done)
                    }
                };
                if let Err(e) = self.db().set_hold(&row.channel, &row.recipient, until, reason) {
                    tracing::error!(error = %e, "cannot record a provider's limit");
                }
                // An urgent SMS is looked at again now (and takes another
                // channel); the rest wait for the window's end.
                f.next_attempt_at = if row.urgent() && row.channel == "sms" { done } else { until };
                f.held = Some("limit");
            }
            Outcome::Retry { after, reason } => {
                let r = &ch.section.retry;
                let backoff = crate::backoff::delay(
                    r.min.get(),
                    r.max.get(),
                    attempt.saturating_sub(1),
                    rand::random::<f64>(),
                );
                let wait = after.map_or(backoff, |a| a.max(backoff));
                if done - row.created_at > ns(r.give_up_after.get()) {
                    f.state = "failed";
                    f.outcome = "gave_up";
                    tracing::error!(channel = %row.channel, to = %row.recipient_name, reason = %reason, "not delivered; given up");
                } else {
                    f.next_attempt_at = done + ns(wait);
                }
            }
            Outcome::Unknown(_) => match on_lost_answer(&row.channel, sms_receipts) {
                Lost::Ask => {
                    f.state = "unknown";
                    f.check_at = first_check(ch, &row.channel, done);
                    spend = true;
                }
                Lost::Keep => {
                    f.state = "unknown";
                    spend = true;
                }
                Lost::Resend => {
                    let r = &ch.section.retry;
                    f.next_attempt_at = done
                        + ns(crate::backoff::delay(
                            r.min.get(),
                            r.max.get(),
                            attempt.saturating_sub(1),
                            rand::random::<f64>(),
                        ));
                }
            },
            Outcome::Refused(reason) => {
                f.next_attempt_at = done + ns(ch.section.retry.max.get());
                f.held = Some("refused");
                alarm = Some(reason.clone());
            }
            Outcome::TooLarge(_) | Outcome::Failed(_) => {
                f.state = "failed";
                if row.urgent() && row.channel == "sms" {
                    reroute = Some(format!("the provider refused the SMS: {text}"));
                }
            }
        }
        self.count(&row.channel, f.outcome);
        match f.outcome {
            "sent" => {
                tracing::info!(channel = %row.channel, to = %row.recipient_name, attempt, "taken by the provider")
            }
            "failed" | "gave_up" => {
                tracing::error!(channel = %row.channel, to = %row.recipient_name, reason = %text, "not delivered")
            }
            _ => {
                tracing::warn!(channel = %row.channel, to = %row.recipient_name, attempt, outcome = f.outcome, reason = %text, "delivery delayed or uncertain")
            }
        }
        if let Err(e) = self.db().finish(row.id, delivery, &f, spend, done) {
            tracing::error!(error = %e, "cannot record a send's result");
        }
        if f.state == "unknown" && f.check_at.is_none() {
            let _ = self.db().set_receipt(row.id, Some("unknown"), &text, None, None, done);
        }
        if let Some(reason) = alarm {
            self.alarm(&row.channel, &reason, done);
        }
        if let Some(why) = reroute {
            self.reroute(row, &why, done);
        }
    }

    /// Whether an SMS of this provider can be asked about later.
    pub(super) fn sms_lists_waiting(ch: &Channels) -> bool {
        ch.section.sms.as_ref().is_some_and(|s| s.provider == SmsProvider::Aliyun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_lost_answer_becomes_per_channel() {
        for (channel, receipts, want) in [
            ("sms", true, Lost::Ask),
            ("sms", false, Lost::Resend),
            ("voice", true, Lost::Keep),
            ("voice", false, Lost::Keep),
            ("email", true, Lost::Resend),
            ("wecom", true, Lost::Resend),
            ("dingtalk", true, Lost::Resend),
            ("webhook", true, Lost::Resend),
        ] {
            assert_eq!(on_lost_answer(channel, receipts), want, "{channel}");
        }
    }
}

//! The trail of an alert's messages — who was told, on which channel,
//! whether it reached them, how long each step took — from its outbox
//! rows: what `/api/v1/alerts/{id}/deliveries`, the live page and the
//! report show. Pure.

use serde::Serialize;

use super::ledger::Delivery;
use crate::reading::TimestampNs;

/// One message of the trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: i64,
    /// sms, email, voice, wecom, dingtalk, webhook.
    pub channel: String,
    /// The member (or the team's group).
    pub to: String,
    /// How it ended, in one word: delivered, answered, sent (taken, no
    /// receipt), waiting (taken, receipt to come), queued, held (budget),
    /// unknown, failed, busy, no_answer, unreachable, merged, rerouted.
    pub result: String,
    /// The provider's receipt note or the last error.
    pub note: Option<String>,
    /// Seconds from the alert's start to the provider taking it.
    pub sent_after_s: Option<f64>,
    /// Seconds from the alert's start to the receipt saying it arrived.
    pub reached_after_s: Option<f64>,
    /// The row this one stands in for (a fallback), and the row that took
    /// this one on.
    pub fallback_of: Option<i64>,
    pub rerouted_to: Option<i64>,
    pub merged_into: Option<i64>,
}

fn secs(from: TimestampNs, to: Option<TimestampNs>) -> Option<f64> {
    to.map(|t| ((t - from).max(0) as f64 / 1e9 * 10.0).round() / 10.0)
}

/// The result word of a row.
pub fn result(d: &Delivery) -> String {
    let r = &d.row;
    match (r.state.as_str(), r.receipt.as_deref()) {
        ("merged", _) => "merged".into(),
        ("rerouted", _) => "rerouted".into(),
        (_, Some(receipt)) if receipt != "waiting" => receipt.into(),
        ("sent" | "unknown", Some("waiting")) => "waiting".into(),
        ("sent", _) if d.rerouted_to.is_some() => "rerouted".into(),
        ("queued", _) if r.held.as_deref() == Some("budget") || r.held.as_deref() == Some("limit") => {
            "held".into()
        }
        (s, _) => s.into(),
    }
}

/// The trail of one alert that started at `started_at`.
pub fn steps(started_at: TimestampNs, deliveries: &[Delivery]) -> Vec<Step> {
    deliveries
        .iter()
        .map(|d| {
            let r = &d.row;
            let result = result(d);
            let reached =
                matches!(result.as_str(), "delivered" | "answered").then_some(d.receipt_at).flatten();
            Step {
                id: r.id,
                channel: r.channel.clone(),
                to: r.recipient_name.clone(),
                note: d.receipt_note.clone().filter(|n| !n.is_empty()).or_else(|| d.last_error.clone()),
                result,
                sent_after_s: secs(started_at, r.sent_at),
                reached_after_s: secs(started_at, reached),
                fallback_of: r.fallback_of,
                rerouted_to: d.rerouted_to,
                merged_into: d.merged_into,
            }
        })
        .collect()
}

/// The result word in Chinese, for the page and the report.
pub fn result_zh(result: &str) -> &'static str {
    match result {
        "delivered" => "已送达",
        "answered" => "已接听",
        "sent" => "已发出",
        "waiting" => "待回执",
        "queued" | "sending" => "待发送",
        "held" => "限额等待",
        "unknown" => "未知",
        "failed" => "失败",
        "busy" => "占线",
        "no_answer" => "未接听",
        "unreachable" => "无法接通",
        "merged" => "已并入汇总",
        "rerouted" => "已转其他渠道",
        _ => "—",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::Rendered;
    use crate::notify::outbox::{Body, Row};

    const S: i64 = 1_000_000_000;

    fn d(
        channel: &str,
        state: &str,
        receipt: Option<&str>,
        sent: Option<i64>,
        receipt_at: Option<i64>,
    ) -> Delivery {
        Delivery {
            alert_id: 7,
            row: Row {
                id: 1,
                notification_id: 1,
                channel: channel.into(),
                recipient: "13800000101".into(),
                recipient_name: "张队长".into(),
                team: "team1".into(),
                body: Body {
                    rendered: Rendered::default(),
                    to: "13800000101".into(),
                    secret: None,
                    alert_ids: vec![7],
                    merged: 1,
                    labels: vec![],
                },
                key: "k".into(),
                state: state.into(),
                attempts: 1,
                next_attempt_at: 0,
                created_at: 0,
                priority: 4,
                provider_id: None,
                receipt: receipt.map(str::to_string),
                check_at: None,
                sent_bytes: 0,
                part_max: None,
                fallback_of: None,
                held: None,
                sent_at: sent.map(|s| s * S),
            },
            last_error: None,
            receipt_at: receipt_at.map(|s| s * S),
            receipt_note: Some("DELIVRD".into()),
            rerouted_to: None,
            merged_into: None,
        }
    }

    #[test]
    fn each_step_with_its_times() {
        let t = steps(
            100 * S,
            &[
                d("sms", "sent", Some("delivered"), Some(112), Some(130)),
                d("sms", "sent", Some("failed"), Some(112), Some(140)),
                d("voice", "sent", Some("no_answer"), Some(400), Some(460)),
                d("email", "sent", None, Some(105), None),
                d("sms", "unknown", Some("waiting"), Some(112), None),
                d("sms", "rerouted", None, None, None),
            ],
        );
        let r: Vec<&str> = t.iter().map(|s| s.result.as_str()).collect();
        assert_eq!(r, ["delivered", "failed", "no_answer", "sent", "waiting", "rerouted"]);
        assert_eq!((t[0].sent_after_s, t[0].reached_after_s), (Some(12.0), Some(30.0)));
        assert_eq!(t[1].reached_after_s, None, "a failure is no arrival");
        assert_eq!(t[3].sent_after_s, Some(5.0));
        assert_eq!(result_zh("no_answer"), "未接听");
    }
}

//! Credentials a provider refuses (401/403, a bad access key or signature,
//! SMTP 535) are the operator's alarm, not a failed message: the channel is
//! marked in `state.db` (so a restart remembers), the metric
//! `floodguard_notify_credentials_refused{channel}` is 1, `/readyz` carries
//! a warning, the IT contact of `[channels.it_contact]` is told once — by
//! another channel — and the messages wait (retried every `retry.max`, at
//! once after a reload) instead of being dropped. The first message the
//! provider takes again clears it all.

use super::outbox::{Body, NewRow};
use super::{message::Rendered, Outbox};
use crate::config::Language;
use crate::reading::TimestampNs;

fn warning(channel: &str, reason: &str) -> String {
    format!("notifications: the {channel} provider refuses floodguard's credentials ({reason}); messages wait for the fix")
}

impl Outbox {
    fn show_alarm(&self, channel: &str, reason: Option<&str>) {
        if let Some(m) = &self.metrics {
            m.notify_refused.with_label_values(&[channel]).set(i64::from(reason.is_some()));
        }
        if let Some(h) = self.health.lock().expect("health lock").as_ref() {
            h.set_warning(&format!("notify.{channel}"), reason.map(|r| warning(channel, r)));
        }
    }

    /// The alarms on record, shown again after a restart.
    pub(super) fn restore_alarms(&self) {
        for (channel, _, reason) in self.db().alarms().unwrap_or_default() {
            self.show_alarm(&channel, Some(&reason));
        }
    }

    /// `channel`'s credentials are refused.
    pub(super) fn alarm(&self, channel: &str, reason: &str, now: TimestampNs) {
        match self.db().set_alarm(channel, reason, now) {
            Ok(true) => {
                tracing::error!(
                    channel,
                    reason,
                    "the provider refuses floodguard's credentials: messages wait; fix the keys and reload"
                );
                self.show_alarm(channel, Some(reason));
                self.tell_it(channel, reason, now);
            }
            Ok(false) => self.show_alarm(channel, Some(reason)),
            Err(e) => tracing::error!(error = %e, "cannot record a refused channel"),
        }
    }

    /// `channel` works again.
    pub(super) fn clear_alarm(&self, channel: &str) {
        if let Ok(true) = self.db().clear_alarm(channel) {
            tracing::info!(channel, "the provider takes floodguard's credentials again");
            self.show_alarm(channel, None);
        }
    }

    /// Tells the IT contact, by a channel other than the refused one.
    fn tell_it(&self, channel: &str, reason: &str, now: TimestampNs) {
        let ch = self.ch();
        let Some(it) = ch.section.it_contact.clone() else {
            tracing::warn!("no [channels.it_contact] to tell of refused credentials");
            return;
        };
        let by_email = channel != "email" && ch.senders.has("email");
        let by_sms = channel != "sms" && ch.senders.has("sms");
        let (to_channel, to) = match (&it.email, &it.phone) {
            (Some(e), _) if by_email => ("email", e.clone()),
            (_, Some(p)) if by_sms => ("sms", p.clone()),
            _ => {
                tracing::error!(channel, "no other channel reaches the IT contact");
                return;
            }
        };
        let zh = self.language == Language::ZhCn;
        let subject = if zh {
            format!("【floodguard】{channel} 通道凭据被拒，消息暂停发送")
        } else {
            format!("[floodguard] {channel} credentials refused; messages are waiting")
        };
        let text = if zh {
            format!("{subject}：{reason}。请核对密钥（AccessKey、签名、口令）后重新加载配置（SIGHUP 或 POST /api/v1/reload），等待中的消息随即发出。")
        } else {
            format!("{subject}: {reason}. Check the keys (access key, signature, password), then reload (SIGHUP or POST /api/v1/reload): the waiting messages go out then.")
        };
        let body = Body {
            rendered: Rendered {
                subject: subject.clone(),
                text: text.clone(),
                html: format!("<p>{}</p>", super::message::esc(&text)),
                sms: text.chars().take(super::message::SMS_MAX_CHARS).collect(),
                markdown: text.clone(),
                params: Default::default(),
                voice: text.clone(),
            },
            to: to.clone(),
            secret: None,
            alert_ids: Vec::new(),
            merged: 1,
            labels: Vec::new(),
        };
        let key = format!("alarm:{channel}:{now}");
        let row = NewRow {
            notification_id: 0,
            channel: to_channel,
            recipient: &to,
            recipient_name: &it.name,
            team: "it",
            body: &body,
            key: &key,
            priority: 4,
            fallback_of: None,
        };
        match self.db().add_rows(&[row], now) {
            Ok(_) => self.wake_channel(to_channel),
            Err(e) => tracing::error!(error = %e, "cannot queue the IT contact's notice"),
        }
    }

    /// Refused channels now: (channel, reason), for tests and the API.
    pub fn alarms(&self) -> Vec<(String, String)> {
        self.db().alarms().unwrap_or_default().into_iter().map(|(c, _, r)| (c, r)).collect()
    }
}

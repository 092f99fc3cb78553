//! Operator alerts: a problem of floodguard itself — a full disk — told to
//! the people on duty: every member with role `duty_officer` (区值班员; the
//! `district_hq` members when no team has one) on their channels, and the
//! robots of their teams.
//!
//! They go out directly through the senders, not through the outbox: the
//! outbox lives in `state.db`, which may sit on the full disk. Kept in
//! memory, they are tried again each minute until one recipient took
//! them, and a second message says when the disk has room again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::message::Rendered;
use super::outbox::Body;
use super::send::Outcome;
use super::Outbox;
use crate::config::{Language, Role};
use crate::disk::Disk;

/// How often an operator alert nobody took is tried again.
const RETRY: Duration = Duration::from_secs(60);

fn rendered(subject: &str, text: &str) -> Rendered {
    let mut params = std::collections::BTreeMap::new();
    for (k, v) in
        [("street", "floodguard"), ("site", subject), ("level", ""), ("value", ""), ("action", text)]
    {
        params.insert(k.to_string(), v.to_string());
    }
    Rendered {
        subject: subject.to_string(),
        text: text.to_string(),
        html: format!("<p><b>{}</b></p><p>{}</p>", super::message::esc(subject), super::message::esc(text)),
        sms: format!("{subject}：{text}"),
        markdown: format!("### {subject}\n\n{text}"),
        params,
        voice: format!("{subject}。{text}"),
    }
}

impl Outbox {
    /// Sends `subject` and `text` now to the duty officers and their teams'
    /// robots; (accepted, tried).
    pub async fn tell_operators(&self, subject: &str, text: &str) -> (usize, usize) {
        let teams = self.teams.read().expect("teams lock").clone();
        let role = if teams.teams.iter().flat_map(|t| &t.members).any(|m| m.role == Role::DutyOfficer) {
            Role::DutyOfficer
        } else {
            Role::DistrictHq
        };
        let ch = self.ch();
        let message = rendered(subject, text);
        let stamp = super::now();
        let mut sends: Vec<(&'static str, String, Body)> = Vec::new();
        let body = |to: String| Body {
            rendered: message.clone(),
            to,
            secret: None,
            alert_ids: vec![],
            merged: 1,
            labels: vec![],
        };
        for t in &teams.teams {
            let on_duty: Vec<_> = t.members.iter().filter(|m| m.role == role).collect();
            for m in &on_duty {
                let wants = |c: &str| m.channels.as_ref().is_none_or(|cs| cs.iter().any(|x| x == c));
                if let (Some(p), true, true) = (&m.phone, wants("sms"), ch.senders.has("sms")) {
                    sends.push(("sms", m.name.clone(), body(p.clone())));
                }
                if let (Some(e), true, true) = (&m.email, wants("email"), ch.senders.has("email")) {
                    sends.push(("email", m.name.clone(), body(e.clone())));
                }
            }
            if !on_duty.is_empty() {
                for (k, r) in t.robots.iter().enumerate() {
                    let channel = match r.kind {
                        crate::config::RobotKind::Wecom => "wecom",
                        crate::config::RobotKind::Dingtalk => "dingtalk",
                        crate::config::RobotKind::Webhook => "webhook",
                    };
                    sends.push((
                        channel,
                        format!("{}（群）", t.name),
                        body(super::robots::reference(&t.id, k)),
                    ));
                }
            }
        }
        let mut accepted = 0;
        for (channel, name, b) in &sends {
            let key = format!("operator-{stamp}-{channel}-{name}");
            let outcome = match super::robots::resolve(&teams, b) {
                Ok(b) => ch.senders.send(channel, &b, name, &key).await,
                Err(reason) => Outcome::Failed(reason),
            };
            match outcome {
                Outcome::Sent { .. } => accepted += 1,
                other => {
                    tracing::warn!(channel, to = %name, reason = %other.text(), "operator alert not accepted")
                }
            }
        }
        (accepted, sends.len())
    }
}

/// The texts of a full disk, and of room again.
fn texts(language: Language, full: &[String]) -> (String, String) {
    match language {
        Language::ZhCn => (
            "防汛系统磁盘已满".into(),
            format!(
                "{}。新数据暂停确认（已确认的数据不会丢失，设备和网关会保留未确认的数据），请立即清理磁盘或扩容。",
                full.join("；")
            ),
        ),
        Language::En => (
            "floodguard: disk full".into(),
            format!(
                "{}. New data is not acknowledged meanwhile (nothing acknowledged is lost; senders keep the rest). Free space now.",
                full.join("; ")
            ),
        ),
    }
}

/// Tells the operators when `disk` fills and when it has room again, until `stop`.
pub async fn watch_disk(disk: Arc<Disk>, outbox: Arc<Outbox>, stop: CancellationToken) {
    let language = outbox.language();
    // Told of the current episode; when last tried.
    let mut told = false;
    let mut tried: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
        let full = disk.problems();
        if !full.is_empty() && !told && tried.is_none_or(|t| t.elapsed() >= RETRY) {
            let (subject, text) = texts(language, &full);
            tried = Some(Instant::now());
            let (accepted, all) = outbox.tell_operators(&subject, &text).await;
            told = accepted > 0;
            if told {
                tracing::info!(accepted, of = all, "operators told of the full disk");
            } else {
                tracing::error!(of = all, "no operator took the full-disk alert; trying again in a minute");
            }
        } else if full.is_empty() && (told || tried.is_some()) {
            if told {
                let subject = match language {
                    Language::ZhCn => "防汛系统磁盘空间已恢复",
                    Language::En => "floodguard: disk has room again",
                };
                let text = match language {
                    Language::ZhCn => "数据已恢复正常写入和确认。",
                    Language::En => "Data is written and acknowledged again.",
                };
                outbox.tell_operators(subject, text).await;
            }
            told = false;
            tried = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_what_is_full_and_that_nothing_is_lost() {
        let (s, t) =
            texts(Language::ZhCn, &["disk full: spool in /var/lib/floodguard/spool: 1.0 MiB free".into()]);
        assert_eq!(s, "防汛系统磁盘已满");
        assert!(t.contains("/var/lib/floodguard/spool") && t.contains("不会丢失"), "{t}");
        let r = rendered(&s, &t);
        assert!(r.sms.starts_with("防汛系统磁盘已满：disk full"), "{}", r.sms);
        assert!(r.markdown.starts_with("### 防汛系统磁盘已满"));
    }
}

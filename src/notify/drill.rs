//! `floodguard notify-test --team ID`: a drill (演练) — one message to
//! every member of a team on each of their channels and to its robots,
//! sent at once (not through the queue), with a per-recipient result table.

use super::send::Outcome;
use super::Outbox;
use crate::alerts::model::{AlertSnapshot, Intent, IntentKind, Notification, Recipient};
use crate::config::Language;
use crate::level::Level;

fn now() -> crate::reading::TimestampNs {
    super::now()
}

/// One line of the drill's result.
#[derive(Debug, Clone)]
pub struct DrillResult {
    pub name: String,
    pub channel: String,
    pub address: String,
    pub outcome: Outcome,
}

impl Outbox {
    /// A drill (演练): one message to every member on every channel of a
    /// team and to its robots, sent now, not through the queue.
    pub async fn drill(&self, team_id: &str) -> Result<Vec<DrillResult>, String> {
        let teams = self.teams.read().expect("teams lock").clone();
        let team = teams.team(team_id).ok_or_else(|| format!("no team {team_id:?}"))?;
        let street = team.streets.first().cloned().unwrap_or_default();
        let recipients: Vec<Recipient> = team
            .members
            .iter()
            .map(|m| Recipient {
                team: team.id.clone(),
                name: m.name.clone(),
                role: m.role.as_str().into(),
                phone: m.phone.clone(),
                email: m.email.clone(),
            })
            .collect();
        let snapshot = AlertSnapshot {
            site_name: if self.language == Language::ZhCn {
                "通知演练".into()
            } else {
                "notification drill".into()
            },
            street,
            rule_name: if self.language == Language::ZhCn { "演练".into() } else { "drill".into() },
            started_at: now(),
            ..AlertSnapshot::reference(0, "drill".into(), "drill".into(), "drill".into(), Some(Level::IV))
        };
        let n = Notification {
            id: 0,
            team: team.id.clone(),
            intents: vec![Intent {
                kind: IntentKind::Firing,
                team: team.id.clone(),
                recipients,
                alert: snapshot,
                escalation_role: None,
                created_at: now(),
                partial: false,
            }],
            created_at: now(),
        };
        let mut out = Vec::new();
        let ch = self.ch();
        for p in self.plan(&n, true, now()) {
            let key = format!("drill-{}-{}-{}", now(), p.channel, p.recipient);
            let outcome = match super::robots::resolve(&teams, &p.body) {
                Ok(body) => ch.senders.send(p.channel, &body, &p.name, &key).await,
                Err(reason) => Outcome::Failed(reason),
            };
            out.push(DrillResult {
                name: p.name,
                channel: p.channel.to_string(),
                address: address(p.channel, &p.body.to),
                outcome,
            });
        }
        Ok(out)
    }
}

/// The address as shown: robots by their name in teams.toml (their URLs
/// carry their key), phone numbers in full (the drill's table is for the
/// operator who runs it, not for a log).
fn address(channel: &str, to: &str) -> String {
    match channel {
        "sms" | "email" => to.to_string(),
        _ => crate::redact::url(to),
    }
}

/// The result table, and whether every message was accepted.
pub fn table(results: &[DrillResult], language: Language) -> (String, bool) {
    let zh = language == Language::ZhCn;
    let head = if zh {
        ["成员", "渠道", "地址", "结果"]
    } else {
        ["recipient", "channel", "address", "result"]
    };
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|r| {
            let reason = r.outcome.text();
            let result = match (&r.outcome, zh) {
                (Outcome::Sent { .. }, true) => "✔ 已送达".to_string(),
                (Outcome::Sent { .. }, false) => "✔ accepted".to_string(),
                (Outcome::Retry { .. }, true) => format!("✘ 暂时失败：{reason}"),
                (Outcome::Retry { .. }, false) => format!("✘ failed for now: {reason}"),
                (Outcome::Limited { .. }, true) => format!("✘ 被限流：{reason}"),
                (Outcome::Limited { .. }, false) => format!("✘ throttled: {reason}"),
                (Outcome::Unknown(_), true) => format!("？ 未知（已发出，未收到应答）：{reason}"),
                (Outcome::Unknown(_), false) => format!("? unknown (sent, no answer): {reason}"),
                (Outcome::Refused(_), true) => format!("✘ 凭据被拒：{reason}"),
                (Outcome::Refused(_), false) => format!("✘ credentials refused: {reason}"),
                (Outcome::TooLarge(_) | Outcome::Failed(_), true) => format!("✘ 失败：{reason}"),
                (Outcome::TooLarge(_) | Outcome::Failed(_), false) => format!("✘ failed: {reason}"),
            };
            [r.name.clone(), r.channel.clone(), r.address.clone(), result]
        })
        .collect();
    let width = |i: usize| {
        rows.iter().map(|r| display_width(&r[i])).chain([display_width(head[i])]).max().unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < 3 {
                s.push_str(&" ".repeat(widths[i] - display_width(c) + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    let ok = results.iter().filter(|r| matches!(r.outcome, Outcome::Sent { .. })).count();
    out.push_str(&if zh {
        format!("共 {} 条，送达 {ok} 条，失败 {} 条\n", results.len(), results.len() - ok)
    } else {
        format!("{} messages, {ok} accepted, {} failed\n", results.len(), results.len() - ok)
    });
    (out, !results.is_empty() && ok == results.len())
}

/// Columns a string takes in a terminal: CJK characters take two.
fn display_width(s: &str) -> usize {
    s.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_chinese_and_says_what_failed() {
        let r = |name: &str, channel: &str, address: &str, outcome| DrillResult {
            name: name.into(),
            channel: channel.into(),
            address: address.into(),
            outcome,
        };
        let results = [
            r("张队长", "sms", "13800000101", Outcome::sent("OK")),
            r("李队员", "email", "li@example.gov.cn", Outcome::Failed("550 no such user".into())),
        ];
        let (text, all) = table(&results, Language::ZhCn);
        assert!(!all);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "成员    渠道   地址               结果");
        assert_eq!(lines[1], "张队长  sms    13800000101        ✔ 已送达");
        assert_eq!(lines[2], "李队员  email  li@example.gov.cn  ✘ 失败：550 no such user");
        assert_eq!(lines[3], "共 2 条，送达 1 条，失败 1 条");
        let (_, all) = table(&results[..1], Language::En);
        assert!(all);
        assert!(!table(&[], Language::En).1, "a team with nobody to send to is not a success");
    }
}

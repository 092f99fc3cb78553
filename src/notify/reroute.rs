//! An urgent (Ⅱ/Ⅰ) notice its SMS could not carry — the budget is spent,
//! the provider refused it, the handset reported a failure, no receipt
//! came in time — goes on: by the next channel the member has
//! (`fallback::next_channel` over `[alerting] fallback`), unless a message
//! of the same notification already reaches them there; with none left, to
//! the next person in the escalation chain. The row is marked `rerouted` to
//! the row that carries it instead, so the page and the report show the
//! path. Nobody is chased about alerts already acknowledged.

use super::fallback::{self, Reach};
use super::outbox::{Body, NewRow, Row};
use super::Outbox;
use crate::alerts::model::{Notification, Recipient};
use crate::alerts::route;
use crate::config::{FallbackChannel, Member, RobotKind, Team};
use crate::reading::TimestampNs;

/// The fallback group an outbox channel belongs to.
fn group(channel: &str) -> &'static str {
    match channel {
        "sms" => "sms",
        "email" => "email",
        "voice" => "voice",
        _ => "robot",
    }
}

/// Whether a row still reaches (or will reach) its person.
fn alive(r: &Row) -> bool {
    matches!(r.state.as_str(), "queued" | "sending" | "sent" | "unknown" | "merged")
        && !matches!(r.receipt.as_deref(), Some("failed" | "unknown" | "busy" | "no_answer" | "unreachable"))
}

/// A row to add, owned.
struct Fallback {
    channel: &'static str,
    recipient: String,
    name: String,
    body: Body,
    key: String,
}

impl Outbox {
    /// Hands `row`'s urgent notice to another channel or person; true when
    /// something carries it now.
    pub(super) fn reroute(&self, row: &Row, why: &str, now: TimestampNs) -> bool {
        let answered = self.db().all_answered(&row.body.alert_ids).unwrap_or(false);
        if answered {
            tracing::info!(to = %row.recipient_name, "acknowledged meanwhile: no other channel needed");
            return false;
        }
        let n = match self.db().notification(row.notification_id) {
            Ok(Some(n)) => n,
            Ok(None) => {
                tracing::warn!(
                    notification = row.notification_id,
                    "cannot reroute: the notification is not on record"
                );
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reroute: cannot read the notification");
                return false;
            }
        };
        let teams = self.teams.read().expect("teams lock").clone();
        let Some(team) = teams.team(&row.team) else {
            tracing::warn!(team = %row.team, "cannot reroute: no such team now");
            return false;
        };
        let member = team.members.iter().find(|m| m.name == row.recipient_name);
        let senders = &self.ch().senders;
        // A member's `channels` name their everyday channels; an urgent
        // notice those cannot carry takes any other they have an address for.
        let phone = member.and_then(|m| m.phone.as_ref()).is_some();
        let reach = Reach {
            sms: phone && senders.has("sms"),
            email: member.and_then(|m| m.email.as_ref()).is_some() && senders.has("email"),
            voice: phone && senders.has("voice"),
            robot: !team.robots.is_empty(),
        };
        let siblings = self.db().siblings(n.id, &row.recipient_name, row.id).unwrap_or_default();
        let mut tried: Vec<&str> = vec![group(&row.channel)];
        tried.extend(siblings.iter().filter(|s| !alive(s)).map(|s| group(&s.channel)));
        let level = n.intents.iter().filter_map(|i| i.alert.level).max();
        let policy = &teams.alerting;
        while let Some(c) =
            fallback::next_channel(&policy.fallback, level, &policy.voice_levels, reach, &tried)
        {
            let name = fallback::channel_name(c);
            if let Some(s) = siblings.iter().find(|s| group(&s.channel) == name && alive(s)) {
                return self.rerouted(row, s.id, why, &format!("already told by {name}"), now);
            }
            let rows = match member {
                Some(m) => self.fallback_rows(&n, row, c, m, team, now),
                None => Vec::new(),
            };
            if let Some(id) = self.add(&n, row, &rows, now) {
                return self.rerouted(row, id, why, name, now);
            }
            tried.push(name);
        }
        // No channel left: the next person in the chain.
        let street = n.intents.first().map(|i| i.alert.street.clone()).unwrap_or_default();
        let local = chrono::DateTime::from_timestamp_nanos(now)
            .with_timezone(&self.places.read().expect("places lock").tz);
        let chain = route::chain(&teams, team);
        let from = member.and_then(|m| chain.iter().position(|r| *r == m.role)).map_or(0, |p| p + 1);
        for role in chain.iter().skip(from) {
            let people: Vec<Recipient> = route::tier(&teams, team, *role, &street, &local)
                .into_iter()
                .filter(|r| r.name != row.recipient_name)
                .collect();
            let rows: Vec<Fallback> = people.iter().flat_map(|p| self.person_rows(&n, row, p, now)).collect();
            if let Some(id) = self.add(&n, row, &rows, now) {
                let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
                return self.rerouted(
                    row,
                    id,
                    why,
                    &format!("the next in the chain: {}", names.join("、")),
                    now,
                );
            }
        }
        tracing::error!(to = %row.recipient_name, reason = why, ?reach, ?tried, ?level, "an urgent notice found no other channel nor person");
        false
    }

    fn rerouted(&self, row: &Row, to: i64, why: &str, how: &str, now: TimestampNs) -> bool {
        let note = format!("{why} → {how}");
        match self.db().reroute(row.id, to, &note, now) {
            Ok(_) => {
                self.count(&row.channel, "rerouted");
                tracing::warn!(channel = %row.channel, to = %row.recipient_name, via = how, reason = why, "urgent notice taken on by another channel or person");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record a reroute");
                false
            }
        }
    }

    /// Adds the fallback rows; the id of the first, if any.
    fn add(&self, n: &Notification, row: &Row, rows: &[Fallback], now: TimestampNs) -> Option<i64> {
        if rows.is_empty() {
            return None;
        }
        let new: Vec<NewRow<'_>> = rows
            .iter()
            .map(|f| NewRow {
                notification_id: n.id,
                channel: f.channel,
                recipient: &f.recipient,
                recipient_name: &f.name,
                team: &n.team,
                body: &f.body,
                key: &f.key,
                priority: row.priority,
                fallback_of: Some(row.id),
            })
            .collect();
        let nonces = std::mem::take(&mut *self.nonces.lock().expect("nonces lock"));
        for (nonce, alert, member) in &nonces {
            let _ = self.db().add_nonce(nonce, *alert, member, now);
        }
        match self.db().add_rows(&new, now) {
            Ok(ids) => {
                for f in rows {
                    self.wake_channel(f.channel);
                }
                ids.first().copied()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue a fallback");
                None
            }
        }
    }

    fn body(&self, n: &Notification, name: &str, to: &str, secret: Option<String>, now: TimestampNs) -> Body {
        Body {
            rendered: self.render(n, name, false, now),
            to: to.to_string(),
            secret,
            alert_ids: n.intents.iter().map(|i| i.alert.id).collect(),
            merged: 1,
            labels: self.labels(n),
        }
    }

    /// The member's rows on fallback channel `c`.
    fn fallback_rows(
        &self,
        n: &Notification,
        row: &Row,
        c: FallbackChannel,
        m: &Member,
        team: &Team,
        now: TimestampNs,
    ) -> Vec<Fallback> {
        let one = |channel: &'static str, to: &str, key: String| Fallback {
            channel,
            recipient: to.to_string(),
            name: m.name.clone(),
            body: self.body(n, &m.name, to, None, now),
            key,
        };
        match c {
            FallbackChannel::Voice => {
                let top = n.intents.iter().max_by_key(|i| i.alert.level).map(|i| &i.alert);
                match (m.phone.as_deref(), top) {
                    (Some(p), Some(a)) => {
                        let level = a.level.map_or("none", |l| l.as_str());
                        vec![one("voice", p, format!("v{}:{level}:{p}", a.id))]
                    }
                    _ => Vec::new(),
                }
            }
            FallbackChannel::Email => m
                .email
                .as_deref()
                .map(|e| one("email", e, format!("f{}:email:{e}", row.id)))
                .into_iter()
                .collect(),
            FallbackChannel::Sms => m
                .phone
                .as_deref()
                .map(|p| one("sms", p, format!("f{}:sms:{p}", row.id)))
                .into_iter()
                .collect(),
            FallbackChannel::Robot => team
                .robots
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    let channel = match r.kind {
                        RobotKind::Wecom => "wecom",
                        RobotKind::Dingtalk => "dingtalk",
                        RobotKind::Webhook => "webhook",
                    };
                    let name = format!("{}（群）", team.name);
                    let recipient = format!("{}#{k}", team.id);
                    Fallback {
                        channel,
                        key: format!("f{}:{channel}:{recipient}", row.id),
                        // The row names the robot; its URL and key stay in teams.toml.
                        body: self.body(n, &name, &super::robots::reference(&team.id, k), None, now),
                        recipient,
                        name,
                    }
                })
                .collect(),
        }
    }

    /// Rows telling another person (the next tier of the chain) on each
    /// channel they have.
    fn person_rows(&self, n: &Notification, row: &Row, p: &Recipient, now: TimestampNs) -> Vec<Fallback> {
        let senders = &self.ch().senders;
        let mut out = Vec::new();
        for (channel, to) in [("sms", &p.phone), ("email", &p.email)] {
            if let (Some(to), true) = (to, senders.has(channel)) {
                out.push(Fallback {
                    channel,
                    recipient: to.clone(),
                    name: p.name.clone(),
                    body: self.body(n, &p.name, to, None, now),
                    key: format!("f{}:{channel}:{to}", row.id),
                });
            }
        }
        out
    }
}

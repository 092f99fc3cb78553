//! The alert manager's decisions, as pure functions of the stored state and
//! `now` — table-tested like Alertmanager's dedup decision.
//!
//! - [`on_change`]: what an engine transition does to an alert;
//! - [`notify_on_change`]: whether a level change is told (once per level);
//! - [`repeat_due`], [`escalation_due`]: follow-ups of unacked alerts;
//! - [`arm_calls`], [`call_due`]: phone calls for unacked alerts at voice levels;
//! - [`mute`]: silences and inhibition;
//! - [`flush_at`]: when a team's grouped intents go out.

use super::model::{Alert, AlertKind, IntentKind, Matchers, Silence};
use crate::config::Alerting;
use crate::level::Level;
use crate::reading::TimestampNs;

/// What an engine transition does to the (site, rule) alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No active alert: raise one at this level.
    Raise(Level),
    Escalate(Level),
    Deescalate(Level),
    Resolve,
    /// Nothing changes (e.g. a level replayed after a restart).
    Nothing,
}

pub fn on_change(active: Option<&Alert>, to: Option<Level>) -> Action {
    match (active.and_then(|a| a.level), to) {
        (None, Some(l)) => Action::Raise(l),
        (Some(cur), Some(l)) if l > cur => Action::Escalate(l),
        (Some(cur), Some(l)) if l < cur => Action::Deescalate(l),
        (Some(_), None) => Action::Resolve,
        _ => Action::Nothing,
    }
}

/// The intent a level change calls for, if any: a rise to a level the teams
/// have not been told of in this episode; a fall below what they were told;
/// the end of an episode they were told of.
pub fn notify_on_change(alert: &Alert, action: Action) -> Option<IntentKind> {
    match action {
        Action::Raise(l) if alert.notified_level.is_none_or(|n| l > n) => Some(IntentKind::Firing),
        Action::Escalate(l) if alert.notified_level.is_none_or(|n| l > n) => Some(IntentKind::Escalated),
        Action::Deescalate(l) if alert.notified_level.is_some_and(|n| l < n) => Some(IntentKind::Deescalated),
        Action::Resolve if alert.notified_level.is_some() => Some(IntentKind::Resolved),
        _ => None,
    }
}

fn ns(d: std::time::Duration) -> i64 {
    crate::plan::ns(d)
}

/// Is a repeat of an unacked alert due?
pub fn repeat_due(alert: &Alert, now: TimestampNs) -> bool {
    alert.unacked() && alert.level.is_some() && alert.next_repeat_at.is_some_and(|t| t <= now)
}

/// The next chain step to tell, if an unacked alert's escalation is due.
pub fn escalation_due(alert: &Alert, chain_len: usize, now: TimestampNs) -> Option<u32> {
    let next = alert.escalation_step + 1;
    (alert.unacked()
        && alert.level.is_some()
        && (next as usize) < chain_len
        && alert.next_escalation_at.is_some_and(|t| t <= now))
    .then_some(next)
}

/// After a notice at `level` at `now`: when the first phone call is due,
/// if this notice starts (or restarts) the calls — `level` is one that
/// calls and above any level called about before in this episode (a call
/// is placed at most once per person per alert and level, unless the
/// alert escalates).
pub fn arm_calls(policy: &Alerting, alert: &Alert, level: Level, now: TimestampNs) -> Option<TimestampNs> {
    (policy.voice_levels.contains(&level) && alert.voice_level.is_none_or(|v| level > v))
        .then(|| now + ns(policy.voice_after.get()))
}

/// The tier of the chain to call now, if a call is due: the alert is
/// unacked, at a level that calls, its call time has come, and the chain
/// has a tier not yet called.
pub fn call_due(alert: &Alert, voice_levels: &[Level], chain_len: usize, now: TimestampNs) -> Option<u32> {
    (alert.unacked()
        && alert.level.is_some_and(|l| voice_levels.contains(&l))
        && (alert.voice_step as usize) < chain_len
        && alert.next_voice_at.is_some_and(|t| t <= now))
    .then_some(alert.voice_step)
}

/// Deadlines after a notice at `level` at `now`.
pub fn next_repeat(policy: &Alerting, level: Level, now: TimestampNs) -> TimestampNs {
    now + ns(policy.repeat(level))
}

pub fn next_escalation(policy: &Alerting, level: Level, now: TimestampNs) -> TimestampNs {
    now + ns(policy.escalate_after(level))
}

/// Why an alert tells nobody right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mute {
    /// A silence (maintenance window) covers it.
    Silenced(i64),
    /// Its site is offline: its readings are not to be trusted.
    Inhibited,
    /// Its street is alerted at this level or above: it goes out with the street.
    Folded(i64),
    /// A street or district alert no worse than its members' alerts: it
    /// would tell the teams nothing they are not told already.
    AsMembers,
}

/// Does a silence's matchers cover the alert? `kind` is the site's kind
/// (`pump_station`); an absent matcher matches anything.
pub fn matches(m: &Matchers, alert: &Alert) -> bool {
    !m.unreadable
        && m.site.as_ref().is_none_or(|s| *s == alert.site)
        && m.rule.as_ref().is_none_or(|r| *r == alert.rule)
        && m.street.as_ref().is_none_or(|s| *s == alert.street)
        && m.kind.as_ref().is_none_or(|k| *k == alert.site_kind)
}

/// Is the alert muted at `now`? `site_offline`: its site is offline;
/// `street_alert`: the street's active alert (id, level), if folding is on;
/// `members`: for an area alert, the highest level of its members' alerts.
pub fn mute(
    alert: &Alert,
    silences: &[Silence],
    site_offline: bool,
    street_alert: Option<(i64, Level)>,
    members: Option<Level>,
    now: TimestampNs,
) -> Option<Mute> {
    if let Some(s) =
        silences.iter().find(|s| s.starts_at <= now && now < s.ends_at && matches(&s.matchers, alert))
    {
        return Some(Mute::Silenced(s.id));
    }
    let area = matches!(alert.kind, Some(AlertKind::Street | AlertKind::District));
    if area && alert.level <= members && street_alert.is_none() {
        return Some(Mute::AsMembers);
    }
    if alert.kind == Some(AlertKind::Site) {
        if site_offline {
            return Some(Mute::Inhibited);
        }
        if let (Some((id, street_level)), Some(level)) = (street_alert, alert.level) {
            if level <= street_level {
                return Some(Mute::Folded(id));
            }
        }
    }
    None
}

/// How long an intent may wait for others to join it: a rise to a level at
/// most `group_wait` of that level; everything else the group window.
pub fn wait(policy: &Alerting, kind: IntentKind, level: Option<Level>) -> i64 {
    match (kind, level) {
        (IntentKind::Firing | IntentKind::Escalated, Some(l)) => ns(policy.group_wait(l)),
        _ => ns(policy.group_window.get()),
    }
}

/// When a team's pending intents go out: when the first of them has waited
/// as long as it may — but in a storm not sooner than `gap` after the team's
/// last message (`last`), so a storm of rises is a message every `gap`, not
/// one per batch of readings.
pub fn flush_at(pending: &[(TimestampNs, i64)], last: Option<TimestampNs>, gap: i64) -> Option<TimestampNs> {
    let due = pending.iter().map(|(created, wait)| created + wait).min()?;
    Some(match last {
        Some(l) => due.max(l + gap),
        None => due,
    })
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

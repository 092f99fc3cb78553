//! What the alert manager keeps and hands on: alerts with their timeline,
//! silences, notification intents.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::level::Level;
use crate::plan::Card;
use crate::reading::TimestampNs;

string_enum! {
    /// Where an alert is in its life (DESIGN.md).
    #[derive(Default)]
    pub enum AlertState ("alert state") {
        /// Raised; its first notification is still held by grouping.
        #[default]
        Pending = "pending",
        Firing = "firing",
        Acked = "acked",
        /// 处置完成: the team reported the disposal.
        Disposed = "disposed",
        Resolved = "resolved",
    }
}

impl AlertState {
    pub fn active(self) -> bool {
        self != AlertState::Resolved
    }
}

string_enum! {
    /// What an alert is about.
    pub enum AlertKind ("alert kind") {
        /// A rule at a site.
        Site = "site",
        /// A device that went silent or said it is offline.
        Offline = "offline",
        /// A street's level.
        Street = "street",
        /// The district's level.
        District = "district",
        /// 疑似传感器故障: a sensor failing quality control persistently
        /// (told to the maintenance contacts, not the rescue teams).
        Maintenance = "maintenance",
        /// 采集链路中断: a gateway (DTU, RTU, PLC) or floodguard's own intake
        /// went silent with most of its sites.
        Gateway = "gateway",
    }
}

/// The rule id of device-offline alerts.
pub const OFFLINE_RULE: &str = "offline";
/// The rule id of street and district alerts.
pub const AREA_RULE: &str = "area";
/// Maintenance alerts (疑似传感器故障) are per metric: rule `qc.<metric>`.
pub const QC_RULE_PREFIX: &str = "qc.";

/// One entry of an alert's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// ns since the epoch (the API shows RFC 3339).
    #[serde(skip)]
    pub ts: TimestampNs,
    /// firing, escalated, deescalated, notified, repeated, escalation,
    /// silenced, inhibited, acked, disposed, resolved, offline, online.
    pub event: String,
    pub level: Option<Level>,
    pub by: Option<String>,
    pub note: Option<String>,
}

impl Event {
    pub fn new(ts: TimestampNs, event: &str, level: Option<Level>) -> Self {
        Event { ts, event: event.to_string(), level, by: None, note: None }
    }

    pub fn by(mut self, by: Option<&str>, note: Option<&str>) -> Self {
        self.by = by.map(str::to_string);
        self.note = note.map(str::to_string);
        self
    }
}

/// An alert: one (site, rule) episode from raise to resolve.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alert {
    pub id: i64,
    pub kind: Option<AlertKind>,
    /// Site id; for street and district alerts, the street or district id.
    pub site: String,
    pub site_name: String,
    /// The site's kind (`pump_station` …); empty for street and district alerts.
    pub site_kind: String,
    pub street: String,
    pub rule: String,
    pub rule_name: String,
    pub state: AlertState,
    /// The present level; `None` once resolved.
    pub level: Option<Level>,
    pub peak_level: Option<Level>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: String,
    pub peak_value: Option<f64>,
    pub peak_at: Option<TimestampNs>,
    pub started_at: TimestampNs,
    pub updated_at: TimestampNs,
    pub acked_at: Option<TimestampNs>,
    pub acked_by: Option<String>,
    pub disposed_at: Option<TimestampNs>,
    pub disposed_by: Option<String>,
    pub resolved_at: Option<TimestampNs>,
    /// The highest level the teams have been told about in this episode
    /// (or, after a de-escalation, the level last told).
    pub notified_level: Option<Level>,
    pub last_notified_at: Option<TimestampNs>,
    /// Steps of the escalation chain taken (0: only the first recipients).
    pub escalation_step: u32,
    pub next_escalation_at: Option<TimestampNs>,
    pub next_repeat_at: Option<TimestampNs>,
    /// Tiers of the chain called so far at `voice_level` (0: none yet).
    pub voice_step: u32,
    /// The level the calls are about; a rise above it calls again.
    pub voice_level: Option<Level>,
    pub next_voice_at: Option<TimestampNs>,
    /// The plan card of the present level.
    pub card: Option<Arc<Card>>,
    /// Trend and ETA when last raised, for messages.
    pub trend_per_hour: Option<f64>,
    pub eta_level: Option<Level>,
    pub eta_seconds: Option<f64>,
    pub timeline: Vec<Event>,
    /// The last rise rested on a value quality control found suspect and
    /// the next reading confirmed: the test, in words (for the message;
    /// on record in the timeline's note).
    pub suspect: Option<String>,
}

impl Alert {
    pub fn is_active(&self) -> bool {
        self.state.active()
    }

    pub fn unacked(&self) -> bool {
        matches!(self.state, AlertState::Pending | AlertState::Firing)
    }
}

/// What a silence matches; an absent matcher matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    pub site: Option<String>,
    pub rule: Option<String>,
    pub street: Option<String>,
    pub kind: Option<String>,
    /// A stored silence whose matchers could not be read: it matches
    /// nothing (fails closed) and is reported, rather than matching
    /// everything as empty matchers would.
    #[serde(skip)]
    #[schema(ignore)]
    pub unreadable: bool,
}

impl Matchers {
    pub fn is_empty(&self) -> bool {
        !self.unreadable
            && self.site.is_none()
            && self.rule.is_none()
            && self.street.is_none()
            && self.kind.is_none()
    }

    /// Matchers that match nothing: what a stored silence that cannot be
    /// read becomes (its `unreadable` flag set).
    pub fn unreadable() -> Matchers {
        Matchers { unreadable: true, ..Default::default() }
    }
}

/// A maintenance window (e.g. 泵站检修): matching alerts are tracked but
/// notify nobody while it lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: i64,
    pub matchers: Matchers,
    pub starts_at: TimestampNs,
    pub ends_at: TimestampNs,
    pub created_by: String,
    pub comment: String,
    /// From config (not deletable through the API).
    pub from_config: bool,
}

string_enum! {
    /// Why a notification is sent.
    pub enum IntentKind ("intent kind") {
        /// First raise of an alert.
        Firing = "firing",
        Escalated = "escalated",
        Deescalated = "deescalated",
        Resolved = "resolved",
        /// Still unacked: told again.
        Repeat = "repeat",
        /// Still unacked: the next tier of the chain is told.
        Escalation = "escalation",
        /// Still unacked at a voice level: a phone call to a tier of the chain.
        Call = "call",
    }
}

/// Someone to tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub team: String,
    pub name: String,
    pub role: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The state of an alert as a message shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    pub id: i64,
    pub kind: String,
    pub site: String,
    pub site_name: String,
    pub street: String,
    pub rule: String,
    pub rule_name: String,
    pub level: Option<Level>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: String,
    pub trend_per_hour: Option<f64>,
    pub eta_level: Option<Level>,
    pub eta_seconds: Option<f64>,
    pub card: Option<Card>,
    pub started_at: TimestampNs,
    /// For street and district alerts: the alerts they stand for
    /// (`"人民路铁路桥下穿 Ⅲ"`); for a gateway's: its silent sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The level rests on a value that was suspect (spike, fast rise) and
    /// was confirmed: the test, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<String>,
    /// The nearest depots holding the card's materials (防汛物资).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supply: Vec<crate::materials::Supply>,
}

impl AlertSnapshot {
    /// The alert by reference only — id, kind, site, rule and the level
    /// told — for an intent whose snapshot is filled when it goes out.
    pub fn reference(id: i64, kind: String, site: String, rule: String, level: Option<Level>) -> Self {
        AlertSnapshot {
            id,
            kind,
            site,
            site_name: String::new(),
            street: String::new(),
            rule,
            rule_name: String::new(),
            level,
            value: None,
            threshold: None,
            unit: String::new(),
            trend_per_hour: None,
            eta_level: None,
            eta_seconds: None,
            card: None,
            started_at: 0,
            members: Vec::new(),
            suspect: None,
            supply: Vec::new(),
        }
    }
}

impl From<&Alert> for AlertSnapshot {
    fn from(a: &Alert) -> Self {
        AlertSnapshot {
            id: a.id,
            kind: a.kind.map_or("site", |k| k.as_str()).to_string(),
            site: a.site.clone(),
            site_name: a.site_name.clone(),
            street: a.street.clone(),
            rule: a.rule.clone(),
            rule_name: a.rule_name.clone(),
            level: a.level,
            value: a.value,
            threshold: a.threshold,
            unit: a.unit.clone(),
            trend_per_hour: a.trend_per_hour,
            eta_level: a.eta_level,
            eta_seconds: a.eta_seconds,
            card: a.card.as_deref().cloned(),
            started_at: a.started_at,
            members: Vec::new(),
            suspect: a.suspect.clone(),
            supply: Vec::new(),
        }
    }
}

/// One reason to tell one team about one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub kind: IntentKind,
    pub team: String,
    pub recipients: Vec<Recipient>,
    pub alert: AlertSnapshot,
    /// For escalations: the role of the tier told.
    pub escalation_role: Option<String>,
    pub created_at: TimestampNs,
    /// `alert` holds only the alert's id, kind, site, rule and the level
    /// told ([`AlertSnapshot::reference`]): the rest is filled from the
    /// alert's record when the notice goes out. So are intents waiting in
    /// their team's group, in memory and on disk ([`StoredIntent`]).
    #[serde(skip)]
    pub partial: bool,
}

/// An intent waiting in its team's group, as `pending_intents` keeps it:
/// the alert by reference, not its whole snapshot (plan card, depots,
/// members). In a storm a waiting intent is rewritten with each level
/// change of its alert; the snapshot made most of those bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredIntent<'a> {
    pub kind: IntentKind,
    #[serde(borrow)]
    pub team: std::borrow::Cow<'a, str>,
    pub recipients: std::borrow::Cow<'a, [Recipient]>,
    pub alert: StoredAlert<'a>,
    #[serde(borrow)]
    pub escalation_role: Option<std::borrow::Cow<'a, str>>,
    pub created_at: TimestampNs,
}

/// The alert a waiting intent tells of, and at which level.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredAlert<'a> {
    pub id: i64,
    #[serde(borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub site: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub rule: std::borrow::Cow<'a, str>,
    pub level: Option<Level>,
}

impl<'a> From<&'a Intent> for StoredIntent<'a> {
    fn from(i: &'a Intent) -> Self {
        use std::borrow::Cow::Borrowed;
        StoredIntent {
            kind: i.kind,
            team: Borrowed(&i.team),
            recipients: Borrowed(&i.recipients),
            alert: StoredAlert {
                id: i.alert.id,
                kind: Borrowed(&i.alert.kind),
                site: Borrowed(&i.alert.site),
                rule: Borrowed(&i.alert.rule),
                level: i.alert.level,
            },
            escalation_role: i.escalation_role.as_deref().map(Borrowed),
            created_at: i.created_at,
        }
    }
}

impl From<StoredIntent<'_>> for Intent {
    /// A partial intent: its alert's snapshot holds what was stored.
    fn from(s: StoredIntent<'_>) -> Self {
        Intent {
            kind: s.kind,
            team: s.team.into_owned(),
            recipients: s.recipients.into_owned(),
            alert: AlertSnapshot::reference(
                s.alert.id,
                s.alert.kind.into_owned(),
                s.alert.site.into_owned(),
                s.alert.rule.into_owned(),
                s.alert.level,
            ),
            escalation_role: s.escalation_role.map(|r| r.into_owned()),
            created_at: s.created_at,
            partial: true,
        }
    }
}

/// What leaves the alert manager: one message's worth for one team — a
/// single intent, or a summary of the intents grouped within the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Row id in the notification log; also the idempotency key's base.
    pub id: i64,
    pub team: String,
    pub intents: Vec<Intent>,
    pub created_at: TimestampNs,
}

impl Notification {
    /// How urgent: the rank of the most severe level it tells of (Ⅰ = 4 …
    /// Ⅳ = 1, 0 for none). The outbox queues and sends the most urgent first,
    /// so a Ⅰ is not behind a storm's Ⅳ/Ⅲ summaries.
    pub fn priority(&self) -> i64 {
        self.intents.iter().map(|i| i64::from(crate::level::rank(i.alert.level))).max().unwrap_or(0)
    }
}

impl Notification {
    /// Everyone any intent names, once.
    pub fn recipients(&self) -> Vec<Recipient> {
        let mut v: Vec<Recipient> = Vec::new();
        for i in &self.intents {
            for r in &i.recipients {
                if !v.contains(r) {
                    v.push(r.clone());
                }
            }
        }
        v
    }

    pub fn is_summary(&self) -> bool {
        self.intents.len() > 1
    }
}

//! What the live page is told as it happens: level changes from the live
//! engine and alert changes from the alert manager, each producer on its own
//! tokio broadcast channel, merged by `http::events` into one SSE stream.
//!
//! Pure: the types and their SSE encoding (event name + JSON data); times
//! stay nanoseconds until encoded in the configured time zone.

use serde::Serialize;

use crate::engine::{rfc3339, Change, Transition};
use crate::level::Level;
use crate::reading::TimestampNs;

/// Capacity of each broadcast channel; a slower subscriber that falls this
/// far behind is told to reload (see `http::events`).
pub const CHANNEL_CAPACITY: usize = 1024;

/// A site's, street's or the district's level changed, or a site went
/// offline / came back.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelChange {
    /// `site`, `offline`, `online`, `street` or `district`.
    pub scope: &'static str,
    /// Site or street id; the district's id for `district`.
    pub id: String,
    /// The rule, for `site`.
    pub rule: Option<String>,
    pub from: Option<Level>,
    pub to: Option<Level>,
    pub at: TimestampNs,
}

impl LevelChange {
    /// The changes in a batch of engine transitions.
    pub fn from_transitions(district: &str, transitions: &[Transition]) -> Vec<LevelChange> {
        let c = |scope, id: &str, rule: Option<&str>, from, to, at| LevelChange {
            scope,
            id: id.to_string(),
            rule: rule.map(str::to_string),
            from,
            to,
            at,
        };
        transitions
            .iter()
            .filter_map(|t| match &t.change {
                Change::Site(s) => Some(c("site", &s.site, Some(&s.rule), s.from, s.to, t.at)),
                Change::Offline { site, .. } => Some(c("offline", site, None, None, None, t.at)),
                Change::Online { site } => Some(c("online", site, None, None, None, t.at)),
                Change::Street { street, from, to, .. } => Some(c("street", street, None, *from, *to, t.at)),
                Change::District { from, to } => Some(c("district", district, None, *from, *to, t.at)),
                // Seen in the `sites` snapshots (values flagged) and as alerts.
                Change::Qc(_) | Change::SensorFault(_) | Change::Upstream(_) => None,
            })
            .collect()
    }
}

/// One lifecycle event of an alert (firing, escalated, acked, disposed,
/// resolved, notified …).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    pub id: i64,
    pub event: String,
    /// site, offline, street or district.
    pub kind: String,
    pub site: String,
    pub street: String,
    pub level: Option<Level>,
    /// The alert's state after the event.
    pub state: String,
    pub by: Option<String>,
    pub at: TimestampNs,
}

/// Everything the SSE stream carries besides the `sites` snapshots.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Level(LevelChange),
    Alert(AlertChange),
}

#[derive(Serialize)]
struct LevelJson<'a> {
    scope: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    from: Option<Level>,
    to: Option<Level>,
    at: String,
}

#[derive(Serialize)]
struct AlertJson<'a> {
    id: i64,
    event: &'a str,
    kind: &'a str,
    site: &'a str,
    street: &'a str,
    level: Option<Level>,
    state: &'a str,
    by: Option<&'a str>,
    at: String,
}

/// The SSE event name and JSON data of `e`, times in `tz`.
pub fn encode(e: &Event, tz: chrono_tz::Tz) -> (&'static str, String) {
    let json = match e {
        Event::Level(l) => serde_json::to_string(&LevelJson {
            scope: l.scope,
            id: &l.id,
            rule: l.rule.as_deref(),
            from: l.from,
            to: l.to,
            at: rfc3339(l.at, tz),
        }),
        Event::Alert(a) => serde_json::to_string(&AlertJson {
            id: a.id,
            event: &a.event,
            kind: &a.kind,
            site: &a.site,
            street: &a.street,
            level: a.level,
            state: &a.state,
            by: a.by.as_deref(),
            at: rfc3339(a.at, tz),
        }),
    };
    let name = match e {
        Event::Level(_) => "level",
        Event::Alert(_) => "alert",
    };
    (name, json.expect("plain structs serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
    // 2026-07-21T14:05:00+08:00
    const AT: TimestampNs = 1_784_613_900_000_000_000;

    #[test]
    fn level_changes_from_transitions() {
        let t = |change| Transition { at: AT, change };
        let out = LevelChange::from_transitions(
            "mouqu",
            &[
                t(Change::Street {
                    street: "chengdong".into(),
                    name: "城东街道".into(),
                    from: Some(Level::IV),
                    to: Some(Level::III),
                }),
                t(Change::District { from: None, to: Some(Level::III) }),
                t(Change::Online { site: "CD-JS-01".into() }),
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].scope, out[0].id.as_str(), out[0].to), ("street", "chengdong", Some(Level::III)));
        assert_eq!((out[1].scope, out[1].id.as_str()), ("district", "mouqu"));
        assert_eq!((out[2].scope, out[2].to), ("online", None));
    }

    #[test]
    fn level_event_encoding() {
        let e = Event::Level(LevelChange {
            scope: "site",
            id: "CD-JS-01".into(),
            rule: Some("depth".into()),
            from: Some(Level::IV),
            to: Some(Level::III),
            at: AT,
        });
        let (name, data) = encode(&e, TZ);
        assert_eq!(name, "level");
        assert_eq!(
            data,
            r#"{"scope":"site","id":"CD-JS-01","rule":"depth","from":"IV","to":"III","at":"2026-07-21T14:05:00+08:00"}"#
        );
        assert!(!data.contains('\n'), "one SSE data line");
    }

    #[test]
    fn alert_event_encoding() {
        let e = Event::Alert(AlertChange {
            id: 7,
            event: "acked".into(),
            kind: "site".into(),
            site: "CD-JS-01".into(),
            street: "chengdong".into(),
            level: Some(Level::III),
            state: "acked".into(),
            by: Some("张队长".into()),
            at: AT,
        });
        let (name, data) = encode(&e, TZ);
        assert_eq!(name, "alert");
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["event"], "acked");
        assert_eq!(v["level"], "III");
        assert_eq!(v["by"], "张队长");
        assert_eq!(v["at"], "2026-07-21T14:05:00+08:00");
    }
}

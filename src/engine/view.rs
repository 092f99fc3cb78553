//! The engine's state as people read it: what `/api/v1/sites` serves.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{rules, Eta, State, Trend};
use crate::level::Level;
use crate::plan::{Check, Plan};
use crate::reading::{from_ns, TimestampNs, Value};

/// RFC 3339 with the offset of `tz`.
pub fn rfc3339(ts: TimestampNs, tz: chrono_tz::Tz) -> String {
    from_ns(ts).with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ValueView {
    /// A number or a flag.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    pub ts: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub unit: String,
    /// Quality control's verdict when the latest reading was not good: a
    /// suspect value waits for confirmation (or a flatline is watched), a
    /// bad one was stored and not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qc: Option<QcView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct QcView {
    /// `suspect` or `bad`.
    #[schema(value_type = String)]
    pub flag: super::qc::Flag,
    /// `range`, `spike`, `rate`, `flatline`.
    #[schema(value_type = String)]
    pub test: super::qc::QcTest,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TrendView {
    pub metric: String,
    pub per_hour: f64,
    pub direction: super::Direction,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EtaView {
    /// The next level.
    pub level: Level,
    pub seconds: f64,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub level: Option<Level>,
    pub value: Option<f64>,
    /// Thresholds per level, for level rules (`{"IV": 10, …}`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, f64>)]
    pub thresholds: BTreeMap<Level, f64>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LocationView {
    pub lat: f64,
    pub lon: f64,
}

/// One site in `/api/v1/sites`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SiteView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    pub kind: crate::config::Kind,
    pub category: crate::config::Category,
    pub location: LocationView,
    pub street: String,
    pub level: Option<Level>,
    pub values: BTreeMap<String, ValueView>,
    pub primary: Option<String>,
    pub trend: Option<TrendView>,
    pub eta: Option<EtaView>,
    pub offline: bool,
    pub last_seen: Option<String>,
    pub rules: Vec<RuleView>,
    /// Metrics with an open maintenance alert (疑似传感器故障), and the test.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultView>,
    /// Where its readings last came from (filled in by `live`: the engine
    /// does not know the intakes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FaultView {
    pub metric: String,
    #[schema(value_type = String)]
    pub test: super::qc::QcTest,
    pub since: String,
}

/// A site's last input: protocol (`mqtt`, `sl651`, `http`, `modbus`), the
/// sender, and when.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SourceView {
    pub protocol: String,
    pub from: String,
    pub at: String,
}

fn json_value(v: Value) -> serde_json::Value {
    match v {
        Value::Float(f) => serde_json::json!(f),
        Value::Bool(b) => serde_json::json!(b),
    }
}

/// The view of site `i`, times in `tz`, ETA counted from `now`.
pub fn site(plan: &Plan, state: &State, i: usize, now: TimestampNs, tz: chrono_tz::Tz) -> super::SiteView {
    let sp = &plan.sites[i];
    let st = &state.sites[i];
    let mut values: BTreeMap<String, ValueView> = st
        .values
        .iter()
        .map(|(m, l)| {
            (
                m.to_string(),
                ValueView {
                    value: json_value(l.value),
                    ts: rfc3339(l.ts, tz),
                    unit: sp.unit(m).to_string(),
                    qc: None,
                },
            )
        })
        .collect();
    // The latest reading as it came, flagged, when quality control held it
    // back or refused it.
    for (mq, qs) in sp.qc.iter().zip(&st.qc) {
        if let Some(s) = qs.shown {
            values.insert(
                mq.metric.to_string(),
                ValueView {
                    value: serde_json::json!(s.value),
                    ts: rfc3339(s.ts, tz),
                    unit: sp.unit(&mq.metric).to_string(),
                    qc: Some(QcView { flag: s.flag, test: s.test }),
                },
            );
        }
    }
    let faults = sp
        .qc
        .iter()
        .zip(&st.qc)
        .filter_map(|(mq, qs)| {
            let (test, since) = qs.fault?;
            Some(FaultView { metric: mq.metric.to_string(), test, since: rfc3339(since, tz) })
        })
        .collect();
    // Trend and ETA of the primary metric, against its level rule.
    let level_rule = sp
        .rules
        .iter()
        .position(|r| matches!(&r.check, Check::Level { metric, .. } if Some(metric) == sp.primary.as_ref()));
    let floor = level_rule.map_or(0.0, |ri| match &sp.rules[ri].check {
        Check::Level { deadband, .. } => *deadband,
        _ => 0.0,
    });
    let trend: Option<Trend> = sp.primary.as_deref().and_then(|m| rules::trend(plan, i, st, m, floor));
    let primary_value = sp.primary.as_ref().and_then(|m| st.values.get(m)).map(|l| l.value.as_f64());
    let eta: Option<Eta> = match (level_rule, primary_value, trend) {
        (Some(ri), Some(v), Some(t)) => rules::eta(&sp.rules[ri].check, st.rules[ri].machine.level, v, t),
        _ => None,
    };
    SiteView {
        id: sp.id.to_string(),
        name: sp.name.to_string(),
        name_en: sp.name_en.as_deref().map(str::to_string),
        kind: sp.kind,
        category: sp.category,
        location: LocationView { lat: sp.location.0, lon: sp.location.1 },
        street: plan.streets[sp.street].id.to_string(),
        level: st.level,
        values,
        primary: sp.primary.as_deref().map(str::to_string),
        trend: trend.zip(sp.primary.as_deref()).map(|(t, m)| TrendView {
            metric: m.to_string(),
            per_hour: t.per_hour,
            direction: t.direction,
        }),
        eta: eta.map(|e| EtaView {
            level: e.level,
            seconds: e.seconds,
            at: rfc3339(now + (e.seconds * 1e9) as i64, tz),
        }),
        offline: st.offline,
        last_seen: st.last_seen.map(|t| rfc3339(t, tz)),
        rules: sp
            .rules
            .iter()
            .zip(&st.rules)
            .map(|(r, rs)| RuleView {
                id: r.rule.id.to_string(),
                name: r.rule.name.to_string(),
                level: rs.machine.level,
                value: rs.value,
                thresholds: match &r.check {
                    Check::Level { thresholds, .. } => {
                        Level::ALL.iter().zip(thresholds).filter_map(|(l, t)| t.map(|t| (*l, t))).collect()
                    }
                    _ => BTreeMap::new(),
                },
            })
            .collect(),
        faults,
        source: None,
    }
}

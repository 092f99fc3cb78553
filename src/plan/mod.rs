//! The emergency plan (防汛应急预案), compiled for the engine.
//!
//! `plan.toml` ([`schema`]) says it in the engineers' words: rules per kind of
//! site with per-site overrides, thresholds that may refer to site parameters,
//! conditions over several metrics, rain windows, area escalations and plan
//! cards. [`compile`] resolves all of it against `sites.toml` into a [`Plan`]:
//! for every site, the list of checks that apply to it with numbers, not
//! names — so the engine only compares.

mod compile;
pub mod expr;
pub mod qc;
mod rule_check;
pub mod schema;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

pub use compile::{compile, PlanFile};
pub use schema::{Direction, RainInput, Sustain};

use crate::config::Kind;
use crate::level::Level;
use crate::reading::TimestampNs;

/// Nanoseconds in a duration, for arithmetic on timestamps.
pub fn ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A rule as people know it: id, name, type.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub kind: schema::RuleType,
}

/// A plan card (卡片式应急预案): who acts, what they do, how fast.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    pub kind: Kind,
    pub level: Level,
    /// 责任单位
    pub unit: String,
    /// 职责
    pub duties: Vec<String>,
    /// 措施
    pub measures: Vec<String>,
    /// 到岗时限, seconds.
    pub arrive_within_s: u64,
    /// 物资: item id of materials.toml → quantity the level calls for.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub materials: std::collections::BTreeMap<String, f64>,
}

/// How long a change must hold, in the engine's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Readings(u32),
    ForNs(i64),
}

impl From<Sustain> for Hold {
    fn from(s: Sustain) -> Self {
        match s {
            Sustain::Readings(n) => Hold::Readings(n),
            Sustain::For(d) => Hold::ForNs(ns(d.get())),
        }
    }
}

/// What a rule checks at one site, with everything resolved.
#[derive(Debug, Clone)]
pub enum Check {
    /// Thresholds per level (index 0 = Ⅳ … 3 = Ⅰ; `None`: the rule has no
    /// such level), hysteresis by `deadband`.
    Level { metric: Arc<str>, direction: Direction, thresholds: [Option<f64>; 4], deadband: f64 },
    /// A change of at least `rise` (negative: a fall) within `per_ns`.
    Rate { metric: Arc<str>, rise: f64, per_ns: i64, level: Level },
    /// Rain windows: (window, mm, level). A counter dropping by more than
    /// `reset_drop` was reset; a smaller drop is jitter.
    Rain { metric: Arc<str>, input: RainInput, windows: Vec<(i64, f64, Level)>, reset_drop: f64 },
    /// An expression over the site's metrics and derived values.
    ///
    /// It is judged after a message that carries one of `triggers` (the
    /// metrics it reads, directly or as `<metric>_per_h`), or a pump flag
    /// when it counts pumps (`pump_flags`).
    Condition {
        expr: Arc<expr::Tree>,
        text: Arc<str>,
        level: Level,
        /// The names the expression reads.
        variables: Vec<Arc<str>>,
        triggers: Vec<Arc<str>>,
        pump_flags: bool,
    },
}

impl PartialEq for Check {
    fn eq(&self, other: &Self) -> bool {
        use Check::*;
        match (self, other) {
            (
                Level { metric: a, direction: b, thresholds: c, deadband: d },
                Level { metric: e, direction: f, thresholds: g, deadband: h },
            ) => a == e && b == f && c == g && d == h,
            (
                Rate { metric: a, rise: b, per_ns: c, level: d },
                Rate { metric: e, rise: f, per_ns: g, level: h },
            ) => a == e && b == f && c == g && d == h,
            (
                Rain { metric: a, input: b, windows: c, reset_drop: g },
                Rain { metric: d, input: e, windows: f, reset_drop: h },
            ) => a == d && b == e && c == f && g == h,
            (Condition { text: a, level: b, .. }, Condition { text: c, level: d, .. }) => a == c && b == d,
            _ => false,
        }
    }
}

impl Check {
    /// Does a message carrying `metric` call for this condition to be judged?
    pub fn triggered_by(&self, metric: &str) -> bool {
        match self {
            Check::Condition { triggers, pump_flags, .. } => {
                triggers.iter().any(|t| &**t == metric)
                    || (*pump_flags
                        && metric
                            .strip_prefix("pump")
                            .is_some_and(|m| m.ends_with("_running") || m.ends_with("_fault")))
            }
            _ => false,
        }
    }

    /// The metric the check is about, if one.
    pub fn metric(&self) -> Option<&Arc<str>> {
        match self {
            Check::Level { metric, .. } | Check::Rate { metric, .. } | Check::Rain { metric, .. } => {
                Some(metric)
            }
            Check::Condition { .. } => None,
        }
    }

    /// The levels this check can raise.
    pub fn reachable(&self) -> Vec<Level> {
        match self {
            Check::Level { thresholds, .. } => {
                Level::ALL.iter().zip(thresholds).filter(|(_, t)| t.is_some()).map(|(l, _)| *l).collect()
            }
            Check::Rate { level, .. } | Check::Condition { level, .. } => vec![*level],
            Check::Rain { windows, .. } => {
                let mut v: Vec<Level> = windows.iter().map(|w| w.2).collect();
                v.sort();
                v.dedup();
                v
            }
        }
    }
}

/// One rule applied to one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRule {
    pub rule: Arc<RuleInfo>,
    pub check: Check,
    pub sustain: Hold,
    pub clear_sustain: Hold,
}

/// A site with the checks that apply to it.
#[derive(Debug, Clone)]
pub struct SitePlan {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// For the page's English view; `None`: the Chinese name.
    pub name_en: Option<Arc<str>>,
    /// (lat, lon), for the page's schematic map.
    pub location: (f64, f64),
    pub category: crate::config::Category,
    pub kind: Kind,
    /// Index into [`Plan::streets`].
    pub street: usize,
    pub stale_after_ns: i64,
    /// The metric shown first, whose trend and ETA the page shows.
    pub primary: Option<Arc<str>>,
    /// The kind's units, shared by its sites.
    pub units: Arc<HashMap<Arc<str>, Arc<str>>>,
    /// The kind's metric types (flags and numbers), shared by its sites:
    /// how intake coerces what devices send.
    pub types: Arc<crate::coerce::MetricTypes>,
    /// Its rules and what follows from them: shared by the sites of a kind
    /// whose rules came out the same (no override, no threshold over a
    /// site parameter) — at 10,000 sites one copy instead of 10,000.
    pub rules: Arc<Vec<SiteRule>>,
    /// Which rules look at a metric (indices into `rules`).
    pub by_metric: Arc<HashMap<Arc<str>, Vec<usize>>>,
    /// Rules that use every metric (conditions).
    pub conditions: Arc<Vec<usize>>,
    /// Metrics whose recent history is kept (trends, rates, conditions' `_per_h`).
    pub history: Arc<Vec<Arc<str>>>,
    pub params: Vec<(Arc<str>, f64)>,
    /// Quality control of its metrics (`plan::qc`): the tests per metric.
    /// Its metrics' tests: the kind's, shared by every site no
    /// `[[qc.overrides]]` names.
    pub qc: Arc<Vec<qc::MetricQc>>,
    /// The rain gauges of its street, as (site, rain rule): what a flatline
    /// during rain is judged against.
    pub street_gauges: Vec<(usize, usize)>,
    /// The gateway it reports through, when it shares it with other sites
    /// (index into [`Plan::upstreams`]).
    pub gateway: Option<usize>,
    /// floodguard's intake its readings come by (index into [`Plan::upstreams`]).
    pub intake: Option<usize>,
}

/// What an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// A gateway several sites report through (a 4G DTU …).
    Gateway,
    /// floodguard's own intake: the MQTT connection, the SL 651 listener.
    Intake,
}

/// A gateway or an intake, and the sites behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPlan {
    /// `DTU-07`; an intake: `mqtt`, `sl651`.
    pub id: Arc<str>,
    pub kind: UpstreamKind,
    pub sites: Vec<usize>,
    /// The street most of its sites are in (`None` for an intake: the district).
    pub street: Option<usize>,
}

impl SitePlan {
    pub fn unit(&self, metric: &str) -> &str {
        self.units.get(metric).map_or("", |u| u)
    }
}

#[derive(Debug, Clone)]
pub struct StreetPlan {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub name_en: Option<Arc<str>>,
    pub sites: Vec<usize>,
}

/// Escalation rules of an area, compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AreaRules {
    pub max_of_members: bool,
    /// (count, at least, to)
    pub escalate: Vec<(usize, Level, Level)>,
}

/// The compiled plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub district_id: Arc<str>,
    pub district_name: Arc<str>,
    pub district_name_en: Option<Arc<str>>,
    pub sites: Vec<SitePlan>,
    pub site_index: HashMap<Arc<str>, usize>,
    pub streets: Vec<StreetPlan>,
    pub street_rules: AreaRules,
    pub district_rules: AreaRules,
    pub cards: HashMap<(Kind, Level), Arc<Card>>,
    pub trend_window_ns: i64,
    /// Quality control's policy: on or off, confirmation, maintenance alerts.
    pub qc: qc::QcPolicy,
    /// Gateways shared by two sites or more, then the intakes.
    pub upstreams: Vec<UpstreamPlan>,
    /// Sites of a gateway silent within this of each other went silent together.
    pub upstream_window_ns: i64,
    /// An intake down this long is one alert.
    pub intake_after_ns: i64,
}

impl Plan {
    /// The intake upstream `id` (`mqtt`, `sl651`).
    pub fn intake(&self, id: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.kind == UpstreamKind::Intake && &*u.id == id)
    }
}

impl Plan {
    pub fn site(&self, id: &str) -> Option<(usize, &SitePlan)> {
        let i = *self.site_index.get(id)?;
        Some((i, &self.sites[i]))
    }

    pub fn card(&self, kind: Kind, level: Level) -> Option<&Arc<Card>> {
        self.cards.get(&(kind, level))
    }
}

/// The time of a reading as the plan sees it.
pub type Ts = TimestampNs;

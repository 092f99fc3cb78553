//! `plan.toml` as written: the emergency plan in the engineers' words.
//! [`super::compile`] turns it into the [`super::Plan`] the engine runs.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::HumanDuration;
use crate::level::Level;

/// How long a change must hold before it counts: a number of consecutive
/// readings (`2`) or a duration (`"2m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sustain {
    Readings(u32),
    For(HumanDuration),
}

impl Default for Sustain {
    fn default() -> Self {
        Sustain::Readings(1)
    }
}

impl<'de> Deserialize<'de> for Sustain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a number of readings (2) or a duration (\"2m\")")
        })? {
            Raw::N(0) => Err(serde::de::Error::custom("at least 1 reading")),
            Raw::N(n) => Ok(Sustain::Readings(n)),
            Raw::S(s) => match s.trim().parse::<u32>() {
                // Environment-like text "2" still means readings.
                Ok(n) if n > 0 => Ok(Sustain::Readings(n)),
                _ => humantime::parse_duration(s.trim())
                    .map(|d| Sustain::For(HumanDuration(d)))
                    .map_err(|e| serde::de::Error::custom(format!("invalid sustain {s:?}: {e}"))),
            },
        }
    }
}

/// A threshold: a number, or an expression over the site's parameters
/// (`"warning_level_m - 0.30"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ThresholdSpec {
    Number(f64),
    Expr(String),
}

string_enum! {
    /// Which side of a threshold is bad.
    #[derive(Default)]
    pub enum Direction ("direction") {
        /// Higher is worse (depth, level).
        #[default]
        Above = "above",
        /// Lower is worse (a manhole's distance from cover to water).
        Below = "below",
    }
}

string_enum! {
    pub enum RuleType ("rule type") {
        /// Level thresholds with hysteresis and sustain.
        Level = "level",
        /// Rate of rise (or fall) over a window.
        Rate = "rate",
        /// Rain accumulated over rolling windows (CMA signals).
        Rain = "rain",
        /// An expression over several metrics of one site.
        Condition = "condition",
    }
}

string_enum! {
    /// How a rain gauge reports.
    #[derive(Default)]
    pub enum RainInput ("rain input") {
        /// Rain since the previous report (tipping-bucket increments).
        #[default]
        Increment = "increment",
        /// A running total that resets (at midnight, on power loss …).
        Counter = "counter",
    }
}

/// `[defaults]`: what rules inherit.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Defaults {
    pub sustain: Sustain,
    pub clear_sustain: Sustain,
    /// Window of the robust slope behind trends and ETAs.
    pub trend_window: HumanDuration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            sustain: Sustain::Readings(2),
            clear_sustain: Sustain::Readings(2),
            trend_window: HumanDuration::secs(30 * 60),
        }
    }
}

/// `[kinds.<kind>]`: what a kind of site reports and when it counts as offline.
#[derive(Debug, Clone, Deserialize)]
pub struct KindSpec {
    /// No reading for this long: the site is offline.
    pub stale_after: HumanDuration,
    /// Metrics the kind reports, with their units (`""` for flags). A `*`
    /// stands for digits: `"pump*_running"`.
    pub metrics: BTreeMap<String, String>,
    /// The metric shown first (value, trend, ETA) on the page and in reports.
    pub primary: Option<String>,
    /// `[kinds.<kind>.qc.<metric>]`: quality control of its readings.
    #[serde(default)]
    pub qc: BTreeMap<String, super::qc::MetricQcSpec>,
}

/// One rain window: at least `mm` within `within` → `level`.
#[derive(Debug, Clone, Deserialize)]
pub struct RainWindow {
    pub within: HumanDuration,
    pub mm: f64,
    pub level: Level,
}

/// `[[rules.overrides]]`: per-site values that replace the rule's.
#[derive(Debug, Clone, Deserialize)]
pub struct Override {
    pub sites: Vec<String>,
    pub thresholds: Option<BTreeMap<Level, ThresholdSpec>>,
    pub deadband: Option<f64>,
    pub when: Option<String>,
    pub metric: Option<String>,
    pub input: Option<RainInput>,
    pub sustain: Option<Sustain>,
}

/// `[[rules]]`: one rule of the plan.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleSpec {
    pub id: String,
    /// Name in messages (积水深度).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RuleType,
    /// The kinds of site it applies to …
    #[serde(default)]
    pub kinds: Vec<crate::config::Kind>,
    /// … or the sites.
    #[serde(default)]
    pub sites: Vec<String>,
    /// level, rate, rain: the metric judged.
    pub metric: Option<String>,
    #[serde(default)]
    pub direction: Direction,
    /// level: threshold per level.
    pub thresholds: Option<BTreeMap<Level, ThresholdSpec>>,
    /// level: clear at threshold − deadband (above) or + deadband (below).
    pub deadband: Option<f64>,
    /// rate: the change that triggers, per `per`.
    pub rise: Option<f64>,
    pub per: Option<HumanDuration>,
    /// rate, condition: the level the rule raises.
    pub level: Option<Level>,
    /// rain: how the gauge reports, and the windows.
    pub input: Option<RainInput>,
    #[serde(default)]
    pub windows: Vec<RainWindow>,
    /// condition: the expression (evalexpr syntax).
    pub when: Option<String>,
    pub sustain: Option<Sustain>,
    pub clear_sustain: Option<Sustain>,
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// One escalation of an area: at least `count` members at `at_least` or
/// worse lift the area to `to`.
#[derive(Debug, Clone, Deserialize)]
pub struct Escalation {
    pub count: usize,
    pub at_least: Level,
    pub to: Level,
}

/// `[area.street]`, `[area.district]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AreaSpec {
    /// The area's level is at least the highest of its members' levels.
    pub max_of_members: Option<bool>,
    pub escalate: Vec<Escalation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Area {
    pub street: AreaSpec,
    pub district: AreaSpec,
}

/// `[[cards]]`: the plan card (卡片式应急预案) for some kinds at one level.
#[derive(Debug, Clone, Deserialize)]
pub struct CardSpec {
    pub kinds: Vec<crate::config::Kind>,
    pub level: Level,
    /// 责任单位
    pub unit: String,
    /// 职责
    pub duties: Vec<String>,
    /// 措施
    pub measures: Vec<String>,
    /// 到岗时限: how soon the team must be on site.
    pub arrive_within: HumanDuration,
    /// 物资: item id of materials.toml → quantity the level calls for.
    #[serde(default)]
    pub materials: BTreeMap<String, f64>,
}

/// `[upstream]`: what sites report through — gateways (`gateway` in
/// sites.toml) and floodguard's own intake (the MQTT connection, the SL 651
/// listener) — and when their silence is one alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UpstreamSpec {
    /// Sites of one gateway that fell silent within this of each other fell
    /// silent together (a report interval or so).
    pub window: HumanDuration,
    /// floodguard's intake down this long: one alert about the intake.
    pub intake_after: HumanDuration,
}

impl Default for UpstreamSpec {
    fn default() -> Self {
        UpstreamSpec { window: HumanDuration::secs(15 * 60), intake_after: HumanDuration::secs(60) }
    }
}

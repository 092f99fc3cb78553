//! What the readings of a rain event say, for the 汛情报告 and
//! `compare-storms`: rainfall per gauge (total, the wettest hour and three
//! hours, the district's average), each waterlogging point's peak depth,
//! time at each level and time to drain back below Ⅳ, each pump station's
//! running hours per pump, faults and forebay peak.
//!
//! Pure: the readings come from [`source`] (InfluxDB by InfluxQL, or the
//! spool, or a line-protocol file). Levels are the engine's: the readings
//! are run through the plan ([`crate::replay::run`], ticking each second as
//! the daemon does), so hysteresis and sustain count as they did live.
//!
//! Definitions (docs/operations.md says them to the office):
//! - rain: increments of the gauge's rain rule metric (`rain_mm`; a
//!   `counter` gauge's running total is turned into increments, a reset
//!   starting again from its value) with times in `[since, until)`; the
//!   wettest hour (three hours) is the largest sum of 12 (36) consecutive
//!   5-minute buckets aligned to the epoch, as InfluxQL's
//!   `moving_average(sum(rain_mm), 12) … GROUP BY time(5m) fill(0)` × 12
//!   finds it, timed by the window's end;
//! - a value holds from its reading until the next one of its site and
//!   metric, for at most the kind's `stale_after` (pump running and fault
//!   time);
//! - time at a level: how long the engine held the point's depth rule at
//!   that level or above within `[since, until)`; drain time: from the peak
//!   to the first moment after it the rule was back below Ⅳ.

pub mod compare;
pub mod render;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Kind;
use crate::engine::Change;
use crate::level::Level;
use crate::plan::{Check, Plan, RainInput, SitePlan};
use crate::reading::{Reading, TimestampNs, Value};

/// Five minutes, the rain buckets' width.
pub const BUCKET_NS: i64 = 300_000_000_000;
/// How long before `since` readings are taken, so the engine's levels at
/// `since` are those it had.
pub const WARM_UP_NS: i64 = 3_600_000_000_000;

/// A largest value and when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Peak {
    pub value: f64,
    pub at: TimestampNs,
}

/// One rain gauge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rain {
    pub site: String,
    pub name: String,
    pub street: String,
    pub location: (f64, f64),
    pub total_mm: f64,
    /// The wettest hour, timed by its end.
    pub max_1h: Option<Peak>,
    pub max_3h: Option<Peak>,
    pub reports: usize,
}

/// One waterlogging point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Depth {
    pub site: String,
    pub name: String,
    pub street: String,
    pub location: (f64, f64),
    pub unit: String,
    pub peak: Option<Peak>,
    /// Time at or above Ⅳ, Ⅲ, Ⅱ, Ⅰ (ns), as the engine judged.
    pub above_ns: [i64; 4],
    /// The highest level reached.
    pub top: Option<Level>,
    /// From the peak until back below Ⅳ; `None`: it was never raised, or
    /// had not drained by the end.
    pub drain_ns: Option<i64>,
    /// Raised and still at a level at the end.
    pub undrained: bool,
}

/// One pump of a station.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pump {
    pub no: u32,
    pub running_ns: i64,
    pub starts: u32,
    pub faults: u32,
    pub fault_ns: i64,
}

/// One pump station.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Station {
    pub site: String,
    pub name: String,
    pub street: String,
    pub pumps: Vec<Pump>,
    pub forebay_peak: Option<Peak>,
}

/// The event's facts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub since: TimestampNs,
    pub until: TimestampNs,
    /// Where the readings came from ("InfluxDB …", "spool …", a file).
    pub source: String,
    pub rain: Vec<Rain>,
    /// The gauges' mean total (面雨量 by the gauges' average).
    pub district_rain_mm: Option<f64>,
    pub depths: Vec<Depth>,
    pub stations: Vec<Station>,
}

/// Each (site, metric)'s readings in time order, as floats (flags 1/0).
type Series = BTreeMap<(Arc<str>, Arc<str>), Vec<(TimestampNs, f64)>>;

fn series(readings: &[Reading]) -> Series {
    let mut s: Series = BTreeMap::new();
    for r in readings {
        let v = match r.value {
            Value::Float(f) => f,
            Value::Bool(b) => f64::from(u8::from(b)),
        };
        s.entry((r.site.clone(), r.metric.clone())).or_default().push((r.ts, v));
    }
    for v in s.values_mut() {
        v.sort_by_key(|(t, _)| *t);
    }
    s
}

fn get<'a>(s: &'a Series, site: &str, metric: &str) -> &'a [(TimestampNs, f64)] {
    s.get(&(Arc::from(site), Arc::from(metric))).map_or(&[], Vec::as_slice)
}

/// Rain increments within `[since, until)` from a gauge's readings.
pub fn increments(
    points: &[(TimestampNs, f64)],
    input: RainInput,
    since: TimestampNs,
    until: TimestampNs,
) -> Vec<(TimestampNs, f64)> {
    match input {
        RainInput::Increment => points.iter().copied().filter(|(t, _)| *t >= since && *t < until).collect(),
        RainInput::Counter => {
            let mut out = Vec::new();
            let mut prev: Option<f64> = None;
            for &(t, v) in points {
                let inc = match prev {
                    Some(p) if v >= p => v - p,
                    Some(_) => v, // a reset: counting again from 0
                    None => 0.0,
                };
                prev = Some(v);
                if t >= since && t < until {
                    out.push((t, inc));
                }
            }
            out
        }
    }
}

/// The largest sum of `n` consecutive 5-minute buckets within `[since,
/// until)` (buckets aligned to the epoch), timed by the window's end.
pub fn wettest(
    incs: &[(TimestampNs, f64)],
    since: TimestampNs,
    until: TimestampNs,
    n: usize,
) -> Option<Peak> {
    if until <= since {
        return None;
    }
    let b0 = since.div_euclid(BUCKET_NS);
    let b1 = (until - 1).div_euclid(BUCKET_NS);
    let len = usize::try_from(b1 - b0 + 1).ok()?;
    if len < n {
        return None;
    }
    let mut sums = vec![0.0; len];
    for &(t, v) in incs.iter().filter(|(t, _)| *t >= since && *t < until) {
        sums[(t.div_euclid(BUCKET_NS) - b0) as usize] += v;
    }
    let mut best: Option<Peak> = None;
    for i in 0..=len - n {
        let s: f64 = sums[i..i + n].iter().sum();
        if best.is_none_or(|b| s > b.value + 1e-9) {
            best = Some(Peak { value: s, at: (b0 + (i + n) as i64) * BUCKET_NS });
        }
    }
    best
}

fn peak(points: &[(TimestampNs, f64)], since: TimestampNs, until: TimestampNs, below: bool) -> Option<Peak> {
    let mut best: Option<Peak> = None;
    for &(t, v) in points.iter().filter(|(t, _)| *t >= since && *t < until) {
        let better = match best {
            None => true,
            Some(b) if below => v < b.value,
            Some(b) => v > b.value,
        };
        if better {
            best = Some(Peak { value: v, at: t });
        }
    }
    best
}

/// How long a 0/1 series was 1 within `[since, until)`, each value holding
/// until the next reading or for at most `hold` ns; and how often it went
/// from 0 to 1 there.
pub fn on_time(
    points: &[(TimestampNs, f64)],
    since: TimestampNs,
    until: TimestampNs,
    hold: i64,
) -> (i64, u32) {
    let (mut total, mut starts) = (0, 0);
    let mut prev_on = false;
    for (k, &(t, v)) in points.iter().enumerate() {
        if t >= until {
            break;
        }
        let on = v != 0.0;
        if on && !prev_on && t >= since {
            starts += 1;
        }
        prev_on = on;
        if on {
            let next = points.get(k + 1).map_or(i64::MAX, |p| p.0);
            let end = next.min(t.saturating_add(hold)).min(until);
            let start = t.max(since);
            if end > start {
                total += end - start;
            }
        }
    }
    (total, starts)
}

/// The level rule on a site's primary metric (a waterlogging point's depth rule).
fn depth_rule(sp: &SitePlan) -> Option<&crate::plan::SiteRule> {
    let primary = sp.primary.as_ref()?;
    sp.rules.iter().find(|r| matches!(&r.check, Check::Level { metric, .. } if metric == primary))
}

/// The engine's level of one (site, rule) over time: (from, level) steps.
fn steps(
    transitions: &[crate::engine::Transition],
    site: &str,
    rule: &str,
) -> Vec<(TimestampNs, Option<Level>)> {
    transitions
        .iter()
        .filter_map(|t| match &t.change {
            Change::Site(c) if &*c.site == site && &*c.rule == rule => Some((t.at, c.to)),
            _ => None,
        })
        .collect()
}

fn depth_facts(
    sp: &SitePlan,
    street: &str,
    s: &Series,
    transitions: &[crate::engine::Transition],
    since: TimestampNs,
    until: TimestampNs,
) -> Option<Depth> {
    let rule = depth_rule(sp)?;
    let metric = sp.primary.as_ref()?;
    let below = matches!(rule.check, Check::Level { direction: crate::plan::Direction::Below, .. });
    let pk = peak(get(s, &sp.id, metric), since, until, below);
    let steps = steps(transitions, &sp.id, &rule.rule.id);
    let mut above_ns = [0i64; 4];
    let mut top = None;
    // The level at `since`, then each change within the period.
    let mut level: Option<Level> = steps.iter().take_while(|(t, _)| *t <= since).last().and_then(|(_, l)| *l);
    let mut from = since;
    let mut changes: Vec<(TimestampNs, Option<Level>)> =
        steps.iter().copied().filter(|(t, _)| *t > since && *t < until).collect();
    changes.push((until, None));
    for (t, next) in changes {
        if let Some(l) = level {
            top = top.max(Some(l));
            for (i, at) in Level::ALL.iter().enumerate() {
                if l >= *at {
                    above_ns[i] += t - from;
                }
            }
        }
        level = next;
        from = t;
    }
    let end_level = steps.iter().take_while(|(t, _)| *t < until).last().and_then(|(_, l)| *l);
    let drain_ns = pk.filter(|_| top.is_some()).and_then(|p| {
        steps.iter().find(|(t, l)| *t >= p.at && *t < until && l.is_none()).map(|(t, _)| t - p.at)
    });
    Some(Depth {
        site: sp.id.to_string(),
        name: sp.name.to_string(),
        street: street.to_string(),
        location: sp.location,
        unit: sp.unit(metric).to_string(),
        peak: pk,
        above_ns,
        top,
        drain_ns,
        undrained: top.is_some() && end_level.is_some(),
    })
}

fn rain_facts(
    sp: &SitePlan,
    street: &str,
    s: &Series,
    since: TimestampNs,
    until: TimestampNs,
) -> Option<Rain> {
    let (metric, input) = sp.rules.iter().find_map(|r| match &r.check {
        Check::Rain { metric, input, .. } => Some((metric.clone(), *input)),
        _ => None,
    })?;
    let incs = increments(get(s, &sp.id, &metric), input, since, until);
    Some(Rain {
        site: sp.id.to_string(),
        name: sp.name.to_string(),
        street: street.to_string(),
        location: sp.location,
        total_mm: incs.iter().map(|(_, v)| v).sum(),
        max_1h: wettest(&incs, since, until, 12),
        max_3h: wettest(&incs, since, until, 36),
        reports: incs.len(),
    })
}

fn station_facts(sp: &SitePlan, street: &str, s: &Series, since: TimestampNs, until: TimestampNs) -> Station {
    let mut nos: Vec<u32> = s
        .keys()
        .filter(|(site, _)| **site == *sp.id)
        .filter_map(|(_, m)| {
            let n = m.strip_prefix("pump")?;
            let n = n.strip_suffix("_running").or_else(|| n.strip_suffix("_fault"))?;
            n.parse().ok()
        })
        .collect();
    let installed = sp.params.iter().find(|(k, _)| &**k == "pumps").map_or(0, |(_, v)| *v as u32);
    nos.extend(1..=installed);
    nos.sort_unstable();
    nos.dedup();
    let hold = sp.stale_after_ns;
    let pumps = nos
        .into_iter()
        .map(|no| {
            let (running_ns, starts) =
                on_time(get(s, &sp.id, &format!("pump{no}_running")), since, until, hold);
            let (fault_ns, faults) = on_time(get(s, &sp.id, &format!("pump{no}_fault")), since, until, hold);
            Pump { no, running_ns, starts, faults, fault_ns }
        })
        .collect();
    let forebay = sp.primary.as_deref().unwrap_or("forebay_level_m");
    Station {
        site: sp.id.to_string(),
        name: sp.name.to_string(),
        street: street.to_string(),
        pumps,
        forebay_peak: peak(get(s, &sp.id, forebay), since, until, false),
    }
}

/// The facts of `[since, until)` from `readings` (which may start before
/// `since`: the engine warms up on them).
pub fn analyse(
    plan: &Plan,
    readings: &[Reading],
    since: TimestampNs,
    until: TimestampNs,
    source: &str,
) -> Analysis {
    let mut sorted: Vec<Reading> = readings.iter().filter(|r| r.ts < until).cloned().collect();
    sorted.sort_by_key(|r| r.ts);
    let s = series(&sorted);
    let transitions = crate::replay::run(plan, &sorted, 1_000_000_000);
    let (mut rain, mut depths, mut stations) = (Vec::new(), Vec::new(), Vec::new());
    for sp in &plan.sites {
        let street = plan.streets[sp.street].id.to_string();
        match sp.kind {
            Kind::RainGauge => rain.extend(rain_facts(sp, &street, &s, since, until)),
            Kind::Waterlogging => depths.extend(depth_facts(sp, &street, &s, &transitions, since, until)),
            Kind::PumpStation => stations.push(station_facts(sp, &street, &s, since, until)),
            _ => {}
        }
    }
    let reporting: Vec<f64> = rain.iter().filter(|r| r.reports > 0).map(|r| r.total_mm).collect();
    let district_rain_mm =
        (!reporting.is_empty()).then(|| reporting.iter().sum::<f64>() / reporting.len() as f64);
    Analysis { since, until, source: source.to_string(), rain, district_rain_mm, depths, stations }
}

impl Analysis {
    /// The rain gauge nearest a place.
    pub fn nearest_gauge(&self, at: (f64, f64)) -> Option<&Rain> {
        self.rain.iter().min_by(|a, b| {
            crate::materials::distance_km(at, a.location)
                .total_cmp(&crate::materials::distance_km(at, b.location))
        })
    }
}

#[cfg(test)]
mod tests;

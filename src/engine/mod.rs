//! The plan engine: a pure function from readings and time to changes of
//! response level.
//!
//! `step(&mut State, &Plan, Input, now) -> Vec<Transition>` reads no clock
//! and does no I/O: live, `now` is the receive time; in a replay, the
//! recorded one. Readings may come late, twice, or after a gap; ticks let
//! time-based sustains complete, rain windows slide and silent sites go
//! offline.

mod area;
pub mod machine;
pub mod qc;
pub mod rain;
mod rules;
pub mod series;
pub mod sink;
pub mod snapshot;
pub mod upstream;
mod view;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::level::Level;
use crate::plan::{Card, Check, Plan};
use crate::reading::{Reading, TimestampNs, Value, STATUS_METRIC};
use machine::Machine;
use rain::Rain;
use series::Series;

pub use sink::{Judged, Progress, TransitionSink};
pub use view::{rfc3339, site as site_view, SiteView, SourceView, TrendView};

/// What the engine is given.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Readings(&'a [Reading]),
    /// Time passes.
    Tick,
    /// floodguard's intake `id` (`mqtt`) went up or down (the daemon says so).
    Intake {
        id: &'a str,
        up: bool,
    },
}

/// Which way a metric is heading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// Robust slope, units per hour.
    pub per_hour: f64,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Rising,
    Falling,
    Steady,
}

/// When the next level will be reached at the present trend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eta {
    pub level: Level,
    pub seconds: f64,
}

/// A site's level for one rule changed.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteChange {
    pub site: Arc<str>,
    pub site_name: Arc<str>,
    pub street: Arc<str>,
    pub kind: crate::config::Kind,
    pub rule: Arc<str>,
    pub rule_name: Arc<str>,
    pub from: Option<Level>,
    pub to: Option<Level>,
    /// The metric and value judged (for conditions: the site's primary metric).
    pub metric: Option<Arc<str>>,
    pub value: Option<f64>,
    pub unit: Arc<str>,
    /// The threshold of the level reached (or left, when cleared).
    pub threshold: Option<f64>,
    pub trend: Option<Trend>,
    pub eta: Option<Eta>,
    /// The plan card of the level reached.
    pub card: Option<Arc<Card>>,
    /// A rise that rests on a value quality control found suspect (a
    /// spike, a fast rise) and the next reading, or a second sensor,
    /// confirmed: the test. Messages say so.
    pub suspect: Option<qc::QcTest>,
}

/// Why a site is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// No reading for longer than the kind's `stale_after`.
    Stale,
    /// The device said so (`flood/{site}/status` = offline, e.g. its last will).
    Reported,
    /// Stale while its gateway or floodguard's intake is down: the
    /// upstream's one 采集链路中断 alert stands for it.
    Upstream,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Site(SiteChange),
    Offline {
        site: Arc<str>,
        last_seen: Option<TimestampNs>,
        reason: OfflineReason,
    },
    Online {
        site: Arc<str>,
    },
    Street {
        street: Arc<str>,
        name: Arc<str>,
        from: Option<Level>,
        to: Option<Level>,
    },
    District {
        from: Option<Level>,
        to: Option<Level>,
    },
    /// A reading quality control flagged (or a suspect one confirmed).
    Qc(qc::QcFlag),
    /// A sensor failing quality control persistently, or passing again.
    SensorFault(qc::SensorFault),
    /// A gateway or floodguard's intake went silent with its sites, or came back.
    Upstream(upstream::UpstreamChange),
}

/// A change and when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at: TimestampNs,
    pub change: Change,
}

/// The latest value of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latest {
    pub value: Value,
    pub ts: TimestampNs,
}

#[derive(Debug, Clone, Default)]
pub struct RuleState {
    pub machine: Machine,
    /// The value and threshold behind the last observation.
    pub value: Option<f64>,
    pub rain: Option<Rain>,
}

#[derive(Debug, Clone)]
pub struct SiteState {
    pub values: HashMap<Arc<str>, Latest>,
    /// Parallel to the plan's `SitePlan::history`.
    pub history: Vec<Series>,
    /// Parallel to the plan's `SitePlan::rules`.
    pub rules: Vec<RuleState>,
    /// `now` of the last reading; the engine's start before any.
    pub last_seen: Option<TimestampNs>,
    pub offline: bool,
    /// Offline because its gateway or intake is down (no alert of its own).
    pub covered: bool,
    /// The highest level of its rules.
    pub level: Option<Level>,
    /// Parallel to the plan's `SitePlan::qc`.
    pub qc: Vec<qc::QcState>,
}

/// Everything the engine remembers.
#[derive(Debug, Clone)]
pub struct State {
    pub sites: Vec<SiteState>,
    pub streets: Vec<Option<Level>>,
    pub district: Option<Level>,
    /// Offline counts from here for sites never heard from.
    pub started_at: TimestampNs,
    /// Parallel to the plan's `upstreams`.
    pub upstreams: Vec<upstream::UpstreamState>,
}

fn new_site(plan: &Plan, i: usize) -> SiteState {
    let sp = &plan.sites[i];
    let longest_rate = sp
        .rules
        .iter()
        .filter_map(|r| match r.check {
            Check::Rate { per_ns, .. } => Some(per_ns),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let age = plan.trend_window_ns.max(longest_rate);
    SiteState {
        values: HashMap::default(),
        history: sp.history.iter().map(|_| Series::new(age)).collect(),
        rules: sp
            .rules
            .iter()
            .map(|r| RuleState {
                rain: match &r.check {
                    Check::Rain { windows, input, reset_drop, .. } => {
                        Some(Rain::new(*input, windows.iter().map(|w| w.0).max().unwrap_or(0), *reset_drop))
                    }
                    _ => None,
                },
                ..RuleState::default()
            })
            .collect(),
        last_seen: None,
        offline: false,
        covered: false,
        level: None,
        qc: vec![qc::QcState::default(); sp.qc.len()],
    }
}

impl State {
    pub fn new(plan: &Plan, started_at: TimestampNs) -> Self {
        State {
            sites: (0..plan.sites.len()).map(|i| new_site(plan, i)).collect(),
            streets: vec![None; plan.streets.len()],
            district: None,
            started_at,
            upstreams: vec![upstream::UpstreamState::default(); plan.upstreams.len()],
        }
    }

    /// Takes up where a previous run stopped: rules at the levels of the
    /// alerts still active, sites that were offline. Street and district
    /// levels follow from them, without transitions.
    pub fn seed(&mut self, plan: &Plan, levels: &[(String, String, Level)], offline: &[String]) {
        for (site, rule, level) in levels {
            // A gateway's or an intake's alert still up: it is down until heard from.
            if rule == upstream::LINK_RULE {
                if let Some(u) = plan.upstreams.iter().position(|u| &*u.id == site) {
                    self.upstreams[u].alerted = true;
                }
                continue;
            }
            let Some((i, sp)) = plan.site(site) else { continue };
            if let Some(ri) = sp.rules.iter().position(|r| &*r.rule.id == rule) {
                self.sites[i].rules[ri].machine = Machine::at(Some(*level));
            }
        }
        for site in offline {
            if let Some((i, _)) = plan.site(site) {
                self.sites[i].offline = true;
            }
        }
        for st in &mut self.sites {
            st.level = st.rules.iter().filter_map(|r| r.machine.level).max();
        }
        let mut quiet = Vec::new();
        area::update(plan, self, self.started_at, &mut quiet);
    }

    /// State for a new plan (a reload), keeping what still applies: a site's
    /// values, history and seen/offline status when it kept its id; a rule's
    /// level and pending runs when the rule is unchanged, its level alone
    /// when only its numbers changed. Rules that are gone at a site clear:
    /// those transitions are returned, stamped `now`.
    pub fn carry_over(self, old: &Plan, new: &Plan, now: TimestampNs) -> (State, Vec<Transition>) {
        let mut next = State::new(new, self.started_at);
        let mut out = Vec::new();
        let mut old_sites: HashMap<&str, SiteState> =
            old.sites.iter().map(|s| &*s.id).zip(self.sites).collect();
        for (i, sp) in new.sites.iter().enumerate() {
            let Some(mut prev) = old_sites.remove(&*sp.id) else {
                continue;
            };
            let (_, old_sp) = old.site(&sp.id).expect("old site");
            let st = &mut next.sites[i];
            st.values = std::mem::take(&mut prev.values);
            st.last_seen = prev.last_seen;
            st.offline = prev.offline;
            st.covered = prev.covered;
            for (h, name) in sp.history.iter().enumerate() {
                if let Some(j) = old_sp.history.iter().position(|n| n == name) {
                    st.history[h] = std::mem::take(&mut prev.history[j]);
                }
            }
            for (q, mq) in sp.qc.iter().enumerate() {
                if let Some(j) = old_sp.qc.iter().position(|o| o.metric == mq.metric) {
                    st.qc[q] = std::mem::take(&mut prev.qc[j]);
                }
            }
            for (r, rule) in sp.rules.iter().enumerate() {
                let Some(j) = old_sp.rules.iter().position(|o| o.rule.id == rule.rule.id) else {
                    continue;
                };
                let old_rule = &old_sp.rules[j];
                let prev_state = std::mem::take(&mut prev.rules[j]);
                if old_rule == rule {
                    st.rules[r] = prev_state;
                } else {
                    st.rules[r].machine = Machine::at(prev_state.machine.level);
                    st.rules[r].value = prev_state.value;
                    if old_rule.check.metric() == rule.check.metric() && st.rules[r].rain.is_some() {
                        st.rules[r].rain = prev_state.rain;
                    }
                }
            }
            // Rules no longer at this site: their levels end.
            for (j, old_rule) in old_sp.rules.iter().enumerate() {
                if sp.rules.iter().any(|r| r.rule.id == old_rule.rule.id) {
                    continue;
                }
                if let Some(level) = prev.rules[j].machine.level {
                    out.push(Transition {
                        at: now,
                        change: Change::Site(rules::change(
                            new,
                            i,
                            st,
                            None,
                            &old_rule.rule,
                            Some(level),
                            None,
                            None,
                            None,
                            now,
                        )),
                    });
                }
            }
            st.level = st.rules.iter().filter_map(|r| r.machine.level).max();
        }
        // Sites that are gone take their levels with them.
        for (id, prev) in old_sites {
            let (oi, old_sp) = old.site(id).expect("old site");
            for (j, old_rule) in old_sp.rules.iter().enumerate() {
                if let Some(level) = prev.rules[j].machine.level {
                    out.push(Transition {
                        at: now,
                        change: Change::Site(SiteChange {
                            site: old_sp.id.clone(),
                            site_name: old_sp.name.clone(),
                            street: old.streets[old_sp.street].id.clone(),
                            kind: old_sp.kind,
                            rule: old_rule.rule.id.clone(),
                            rule_name: old_rule.rule.name.clone(),
                            from: Some(level),
                            to: None,
                            metric: None,
                            value: None,
                            unit: Arc::from(""),
                            threshold: None,
                            trend: None,
                            eta: None,
                            card: None,
                            suspect: None,
                        }),
                    });
                }
            }
            let _ = oi;
        }
        for (u, up) in new.upstreams.iter().enumerate() {
            if let Some(j) = old.upstreams.iter().position(|o| o.id == up.id && o.kind == up.kind) {
                next.upstreams[u] = self.upstreams[j].clone();
            }
        }
        area::update(new, &mut next, now, &mut out);
        (next, out)
    }
}

/// One step of the engine.
pub fn step(state: &mut State, plan: &Plan, input: Input<'_>, now: TimestampNs) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut touched = false;
    match input {
        Input::Readings(readings) => {
            // Conditions judge a message as a whole: once per site and device
            // time, after all its metrics are in.
            // (site, time, index of its first reading) of the message in hand.
            let mut group: Option<(usize, TimestampNs, usize)> = None;
            for (k, r) in readings.iter().enumerate() {
                let key = plan.site_index.get(&r.site).map(|&i| (i, r.ts));
                if let Some((i, ts, start)) = group {
                    if Some((i, ts)) != key {
                        touched |= conditions(state, plan, i, &readings[start..k], now, &mut out);
                        group = None;
                    }
                }
                let (changed, newer) = reading(state, plan, r, now, &mut out);
                touched |= changed;
                if newer && group.is_none() {
                    group = key.map(|(i, ts)| (i, ts, k));
                }
            }
            if let Some((i, _, start)) = group {
                touched |= conditions(state, plan, i, &readings[start..], now, &mut out);
            }
        }
        Input::Tick => {
            upstream::tick(state, plan, now, &mut out);
            for i in 0..plan.sites.len() {
                touched |= tick_site(state, plan, i, now, &mut out);
            }
        }
        Input::Intake { id, up } => upstream::intake(state, plan, id, up, now, &mut out),
    }
    if touched {
        area::update(plan, state, now, &mut out);
    }
    out
}

/// Handles one reading: whether a rule level changed, and whether the
/// reading was newer than the metric's latest (conditions judge those).
fn reading(
    state: &mut State,
    plan: &Plan,
    r: &Reading,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> (bool, bool) {
    let Some((i, sp)) = plan.site(&r.site) else {
        return (false, false);
    };
    let st = &mut state.sites[i];
    st.last_seen = Some(now);
    if &*r.metric == STATUS_METRIC {
        match (r.value, st.offline) {
            (Value::Bool(false), false) => {
                st.offline = true;
                out.push(Transition {
                    at: now,
                    change: Change::Offline {
                        site: sp.id.clone(),
                        last_seen: Some(now),
                        reason: OfflineReason::Reported,
                    },
                });
            }
            (Value::Bool(true), true) => {
                st.offline = false;
                st.covered = false;
                out.push(Transition { at: now, change: Change::Online { site: sp.id.clone() } });
            }
            _ => {}
        }
        st.values.insert(r.metric.clone(), Latest { value: r.value, ts: r.ts });
        return (false, false);
    }
    if st.offline {
        st.offline = false;
        st.covered = false;
        out.push(Transition { at: now, change: Change::Online { site: sp.id.clone() } });
    }
    if sp.gateway.is_some() {
        upstream::heard(state, plan, i, now, out);
    }
    let Value::Float(v) = r.value else {
        return judge(plan, i, &mut state.sites[i], r, now, out);
    };
    let tested = if plan.qc.enabled { sp.qc.iter().position(|m| m.metric == r.metric) } else { None };
    let mut held = None;
    if let Some(q) = tested {
        let mq = &sp.qc[q];
        // What the tests need from elsewhere: the street's rain, a second sensor.
        let st = &state.sites[i];
        let rain = qc::needs_rain(mq, &st.qc[q], r, v).then(|| street_rained(state, sp, mq, now));
        let second: Vec<(TimestampNs, f64)> = mq
            .confirm_with
            .iter()
            .filter_map(|m| st.values.get(m))
            .map(|l| (l.ts, l.value.as_f64()))
            .collect();
        let place = qc::Place { sp, street: &plan.streets[sp.street].id };
        let st = &mut state.sites[i];
        match qc::screen(&plan.qc, mq, &mut st.qc[q], &place, r, v, rain, &second, now, out) {
            qc::Screen::Skip => return (false, false),
            qc::Screen::Judge(h) => held = h,
        }
    }
    let st = &mut state.sites[i];
    let (mut changed, mut newer) = (false, false);
    if let Some(h) = held {
        (changed, newer) = judge(plan, i, st, &h, now, out);
    }
    let (c, n) = judge(plan, i, st, r, now, out);
    changed |= c;
    newer |= n;
    // A second sensor of the site that a held reading waits for.
    if plan.qc.enabled && st.qc.iter().any(|q| q.held.is_some()) {
        let place = qc::Place { sp, street: &plan.streets[sp.street].id };
        for q in 0..sp.qc.len() {
            if let Some(h) =
                qc::second_sensor(&plan.qc, &sp.qc[q], &mut st.qc[q], &place, &r.metric, r.ts, v, now, out)
            {
                let (c, n) = judge(plan, i, st, &h, now, out);
                changed |= c;
                newer |= n;
            }
        }
    }
    (changed, newer)
}

/// Did a gauge of the site's street measure at least the flatline's
/// `flatline_rain_mm` within its window (the first that did answers)?
fn street_rained(
    state: &State,
    sp: &crate::plan::SitePlan,
    mq: &crate::plan::qc::MetricQc,
    now: TimestampNs,
) -> bool {
    let Some(f) = mq.flatline else { return false };
    let Some(mm) = f.rain_mm else { return true };
    sp.street_gauges
        .iter()
        .filter_map(|&(g, ri)| state.sites[g].rules.get(ri)?.rain.as_ref())
        .any(|rain| rain.sum(now, f.after_ns) >= mm)
}

/// Judges a reading that passed quality control (or was not tested):
/// whether a rule level changed, and whether it was newer than the
/// metric's latest.
fn judge(
    plan: &Plan,
    i: usize,
    st: &mut SiteState,
    r: &Reading,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> (bool, bool) {
    let sp = &plan.sites[i];
    // Late or repeated readings: rain counts them (by their time); the
    // others judge only what is newer than what they have seen.
    let latest = Latest { value: r.value, ts: r.ts };
    let newer = match st.values.get_mut(&r.metric) {
        Some(l) if r.ts > l.ts => {
            *l = latest;
            true
        }
        Some(_) => false,
        None => {
            st.values.insert(r.metric.clone(), latest);
            true
        }
    };
    if let (Some(h), Value::Float(v)) = (sp.history.iter().position(|m| *m == r.metric), r.value) {
        st.history[h].push(r.ts, v);
    }
    let mut changed = false;
    if let Some(idx) = sp.by_metric.get(&r.metric) {
        for &ri in idx {
            changed |= rules::on_reading(plan, i, st, ri, r, newer, now, out);
        }
    }
    if changed {
        st.level = st.rules.iter().filter_map(|r| r.machine.level).max();
    }
    (changed, newer)
}

/// Re-evaluates the site's conditions that read any metric of a message.
fn conditions(
    state: &mut State,
    plan: &Plan,
    i: usize,
    message: &[Reading],
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> bool {
    let st = &mut state.sites[i];
    let mut changed = false;
    for &ri in plan.sites[i].conditions.iter() {
        if message.iter().any(|r| plan.sites[i].rules[ri].check.triggered_by(&r.metric)) {
            changed |= rules::on_condition(plan, i, st, ri, now, out);
        }
    }
    if changed {
        st.level = st.rules.iter().filter_map(|r| r.machine.level).max();
    }
    changed
}

fn tick_site(state: &mut State, plan: &Plan, i: usize, now: TimestampNs, out: &mut Vec<Transition>) -> bool {
    let sp = &plan.sites[i];
    let st = &mut state.sites[i];
    let seen = st.last_seen.unwrap_or(state.started_at);
    if !st.offline && now.saturating_sub(seen) > sp.stale_after_ns {
        st.offline = true;
        out.push(Transition {
            at: now,
            change: Change::Offline {
                site: sp.id.clone(),
                last_seen: st.last_seen,
                reason: OfflineReason::Stale,
            },
        });
    }
    if plan.qc.enabled && st.qc.iter().any(|q| q.held.is_some()) {
        let place = qc::Place { sp, street: &plan.streets[sp.street].id };
        for (q, mq) in sp.qc.iter().enumerate() {
            qc::expire(&plan.qc, mq, &mut st.qc[q], &place, now, out);
        }
    }
    let mut changed = false;
    for ri in 0..sp.rules.len() {
        changed |= rules::on_tick(plan, i, st, ri, now, out);
    }
    if changed {
        st.level = st.rules.iter().filter_map(|r| r.machine.level).max();
    }
    changed
}

#[cfg(test)]
mod tests;

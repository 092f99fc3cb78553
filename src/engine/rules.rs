//! Observing one rule at one site: turning readings (or time) into the
//! machine's observations, and its level changes into `SiteChange`s.

use std::sync::Arc;

use evalexpr::Value as EValue;

use super::machine::{idx, Obs};
use super::{Change, Direction as TrendDir, Eta, SiteChange, SiteState, Transition, Trend};
use crate::level::Level;
use crate::plan::{expr, Check, Direction, Plan, RuleInfo};
use crate::reading::{Reading, TimestampNs, Value};

const NS_PER_HOUR: f64 = 3_600e9;

fn level_obs(v: f64, thresholds: &[Option<f64>; 4], deadband: f64, direction: Direction) -> Obs {
    let mut o = Obs::default();
    for (i, t) in thresholds.iter().enumerate() {
        if let Some(t) = *t {
            match direction {
                Direction::Above => {
                    o.up[i] = v >= t;
                    o.hold[i] = v >= t - deadband;
                }
                Direction::Below => {
                    o.up[i] = v <= t;
                    o.hold[i] = v <= t + deadband;
                }
            }
        }
    }
    o
}

/// Which rain windows are full at `now`; the rain of the highest one (or of
/// the first window when none is).
fn rain_obs(st: &SiteState, ri: usize, windows: &[(i64, f64, Level)], now: TimestampNs) -> (Obs, f64) {
    let rain = st.rules[ri].rain.as_ref().expect("rain state");
    let mut o = Obs::default();
    let mut shown = None;
    for &(within, mm, level) in windows {
        let sum = rain.sum(now, within);
        if sum >= mm {
            o.up[idx(level)] = true;
            o.hold[idx(level)] = true;
            shown = Some(sum);
        }
    }
    let shown = shown.unwrap_or_else(|| windows.first().map_or(0.0, |w| rain.sum(now, w.0)));
    (o, shown)
}

/// The change of a metric over `per`, from the robust slope of its history.
fn rate_change(
    plan: &Plan,
    i: usize,
    st: &SiteState,
    metric: &str,
    per_ns: i64,
    at: TimestampNs,
) -> Option<f64> {
    let h = plan.sites[i].history.iter().position(|m| &**m == metric)?;
    let per_h = st.history[h].slope_per_hour(at - per_ns, per_ns / 2)?;
    Some(per_h * per_ns as f64 / NS_PER_HOUR)
}

/// A reading of the rule's metric arrived.
#[allow(clippy::too_many_arguments)]
pub(super) fn on_reading(
    plan: &Plan,
    i: usize,
    st: &mut SiteState,
    ri: usize,
    r: &Reading,
    newer: bool,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> bool {
    let rule = &plan.sites[i].rules[ri];
    let v = r.value.as_f64();
    let (obs, value) = match &rule.check {
        Check::Level { thresholds, deadband, direction, .. } => {
            if !newer {
                return false;
            }
            (level_obs(v, thresholds, *deadband, *direction), v)
        }
        Check::Rate { metric, rise, per_ns, level } => {
            if !newer {
                return false;
            }
            let change = rate_change(plan, i, st, metric, *per_ns, r.ts);
            let on = change.is_some_and(|c| if *rise > 0.0 { c >= *rise } else { c <= *rise });
            (Obs::single(*level, on), change.unwrap_or(0.0))
        }
        Check::Rain { windows, .. } => {
            st.rules[ri].rain.as_mut().expect("rain state").push(r.ts, v);
            rain_obs(st, ri, windows, now)
        }
        Check::Condition { .. } => return false,
    };
    st.rules[ri].value = Some(value);
    let Some((from, to)) = st.rules[ri].machine.observe(obs, now, rule.sustain, rule.clear_sustain) else {
        return false;
    };
    out.push(Transition {
        at: now,
        change: Change::Site(change(
            plan,
            i,
            st,
            Some(ri),
            &rule.rule,
            from,
            to,
            Some(value),
            rule.check.metric().cloned(),
            now,
        )),
    });
    true
}

/// Any metric of the site changed: re-evaluate a condition rule.
pub(super) fn on_condition(
    plan: &Plan,
    i: usize,
    st: &mut SiteState,
    ri: usize,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> bool {
    let sp = &plan.sites[i];
    let rule = &sp.rules[ri];
    let Check::Condition { expr: tree, level, variables, .. } = &rule.check else {
        return false;
    };
    // Only the names the expression reads: a metric's latest value, a site
    // parameter, a count of pumps, or a metric's slope per hour.
    let on = {
        let mut vars: Vec<(&str, EValue)> = Vec::with_capacity(variables.len());
        for name in variables {
            let value = if let Some(l) = st.values.get(name) {
                Some(match l.value {
                    Value::Float(f) => EValue::Float(f),
                    Value::Bool(b) => EValue::Boolean(b),
                })
            } else if let Some((_, v)) = sp.params.iter().find(|(p, _)| p == name) {
                Some(EValue::Float(*v))
            } else if let Some(suffix) = name.strip_prefix("pumps_") {
                let flag = if suffix == "running" { "_running" } else { "_fault" };
                let n = st
                    .values
                    .iter()
                    .filter(|(m, l)| l.value == Value::Bool(true) && is_pump_flag(m, flag))
                    .count();
                Some(EValue::Int(n as i64))
            } else if let Some(base) = name.strip_suffix("_per_h") {
                let h = sp.history.iter().position(|m| &**m == base);
                h.and_then(|h| st.history[h].slope_per_hour(now - plan.trend_window_ns, 0)).map(EValue::Float)
            } else {
                None
            };
            if let Some(v) = value {
                vars.push((name, v));
            }
        }
        expr::eval_condition(tree, &vars)
    };
    let value = sp.primary.as_ref().and_then(|p| st.values.get(p)).map(|l| l.value.as_f64());
    st.rules[ri].value = value;
    let Some((from, to)) =
        st.rules[ri].machine.observe(Obs::single(*level, on), now, rule.sustain, rule.clear_sustain)
    else {
        return false;
    };
    out.push(Transition {
        at: now,
        change: Change::Site(change(
            plan,
            i,
            st,
            Some(ri),
            &rule.rule,
            from,
            to,
            value,
            sp.primary.clone(),
            now,
        )),
    });
    true
}

/// `pump12_running` with suffix `_running`.
fn is_pump_flag(name: &str, suffix: &str) -> bool {
    name.strip_prefix("pump")
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Time passed: rain windows slide, `for` sustains may complete.
pub(super) fn on_tick(
    plan: &Plan,
    i: usize,
    st: &mut SiteState,
    ri: usize,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> bool {
    let rule = &plan.sites[i].rules[ri];
    let result = match &rule.check {
        Check::Rain { windows, .. } => {
            if st.rules[ri].machine.level.is_none() && !st.rules[ri].machine.pending() {
                return false;
            }
            let (obs, value) = rain_obs(st, ri, windows, now);
            st.rules[ri].value = Some(value);
            st.rules[ri].machine.observe_tick(obs, now, rule.sustain, rule.clear_sustain)
        }
        _ => {
            if !st.rules[ri].machine.pending() {
                return false;
            }
            st.rules[ri].machine.tick(now, rule.sustain, rule.clear_sustain)
        }
    };
    let Some((from, to)) = result else {
        return false;
    };
    let value = st.rules[ri].value;
    let metric = rule.check.metric().cloned().or_else(|| plan.sites[i].primary.clone());
    out.push(Transition {
        at: now,
        change: Change::Site(change(plan, i, st, Some(ri), &rule.rule, from, to, value, metric, now)),
    });
    true
}

/// The trend of a site's metric over the plan's trend window, judged
/// against a noise floor (the rule's deadband).
pub(super) fn trend(plan: &Plan, i: usize, st: &SiteState, metric: &str, floor: f64) -> Option<Trend> {
    let h = plan.sites[i].history.iter().position(|m| &**m == metric)?;
    let series = &st.history[h];
    let (last, _) = series.last()?;
    let per_hour = series.slope_per_hour(last - plan.trend_window_ns, 0)?;
    let delta = per_hour * plan.trend_window_ns as f64 / NS_PER_HOUR;
    let floor = (floor / 2.0).max(1e-9);
    let direction = if delta > floor {
        TrendDir::Rising
    } else if delta < -floor {
        TrendDir::Falling
    } else {
        TrendDir::Steady
    };
    Some(Trend { per_hour, direction })
}

/// When, at the present trend, the value reaches the next level's threshold.
pub(super) fn eta(check: &Check, level: Option<Level>, value: f64, trend: Trend) -> Option<Eta> {
    let Check::Level { thresholds, direction, .. } = check else {
        return None;
    };
    let next = Level::ALL.iter().zip(thresholds).find(|(l, t)| Some(**l) > level && t.is_some())?;
    let (next_level, threshold) = (*next.0, next.1.expect("present"));
    let (gap, speed) = match direction {
        Direction::Above => (threshold - value, trend.per_hour),
        Direction::Below => (value - threshold, -trend.per_hour),
    };
    if gap <= 0.0 || speed <= 0.0 || trend.direction == TrendDir::Steady {
        return None;
    }
    let seconds = gap / speed * 3600.0;
    (seconds <= 24.0 * 3600.0).then_some(Eta { level: next_level, seconds })
}

/// Builds the `SiteChange` of a rule at site `i`.
#[allow(clippy::too_many_arguments)]
pub(super) fn change(
    plan: &Plan,
    i: usize,
    st: &SiteState,
    ri: Option<usize>,
    rule: &Arc<RuleInfo>,
    from: Option<Level>,
    to: Option<Level>,
    value: Option<f64>,
    metric: Option<Arc<str>>,
    now: TimestampNs,
) -> SiteChange {
    let sp = &plan.sites[i];
    let check = ri.map(|ri| &sp.rules[ri].check);
    let threshold = match check {
        Some(Check::Level { thresholds, .. }) => to.or(from).and_then(|l| thresholds[idx(l)]),
        Some(Check::Rate { rise, .. }) => Some(*rise),
        Some(Check::Rain { windows, .. }) => {
            to.or(from).and_then(|l| windows.iter().find(|w| w.2 == l).map(|w| w.1))
        }
        _ => None,
    };
    let floor = match check {
        Some(Check::Level { deadband, .. }) => *deadband,
        _ => 0.0,
    };
    let trend = metric.as_deref().and_then(|m| trend(plan, i, st, m, floor));
    // An ETA to the next level only while heading there, not on the way down.
    let eta = match (check, value, trend) {
        (Some(c), Some(v), Some(t)) if to >= from => eta(c, to, v, t),
        _ => None,
    };
    let suspect = if to > from { rests_on_suspect(plan, i, st, metric.as_deref(), now) } else { None };
    // A rate's value is a change in the metric's own unit (over `per`).
    let unit: Arc<str> = Arc::from(metric.as_deref().map_or("", |m| sp.unit(m)));
    SiteChange {
        site: sp.id.clone(),
        site_name: sp.name.clone(),
        street: plan.streets[sp.street].id.clone(),
        kind: sp.kind,
        rule: rule.id.clone(),
        rule_name: rule.name.clone(),
        from,
        to,
        metric,
        value,
        unit,
        threshold,
        trend,
        eta,
        card: to.and_then(|l| plan.card(sp.kind, l).cloned()),
        suspect,
    }
}

/// Did a suspect reading of `metric` get confirmed lately (within the
/// confirmation window)? A rise now rests on it.
fn rests_on_suspect(
    plan: &Plan,
    i: usize,
    st: &SiteState,
    metric: Option<&str>,
    now: TimestampNs,
) -> Option<super::qc::QcTest> {
    let q = plan.sites[i].qc.iter().position(|m| Some(&*m.metric) == metric)?;
    let (at, test) = st.qc.get(q)?.confirmed?;
    (now - at <= plan.qc.confirm_within_ns).then_some(test)
}

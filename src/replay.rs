//! `floodguard replay`: run recorded readings (InfluxDB line protocol of
//! `telemetry`, as exported) through a plan at full speed, and compare two
//! plans on the same storm.
//!
//! The engine sees the recorded times as `now`, with a tick every
//! `tick` of recorded time, so sustains, rain windows and staleness behave
//! as they would have live.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use crate::catalog::TELEMETRY;
use crate::engine::{self, Change, Input, State, Transition};
use crate::level::Level;
use crate::plan::Plan;
use crate::reading::{Reading, TimestampNs, Value};
use crate::tsdb::line_parse::{parse_line, FieldValue};

/// Readings loaded from a file, in time order.
#[derive(Debug, Default)]
pub struct Recording {
    pub readings: Vec<Reading>,
    pub lines: usize,
    /// Lines that could not be read (with the first few reasons).
    pub bad_lines: usize,
    pub first_errors: Vec<String>,
    /// Lines of other measurements.
    pub other: usize,
}

/// Timestamps are nanoseconds in an export; seconds, ms or µs are told apart
/// by magnitude, as some tools write them.
fn to_ns(ts: i64) -> i64 {
    let a = ts.unsigned_abs();
    if a < 100_000_000_000 {
        ts * 1_000_000_000
    } else if a < 100_000_000_000_000 {
        ts * 1_000_000
    } else if a < 100_000_000_000_000_000 {
        ts * 1_000
    } else {
        ts
    }
}

/// Reads `telemetry` lines; other measurements are counted and skipped.
pub fn load(reader: impl BufRead) -> std::io::Result<Recording> {
    let mut rec = Recording::default();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: &str| -> Arc<str> {
        if let Some(a) = names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        names.insert(s.to_string(), a.clone());
        a
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let parsed = match parse_line(&line) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                rec.bad_lines += 1;
                if rec.first_errors.len() < 5 {
                    rec.first_errors.push(format!("line {}: {e}", n + 1));
                }
                continue;
            }
        };
        rec.lines += 1;
        if parsed.measurement != TELEMETRY {
            rec.other += 1;
            continue;
        }
        let (Some(site), Some(ts)) = (parsed.tag("site"), parsed.ts) else {
            rec.bad_lines += 1;
            if rec.first_errors.len() < 5 {
                rec.first_errors.push(format!("line {}: no site tag or no timestamp", n + 1));
            }
            continue;
        };
        let site = intern(site);
        let ts = to_ns(ts);
        for (name, v) in &parsed.fields {
            let value = match v {
                FieldValue::Float(f) if f.is_finite() => Value::Float(*f),
                FieldValue::Int(i) => Value::Float(*i as f64),
                FieldValue::UInt(u) => Value::Float(*u as f64),
                FieldValue::Bool(b) => Value::Bool(*b),
                _ => continue,
            };
            rec.readings.push(Reading { site: site.clone(), metric: intern(name), value, ts });
        }
    }
    // Exports come series by series: put them in time order (stable, so the
    // metrics of one point stay together).
    rec.readings.sort_by_key(|r| r.ts);
    Ok(rec)
}

/// Runs the readings through `plan`, ticking every `tick_ns` of recorded time.
pub fn run(plan: &Plan, readings: &[Reading], tick_ns: i64) -> Vec<Transition> {
    let Some(first) = readings.first() else { return Vec::new() };
    let mut state = State::new(plan, first.ts);
    let mut out = Vec::new();
    let mut next_tick = first.ts + tick_ns;
    let mut i = 0;
    while i < readings.len() {
        // A point: the readings of one site at one time.
        let (site, ts) = (&readings[i].site, readings[i].ts);
        let mut j = i + 1;
        while j < readings.len() && readings[j].ts == ts && readings[j].site == *site {
            j += 1;
        }
        while next_tick <= ts {
            out.extend(engine::step(&mut state, plan, Input::Tick, next_tick));
            next_tick += tick_ns;
        }
        out.extend(engine::step(&mut state, plan, Input::Readings(&readings[i..j]), ts));
        i = j;
    }
    // One last tick so what was pending at the end shows.
    out.extend(engine::step(&mut state, plan, Input::Tick, next_tick));
    out
}

fn level(l: Option<Level>) -> String {
    l.map_or("—".into(), |l| l.roman().to_string())
}

fn json_level(l: Option<Level>) -> serde_json::Value {
    l.map_or(serde_json::Value::Null, |l| l.as_str().into())
}

fn time(ts: TimestampNs, tz: chrono_tz::Tz, with_date: bool) -> String {
    let t = crate::reading::from_ns(ts).with_timezone(&tz);
    if with_date {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `--format json`: one level change per line.
pub fn write_json(
    out: &mut impl Write,
    transitions: &[Transition],
    tz: chrono_tz::Tz,
) -> std::io::Result<()> {
    for t in transitions {
        match &t.change {
            Change::Site(c) => {
                let line = serde_json::json!({
                    "ts": engine::rfc3339(t.at, tz),
                    "site": &*c.site,
                    "rule": &*c.rule,
                    "from": json_level(c.from),
                    "to": json_level(c.to),
                    "value": c.value,
                });
                writeln!(out, "{line}")?;
            }
            // Maintenance alerts: the rule `qc.<metric>`, the fault opening or closing.
            Change::SensorFault(f) => {
                let line = serde_json::json!({
                    "ts": engine::rfc3339(t.at, tz),
                    "site": &*f.site,
                    "rule": fault_rule(&f.metric),
                    "from": serde_json::Value::Null,
                    "to": serde_json::Value::Null,
                    "value": f.value,
                    "fault": if f.open { "open" } else { "closed" },
                    "test": f.test.as_str(),
                });
                writeln!(out, "{line}")?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The text report: level changes per site, then streets and the district.
pub fn write_text(
    out: &mut impl Write,
    rec: &Recording,
    plan: &Plan,
    source: &Path,
    transitions: &[Transition],
    tz: chrono_tz::Tz,
) -> std::io::Result<()> {
    let span = match (rec.readings.first(), rec.readings.last()) {
        (Some(a), Some(b)) => format!("{} → {}", time(a.ts, tz, true), time(b.ts, tz, true)),
        _ => "no readings".into(),
    };
    let sites = {
        let mut s: Vec<&str> = rec.readings.iter().map(|r| &*r.site).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };
    writeln!(out, "replay of {}", source.display())?;
    writeln!(out, "  {} readings of {sites} sites, {span} ({tz})", rec.readings.len())?;
    if rec.bad_lines > 0 || rec.other > 0 {
        writeln!(
            out,
            "  skipped: {} unreadable lines, {} lines of other measurements",
            rec.bad_lines, rec.other
        )?;
        for e in &rec.first_errors {
            writeln!(out, "    {e}")?;
        }
    }
    let mut by_site: Vec<(usize, Vec<&Transition>)> = Vec::new();
    let mut areas: Vec<&Transition> = Vec::new();
    let mut offline = 0;
    let mut faults: Vec<&Transition> = Vec::new();
    // (site, metric, flag, test) → (flagged, confirmed)
    let mut flags: std::collections::BTreeMap<(&str, &str, &str, &str), (usize, usize)> = Default::default();
    for t in transitions {
        match &t.change {
            Change::Qc(f) => {
                let e = flags.entry((&f.site, &f.metric, f.flag.as_str(), f.test.as_str())).or_default();
                if f.confirmed {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
            Change::SensorFault(_) | Change::Upstream(_) => faults.push(t),
            Change::Site(c) => {
                let i = plan.site(&c.site).map_or(usize::MAX, |(i, _)| i);
                match by_site.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, v)) => v.push(t),
                    None => by_site.push((i, vec![t])),
                }
            }
            Change::Street { .. } | Change::District { .. } => areas.push(t),
            Change::Offline { .. } => offline += 1,
            Change::Online { .. } => {}
        }
    }
    by_site.sort_by_key(|(i, _)| *i);
    let mut peak: Option<(Level, &str, TimestampNs)> = None;
    for (i, ts) in &by_site {
        let sp = &plan.sites[*i];
        writeln!(out, "\n{} {} · {}", sp.id, sp.name, plan.streets[sp.street].name)?;
        for t in ts {
            let Change::Site(c) = &t.change else { continue };
            if let Some(to) = c.to {
                if peak.is_none_or(|(l, _, _)| to > l) {
                    peak = Some((to, &sp.id, t.at));
                }
            }
            let value = c.value.map_or(String::new(), |v| format!("{} {}", number(v), c.unit));
            let threshold = match (c.threshold, c.to > c.from) {
                (Some(th), true) => format!(" (threshold {} {})", number(th), c.unit),
                _ => String::new(),
            };
            let eta = c.eta.map_or(String::new(), |e| {
                format!(", {} in ~{} min", e.level.roman(), (e.seconds / 60.0).round())
            });
            let trend = c.trend.map_or(String::new(), |tr| {
                let dir = format!("{:?}", tr.direction).to_lowercase();
                format!("  {dir} {} {}/h{eta}", number(tr.per_hour), c.unit)
            });
            writeln!(
                out,
                "  {}  {:<20} {:>2} → {:<2}  {value}{threshold}{trend}",
                time(t.at, tz, false),
                format!("{} {}", c.rule, c.rule_name),
                level(c.from),
                level(c.to)
            )?;
        }
    }
    if !areas.is_empty() {
        writeln!(out, "\nstreets and district")?;
        for t in &areas {
            match &t.change {
                Change::Street { name, from, to, .. } => writeln!(
                    out,
                    "  {}  {:<12} {:>2} → {}",
                    time(t.at, tz, false),
                    name,
                    level(*from),
                    level(*to)
                )?,
                Change::District { from, to } => writeln!(
                    out,
                    "  {}  {:<12} {:>2} → {}",
                    time(t.at, tz, false),
                    plan.district_name,
                    level(*from),
                    level(*to)
                )?,
                _ => {}
            }
        }
    }
    if !flags.is_empty() || !faults.is_empty() {
        writeln!(out, "\nquality control and collection links")?;
        for ((site, metric, flag, test), (n, confirmed)) in &flags {
            let confirmed = if *confirmed > 0 { format!(", {confirmed} confirmed") } else { String::new() };
            writeln!(out, "  {site:<10} {metric:<16} {n} {flag} ({test}){confirmed}")?;
        }
        for t in &faults {
            match &t.change {
                Change::SensorFault(f) => writeln!(
                    out,
                    "  {}  {:<10} 疑似传感器故障 {} ({}) {}",
                    time(t.at, tz, false),
                    f.site,
                    f.metric,
                    f.test,
                    if f.open { "opens" } else { "closes" }
                )?,
                Change::Upstream(u) => writeln!(
                    out,
                    "  {}  {:<10} 采集链路中断 {} ({} sites)",
                    time(t.at, tz, false),
                    u.id,
                    if u.down { "down" } else { "back" },
                    u.sites.len()
                )?,
                _ => {}
            }
        }
    }
    let changes: usize = by_site.iter().map(|(_, v)| v.len()).sum();
    write!(out, "\nsummary: {changes} level changes at {} sites", by_site.len())?;
    if let Some((l, site, at)) = peak {
        write!(out, ", highest {}级 at {site} {}", l.roman(), time(at, tz, false))?;
    }
    let opened = faults
        .iter()
        .filter(|t| {
            matches!(&t.change, Change::SensorFault(f) if f.open)
                || matches!(&t.change, Change::Upstream(u) if u.down)
        })
        .count();
    writeln!(out, ", {offline} offline episodes, {opened} maintenance alerts")?;
    Ok(())
}

/// The rule id of a metric's maintenance alert (疑似传感器故障): `qc.<metric>`.
pub fn fault_rule(metric: &str) -> String {
    format!("{}{metric}", crate::alerts::model::QC_RULE_PREFIX)
}

/// An alert of a replay: a site reaching a level by a rule, the n-th time
/// (a maintenance alert: rule `qc.<metric>` at Ⅳ, as the alert manager keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    pub site: Arc<str>,
    pub rule: Arc<str>,
    pub level: Level,
    pub nth: usize,
}

/// The escalations of a replay, with their times.
pub fn alerts(transitions: &[Transition]) -> Vec<(AlertKey, TimestampNs)> {
    let mut count: HashMap<(Arc<str>, Arc<str>, Level), usize> = HashMap::new();
    let mut out = Vec::new();
    for t in transitions {
        let (site, rule, to) = match &t.change {
            Change::Site(c) => match c.to.filter(|to| Some(*to) > c.from) {
                Some(to) => (c.site.clone(), c.rule.clone(), to),
                None => continue,
            },
            Change::SensorFault(f) if f.open => (f.site.clone(), Arc::from(fault_rule(&f.metric)), Level::IV),
            Change::Upstream(u) if u.down => {
                (u.id.clone(), Arc::from(engine::upstream::LINK_RULE), Level::IV)
            }
            _ => continue,
        };
        let n = count.entry((site.clone(), rule.clone(), to)).or_default();
        *n += 1;
        out.push((AlertKey { site, rule, level: to, nth: *n }, t.at));
    }
    out
}

/// How plan B differs from plan A on the same readings.
#[derive(Debug, Default, PartialEq)]
pub struct Comparison {
    pub appears: Vec<(AlertKey, TimestampNs)>,
    pub vanishes: Vec<(AlertKey, TimestampNs)>,
    /// (alert, time with A, time with B)
    pub moves: Vec<(AlertKey, TimestampNs, TimestampNs)>,
    pub same: usize,
}

pub fn compare(a: &[Transition], b: &[Transition]) -> Comparison {
    let (a, b) = (alerts(a), alerts(b));
    let bm: HashMap<&AlertKey, TimestampNs> = b.iter().map(|(k, t)| (k, *t)).collect();
    let am: HashMap<&AlertKey, TimestampNs> = a.iter().map(|(k, t)| (k, *t)).collect();
    let mut c = Comparison::default();
    for (k, ta) in &a {
        match bm.get(k) {
            None => c.vanishes.push((k.clone(), *ta)),
            Some(tb) if tb != ta => c.moves.push((k.clone(), *ta, *tb)),
            Some(_) => c.same += 1,
        }
    }
    for (k, tb) in &b {
        if !am.contains_key(k) {
            c.appears.push((k.clone(), *tb));
        }
    }
    c
}

fn alert_name(k: &AlertKey) -> String {
    let nth = if k.nth > 1 { format!(" (#{})", k.nth) } else { String::new() };
    match k.rule.strip_prefix(crate::alerts::model::QC_RULE_PREFIX) {
        Some(metric) => format!("{} 疑似传感器故障 {metric}{nth}", k.site),
        None if &*k.rule == engine::upstream::LINK_RULE => format!("{} 采集链路中断{nth}", k.site),
        None => format!("{} {} {}级{nth}", k.site, k.rule, k.level.roman()),
    }
}

pub fn write_comparison_text(
    out: &mut impl Write,
    c: &Comparison,
    a: &Path,
    b: &Path,
    tz: chrono_tz::Tz,
) -> std::io::Result<()> {
    writeln!(out, "\ncomparison: A = {}, B = {}", a.display(), b.display())?;
    for (k, t) in &c.appears {
        writeln!(out, "  appears with B   {:<34} at {}", alert_name(k), time(*t, tz, false))?;
    }
    for (k, t) in &c.vanishes {
        writeln!(out, "  vanishes with B  {:<34} (A: {})", alert_name(k), time(*t, tz, false))?;
    }
    for (k, ta, tb) in &c.moves {
        let d = (tb - ta) as f64 / 60e9;
        let how =
            if d < 0.0 { format!("{} min earlier", number(-d)) } else { format!("{} min later", number(d)) };
        writeln!(
            out,
            "  moves            {:<34} {} → {} ({how})",
            alert_name(k),
            time(*ta, tz, false),
            time(*tb, tz, false)
        )?;
    }
    writeln!(
        out,
        "  {} alerts the same, {} appear, {} vanish, {} move",
        c.same,
        c.appears.len(),
        c.vanishes.len(),
        c.moves.len()
    )
}

pub fn write_comparison_json(out: &mut impl Write, c: &Comparison, tz: chrono_tz::Tz) -> std::io::Result<()> {
    let line = |change: &str, k: &AlertKey, a: Option<TimestampNs>, b: Option<TimestampNs>| {
        serde_json::json!({
            "change": change, "site": &*k.site, "rule": &*k.rule, "level": k.level.as_str(), "nth": k.nth,
            "a_ts": a.map(|t| engine::rfc3339(t, tz)), "b_ts": b.map(|t| engine::rfc3339(t, tz)),
        })
    };
    for (k, t) in &c.appears {
        writeln!(out, "{}", line("appears", k, None, Some(*t)))?;
    }
    for (k, t) in &c.vanishes {
        writeln!(out, "{}", line("vanishes", k, Some(*t), None))?;
    }
    for (k, a, b) in &c.moves {
        writeln!(out, "{}", line("moves", k, Some(*a), Some(*b)))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;

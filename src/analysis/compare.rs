//! `floodguard compare-storms`: two rain events side by side per
//! waterlogging point — the rain that fell at the nearest gauge (total and
//! wettest hour), the peak depth, the time at Ⅳ or above and the time to
//! drain back below Ⅳ — so the office can show that a renovated point
//! (积水点改造) floods less for the same rain.

use std::fmt::Write;

use serde::Serialize;

use super::render::{num, span};
use super::Analysis;
use crate::config::readiness::Renovation;
use crate::reading::{from_ns, TimestampNs};

/// A storm as asked: `START..END` (or `START/END`), each RFC 3339 or
/// "2026-07-21 12:00" in the district's time zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storm {
    pub label: String,
    pub since: TimestampNs,
    pub until: TimestampNs,
}

/// RFC 3339, or a local "YYYY-MM-DD HH:MM" (or a date) in `tz`.
pub fn parse_when(s: &str, tz: chrono_tz::Tz) -> Option<TimestampNs> {
    use chrono::TimeZone;
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(&format!("{s} 00:00"), "%Y-%m-%d %H:%M"))
        .ok()?;
    tz.from_local_datetime(&naive).earliest()?.timestamp_nanos_opt()
}

impl Storm {
    pub fn parse(s: &str, tz: chrono_tz::Tz) -> Result<Storm, String> {
        let (a, b) = s.split_once("..").or_else(|| s.split_once('/')).ok_or_else(|| {
            format!("--storm {s:?}: write START..END (\"2026-07-21 12:00..2026-07-21 20:00\")")
        })?;
        let since = parse_when(a, tz).ok_or_else(|| format!("--storm {s:?}: {a:?} is not a time"))?;
        let until = parse_when(b, tz).ok_or_else(|| format!("--storm {s:?}: {b:?} is not a time"))?;
        if until <= since {
            return Err(format!("--storm {s:?}: the end must come after the start"));
        }
        Ok(Storm { label: s.to_string(), since, until })
    }
}

/// One storm at one point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// The nearest rain gauge.
    pub gauge: Option<String>,
    pub rain_mm: Option<f64>,
    pub rain_1h_mm: Option<f64>,
    pub peak: Option<f64>,
    /// Time at Ⅳ or above, ns.
    pub above_iv_ns: i64,
    pub drain_ns: Option<i64>,
    pub undrained: bool,
}

/// A point's two storms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub site: String,
    pub name: String,
    pub unit: String,
    /// Its renovation project, if it has one: name and when it was finished.
    pub renovation: Option<(String, Option<String>)>,
    pub a: Side,
    pub b: Side,
}

fn side(an: &Analysis, site: &str) -> Option<Side> {
    let d = an.depths.iter().find(|d| d.site == site)?;
    let gauge = an.nearest_gauge(d.location);
    Some(Side {
        gauge: gauge.map(|g| g.name.clone()),
        rain_mm: gauge.map(|g| g.total_mm),
        rain_1h_mm: gauge.and_then(|g| g.max_1h).map(|p| p.value),
        peak: d.peak.map(|p| p.value),
        above_iv_ns: d.above_ns[0],
        drain_ns: d.drain_ns,
        undrained: d.undrained,
    })
}

/// The points of both analyses (those of `sites` when given), side by side.
pub fn compare(a: &Analysis, b: &Analysis, sites: &[String], renovations: &[Renovation]) -> Vec<Row> {
    a.depths
        .iter()
        .filter(|d| sites.is_empty() || sites.contains(&d.site))
        .filter_map(|d| {
            Some(Row {
                site: d.site.clone(),
                name: d.name.clone(),
                unit: d.unit.clone(),
                renovation: renovations
                    .iter()
                    .find(|r| r.site == d.site)
                    .map(|r| (r.name.clone(), r.completed.clone())),
                a: side(a, &d.site)?,
                b: side(b, &d.site)?,
            })
        })
        .collect()
}

fn day(ts: TimestampNs, tz: chrono_tz::Tz) -> String {
    from_ns(ts).with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("—".into(), |v| format!("{} {unit}", num(v)).trim_end().to_string())
}

fn drain(s: &Side) -> String {
    match (s.drain_ns, s.undrained) {
        (Some(ns), _) => span(ns),
        (None, true) => "未退水".into(),
        (None, false) => "—".into(),
    }
}

/// The comparison in Markdown (Chinese).
pub fn markdown(district: &str, storms: [&Storm; 2], rows: &[Row], tz: chrono_tz::Tz) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {district}积水点两场降雨对比\n");
    for (tag, s) in ["A", "B"].iter().zip(storms) {
        let _ = writeln!(o, "- 降雨 {tag}：{} 至 {}", day(s.since, tz), day(s.until, tz));
    }
    let _ = writeln!(o, "\n降雨为距积水点最近雨量站的累计降雨和最大 1 小时降雨；退水用时为峰值至Ⅳ级以下。\n");
    let _ = writeln!(
        o,
        "| 积水点 | 改造 | 雨量站 | 降雨 A | 降雨 B | 最大 1 小时 A | 最大 1 小时 B | 最大积水 A | 最大积水 B | Ⅳ级及以上 A | Ⅳ级及以上 B | 退水 A | 退水 B |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let reno = match &r.renovation {
            Some((_, Some(done))) => format!("{done} 完成"),
            Some((_, None)) => "在建".into(),
            None => "—".into(),
        };
        let dur = |ns: i64| if ns > 0 { span(ns) } else { "—".into() };
        let _ = writeln!(
            o,
            "| {} {} | {reno} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.site,
            r.name,
            r.a.gauge.as_deref().unwrap_or("—"),
            opt(r.a.rain_mm, "mm"),
            opt(r.b.rain_mm, "mm"),
            opt(r.a.rain_1h_mm, "mm"),
            opt(r.b.rain_1h_mm, "mm"),
            opt(r.a.peak, &r.unit),
            opt(r.b.peak, &r.unit),
            dur(r.a.above_iv_ns),
            dur(r.b.above_iv_ns),
            drain(&r.a),
            drain(&r.b)
        );
    }
    o
}

/// `floodguard compare-storms`: reads both storms (InfluxDB, the spool, or
/// `files`), compares them and renders `md` or `json`.
pub fn command(
    config: &crate::config::Config,
    storms: &[String],
    sites: &[String],
    files: &[std::path::PathBuf],
    format: &str,
) -> Result<String, String> {
    let tz = config.timezone;
    let [a, b] = storms else {
        return Err(format!("give two storms (--storm A --storm B), not {}", storms.len()));
    };
    let (a, b) = (Storm::parse(a, tz)?, Storm::parse(b, tz)?);
    for s in sites {
        let kind = config.site(s).map(|x| x.kind);
        if kind != Some(crate::config::Kind::Waterlogging) {
            return Err(format!("--site {s:?}: not a waterlogging point of sites.toml"));
        }
    }
    let analyse = |s: &Storm| -> Result<Analysis, String> {
        let (readings, source) = super::source::load(config, s.since - super::WARM_UP_NS, s.until, files)?;
        Ok(super::analyse(&config.plan, &readings, s.since, s.until, &source))
    };
    let (xa, xb) = (analyse(&a)?, analyse(&b)?);
    let rows = compare(&xa, &xb, sites, &config.sites.renovations);
    Ok(match format {
        "json" => {
            let doc = serde_json::json!({ "storms": [a, b], "points": rows });
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n"
        }
        _ => markdown(&config.sites.district.name, [&a, &b], &rows, tz),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storms_are_written_start_to_end() {
        let tz = chrono_tz::Asia::Shanghai;
        let s = Storm::parse("2026-07-21 12:00..2026-07-21T20:00:00+08:00", tz).unwrap();
        assert_eq!(s.until - s.since, 8 * 3600 * 1_000_000_000);
        assert_eq!(s.since, 1_784_606_400_000_000_000);
        assert!(Storm::parse("2026-07-21/2026-07-22", tz).is_ok());
        assert!(Storm::parse("2026-07-21 12:00", tz).unwrap_err().contains("START..END"));
        assert!(Storm::parse("2026-07-21..2026-07-20", tz).unwrap_err().contains("after the start"));
        assert!(Storm::parse("yesterday..today", tz).unwrap_err().contains("not a time"));
    }
}

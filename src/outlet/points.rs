//! The points floodguard writes, as line protocol: `telemetry` (the
//! readings), `site_info` (the catalogue), `area_level` (street and district
//! levels) and `alert_event` (the alerts' lifecycle). DESIGN.md gives the
//! schema; `tsdb::line_protocol` the escaping. Also the way back: a spooled
//! `telemetry` record as readings, for the engine catching up from disk.

use std::sync::Arc;

use crate::level::{self, Level};
use crate::reading::{Reading, TimestampNs, Value};
use crate::tsdb::line_parse::{self, FieldValue};
use crate::tsdb::line_protocol::{self, Field};

/// InfluxDB measurement of sensor readings.
pub const TELEMETRY: &str = "telemetry";

/// InfluxDB measurement of the site catalogue: where each site is and what
/// it is called, for maps and tables (Grafana's geomap). One point per site,
/// written at every start of the daemon.
pub const SITE_INFO: &str = "site_info";

/// Measurement of street and district levels.
pub const AREA_LEVEL: &str = "area_level";

/// Measurement of alert lifecycle events.
pub const ALERT_EVENT: &str = "alert_event";

/// Measurement of quality flags: one point per reading quality control did
/// not pass as good, at the reading's time (docs/qc.md has the schema and
/// Grafana queries). A suspect reading confirmed later is written again at
/// the same time with `confirmed=true`: InfluxDB keeps one point.
pub const TELEMETRY_QC: &str = "telemetry_qc";

/// `telemetry,kind=…,site=…,street=…`, escaped, tags in key order (as
/// InfluxDB sorts them anyway): the start of every line of the site.
pub fn series_key(kind: &str, site: &str, street: &str) -> String {
    let mut series = String::from(TELEMETRY);
    line_protocol::tag(&mut series, "kind", kind);
    line_protocol::tag(&mut series, "site", site);
    line_protocol::tag(&mut series, "street", street);
    series
}

/// The readings of one message — one site, one instant — as one line.
pub fn telemetry(out: &mut String, series: &str, readings: &[Reading]) {
    line_protocol::telemetry(out, series, readings)
}

/// One site of the catalogue.
pub struct SiteInfo<'a> {
    pub site: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub category: &'a str,
    pub street: &'a str,
    pub lat: f64,
    pub lon: f64,
}

/// `site_info,category=…,kind=…,site=…,street=… lat=…,lon=…,name="…" ts`.
pub fn site_info(out: &mut String, s: &SiteInfo<'_>, ts: TimestampNs) {
    line_protocol::line(
        out,
        SITE_INFO,
        &[("category", s.category), ("kind", s.kind), ("site", s.site), ("street", s.street)],
        [("lat", Field::Float(s.lat)), ("lon", Field::Float(s.lon)), ("name", Field::Str(s.name))],
        ts,
    );
}

/// `area_level,street=… level=2i ts` (or `district=…`).
pub fn area_level(out: &mut String, tag: &str, id: &str, level: Option<Level>, ts: TimestampNs) {
    line_protocol::line(
        out,
        AREA_LEVEL,
        &[(tag, id)],
        [("level", Field::Int(i64::from(level::rank(level))))],
        ts,
    );
}

/// `telemetry_qc,flag=…,kind=…,metric=…,site=…,street=…,test=… value=…,confirmed=… ts`.
pub fn telemetry_qc(out: &mut String, f: &crate::engine::qc::QcFlag) {
    line_protocol::line(
        out,
        TELEMETRY_QC,
        &[
            ("flag", f.flag.as_str()),
            ("kind", f.kind.as_str()),
            ("metric", &f.metric),
            ("site", &f.site),
            ("street", &f.street),
            ("test", f.test.as_str()),
        ],
        [("value", Field::Float(f.value)), ("confirmed", Field::Bool(f.confirmed))],
        f.ts,
    );
}

/// One lifecycle event of an alert.
pub struct AlertEvent<'a> {
    pub site: &'a str,
    pub rule: &'a str,
    /// `IV` … `I`, or `none`.
    pub level: &'a str,
    /// firing, escalated, deescalated, acked, disposed, resolved, offline.
    pub event: &'a str,
    pub alert_id: i64,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: &'a str,
}

/// `alert_event,event=…,level=…,rule=…,site=… alert_id=…i,value=…,threshold=…,message="…" ts`.
pub fn alert_event(out: &mut String, e: &AlertEvent<'_>, ts: TimestampNs) {
    let mut fields: Vec<(&str, Field<'_>)> = vec![("alert_id", Field::Int(e.alert_id))];
    if let Some(v) = e.value {
        fields.push(("value", Field::Float(v)));
    }
    if let Some(t) = e.threshold {
        fields.push(("threshold", Field::Float(t)));
    }
    fields.push(("message", Field::Str(e.message)));
    line_protocol::line(
        out,
        ALERT_EVENT,
        &[("event", e.event), ("level", e.level), ("rule", e.rule), ("site", e.site)],
        fields,
        ts,
    );
}

/// The readings of spooled records (concatenated lines): `telemetry` lines
/// only — the other measurements are not readings. A line that does not
/// parse (it cannot be one floodguard wrote) is skipped and counted.
pub fn readings(body: &[u8], out: &mut Vec<Reading>) -> usize {
    let mut bad = 0;
    let text = String::from_utf8_lossy(body);
    for line in text.split_inclusive('\n') {
        if !line.starts_with(TELEMETRY) || !line[TELEMETRY.len()..].starts_with([',', ' ']) {
            continue;
        }
        let parsed = match line_parse::parse_line(line) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(_) => {
                bad += 1;
                continue;
            }
        };
        let (Some(site), Some(ts)) = (parsed.tag("site"), parsed.ts) else {
            bad += 1;
            continue;
        };
        let site: Arc<str> = Arc::from(site);
        for (k, v) in &parsed.fields {
            let value = match v {
                FieldValue::Float(f) => Value::Float(*f),
                FieldValue::Bool(b) => Value::Bool(*b),
                FieldValue::Int(i) => Value::Float(*i as f64),
                FieldValue::UInt(u) => Value::Float(*u as f64),
                FieldValue::Str(_) => continue,
            };
            out.push(Reading { site: site.clone(), metric: Arc::from(&**k), value, ts });
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_key_is_escaped_and_sorted() {
        assert_eq!(
            series_key("waterlogging", "CD-JS-01", "chengdong"),
            "telemetry,kind=waterlogging,site=CD-JS-01,street=chengdong"
        );
        assert_eq!(series_key("river", "a b", "x,y"), "telemetry,kind=river,site=a\\ b,street=x\\,y");
    }

    #[test]
    fn area_lines() {
        let mut s = String::new();
        area_level(&mut s, "street", "chengdong", Some(Level::III), 5);
        area_level(&mut s, "district", "mouqu", None, 6);
        assert_eq!(s, "area_level,street=chengdong level=2i 5\narea_level,district=mouqu level=0i 6\n");
    }

    #[test]
    fn an_alert_event_line() {
        let mut s = String::new();
        let e = AlertEvent {
            site: "CD-JS-01",
            rule: "depth",
            level: "II",
            event: "escalated",
            alert_id: 7,
            value: Some(28.5),
            threshold: Some(27.0),
            message: "人民路 \"积水\"",
        };
        alert_event(&mut s, &e, 9);
        assert_eq!(
            s,
            "alert_event,event=escalated,level=II,rule=depth,site=CD-JS-01 alert_id=7i,value=28.5,threshold=27.0,message=\"人民路 \\\"积水\\\"\" 9\n"
        );
    }

    #[test]
    fn a_quality_flag_line_is_not_a_reading() {
        use crate::engine::qc::{Flag, QcFlag, QcTest};
        let f = QcFlag {
            site: "CD-JS-01".into(),
            street: "chengdong".into(),
            kind: crate::config::Kind::Waterlogging,
            metric: "water_depth_cm".into(),
            ts: 42,
            value: 300.0,
            flag: Flag::Suspect,
            test: QcTest::Spike,
            confirmed: false,
        };
        let mut s = String::new();
        telemetry_qc(&mut s, &f);
        assert_eq!(
            s,
            "telemetry_qc,flag=suspect,kind=waterlogging,metric=water_depth_cm,site=CD-JS-01,street=chengdong,test=spike value=300.0,confirmed=false 42\n"
        );
        let mut out = Vec::new();
        assert_eq!(readings(s.as_bytes(), &mut out), 0);
        assert!(out.is_empty(), "the engine does not read flags back as readings");
    }

    #[test]
    fn telemetry_comes_back_as_the_readings_it_was_made_of_and_other_points_are_skipped() {
        let r = |m: &str, v| Reading { site: "BH-BZ-01".into(), metric: m.into(), value: v, ts: 42 };
        let readings =
            vec![r("forebay_level_m", Value::Float(1.850000000001)), r("pump2_fault", Value::Bool(true))];
        let mut body = String::new();
        telemetry(&mut body, &series_key("pump_station", "BH-BZ-01", "binhe"), &readings);
        area_level(&mut body, "street", "binhe", Some(Level::IV), 43);
        body.push_str("telemetry_other,site=x v=1 1\n");
        let mut out = Vec::new();
        assert_eq!(self::readings(body.as_bytes(), &mut out), 0);
        assert_eq!(out, readings);
    }
}

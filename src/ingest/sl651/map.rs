//! SL 651 reports into readings, a pure function of the message, the
//! catalogue and the time zone.
//!
//! The station address gives the site (`sl651_station` in sites.toml); each
//! element's identifier gives the metric — the site's `sl651_elements`
//! first, then [`DEFAULTS`]. Elements with neither are skipped (counted).
//! An observation group's time (TT) is the station's local time in
//! `daemon.timezone`. Blocks of 5-minute values (DRP, DRZ1–8) and the series
//! of a uniform-interval report become one reading per step; as the
//! standard's note to its element table says, the block's TT is the time of
//! its *first* value (values at TT, TT + 5 min, …, TT + 55 min).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeZone;

use super::element::{Message, Time, Value};
use crate::catalog::Catalog;
use crate::coerce::{self, CoerceError};
use crate::reading::{Reading, TimestampNs};

/// Element identifier → metric when the site says nothing else.
pub const DEFAULTS: [(u16, &str); 21] = [
    (0x1A, "rain_1h_mm"),
    (0x1C, "rain_3h_mm"),
    (0x1D, "rain_6h_mm"),
    (0x1E, "rain_12h_mm"),
    (0x1F, "rain_day_mm"),
    (0x20, "rain_mm"),
    (0x26, "rain_total_mm"),
    (0x38, "battery_v"),
    (0x39, "level_m"),
    (0x3A, "level_down_m"),
    (0x3B, "level_up_m"),
    (0x45, "status_bits"),
    (0xF4, "rain_mm"),
    (0xF5, "level_m"),
    (0xF6, "level_2_m"),
    (0xF7, "level_3_m"),
    (0xF8, "level_4_m"),
    (0xF9, "level_5_m"),
    (0xFA, "level_6_m"),
    (0xFB, "level_7_m"),
    (0xFC, "level_8_m"),
];

const FIVE_MIN_NS: i64 = 300_000_000_000;

/// Why a report gave no readings at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("station {0} is no site's sl651_station")]
    UnknownStation(String),
    #[error("observation time {0:?} is not a date")]
    BadTime(Time),
}

impl MapError {
    pub fn cause(&self) -> &'static str {
        match self {
            MapError::UnknownStation(_) => "unknown_station",
            MapError::BadTime(_) => "bad_time",
        }
    }
}

/// What one report gave.
#[derive(Debug, Default, PartialEq)]
pub struct Mapped {
    /// One group per (site, instant), in time order.
    pub messages: Vec<Vec<Reading>>,
    /// Elements with no metric, or with no value (all F).
    pub skipped: usize,
    /// Values their metric does not take (a flag metric given 7), with why.
    pub refused: Vec<(Arc<str>, CoerceError)>,
}

/// The station's local time as UTC nanoseconds.
pub fn instant<Tz: TimeZone>(t: &Time, tz: &Tz) -> Option<TimestampNs> {
    let local = t.naive()?;
    let at = tz.from_local_datetime(&local).earliest()?;
    at.timestamp_nanos_opt()
}

/// The readings of a report from `station` (10 hex digits).
pub fn readings<Tz: TimeZone>(
    catalog: &Catalog,
    station: &str,
    msg: &Message,
    tz: &Tz,
) -> Result<Mapped, MapError> {
    let st = catalog.sl651(station).ok_or_else(|| MapError::UnknownStation(station.to_string()))?;
    let metric = |id: u16| -> Option<Arc<str>> {
        st.elements
            .iter()
            .find(|(e, _)| *e == id)
            .map(|(_, m)| m.clone())
            .or_else(|| DEFAULTS.iter().find(|(e, _)| *e == id).map(|(_, m)| Arc::from(*m)))
    };
    let entry = catalog.get(&st.site);
    let mut by_ts: BTreeMap<TimestampNs, Vec<Reading>> = BTreeMap::new();
    let mut skipped = 0;
    let mut refused = Vec::new();
    for g in &msg.groups {
        let Some(observed) = g.observed else {
            skipped += g.elements.len();
            continue;
        };
        let ts = instant(&observed, tz).ok_or(MapError::BadTime(observed))?;
        let mut step_ns: Option<i64> = None;
        for e in &g.elements {
            if let Value::Step(step) = e.value {
                step_ns = Some(i64::from(step.total_minutes()) * 60_000_000_000);
                continue;
            }
            let Some(name) = metric(e.id) else {
                skipped += 1;
                continue;
            };
            let ty = entry.and_then(|e| e.metric_type(&name));
            let mut put = |at: TimestampNs, v: f64| {
                // As the metric holds it: a flag metric takes 0 and 1.
                let value = match coerce::number(ty, v) {
                    Ok(value) => value,
                    Err(e) => {
                        refused.push((name.clone(), e));
                        return;
                    }
                };
                let r = Reading { site: st.site.clone(), metric: name.clone(), value, ts: at };
                let group = by_ts.entry(at).or_default();
                match group.iter_mut().find(|x| x.metric == r.metric) {
                    Some(x) => *x = r,
                    None => group.push(r),
                }
            };
            match &e.value {
                Value::Number(Some(v)) => put(ts, *v),
                Value::Status(bits) => put(ts, f64::from(*bits)),
                Value::Block5min(vs) => {
                    for (i, v) in vs.iter().enumerate() {
                        match v {
                            Some(v) => put(ts + i as i64 * FIVE_MIN_NS, *v),
                            None => skipped += 1,
                        }
                    }
                }
                Value::Series(vs) => match step_ns {
                    Some(step) if step > 0 => {
                        for (i, v) in vs.iter().enumerate() {
                            match v {
                                Some(v) => put(ts + i as i64 * step, *v),
                                None => skipped += 1,
                            }
                        }
                    }
                    _ => skipped += vs.len(),
                },
                Value::Number(None) | Value::Raw(_) => skipped += 1,
                Value::Step(_) => {}
            }
        }
    }
    let messages = by_ts.into_values().filter(|g| g.iter().all(|r| r.value.as_f64().is_finite())).collect();
    Ok(Mapped { messages, skipped, refused })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Sl651Station;
    use crate::config::Kind;
    use crate::ingest::sl651::element::{Element, Group};
    use crate::reading;

    fn catalog() -> Catalog {
        let mut c = Catalog::from_sites([
            ("CD-YL-01", Kind::RainGauge, "chengdong"),
            ("BH-SW-01", Kind::River, "binhe"),
        ]);
        c.add_sl651("0012345678", Sl651Station { site: "CD-YL-01".into(), elements: vec![] });
        c.add_sl651(
            "00000000AB",
            Sl651Station { site: "BH-SW-01".into(), elements: vec![(0x39, Arc::from("stage_m"))] },
        );
        c
    }

    fn t(h: u8, m: u8) -> Time {
        Time { year: 2026, month: 7, day: 21, hour: h, minute: m, second: 0 }
    }

    fn msg(groups: Vec<Group>) -> Message {
        Message { serial: 1, sent: t(14, 5), station: None, groups, rest: vec![], dropped: 0 }
    }

    fn el(id: u16, def: u8, value: Value) -> Element {
        Element { id, def, value }
    }

    /// 2026-07-21T14:00:00+08:00
    const T1400: TimestampNs = 1_784_613_600_000_000_000;

    #[test]
    fn elements_become_metrics_at_the_local_observation_time() {
        let m = msg(vec![Group {
            observed: Some(t(14, 0)),
            elements: vec![
                el(0x20, 0x19, Value::Number(Some(1.5))),
                el(0x26, 0x19, Value::Number(Some(120.5))),
                el(0x38, 0x12, Value::Number(Some(12.6))),
                el(0x27, 0x23, Value::Number(Some(3.0))),
                el(0x39, 0x23, Value::Number(None)),
            ],
        }]);
        let out = readings(&catalog(), "0012345678", &m, &chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(out.messages.len(), 1);
        let got: Vec<(&str, f64, TimestampNs)> =
            out.messages[0].iter().map(|r| (&*r.metric, r.value.as_f64(), r.ts)).collect();
        assert_eq!(
            got,
            vec![("rain_mm", 1.5, T1400), ("rain_total_mm", 120.5, T1400), ("battery_v", 12.6, T1400)]
        );
        assert_eq!(out.skipped, 2, "flow Q has no metric; Z sent no value");
    }

    #[test]
    fn an_element_mapped_to_a_flag_is_a_flag() {
        let mut c = catalog();
        let types = crate::coerce::MetricTypes::from_units([("rain_mm", "mm"), ("sensor_fault", "")]);
        c.set_types(Kind::RainGauge, Arc::new(types));
        c.add_sl651(
            "0012345678",
            Sl651Station { site: "CD-YL-01".into(), elements: vec![(0x27, Arc::from("sensor_fault"))] },
        );
        let report = |v: f64| {
            let m = msg(vec![Group {
                observed: Some(t(14, 0)),
                elements: vec![
                    el(0x20, 0x19, Value::Number(Some(1.5))),
                    el(0x27, 0x08, Value::Number(Some(v))),
                ],
            }]);
            readings(&c, "0012345678", &m, &chrono_tz::Asia::Shanghai).unwrap()
        };
        let out = report(1.0);
        let got: Vec<(&str, reading::Value)> =
            out.messages[0].iter().map(|r| (&*r.metric, r.value)).collect();
        assert_eq!(
            got,
            [("rain_mm", reading::Value::Float(1.5)), ("sensor_fault", reading::Value::Bool(true))]
        );
        let out = report(7.0);
        assert_eq!(out.messages[0].len(), 1, "the rain is kept");
        assert_eq!(out.refused.len(), 1);
        assert_eq!(&*out.refused[0].0, "sensor_fault");
    }

    #[test]
    fn five_minute_blocks_start_at_the_observation_time() {
        let mut vs: Vec<Option<f64>> = (0..12).map(|i| Some(f64::from(i) / 10.0)).collect();
        vs[3] = None;
        let m = msg(vec![Group {
            observed: Some(t(13, 0)),
            elements: vec![el(0xF4, 0x60, Value::Block5min(vs))],
        }]);
        let out = readings(&catalog(), "0012345678", &m, &chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(out.messages.len(), 11);
        let first = T1400 - 3_600_000_000_000;
        assert_eq!(out.messages[0][0].ts, first, "the first value is at TT");
        assert_eq!(out.messages[10][0].ts, first + 11 * FIVE_MIN_NS);
        assert_eq!(out.skipped, 1, "the invalid slot");
    }

    #[test]
    fn site_overrides_and_unknown_stations() {
        let m = msg(vec![Group {
            observed: Some(t(14, 0)),
            elements: vec![el(0x39, 0x23, Value::Number(Some(4.61)))],
        }]);
        let out = readings(&catalog(), "00000000ab", &m, &chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(&*out.messages[0][0].metric, "stage_m");
        assert_eq!(&*out.messages[0][0].site, "BH-SW-01");
        let e = readings(&catalog(), "0099999999", &m, &chrono_tz::Asia::Shanghai).unwrap_err();
        assert_eq!(e.cause(), "unknown_station");
        let bad = msg(vec![Group { observed: Some(t(25, 0)), elements: vec![] }]);
        assert_eq!(
            readings(&catalog(), "0012345678", &bad, &chrono_tz::Asia::Shanghai).unwrap_err().cause(),
            "bad_time"
        );
    }
}

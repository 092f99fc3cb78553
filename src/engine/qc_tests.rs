//! Quality control's decisions, table by table: readings in (value, minute
//! of arrival), what was judged and what was flagged out.

use std::path::Path;

use super::*;
use crate::plan::qc::Flatline;
use crate::plan::Plan;
use crate::reading::Value;

const MIN: i64 = 60_000_000_000;

fn plan() -> Arc<Plan> {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    crate::config::load_with_env(&main, &Default::default()).expect("sample config").plan
}

fn policy() -> QcPolicy {
    QcPolicy {
        enabled: true,
        confirm_within_ns: 10 * MIN,
        fault_after: 3,
        fault_window_ns: 60 * MIN,
        fault_clear_ns: 30 * MIN,
    }
}

fn depth_qc() -> MetricQc {
    MetricQc {
        metric: Arc::from("water_depth_cm"),
        range: Some((-5.0, 500.0)),
        spike: Some((50.0, 10 * MIN)),
        rate_per_h: None,
        flatline: None,
        confirm_with: vec![],
    }
}

/// Runs readings (value, minute) through `screen` at CD-JS-01: per reading,
/// what was judged ("12" or "300+12" when a held one came first, "-" for
/// nothing) and the transitions as short words.
fn run(mq: &MetricQc, readings: &[(f64, i64)], rain: Option<f64>) -> (Vec<String>, Vec<String>) {
    let at: Vec<(f64, i64)> = readings.iter().map(|&(v, m)| (v, m * MIN)).collect();
    run_at(mq, &at, rain)
}

/// As `run`, with times in ns.
fn run_at(mq: &MetricQc, readings: &[(f64, i64)], rain: Option<f64>) -> (Vec<String>, Vec<String>) {
    let plan = plan();
    let (_, sp) = plan.site("CD-JS-01").unwrap();
    let street = plan.streets[sp.street].id.clone();
    let place = Place { sp, street: &street };
    let mut qs = QcState::default();
    let (mut judged, mut out) = (Vec::new(), Vec::new());
    for &(v, t) in readings {
        let r = Reading { site: sp.id.clone(), metric: mq.metric.clone(), value: Value::Float(v), ts: t };
        // The street's gauges against the flatline's 30 mm.
        let rain = needs_rain(mq, &qs, &r, v).then(|| rain.is_some_and(|mm| mm >= 30.0));
        judged.push(match screen(&policy(), mq, &mut qs, &place, &r, v, rain, &[], t, &mut out) {
            Screen::Skip => "-".to_string(),
            Screen::Judge(None) => format!("{v}"),
            Screen::Judge(Some(h)) => format!("{}+{v}", h.value.as_f64()),
        });
    }
    (judged, out.iter().map(word).collect())
}

fn word(t: &Transition) -> String {
    let m = t.at / MIN;
    match &t.change {
        Change::Qc(f) if f.confirmed => format!("{m} confirmed {} {}", f.value, f.test),
        Change::Qc(f) => format!("{m} {} {} {}", f.flag, f.value, f.test),
        Change::SensorFault(f) => format!("{m} fault {} {}", f.test, if f.open { "open" } else { "closed" }),
        other => format!("{other:?}"),
    }
}

#[test]
fn a_single_spike_is_held_and_dropped_a_confirmed_one_is_judged_in_order() {
    let q = depth_qc();
    let (judged, out) = run(&q, &[(5.0, 0), (300.0, 1), (6.0, 2)], None);
    assert_eq!(judged, ["5", "-", "6"]);
    assert_eq!(out, ["1 suspect 300 spike"]);
    let (judged, out) = run(&q, &[(5.0, 0), (300.0, 1), (302.0, 2)], None);
    assert_eq!(judged, ["5", "-", "300+302"]);
    assert_eq!(out, ["1 suspect 300 spike", "2 confirmed 300 spike"]);
    // Noise and a real rise within the step: nothing flagged.
    let (judged, out) = run(&q, &[(5.0, 0), (6.5, 1), (4.8, 2), (40.0, 3), (70.0, 4)], None);
    assert_eq!(judged, ["5", "6.5", "4.8", "40", "70"]);
    assert!(out.is_empty(), "{out:?}");
    // A jump after a long gap is not a spike.
    let (judged, _) = run(&q, &[(5.0, 0), (300.0, 30)], None);
    assert_eq!(judged, ["5", "300"]);
}

#[test]
fn a_confirmation_comes_within_its_window_or_not_at_all() {
    let q = depth_qc();
    let (judged, out) = run(&q, &[(5.0, 0), (300.0, 1), (301.0, 12)], None);
    assert_eq!(
        judged,
        ["5", "-", "301"],
        "11 minutes on: too late to confirm, and 12 minutes after 5 cm no spike"
    );
    assert_eq!(out, ["1 suspect 300 spike"]);
}

#[test]
fn bad_readings_are_never_judged_and_failures_open_then_close_a_fault() {
    let q = depth_qc();
    let (judged, out) = run(&q, &[(5.0, 0), (-40.0, 1), (900.0, 2), (5.0, 3), (600.0, 4), (5.0, 5)], None);
    assert_eq!(judged, ["5", "-", "-", "5", "-", "5"]);
    assert_eq!(out, ["1 bad -40 range", "2 bad 900 range", "4 bad 600 range", "4 fault range open"]);
    // Passing for fault_clear (30 min after the last failure) closes it.
    let mut readings = vec![(5.0, 0), (-40.0, 1), (-40.0, 2), (-40.0, 3)];
    readings.extend((4..=40).map(|m| (5.0, m)));
    let (_, out) = run(&q, &readings, None);
    assert_eq!(out[3..], ["3 fault range open", "33 fault range closed"]);
}

#[test]
fn repeated_spikes_nobody_confirms_open_a_fault() {
    let q = depth_qc();
    let readings = [(5.0, 0), (300.0, 1), (5.0, 2), (280.0, 3), (5.0, 4), (310.0, 5), (5.0, 6)];
    let (judged, out) = run(&q, &readings, None);
    assert_eq!(judged, ["5", "-", "5", "-", "5", "-", "5"]);
    assert_eq!(out.last().unwrap(), "6 fault spike open", "{out:?}");
    assert_eq!(out.iter().filter(|w| w.contains("suspect")).count(), 3);
}

#[test]
fn a_flatline_during_rain_opens_a_fault_at_once_and_closes_once_the_value_moves() {
    let q = MetricQc {
        flatline: Some(Flatline { after_ns: 60 * MIN, tolerance: 0.0, rain_mm: Some(30.0) }),
        ..depth_qc()
    };
    // 0 cm every 5 minutes; with 40 mm of rain in the street's gauge.
    let readings: Vec<(f64, i64)> = (0..=14).map(|k| (0.0, k * 5)).collect();
    let (judged, out) = run(&q, &readings, Some(40.0));
    assert!(judged.iter().all(|j| j == "0"), "flatline readings are judged: {judged:?}");
    assert_eq!(out[..2], ["60 suspect 0 flatline", "60 fault flatline open"]);
    assert_eq!(out.len(), 2 + 2, "each flat reading after the hour is flagged: {out:?}");
    // Dry weather: one value for days is fine.
    let (_, out) = run(&q, &readings, Some(2.0));
    assert!(out.is_empty(), "{out:?}");
    // The value moves, then passes for fault_clear: closed.
    let mut readings = readings;
    readings.extend((15..=25).map(|k| (0.5 * k as f64, k * 5)));
    let (_, out) = run(&q, &readings, Some(40.0));
    assert_eq!(
        out.last().unwrap(),
        "100 fault flatline closed",
        "30 min after the last flat reading: {out:?}"
    );
}

#[test]
fn a_metric_that_always_moves_is_watched_without_rain() {
    let q = MetricQc {
        flatline: Some(Flatline { after_ns: 60 * MIN, tolerance: 0.005, rain_mm: None }),
        ..depth_qc()
    };
    let readings: Vec<(f64, i64)> = (0..=13).map(|k| (4.2 + 0.001 * (k % 2) as f64, k * 5)).collect();
    let (_, out) = run(&q, &readings, None);
    assert_eq!(out[..2], ["60 suspect 4.2 flatline", "60 fault flatline open"]);
}

#[test]
fn rates_are_measured_over_a_minute_at_least() {
    let q = MetricQc { spike: None, rate_per_h: Some(10.0), ..depth_qc() };
    // 0.05 m in 5 s is noise, not 36 m/h: over a minute, 3 m/h.
    let s = 1_000_000_000;
    let (judged, out) = run_at(&q, &[(4.0, 0), (4.05, 5 * s), (4.02, 10 * s)], None);
    assert_eq!(judged, ["4", "4.05", "4.02"]);
    assert!(out.is_empty(), "{out:?}");
    let (judged, out) = run(&q, &[(4.0, 0), (4.5, 1), (4.52, 2)], None);
    assert_eq!(judged, ["4", "-", "4.5+4.52"]);
    assert_eq!(out, ["1 suspect 4.5 rate", "2 confirmed 4.5 rate"]);
}

#[test]
fn a_second_sensor_confirms_at_once_or_later() {
    let plan = plan();
    let (_, sp) = plan.site("CD-JS-01").unwrap();
    let street = plan.streets[sp.street].id.clone();
    let place = Place { sp, street: &street };
    let q = MetricQc { confirm_with: vec![Arc::from("radar_depth_cm")], ..depth_qc() };
    let r = |v: f64, m: i64| Reading {
        site: sp.id.clone(),
        metric: q.metric.clone(),
        value: Value::Float(v),
        ts: m * MIN,
    };
    let mut qs = QcState::default();
    let mut out = Vec::new();
    assert_eq!(
        screen(&policy(), &q, &mut qs, &place, &r(5.0, 0), 5.0, None, &[], 0, &mut out),
        Screen::Judge(None)
    );
    // The radar agrees already: judged at once, flagged as confirmed.
    let second = [(MIN, 95.0)];
    let got = screen(&policy(), &q, &mut qs, &place, &r(90.0, 1), 90.0, None, &second, MIN, &mut out);
    assert_eq!(got, Screen::Judge(None));
    assert_eq!(out.iter().map(word).collect::<Vec<_>>(), ["1 confirmed 90 spike"]);
    // A later spike waits; the radar's reading confirms it.
    out.clear();
    let got = screen(&policy(), &q, &mut qs, &place, &r(300.0, 2), 300.0, None, &[], 2 * MIN, &mut out);
    assert_eq!(got, Screen::Skip);
    assert!(second_sensor(&policy(), &q, &mut qs, &place, "other_cm", 2 * MIN, 300.0, 2 * MIN, &mut out)
        .is_none());
    let h =
        second_sensor(&policy(), &q, &mut qs, &place, "radar_depth_cm", 2 * MIN, 298.0, 2 * MIN, &mut out);
    assert_eq!(h.map(|h| h.value), Some(Value::Float(300.0)));
    assert_eq!(out.iter().map(word).collect::<Vec<_>>(), ["2 suspect 300 spike", "2 confirmed 300 spike"]);
}

#[test]
fn a_held_reading_expires_with_time_as_a_failure() {
    let plan = plan();
    let (_, sp) = plan.site("CD-JS-01").unwrap();
    let street = plan.streets[sp.street].id.clone();
    let place = Place { sp, street: &street };
    let q = depth_qc();
    let p = QcPolicy { fault_after: 1, ..policy() };
    let r = |v: f64, m: i64| Reading {
        site: sp.id.clone(),
        metric: q.metric.clone(),
        value: Value::Float(v),
        ts: m * MIN,
    };
    let mut qs = QcState::default();
    let mut out = Vec::new();
    screen(&p, &q, &mut qs, &place, &r(5.0, 0), 5.0, None, &[], 0, &mut out);
    screen(&p, &q, &mut qs, &place, &r(300.0, 1), 300.0, None, &[], MIN, &mut out);
    expire(&p, &q, &mut qs, &place, 11 * MIN, &mut out);
    assert!(qs.held.is_some(), "10 minutes: still waiting");
    expire(&p, &q, &mut qs, &place, 12 * MIN, &mut out);
    assert!(qs.held.is_none());
    assert_eq!(out.iter().map(word).collect::<Vec<_>>(), ["1 suspect 300 spike", "12 fault spike open"]);
}

use super::*;
use crate::simulate::model::{self, Field, Scenario};

const S: i64 = 1_000_000_000;
const MIN: i64 = 60 * S;
/// 2026-07-21 12:00 +08:00, on a 5-minute boundary.
const T0: i64 = 1_784_606_400 * S;

fn sample() -> crate::config::Config {
    let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    crate::config::load_with_env(&main, &Default::default()).unwrap()
}

#[test]
fn a_counter_gauge_becomes_increments_across_a_reset() {
    let pts = [(0, 10.0), (MIN, 10.5), (2 * MIN, 12.0), (3 * MIN, 0.4), (4 * MIN, 1.0)];
    let inc = increments(&pts, RainInput::Counter, MIN, 5 * MIN);
    let v: Vec<f64> = inc.iter().map(|(_, v)| (v * 10.0).round() / 10.0).collect();
    assert_eq!(v, [0.5, 1.5, 0.4, 0.6], "the reset counts from 0");
    let inc = increments(&pts, RainInput::Increment, MIN, 3 * MIN);
    assert_eq!(inc, [(MIN, 10.5), (2 * MIN, 12.0)]);
}

#[test]
fn the_wettest_hour_is_twelve_five_minute_buckets_timed_by_its_end() {
    // 1 mm every 5 minutes for 2 hours, with 6 mm more in the bucket at 1:00.
    let mut incs: Vec<(i64, f64)> = (0..24).map(|k| (T0 + k * 5 * MIN + MIN, 1.0)).collect();
    incs[12].1 += 6.0;
    let p = wettest(&incs, T0, T0 + 2 * 60 * MIN, 12).unwrap();
    assert_eq!(p.value, 18.0);
    assert_eq!(p.at, T0 + 65 * MIN, "the first window holding the burst ends at 1:05");
    assert!(wettest(&incs, T0, T0 + 55 * MIN, 12).is_none(), "fewer buckets than an hour");
    // A period that starts mid-bucket counts that bucket from the start only.
    let p = wettest(&incs, T0 + 2 * MIN, T0 + 60 * MIN, 12).unwrap();
    assert_eq!(p.value, 11.0, "the 0:01 tip lies before the start");
    assert_eq!(p.at, T0 + 60 * MIN);
}

#[test]
fn a_flag_holds_until_the_next_reading_or_its_stale_time() {
    let pts = [(0, 1.0), (MIN, 1.0), (2 * MIN, 0.0), (3 * MIN, 1.0), (30 * MIN, 0.0)];
    // 0–2 min on, 3 min on until 13 min (10 min stale), then silence.
    assert_eq!(on_time(&pts, 0, 60 * MIN, 10 * MIN), (12 * MIN, 2));
    // Clipped to the period; a pump already on at its start did not start in it.
    assert_eq!(on_time(&pts, 30 * S, 5 * MIN, 10 * MIN), (90 * S + 2 * MIN, 1));
}

/// The storm as the simulator makes it, stamped from T0.
fn storm(scale: f64) -> (Vec<model::Message>, Vec<Reading>) {
    let c = sample();
    let msgs = model::generate_scaled(Scenario::Rainstorm, &c.sites.sites, 3, 6.5 * 3600.0, scale);
    let text: String = msgs
        .iter()
        .map(|m| crate::simulate::line(m, (T0 + (m.at_s * 1e9) as i64) / 1_000_000) + "\n")
        .collect();
    let rec = crate::replay::load(text.as_bytes()).unwrap();
    (msgs, rec.readings)
}

fn field(m: &model::Message, name: &str) -> Option<f64> {
    m.fields.iter().find(|(k, _)| k == name).map(|(_, f)| match f {
        Field::Num(v) => *v,
        Field::Bool(b) => f64::from(u8::from(*b)),
    })
}

#[test]
fn the_storms_facts_are_the_models() {
    let c = sample();
    let (msgs, readings) = storm(1.0);
    let until = T0 + 7 * 3600 * S;
    let a = analyse(&c.plan, &readings, T0, until, "test");
    // Rain: every tip of every gauge.
    for r in &a.rain {
        let want: f64 = msgs.iter().filter(|m| m.site == r.site).filter_map(|m| field(m, "rain_mm")).sum();
        assert!((r.total_mm - want).abs() < 1e-9, "{}: {} vs {want}", r.site, r.total_mm);
        assert!(r.max_3h.unwrap().value >= r.max_1h.unwrap().value);
    }
    assert!(a.rain.iter().all(|r| r.total_mm > 100.0), "{:?}", a.rain);
    let avg = a.rain.iter().map(|r| r.total_mm).sum::<f64>() / a.rain.len() as f64;
    assert!((a.district_rain_mm.unwrap() - avg).abs() < 1e-9);
    // Pumps: each report holds a minute (the station reports every minute).
    let bz = a.stations.iter().find(|s| s.site == "BH-BZ-01").unwrap();
    for p in &bz.pumps {
        let minutes = msgs
            .iter()
            .filter(|m| m.site == "BH-BZ-01")
            .filter(|m| field(m, &format!("pump{}_running", p.no)) == Some(1.0))
            .count() as i64;
        assert_eq!(p.running_ns, minutes * MIN, "pump {}", p.no);
    }
    let pump2 = &bz.pumps[1];
    assert_eq!(pump2.faults, 1, "滨河 pump 2 faults once, at 2 h 30");
    assert!(pump2.fault_ns > 3 * 3600 * S);
    let forebay = msgs.iter().filter(|m| m.site == "BH-BZ-01").filter_map(|m| field(m, "forebay_level_m"));
    assert_eq!(bz.forebay_peak.unwrap().value, forebay.fold(f64::MIN, f64::max));
    // Depths: the peak is the highest report; the levels the engine's.
    let js = a.depths.iter().find(|d| d.site == "CD-JS-01").unwrap();
    let highest = msgs.iter().filter(|m| m.site == "CD-JS-01").filter_map(|m| field(m, "water_depth_cm"));
    assert_eq!(js.peak.unwrap().value, highest.fold(f64::MIN, f64::max));
    assert!(js.top >= Some(Level::III), "{js:?}");
    assert!(js.above_ns[0] >= js.above_ns[1] && js.above_ns[1] >= js.above_ns[2]);
    let t = crate::replay::run(&c.plan, &readings, S);
    let raised = t
        .iter()
        .find(|t| matches!(&t.change, Change::Site(c) if &*c.site == "CD-JS-01" && c.from.is_none()))
        .unwrap();
    let cleared = t
        .iter()
        .find(|t| matches!(&t.change, Change::Site(c) if &*c.site == "CD-JS-01" && c.to.is_none()))
        .unwrap();
    assert_eq!(js.above_ns[0], cleared.at - raised.at, "one episode at Ⅳ or above");
    assert_eq!(js.drain_ns, Some(cleared.at - js.peak.unwrap().at));
}

#[test]
fn a_weaker_storm_rains_less_and_floods_less() {
    let c = sample();
    let until = T0 + 7 * 3600 * S;
    let a = analyse(&c.plan, &storm(1.0).1, T0, until, "a");
    let b = analyse(&c.plan, &storm(0.6).1, T0, until, "b");
    let rows = compare::compare(&a, &b, &["CD-JS-01".to_string()], &c.sites.renovations);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let ratio = r.b.rain_mm.unwrap() / r.a.rain_mm.unwrap();
    assert!((ratio - 0.6).abs() < 0.01, "rain ratio {ratio}");
    assert!(r.b.peak.unwrap() < r.a.peak.unwrap());
    assert!(r.b.above_iv_ns < r.a.above_iv_ns);
    assert_eq!(r.renovation.as_ref().unwrap().1.as_deref(), Some("2026-05-20"));
    let md = compare::markdown(
        "某区",
        [&compare::Storm { label: "a".into(), since: T0, until }; 2],
        &rows,
        chrono_tz::Asia::Shanghai,
    );
    assert!(md.contains("| CD-JS-01 人民路铁路桥下穿 | 2026-05-20 完成 | 街道办楼顶 |"), "{md}");
}

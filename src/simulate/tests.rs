//! The scenarios against the sample district's real plan: what a duty
//! officer would expect a six-hour storm to do.

use std::collections::BTreeMap;
use std::path::Path;

use super::model::{self, Field, Scenario};
use super::*;
use crate::engine::{Change, Transition};
use crate::level::Level;

fn sample() -> crate::config::Config {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    crate::config::load_with_env(&main, &Default::default()).unwrap()
}

/// 2026-07-21 12:00 +08:00, in ms.
const START_MS: i64 = 1_784_606_400_000;

/// The storm at `speed`, replayed through the sample plan.
fn judged(speed: f64, seed: u64) -> Vec<Transition> {
    let c = sample();
    let tl = timeline(Scenario::Rainstorm, &c.sites.sites, seed, None, speed, START_MS, Duration::ZERO);
    let text: String = tl.iter().map(|(ts, m)| line(m, *ts) + "\n").collect();
    let rec = crate::replay::load(text.as_bytes()).unwrap();
    crate::replay::run(&c.plan, &rec.readings, 1_000_000_000)
}

fn highest(ts: &[Transition]) -> BTreeMap<String, Level> {
    let mut m: BTreeMap<String, Level> = BTreeMap::new();
    for t in ts {
        if let Change::Site(c) = &t.change {
            if let Some(l) = c.to {
                let e = m.entry(c.site.to_string()).or_insert(l);
                *e = (*e).max(l);
            }
        }
    }
    m
}

#[test]
fn a_seed_gives_the_same_storm_and_another_seed_another() {
    let sites = sample().sites.sites.clone();
    let a = model::generate(Scenario::Rainstorm, &sites, 7, 3600.0);
    assert_eq!(a, model::generate(Scenario::Rainstorm, &sites, 7, 3600.0));
    assert_ne!(a, model::generate(Scenario::Rainstorm, &sites, 8, 3600.0));
    assert!(a.windows(2).all(|w| w[0].at_s <= w[1].at_s), "in time order");
}

#[test]
fn the_storm_rains_like_a_cma_red_signal_and_ends() {
    let per_min: Vec<f64> =
        (0..7 * 60).map(|m| model::intensity(Scenario::Rainstorm, m as f64 * 60.0) / 60.0).collect();
    let total: f64 = per_min.iter().sum();
    let wettest_3h = per_min.windows(180).map(|w| w.iter().sum::<f64>()).fold(0.0, f64::max);
    assert!((120.0..200.0).contains(&total), "storm total {total:.0} mm");
    assert!(wettest_3h >= 100.0, "wettest 3 h {wettest_3h:.0} mm: CMA Ⅰ");
    assert_eq!(model::intensity(Scenario::Rainstorm, 6.5 * 3600.0), 0.0);
}

#[test]
fn the_storm_drives_the_sample_plan_to_orange_and_red() {
    let ts = judged(60.0, 1);
    let top = highest(&ts);
    // Underpasses and garage entrances flood; the river passes 警戒.
    let points = ["CD-JS-01", "CD-JS-02", "CD-JS-03", "BH-JS-01", "BH-JS-02", "XC-JS-01", "XC-JS-02"];
    for site in points {
        assert!(top.get(site).is_some_and(|l| *l >= Level::III), "{site}: {top:?}");
    }
    let orange = points.iter().filter(|s| top.get(**s).is_some_and(|l| *l >= Level::II)).count();
    assert!(orange >= 3, "several points close (Ⅱ or Ⅰ): {top:?}");
    assert!(top.get("BH-SW-01").is_some_and(|l| *l >= Level::III), "the river passes 警戒: {top:?}");
    assert!(top.contains_key("BH-BZ-01"), "滨河 pump station: {top:?}");
    let districts: Vec<_> = ts.iter().filter(|t| matches!(t.change, Change::District { .. })).collect();
    assert!(!districts.is_empty(), "the district level moves");
    // And everything clears once it drains.
    let last: BTreeMap<String, Option<Level>> = ts
        .iter()
        .filter_map(|t| match &t.change {
            Change::Site(c) if c.rule.as_ref() == "depth" => Some((c.site.to_string(), c.to)),
            _ => None,
        })
        .collect();
    assert!(last.values().all(Option::is_none), "every waterlogging point drained: {last:?}");
}

#[test]
fn binhe_pump_2_faults_mid_storm_and_the_last_gauge_goes_silent() {
    let sites = sample().sites.sites.clone();
    let msgs = model::generate(Scenario::Rainstorm, &sites, 3, model::STORM_S);
    let fault_at = msgs
        .iter()
        .filter(|m| m.site == "BH-BZ-01")
        .find(|m| m.fields.iter().any(|(k, v)| k == "pump2_fault" && *v == Field::Bool(true)))
        .map(|m| m.at_s)
        .expect("pump 2 faults");
    assert!((model::PUMP_FAULT_S..model::PUMP_FAULT_S + 120.0).contains(&fault_at), "{fault_at}");
    let gauge = sites.iter().rev().find(|s| s.kind == crate::config::Kind::RainGauge).unwrap();
    let last = msgs.iter().filter(|m| m.site == gauge.id).map(|m| m.at_s).fold(0.0, f64::max);
    assert!(last < model::SILENT_AFTER_S, "{} silent after {last} s", gauge.id);
    let other = sites.iter().find(|s| s.kind == crate::config::Kind::RainGauge && s.id != gauge.id).unwrap();
    assert!(msgs.iter().any(|m| m.site == other.id && m.at_s > model::SILENT_AFTER_S));
}

#[test]
fn pump_failure_raises_the_forebay_as_the_pumps_go() {
    let c = sample();
    let tl = timeline(Scenario::PumpFailure, &c.sites.sites, 5, None, 60.0, START_MS, Duration::ZERO);
    let text: String = tl.iter().map(|(ts, m)| line(m, *ts) + "\n").collect();
    let rec = crate::replay::load(text.as_bytes()).unwrap();
    let ts = crate::replay::run(&c.plan, &rec.readings, 1_000_000_000);
    let rules: Vec<String> = ts
        .iter()
        .filter_map(|t| match &t.change {
            Change::Site(c) if c.site.as_ref() == "BH-BZ-01" && c.to.is_some() => Some(c.rule.to_string()),
            _ => None,
        })
        .collect();
    assert!(rules.iter().any(|r| r == "forebay_pump_fault"), "{rules:?}");
}

#[test]
fn payload_and_line_carry_the_same_readings() {
    let m = model::Message {
        at_s: 60.0,
        site: "BH-BZ-01".into(),
        fields: vec![("forebay_level_m".into(), Field::Num(1.25)), ("pump2_fault".into(), Field::Bool(true))],
    };
    assert_eq!(payload(&m, 1000), r#"{"ts":1000,"forebay_level_m":1.25,"pump2_fault":true}"#);
    assert_eq!(line(&m, 1000), "telemetry,site=BH-BZ-01 forebay_level_m=1.25,pump2_fault=true 1000000000");
    let (site, depth) = model::load_message(1_000_001, 1000);
    assert_eq!((site.as_str(), depth), ("L-000001", 0.5 + (1000 % 8) as f64));
}

fn options(speed: f64) -> Options {
    Options {
        broker: None,
        scenario: "rainstorm".into(),
        duration: None,
        speed,
        seed: 1,
        sites: 0,
        rate: 0,
        output: None,
        client_id: "t".into(),
        skip: Duration::ZERO,
        sl651: None,
        sl651_centre: 1,
        timezone: chrono_tz::Asia::Shanghai,
        start_ms: None,
        clock: None,
        rain_scale: 1.0,
    }
}

#[test]
fn a_file_with_no_broker_is_in_model_time_whatever_the_speed() {
    let sites = sample().sites.sites.clone();
    let now = START_MS;
    let a = schedule(&options(1.0), Scenario::Rainstorm, &sites, now);
    let b = schedule(&options(100_000.0), Scenario::Rainstorm, &sites, now);
    let stamps =
        |v: &[(i64, i64, Message)]| v.iter().map(|(ts, _, m)| (*ts, m.site.clone())).collect::<Vec<_>>();
    assert_eq!(stamps(&a), stamps(&b), "the speed does not change a file's times");
    // The storm ends now: 6.5 hours of it, up to now, never after.
    let (first, last) = (a.first().unwrap().0, a.last().unwrap().0);
    assert!(last <= now && now - last < 60_000, "{last} vs {now}");
    assert!(first - (now - 6 * 3_600_000 - 1_800_000) < 5 * 60_000, "starts 6 h 30 min before");
    // A pump station reports every model minute.
    let pump: Vec<i64> = a.iter().filter(|(_, _, m)| m.site == "BH-BZ-01").map(|(ts, _, _)| *ts).collect();
    assert!(pump.windows(2).all(|w| w[1] - w[0] == 60_000));
    // `--start` puts it where asked.
    let mut o = options(7.0);
    o.start_ms = Some(START_MS);
    let c = schedule(&o, Scenario::Rainstorm, &sites, now + 99);
    assert_eq!(c[0].0 - START_MS, (c[0].2.at_s * 1000.0) as i64);
}

#[test]
fn on_a_compressed_clock_readings_carry_storm_time_and_go_at_its_wall_time() {
    let sites = sample().sites.sites.clone();
    let epoch = START_MS;
    let mut o = options(60.0);
    o.broker = Some("mqtt://127.0.0.1:1".into());
    o.clock = crate::clock::Clock::compressed(epoch * 1_000_000, 60.0);
    let v = schedule(&o, Scenario::Rainstorm, &sites, epoch);
    for (ts, send_at, m) in v.iter().step_by(97) {
        assert_eq!(*ts, epoch + (m.at_s * 1000.0).round() as i64, "storm time from the epoch");
        assert!((send_at - (epoch + (m.at_s * 1000.0 / 60.0).round() as i64)).abs() <= 1, "sent at / 60");
    }
    // Without a clock or a start, a publisher stamps the wall time it sends at.
    o.clock = None;
    let w = schedule(&o, Scenario::Rainstorm, &sites, epoch);
    assert!(w.iter().all(|(ts, send_at, _)| ts == send_at));
}

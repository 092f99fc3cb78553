use std::path::Path;

use super::*;

/// 2026-07-21 00:00 +08:00
const T0: i64 = 1_784_563_200_000_000_000;
const MIN: i64 = 60_000_000_000;

fn plan_with(edits: &[(&str, &str)]) -> Arc<Plan> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dir = tempfile::tempdir().unwrap();
    for f in ["floodguard.toml", "sites.toml", "plan.toml", "teams.toml", "materials.toml"] {
        let mut text = std::fs::read_to_string(src.join(f)).unwrap();
        if f == "plan.toml" {
            for (a, b) in edits {
                assert!(text.contains(a));
                text = text.replacen(a, b, 1);
            }
        }
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    crate::config::load_with_env(&dir.path().join("floodguard.toml"), &Default::default()).unwrap().plan
}

/// An underpass filling 1 cm a minute from 5 cm to 30, then draining.
fn storm() -> String {
    let mut s = String::from("# DML\n# CONTEXT-DATABASE: flood\n");
    for k in 0..=25 {
        s.push_str(&format!(
            "telemetry,kind=waterlogging,site=CD-JS-01,street=chengdong water_depth_cm={},battery_v=3.6 {}\n",
            5 + k,
            T0 + k * MIN
        ));
    }
    for k in 0..10 {
        s.push_str(&format!("telemetry,site=CD-JS-01 water_depth_cm=2 {}\n", T0 + (26 + k) * MIN));
    }
    // Another measurement, and a broken line.
    s.push_str(&format!("area_level,street=chengdong level=2i {T0}\n"));
    s.push_str("telemetry,site=CD-JS-01 water_depth_cm= 5\n");
    s
}

fn shown(ts: &[Transition]) -> Vec<String> {
    ts.iter()
        .filter_map(|t| match &t.change {
            Change::Site(c) => Some(format!("{} {} {:?}→{:?}", (t.at - T0) / MIN, c.rule, c.from, c.to)),
            _ => None,
        })
        .collect()
}

#[test]
fn load_reads_telemetry_in_time_order_and_counts_the_rest() {
    // Series by series, as an export writes them: out of time order overall.
    let text = format!(
        "telemetry,site=BH-SW-01 level_m=4.1 {}\ntelemetry,site=CD-JS-01 water_depth_cm=3,online=true {}\n",
        T0 + MIN,
        T0
    );
    let rec = load((text + &storm()).as_bytes()).unwrap();
    assert_eq!(rec.bad_lines, 1);
    assert!(rec.first_errors[0].contains("bad field value"), "{:?}", rec.first_errors);
    assert_eq!(rec.other, 1);
    assert!(rec.readings.windows(2).all(|w| w[0].ts <= w[1].ts));
    assert_eq!(rec.readings.len(), 2 + 1 + 26 * 2 + 10);
    assert_eq!(rec.readings[0].value, Value::Float(3.0));
    assert_eq!(rec.readings[1].value, Value::Bool(true));
}

#[test]
fn seconds_and_milliseconds_are_recognised() {
    let rec =
        load("telemetry,site=A x=1 1784563200\ntelemetry,site=A x=2 1784563200001\n".as_bytes()).unwrap();
    assert_eq!(rec.readings[0].ts, T0);
    assert_eq!(rec.readings[1].ts, T0 + 1_000_000);
}

#[test]
fn a_replay_gives_the_plans_level_changes() {
    let plan = plan_with(&[]);
    let rec = load(storm().as_bytes()).unwrap();
    let ts = run(&plan, &rec.readings, MIN);
    assert_eq!(
        shown(&ts),
        [
            "6 depth None→Some(IV)",       // 10, 11 cm
            "16 depth Some(IV)→Some(III)", // 20, 21 cm
            "23 depth Some(III)→Some(II)", // 27, 28 cm
            "27 depth Some(II)→None"       // 2, 2 cm
        ]
    );
    let mut out = Vec::new();
    write_json(&mut out, &ts, chrono_tz::Asia::Shanghai).unwrap();
    let first = String::from_utf8(out).unwrap().lines().next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["ts"], "2026-07-21T00:06:00+08:00");
    assert_eq!(v["site"], "CD-JS-01");
    assert_eq!(v["rule"], "depth");
    assert_eq!(v["from"], serde_json::Value::Null);
    assert_eq!(v["to"], "IV");
    assert_eq!(v["value"], 11.0);
}

#[test]
fn the_text_report_reads_well() {
    let plan = plan_with(&[]);
    let rec = load(storm().as_bytes()).unwrap();
    let ts = run(&plan, &rec.readings, MIN);
    let mut out = Vec::new();
    write_text(&mut out, &rec, &plan, Path::new("storm.lp"), &ts, chrono_tz::Asia::Shanghai).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("replay of storm.lp\n  62 readings of 1 sites, 2026-07-21 00:00:00 → 2026-07-21 00:35:00 (Asia/Shanghai)"), "{text}");
    assert!(text.contains("CD-JS-01 人民路铁路桥下穿 · 城东街道"), "{text}");
    assert!(text.contains("00:06:00  depth 积水深度"), "{text}");
    assert!(text.contains("— → Ⅳ   11 cm (threshold 10 cm)  rising 60 cm/h, Ⅲ in ~9 min"), "{text}");
    assert!(text.contains("城东街道"), "{text}");
    assert!(text.contains("summary: 4 level changes at 1 sites, highest Ⅱ级 at CD-JS-01 00:23:00"), "{text}");
}

#[test]
fn comparing_plans_shows_what_appears_vanishes_and_moves() {
    let a = plan_with(&[]);
    // B: Ⅲ at 15 cm (earlier), no Ⅱ, and Ⅰ at 28 (appears).
    let b = plan_with(&[(
        "thresholds = { IV = 10, III = 20, II = 27, I = 40 }",
        "thresholds = { IV = 10, III = 15, I = 28 }",
    )]);
    let rec = load(storm().as_bytes()).unwrap();
    let c = compare(&run(&a, &rec.readings, MIN), &run(&b, &rec.readings, MIN));
    let name = |k: &AlertKey| format!("{} {} {}", k.site, k.rule, k.level);
    assert_eq!(c.same, 1, "Ⅳ at the same time");
    assert_eq!(
        c.moves.iter().map(|(k, a, b)| (name(k), (a - T0) / MIN, (b - T0) / MIN)).collect::<Vec<_>>(),
        [("CD-JS-01 depth III".to_string(), 16, 11)]
    );
    assert_eq!(c.vanishes.iter().map(|(k, _)| name(k)).collect::<Vec<_>>(), ["CD-JS-01 depth II"]);
    assert_eq!(c.appears.iter().map(|(k, _)| name(k)).collect::<Vec<_>>(), ["CD-JS-01 depth I"]);
    let mut out = Vec::new();
    write_comparison_text(&mut out, &c, Path::new("a.toml"), Path::new("b.toml"), chrono_tz::Asia::Shanghai)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("moves            CD-JS-01 depth Ⅲ级"), "{text}");
    assert!(text.contains("00:16:00 → 00:11:00 (5 min earlier)"), "{text}");
    assert!(text.contains("1 alerts the same, 1 appear, 1 vanish, 1 move"), "{text}");
}

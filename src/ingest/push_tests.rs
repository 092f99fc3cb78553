use proptest::prelude::*;

use super::*;
use crate::catalog::Catalog;
use crate::config::{HumanDuration, Kind, MqttSection};

/// 2026-07-21T14:05:00+08:00
const NOW: TimestampNs = 1_784_613_900_000_000_000;

fn decoder() -> Decoder {
    let catalog = Catalog::from_sites([
        ("CD-JS-01", Kind::Waterlogging, "chengdong"),
        ("BH-BZ-01", Kind::PumpStation, "binhe"),
    ]);
    let mqtt = MqttSection { max_future: HumanDuration::secs(300), ..MqttSection::default() };
    Decoder::new(Arc::new(catalog), &mqtt)
}

fn values(m: &[Reading]) -> Vec<(String, String, Value, TimestampNs)> {
    m.iter().map(|r| (r.site.to_string(), r.metric.to_string(), r.value, r.ts)).collect()
}

#[test]
fn telegraf_lines_become_one_message_each() {
    let body = "telemetry,site=CD-JS-01,host=gw1 water_depth_cm=12.5,battery_v=3.6 1784613840000000000\n\
                telemetry,site=BH-BZ-01 pump1_running=true,pump2_fault=f,forebay_level_m=2i 1784613840000000000\n";
    let d = line_protocol(&decoder(), body, Precision::Ns, NOW);
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.messages.len(), 2);
    let ts = 1_784_613_840_000_000_000;
    assert_eq!(
        values(&d.messages[0]),
        vec![
            ("CD-JS-01".into(), "water_depth_cm".into(), Value::Float(12.5), ts),
            ("CD-JS-01".into(), "battery_v".into(), Value::Float(3.6), ts),
        ]
    );
    assert_eq!(
        values(&d.messages[1]),
        vec![
            ("BH-BZ-01".into(), "pump1_running".into(), Value::Bool(true), ts),
            ("BH-BZ-01".into(), "pump2_fault".into(), Value::Bool(false), ts),
            ("BH-BZ-01".into(), "forebay_level_m".into(), Value::Float(2.0), ts),
        ]
    );
}

#[test]
fn precision_and_missing_timestamp() {
    let dec = decoder();
    for (p, ts) in [
        ("s", "1784613840"),
        ("ms", "1784613840000"),
        ("u", "1784613840000000"),
        ("us", "1784613840000000"),
        ("n", "1784613840000000000"),
        ("m", "29743564"),
    ] {
        let precision = Precision::parse(Some(p)).unwrap();
        let d =
            line_protocol(&dec, &format!("telemetry,site=CD-JS-01 water_depth_cm=1 {ts}"), precision, NOW);
        assert_eq!(d.messages[0][0].ts, 1_784_613_840_000_000_000, "precision {p}");
    }
    let d = line_protocol(&dec, "telemetry,site=CD-JS-01 water_depth_cm=1", Precision::Ns, NOW);
    assert_eq!(d.messages[0][0].ts, NOW, "no timestamp: the receive time");
    assert!(Precision::parse(Some("d")).unwrap_err().contains("\"d\""));
}

#[test]
fn strings_devices_send_for_numbers_and_flags() {
    let body = r#"telemetry,site=BH-BZ-01 level_m="2.35",pump1_running="on",pump2_running="OFF",pump1_fault="0" 1784613840000000000"#;
    let d = line_protocol(&decoder(), body, Precision::Ns, NOW);
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    let v: Vec<Value> = d.messages[0].iter().map(|r| r.value).collect();
    assert_eq!(v, vec![Value::Float(2.35), Value::Bool(true), Value::Bool(false), Value::Float(0.0)]);
}

#[test]
fn bad_lines_are_named_by_number_and_cause_and_the_good_kept() {
    let body = "telemetry,site=CD-JS-01 water_depth_cm=10 1784613840000000000\n\
                \n\
                # a comment\n\
                cpu,host=a usage=3 1784613840000000000\n\
                telemetry,host=a water_depth_cm=3 1784613840000000000\n\
                telemetry,site=XX-01 water_depth_cm=3 1784613840000000000\n\
                telemetry,site=CD-JS-01 water_depth_cm=\"deep\" 1784613840000000000\n\
                telemetry,site=CD-JS-01 water_depth_cm=1 17846138400000000000000\n\
                telemetry,site=CD-JS-01 water_depth_cm=1 1\n\
                telemetry,site=CD-JS-01 water_depth_cm=1 1784614840000000000\n\
                telemetry,site=CD-JS-01\n\
                telemetry,site=CD-JS-01 _value=1\n\
                telemetry,site=CD-JS-01 water_depth_cm=11 1784613850000000000\n";
    let d = line_protocol(&decoder(), body, Precision::Ns, NOW);
    let got: Vec<(usize, &str)> = d.rejected.iter().map(|r| (r.at, r.cause)).collect();
    assert_eq!(
        got,
        vec![
            (4, "unknown_measurement"),
            (5, "missing_site"),
            (6, "unknown_site"),
            (7, "wrong_type"),
            (8, "malformed_line"),
            (9, "bad_timestamp"),
            (10, "future_timestamp"),
            (11, "malformed_line"),
            (12, "invalid_metric"),
        ]
    );
    assert!(d.rejected[2].error.contains("XX-01"), "{}", d.rejected[2].error);
    let depths: Vec<Value> = d.messages.iter().map(|m| m[0].value).collect();
    assert_eq!(depths, vec![Value::Float(10.0), Value::Float(11.0)]);
}

#[test]
fn json_object_or_array_with_site() {
    let dec = decoder();
    let one = br#"{"site": "CD-JS-01", "ts": 1784613840000, "water_depth_cm": 12.5}"#;
    let d = json(&dec, one, NOW).unwrap();
    assert_eq!(
        values(&d.messages[0]),
        vec![("CD-JS-01".into(), "water_depth_cm".into(), Value::Float(12.5), 1_784_613_840_000_000_000)]
    );
    let many = br#"[{"site": "CD-JS-01", "water_depth_cm": 1}, {"water_depth_cm": 2}, 3,
                   {"site": "CD-JS-01", "water_depth_cm": "x"}, {"site": 7}, {"site": "BH-BZ-01", "pump1_running": true}]"#;
    let d = json(&dec, many, NOW).unwrap();
    let got: Vec<(usize, &str)> = d.rejected.iter().map(|r| (r.at, r.cause)).collect();
    assert_eq!(got, vec![(1, "missing_site"), (2, "wrong_type"), (3, "wrong_type"), (4, "wrong_type")]);
    assert_eq!(d.messages.len(), 2);
    assert_eq!(d.messages[0][0].ts, NOW);
    assert_eq!(json(&dec, b"{not json", NOW).unwrap_err().cause, "malformed_json");
}

#[test]
fn every_cause_is_counted_once() {
    let all = all_causes();
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(all.len(), dedup.len());
    for c in ["malformed_line", "unknown_site", "wrong_type", "future_timestamp"] {
        assert!(all.contains(&c), "{c}");
    }
}

proptest! {
    /// Whatever the body, decoding never panics, and every line is either a
    /// message or named as rejected.
    #[test]
    fn any_body_is_accounted_for(lines in proptest::collection::vec(
        prop_oneof![
            "[ -~]{0,40}",
            Just("telemetry,site=CD-JS-01 water_depth_cm=1".to_string()),
            "telemetry,site=CD-JS-0[0-2] water_depth_cm=[0-9.e-]{1,6}( [0-9]{1,20})?",
        ],
        0..20,
    )) {
        let body = lines.join("\n");
        let d = line_protocol(&decoder(), &body, Precision::Ns, NOW);
        let blank = lines.iter().filter(|l| l.trim().is_empty() || l.trim_start().starts_with('#')).count();
        prop_assert_eq!(d.messages.len() + d.rejected.len() + blank, lines.len());
    }
}

#[test]
fn fields_take_their_metrics_types_and_a_bad_one_is_named_while_the_line_is_kept() {
    let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    let config = crate::config::load_with_env(&main, &Default::default()).expect("sample config");
    let mqtt = MqttSection { max_future: HumanDuration::secs(300), ..MqttSection::default() };
    let dec = Decoder::new(Arc::new(Catalog::from_config(&config)), &mqtt);
    let body = "telemetry,site=BH-BZ-01 pump1_fault=1i,pump2_running=\"on\",forebay_level_m=\"abc\" 1784613840000000000\n";
    let d = line_protocol(&dec, body, Precision::Ns, NOW);
    let ts = 1_784_613_840_000_000_000;
    assert_eq!(
        values(&d.messages[0]),
        vec![
            ("BH-BZ-01".into(), "pump1_fault".into(), Value::Bool(true), ts),
            ("BH-BZ-01".into(), "pump2_running".into(), Value::Bool(true), ts),
        ]
    );
    assert_eq!(d.rejected.len(), 1, "{:?}", d.rejected);
    assert_eq!((d.rejected[0].at, d.rejected[0].cause), (1, "wrong_type"));
    assert!(d.rejected[0].error.contains("forebay_level_m: expected a number"), "{:?}", d.rejected);
    let j = json(&dec, br#"{"site":"CD-JS-01","water_depth_cm":"12.5","sensor_fault":"off"}"#, NOW).unwrap();
    assert!(j.rejected.is_empty(), "{:?}", j.rejected);
    assert_eq!(
        values(&j.messages[0]),
        vec![
            ("CD-JS-01".into(), "sensor_fault".into(), Value::Bool(false), NOW),
            ("CD-JS-01".into(), "water_depth_cm".into(), Value::Float(12.5), NOW),
        ]
    );
}

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::config::{FieldMapping, HumanDuration, Kind, MappingConfig, PayloadFormat};

/// 2026-07-21T14:05:00+08:00
const NOW: TimestampNs = 1_784_613_900_000_000_000;
const MS: i64 = 1_000_000;

fn mqtt(mappings: Vec<MappingConfig>) -> MqttSection {
    MqttSection { mappings, max_future: HumanDuration::secs(300), ..MqttSection::default() }
}

fn decoder_with(mappings: Vec<MappingConfig>) -> Decoder {
    let catalog = Catalog::from_sites([
        ("CD-JS-01", Kind::Waterlogging, "chengdong"),
        ("BH-BZ-01", Kind::PumpStation, "binhe"),
        ("BH-SW-01", Kind::River, "binhe"),
    ]);
    Decoder::new(Arc::new(catalog), &mqtt(mappings))
}

fn decoder() -> Decoder {
    decoder_with(vec![])
}

fn decode(topic: &str, payload: &str) -> Result<Vec<Reading>, DecodeError> {
    decoder().decode(topic, payload.as_bytes(), NOW).map(|d| d.readings)
}

fn values(r: &[Reading]) -> Vec<(String, Value, TimestampNs)> {
    r.iter().map(|r| (r.metric.to_string(), r.value, r.ts)).collect()
}

#[test]
fn telemetry_with_rfc3339_ts() {
    let r = decode(
        "flood/CD-JS-01/telemetry",
        r#"{"ts":"2026-07-21T14:04:00+08:00","water_depth_cm":12.5,"battery_v":3.61}"#,
    )
    .unwrap();
    let ts = NOW - 60_000 * MS;
    assert_eq!(
        values(&r),
        [("water_depth_cm".into(), Value::Float(12.5), ts), ("battery_v".into(), Value::Float(3.61), ts)]
    );
    assert!(r.iter().all(|r| &*r.site == "CD-JS-01"));
}

#[test]
fn telemetry_with_epoch_ms_seconds_and_none() {
    let r = decode("flood/CD-JS-01/telemetry", r#"{"ts":1784613840000,"water_depth_cm":1}"#).unwrap();
    assert_eq!(r[0].ts, NOW - 60_000 * MS);
    let r = decode("flood/CD-JS-01/telemetry", r#"{"ts":1784613840,"water_depth_cm":1}"#).unwrap();
    assert_eq!(r[0].ts, NOW - 60_000 * MS);
    let r = decode("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":1}"#).unwrap();
    assert_eq!(r[0].ts, NOW, "no ts: the receive time");
}

#[test]
fn booleans_integers_and_unknown_metrics_are_kept() {
    let r = decode(
        "flood/BH-BZ-01/telemetry",
        r#"{"pump1_running":true,"pump2_fault":false,"run_hours":1200,"vendor_x":-3}"#,
    )
    .unwrap();
    assert_eq!(
        values(&r),
        [
            ("pump1_running".into(), Value::Bool(true), NOW),
            ("pump2_fault".into(), Value::Bool(false), NOW),
            ("run_hours".into(), Value::Float(1200.0), NOW),
            ("vendor_x".into(), Value::Float(-3.0), NOW),
        ]
    );
}

#[test]
fn a_repeated_metric_keeps_the_last_value() {
    let r = decode("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":1,"water_depth_cm":2}"#).unwrap();
    assert_eq!(values(&r), [("water_depth_cm".into(), Value::Float(2.0), NOW)]);
}

#[test]
fn every_cause_is_its_own_error() {
    let cases: &[(&str, &str, &str)] = &[
        ("flood/CD-JS-01/telemetry", "{\"water_depth_cm\":12.5", "malformed_json"),
        ("flood/CD-JS-01/telemetry", "not json", "malformed_json"),
        ("flood/CD-JS-01/telemetry", "", "malformed_json"),
        ("flood/CD-JS-01/telemetry", "[1,2]", "wrong_type"),
        ("flood/CD-JS-01/telemetry", "12.5", "wrong_type"),
        ("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":"abc"}"#, "wrong_type"),
        ("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":null}"#, "wrong_type"),
        ("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":{"v":1}}"#, "wrong_type"),
        ("flood/CD-JS-01/telemetry", r#"{"ts":true,"water_depth_cm":1}"#, "wrong_type"),
        ("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":1e400}"#, "non_finite"),
        ("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":-1e999}"#, "non_finite"),
        ("flood/XX-99/telemetry", r#"{"water_depth_cm":1}"#, "unknown_site"),
        ("flood//telemetry", r#"{"water_depth_cm":1}"#, "unknown_site"),
        (
            "flood/CD-JS-01/telemetry",
            r#"{"ts":"2026-07-21T14:11:00+08:00","water_depth_cm":1}"#,
            "future_timestamp",
        ),
        ("flood/CD-JS-01/telemetry", r#"{"ts":"yesterday","water_depth_cm":1}"#, "bad_timestamp"),
        ("flood/CD-JS-01/telemetry", r#"{"ts":"2026-07-21 14:00:00","water_depth_cm":1}"#, "bad_timestamp"),
        ("flood/CD-JS-01/telemetry", r#"{"ts":0,"water_depth_cm":1}"#, "bad_timestamp"),
        ("flood/CD-JS-01/telemetry", r#"{"ts":1000,"water_depth_cm":1}"#, "bad_timestamp"),
        ("flood/CD-JS-01/telemetry", r#"{"time":1}"#, "invalid_metric"),
        ("flood/CD-JS-01/telemetry", r#"{"_value":1}"#, "invalid_metric"),
        ("flood/CD-JS-01/telemetry", r#"{"":1}"#, "invalid_metric"),
        ("flood/CD-JS-01/telemetry", "{\"a\\nb\":1}", "invalid_metric"),
        ("flood/CD-JS-01/telemetry", r#"{}"#, "no_metrics"),
        ("flood/CD-JS-01/telemetry", r#"{"ts":1784613840000}"#, "no_metrics"),
        ("flood/CD-JS-01/status", "maybe", "bad_status"),
        ("flood/CD-JS-01/status", r#"{"state":"online"}"#, "bad_status"),
        ("flood/CD-JS-01/other", "{}", "unknown_topic"),
        ("flood/CD-JS-01/telemetry/extra", "{}", "unknown_topic"),
        ("elsewhere/CD-JS-01/telemetry", "{}", "unknown_topic"),
    ];
    for (topic, payload, cause) in cases {
        match decode(topic, payload) {
            Err(e) => assert_eq!(e.cause(), *cause, "{topic} {payload:?}: {e}"),
            Ok(r) => panic!("{topic} {payload:?} decoded to {r:?}, expected {cause}"),
        }
    }
}

#[test]
fn errors_say_what_was_wrong() {
    let e = decode("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":[1]}"#).unwrap_err();
    assert_eq!(e.to_string(), "water_depth_cm: expected a number or a boolean, found an array");
    let e = decode("flood/CD-JS-01/telemetry", r#"{"water_depth_cm":"abc"}"#).unwrap_err();
    assert_eq!(e.to_string(), "water_depth_cm: expected a number or a flag, found the text \"abc\"");
    let e = decode("flood/XX-99/telemetry", "{}").unwrap_err();
    assert_eq!(e.to_string(), "unknown site \"XX-99\"");
}

#[test]
fn oversize_is_checked_before_anything_else() {
    let d = decoder();
    let limit = MqttSection::default().max_payload;
    let mut big = format!("{{\"water_depth_cm\":1,\"pad\":\"{}\"}}", "x".repeat(limit));
    assert_eq!(d.decode("flood/CD-JS-01/telemetry", big.as_bytes(), NOW).unwrap_err().cause(), "oversize");
    assert_eq!(d.decode("nowhere", &vec![b'x'; limit + 1], NOW).unwrap_err().cause(), "oversize");
    // Exactly at the limit it is decoded (the string field left out, the depth kept).
    big = format!("{{\"water_depth_cm\":1,\"pad\":\"{}\"}}", "x".repeat(limit - 29));
    assert_eq!(big.len(), limit);
    let got = d.decode("flood/CD-JS-01/telemetry", big.as_bytes(), NOW).unwrap();
    assert_eq!(values(&got), [("water_depth_cm".into(), Value::Float(1.0), NOW)]);
    assert_eq!(got.skipped.iter().map(|e| e.cause()).collect::<Vec<_>>(), ["wrong_type"]);
}

#[test]
fn the_future_limit_is_five_minutes() {
    let at =
        |ahead_s: i64| format!(r#"{{"ts":{},"water_depth_cm":1}}"#, (NOW + ahead_s * 1_000_000_000) / MS);
    assert!(decode("flood/CD-JS-01/telemetry", &at(299)).is_ok());
    assert!(decode("flood/CD-JS-01/telemetry", &at(300)).is_ok());
    assert_eq!(
        decode("flood/CD-JS-01/telemetry", &at(301)).unwrap_err(),
        DecodeError::FutureTimestamp { ahead_s: 301 }
    );
    assert!(decode("flood/CD-JS-01/telemetry", &at(-86_400)).is_ok(), "late data is fine");
}

#[test]
fn status_messages() {
    for (payload, online) in
        [("online", true), ("offline", false), (" OFFLINE\n", false), ("\"online\"", true)]
    {
        let r = decode("flood/CD-JS-01/status", payload).unwrap();
        assert_eq!(values(&r), [(STATUS_METRIC.into(), Value::Bool(online), NOW)], "{payload:?}");
    }
    let r =
        decode("flood/CD-JS-01/status", r#"{"status":"offline","ts":"2026-07-21T14:04:00+08:00"}"#).unwrap();
    assert_eq!(values(&r), [(STATUS_METRIC.into(), Value::Bool(false), NOW - 60_000 * MS)]);
}

fn number_mapping() -> MappingConfig {
    MappingConfig {
        filter: "legacy/+/depth_m".into(),
        site_segment: 1,
        payload: PayloadFormat::Number,
        metric: Some("water_depth_cm".into()),
        scale: Some(100.0),
        fields: vec![],
        ts_path: None,
    }
}

fn json_mapping() -> MappingConfig {
    MappingConfig {
        filter: "gw/+/+/data".into(),
        site_segment: 2,
        payload: PayloadFormat::Json,
        metric: None,
        scale: None,
        fields: vec![
            FieldMapping { path: "obs.level".into(), metric: "level_m".into(), scale: 1.0 },
            FieldMapping { path: "obs.pumps.0.run".into(), metric: "pump1_running".into(), scale: 1.0 },
            FieldMapping { path: "obs.q".into(), metric: "flow_m3s".into(), scale: 0.001 },
        ],
        ts_path: Some("obs.time".into()),
    }
}

#[test]
fn a_bare_number_mapping_scales() {
    let d = decoder_with(vec![number_mapping()]);
    let r = d.decode("legacy/CD-JS-01/depth_m", b" 0.125\n", NOW).unwrap();
    assert_eq!(values(&r), [("water_depth_cm".into(), Value::Float(12.5), NOW)]);
    assert_eq!(d.decode("legacy/CD-JS-01/depth_m", b"deep", NOW).unwrap_err().cause(), "malformed_number");
    assert_eq!(d.decode("legacy/CD-JS-01/depth_m", b"NaN", NOW).unwrap_err().cause(), "non_finite");
    assert_eq!(d.decode("legacy/CD-JS-01/depth_m", b"1e307", NOW).unwrap_err().cause(), "non_finite");
    assert_eq!(d.decode("legacy/ZZ/depth_m", b"1", NOW).unwrap_err().cause(), "unknown_site");
}

#[test]
fn a_json_mapping_follows_paths() {
    let d = decoder_with(vec![json_mapping()]);
    let payload =
        r#"{"obs":{"time":"2026-07-21T14:04:00+08:00","level":"4.51","q":1200,"pumps":[{"run":true}]}}"#;
    let r = d.decode("gw/x/BH-SW-01/data", payload.as_bytes(), NOW).unwrap();
    let ts = NOW - 60_000 * MS;
    assert_eq!(
        values(&r),
        [
            ("level_m".into(), Value::Float(4.51), ts),
            ("pump1_running".into(), Value::Bool(true), ts),
            ("flow_m3s".into(), Value::Float(1.2), ts),
        ]
    );
    // Missing fields are skipped; none at all is an error of its own.
    let r = d.decode("gw/x/BH-SW-01/data", br#"{"obs":{"level":4.2}}"#, NOW).unwrap();
    assert_eq!(values(&r), [("level_m".into(), Value::Float(4.2), NOW)]);
    assert_eq!(d.decode("gw/x/BH-SW-01/data", br#"{"obs":{}}"#, NOW).unwrap_err().cause(), "no_metrics");
    assert_eq!(
        d.decode("gw/x/BH-SW-01/data", br#"{"obs":{"level":"high"}}"#, NOW).unwrap_err().cause(),
        "wrong_type"
    );
    assert_eq!(d.decode("gw/x/BH-SW-01/data", br#"{"obs":"#, NOW).unwrap_err().cause(), "malformed_json");
}

#[test]
fn mappings_come_before_default_topics_and_add_filters() {
    let mut m = number_mapping();
    m.filter = "flood/+/telemetry".into();
    m.metric = Some("raw".into());
    m.scale = Some(1.0);
    let d = decoder_with(vec![m]);
    let r = d.decode("flood/CD-JS-01/telemetry", b"7", NOW).unwrap();
    assert_eq!(values(&r), [("raw".into(), Value::Float(7.0), NOW)]);
    let d = decoder_with(vec![number_mapping(), json_mapping()]);
    assert_eq!(d.filters(), ["legacy/+/depth_m", "gw/+/+/data", "flood/+/telemetry", "flood/+/status"]);
}

#[test]
fn a_street_instance_reads_its_own_topics_in_floodguards_format() {
    let catalog = Arc::new(Catalog::from_sites([("CD-JS-01", Kind::Waterlogging, "chengdong")]));
    let mapping = |filter: &str, payload| MappingConfig {
        filter: filter.into(),
        site_segment: 2,
        payload,
        metric: None,
        scale: None,
        fields: vec![],
        ts_path: None,
    };
    let m = MqttSection {
        default_topics: false,
        mappings: vec![
            mapping("flood/chengdong/+/telemetry", PayloadFormat::Telemetry),
            mapping("flood/chengdong/+/status", PayloadFormat::Status),
        ],
        ..MqttSection::default()
    };
    let d = Decoder::new(catalog, &m);
    assert_eq!(d.filters(), ["flood/chengdong/+/telemetry", "flood/chengdong/+/status"]);
    let r = d.decode("flood/chengdong/CD-JS-01/telemetry", br#"{"water_depth_cm":21,"battery_v":3.6}"#, NOW);
    let r = r.unwrap();
    assert_eq!(
        values(&r),
        [("water_depth_cm".into(), Value::Float(21.0), NOW), ("battery_v".into(), Value::Float(3.6), NOW)]
    );
    let s = d.decode("flood/chengdong/CD-JS-01/status", b"offline", NOW).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        d.decode("flood/chengdong/XX-01/telemetry", b"{\"a\":1}", NOW).unwrap_err().cause(),
        "unknown_site"
    );
    assert_eq!(d.decode("flood/CD-JS-01/telemetry", b"{\"a\":1}", NOW).unwrap_err().cause(), "unknown_topic");
}

#[test]
fn default_topics_can_be_turned_off() {
    let catalog = Arc::new(Catalog::from_sites([("CD-JS-01", Kind::Waterlogging, "chengdong")]));
    let m = MqttSection { default_topics: false, mappings: vec![number_mapping()], ..MqttSection::default() };
    let d = Decoder::new(catalog, &m);
    assert_eq!(d.decode("flood/CD-JS-01/telemetry", b"{\"a\":1}", NOW).unwrap_err().cause(), "unknown_topic");
    assert_eq!(d.filters(), ["legacy/+/depth_m"]);
}

#[test]
fn causes_are_listed_once() {
    let mut c = DecodeError::CAUSES.to_vec();
    c.sort();
    c.dedup();
    assert_eq!(c.len(), DecodeError::CAUSES.len());
}

fn metric_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,20}".prop_filter("reserved", |s| s != "ts" && s != "time")
}

fn metric_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1e12f64..1e12).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| Value::Float(f64::from(i))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever arrives, decoding returns — it never panics.
    #[test]
    fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300), topic in "[a-z/+#A-Z0-9-]{0,30}") {
        let d = decoder_with(vec![number_mapping(), json_mapping()]);
        let _ = d.decode(&topic, &payload, NOW);
        let _ = d.decode("flood/CD-JS-01/telemetry", &payload, NOW);
        let _ = d.decode("flood/CD-JS-01/status", &payload, NOW);
        let _ = d.decode("gw/x/BH-SW-01/data", &payload, NOW);
        let _ = d.decode("legacy/CD-JS-01/depth_m", &payload, NOW);
    }

    /// Arbitrary text that looks like JSON never panics either.
    #[test]
    fn jsonish_text_never_panics(payload in r#"[{}\[\]":,0-9a-z.eE+\- ]{0,120}"#) {
        let _ = decode("flood/CD-JS-01/telemetry", &payload);
    }

    /// A well-formed telemetry object decodes to exactly its metrics.
    #[test]
    fn telemetry_round_trips(metrics in proptest::collection::btree_map(metric_name(), metric_value(), 1..12),
                             ts_ms in 946_684_800_000i64..1_784_614_000_000) {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), ts_ms.into());
        for (k, v) in &metrics {
            obj.insert(k.clone(), match v {
                Value::Float(f) => serde_json::json!(f),
                Value::Bool(b) => serde_json::json!(b),
            });
        }
        let payload = serde_json::to_vec(&obj).unwrap();
        let r = decoder().decode("flood/CD-JS-01/telemetry", &payload, NOW).unwrap();
        let got: BTreeMap<String, Value> = r.iter().map(|r| (r.metric.to_string(), r.value)).collect();
        prop_assert_eq!(got, metrics);
        prop_assert!(r.iter().all(|r| r.ts == ts_ms * MS));
    }
}

/// The sample district's catalogue: metric types from its plan.
fn sample_decoder() -> Decoder {
    let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    let config = crate::config::load_with_env(&main, &Default::default()).expect("sample config");
    Decoder::new(Arc::new(Catalog::from_config(&config)), &mqtt(vec![]))
}

#[test]
fn flags_and_numbers_as_devices_send_them() {
    let d = sample_decoder();
    let one = |payload: &str| {
        let got = d.decode("flood/BH-BZ-01/telemetry", payload.as_bytes(), NOW).unwrap();
        assert!(got.skipped.is_empty(), "{payload}: {:?}", got.skipped);
        got.readings[0].value
    };
    for payload in [
        r#"{"pump1_fault":1}"#,
        r#"{"pump1_fault":"1"}"#,
        r#"{"pump1_fault":true}"#,
        r#"{"pump1_fault":"true"}"#,
        r#"{"pump1_fault":"on"}"#,
    ] {
        assert_eq!(one(payload), Value::Bool(true), "{payload}");
    }
    for payload in [r#"{"pump2_running":0}"#, r#"{"pump2_running":"0"}"#, r#"{"pump2_running":"OFF"}"#] {
        assert_eq!(one(payload), Value::Bool(false), "{payload}");
    }
    assert_eq!(one(r#"{"forebay_level_m":"1.85"}"#), Value::Float(1.85));
    assert_eq!(one(r#"{"forebay_level_m":2}"#), Value::Float(2.0));
}

#[test]
fn a_bad_value_is_counted_and_the_rest_of_the_message_kept() {
    let d = sample_decoder();
    let got = d
        .decode(
            "flood/CD-JS-01/telemetry",
            br#"{"water_depth_cm":"abc","battery_v":"3.6","sensor_fault":2,"vendor_x":"ok"}"#,
            NOW,
        )
        .unwrap();
    assert_eq!(values(&got), [("battery_v".into(), Value::Float(3.6), NOW)]);
    let errors: Vec<String> = got.skipped.iter().map(|e| format!("{} {e}", e.cause())).collect();
    assert_eq!(
        errors,
        [
            "wrong_type water_depth_cm: expected a number, found the text \"abc\"",
            "wrong_type sensor_fault: expected a flag (true/false, 1/0, on/off), found the number 2",
            "wrong_type vendor_x: expected a number or a flag, found the text \"ok\"",
        ]
    );
    // A flag is not a depth either; with nothing left, the message is refused by the first cause.
    let e = d.decode("flood/CD-JS-01/telemetry", br#"{"water_depth_cm":true}"#, NOW).unwrap_err();
    assert_eq!(e.to_string(), "water_depth_cm: expected a number, found a boolean");
}

#[test]
fn mappings_coerce_too() {
    let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    let config = crate::config::load_with_env(&main, &Default::default()).expect("sample config");
    let mut m = json_mapping();
    m.filter = "plc/+/data".into();
    m.site_segment = 1;
    m.fields.push(FieldMapping { path: "f".into(), metric: "pump1_fault".into(), scale: 1.0 });
    let d = Decoder::new(Arc::new(Catalog::from_config(&config)), &mqtt(vec![m]));
    let got =
        d.decode("plc/BH-BZ-01/data", br#"{"obs":{"pumps":[{"run":"1"}],"q":"1200"},"f":1}"#, NOW).unwrap();
    let mut v = values(&got);
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        v,
        [
            ("flow_m3s".into(), Value::Float(1.2), NOW),
            ("pump1_fault".into(), Value::Bool(true), NOW),
            ("pump1_running".into(), Value::Bool(true), NOW),
        ],
        "a flag is not scaled, a number is: {:?}",
        got.skipped
    );
}

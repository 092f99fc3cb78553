//! Fuzz-style property tests of every decoder and parser of outside input:
//! MQTT payloads, InfluxDB line protocol (the push endpoints and `replay`),
//! pushed JSON, the four config files and their environment overrides,
//! SL 651 frames, spool records, ack-link tokens and the redaction of free
//! text. Each property holds for any input: no panic, and what comes out is
//! well-formed (or the input is named as rejected).
//!
//! Cases per property: `FLOODGUARD_FUZZ_CASES` (default 2,000, as CI runs
//! it). A nightly-length run:
//!
//! ```sh
//! FLOODGUARD_FUZZ_CASES=100000 cargo test --release --test fuzz
//! ```
//! A failing case is shrunk and printed: pin it as a unit test beside the
//! code it broke (as `config::tests::a_site_of_an_unknown_street_…` and
//! `tsdb::line_parse`'s quoted keys were).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use floodguard::catalog::Catalog;
use floodguard::config::{load_with_env, Config};
use floodguard::ingest::push::{self, Precision};
use floodguard::ingest::sl651::frame;
use floodguard::ingest::Decoder;
use floodguard::notify::acklink;
use floodguard::reading::{is_valid_metric, Value};
use floodguard::redact::Redactor;
use floodguard::spool::record;
use floodguard::tsdb::line_parse::{parse_line, FieldValue};
use floodguard::tsdb::line_protocol::{line, Field};

#[allow(dead_code)]
#[path = "integration/support/rtu.rs"]
mod rtu;

/// Cases per property (`FLOODGUARD_FUZZ_CASES`, default 2,000).
fn cases() -> u32 {
    std::env::var("FLOODGUARD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn sample() -> &'static Config {
    static C: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    C.get_or_init(|| load_with_env(&sample_dir().join("floodguard.toml"), &HashMap::new()).unwrap())
}

fn decoder() -> &'static Decoder {
    static D: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let c = sample();
        Decoder::new(Arc::new(Catalog::from_config(c)), &c.daemon.mqtt)
    })
}

const NOW: i64 = 1_784_613_900_000_000_000;

/// Arbitrary JSON, nested a few levels.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~]{0,12}".prop_map(serde_json::Value::from),
        prop::sample::select(vec!["1", "0", "on", "off", "true", "12.5", "1e309", "NaN", "-0"])
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(vec![
                        "ts",
                        "water_depth_cm",
                        "level_m",
                        "battery_v",
                        "site",
                        "pump1_running",
                        "time",
                        "_x",
                        "obs",
                        "level",
                        "rain"
                    ])
                    .prop_map(String::from),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn topic() -> impl Strategy<Value = String> {
    let site = prop_oneof![
        prop::sample::select(vec!["CD-JS-01", "BH-BZ-01", "XC-SW-01", "NOPE", "", "+", "#"])
            .prop_map(String::from),
        "[A-Za-z0-9-]{0,12}",
    ];
    (
        prop::sample::select(vec![
            "flood/{}/telemetry",
            "flood/{}/status",
            "legacy/{}/depth_m",
            "gateway/sl651/{}/data",
            "{}",
            "flood/{}/x/telemetry",
        ]),
        site,
    )
        .prop_map(|(t, s)| t.replace("{}", &s))
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        prop::sample::select(vec!["online", "offline", "12.5", "-1e400", "1e308", "null", ""])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// MQTT: any topic and payload decodes or is refused with a cause;
    /// what decodes is a known site's finite values under valid names.
    #[test]
    fn mqtt_payloads(topic in topic(), payload in payload()) {
        let c = sample();
        match decoder().decode(&topic, &payload, NOW) {
            Ok(decoded) => {
                // Fields left out (a bad value) are each named by a cause.
                for e in &decoded.skipped {
                    prop_assert!(!e.cause().is_empty());
                }
                for r in decoded.readings {
                    prop_assert!(c.site(&r.site).is_some(), "unknown site {}", r.site);
                    prop_assert!(is_valid_metric(&r.metric), "metric {:?}", r.metric);
                    if let Value::Float(f) = r.value {
                        prop_assert!(f.is_finite());
                    }
                    prop_assert!(r.ts <= NOW + c.daemon.mqtt.max_future.get().as_nanos() as i64);
                }
            }
            Err(e) => prop_assert!(!e.cause().is_empty()),
        }
    }

    /// Line protocol as written reads back as written. (Names hold no
    /// backslash: line protocol cannot tell a trailing one from an escape,
    /// and floodguard refuses them in metric names and site ids.)
    #[test]
    fn line_protocol_round_trips(
        name in "[a-zA-Z][ -\\[\\]-~]{0,15}",
        tags in prop::collection::btree_map("[a-zA-Z][ -\\[\\]-~]{0,8}", "[ -\\[\\]-~]{1,10}", 0..4),
        fields in prop::collection::btree_map("[a-zA-Z][ -\\[\\]-~]{0,8}", prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(FieldValue::Float),
            any::<i64>().prop_map(FieldValue::Int),
            any::<bool>().prop_map(FieldValue::Bool),
            "[ -~]{0,12}".prop_map(FieldValue::Str),
        ], 1..5),
        ts in any::<i64>(),
    ) {
        let tags: Vec<(String, String)> = tags.into_iter().filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty()).collect();
        let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut text = String::new();
        line(&mut text, &name, &tag_refs, fields.iter().map(|(k, v)| (k.as_str(), match v {
            FieldValue::Float(f) => Field::Float(*f),
            FieldValue::Int(i) => Field::Int(*i),
            FieldValue::Bool(b) => Field::Bool(*b),
            FieldValue::Str(s) => Field::Str(s),
            FieldValue::UInt(u) => Field::Int(*u as i64),
        })), ts);
        let parsed = parse_line(text.trim_end_matches('\n')).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let parsed = parsed.ok_or_else(|| TestCaseError::fail(format!("a blank line? {text}")))?;
        prop_assert_eq!(&*parsed.measurement, name.as_str(), "{}", text);
        prop_assert_eq!(parsed.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(), tags, "{}", text);
        prop_assert_eq!(parsed.fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Vec<_>>(), fields.into_iter().collect::<Vec<_>>(), "{}", text);
        prop_assert_eq!(parsed.ts, Some(ts));
    }

    /// Any line parses or is refused; never a panic.
    #[test]
    fn line_protocol_of_any_text(text in prop_oneof![
        "[ -~]{0,80}",
        "telemetry(,[a-z]{1,4}=[a-z0-9\\\\ ,=\"]{0,6}){0,3} [a-z_]{1,8}=[-0-9.eEtruefalsi\"]{0,10}( -?[0-9]{0,20})?",
        prop::collection::vec(any::<char>(), 0..60).prop_map(|c| c.into_iter().collect::<String>()),
    ]) {
        let _ = parse_line(&text);
    }

    /// Pushed bodies: every line is a message, blank, or named as rejected.
    #[test]
    fn pushed_bodies(lines in prop::collection::vec(prop_oneof![
        "[ -~]{0,40}",
        "telemetry,site=(CD-JS-01|BH-SW-01|XX) (water_depth_cm|level_m|pump1_running)=[-0-9.eEtruefalsi\"]{1,8}( [0-9]{1,19})?",
    ], 0..20), precision in prop::sample::select(vec![Precision::Ns, Precision::Us, Precision::Ms, Precision::S, Precision::M, Precision::H])) {
        let body = lines.join("\n");
        let d = push::line_protocol(decoder(), &body, precision, NOW);
        let blank = lines.iter().filter(|l| l.trim().is_empty() || l.trim_start().starts_with('#')).count();
        prop_assert_eq!(d.messages.len() + d.rejected.len() + blank, lines.len());
        for r in &d.rejected {
            prop_assert!(r.at >= 1 && r.at <= lines.len() && !r.cause.is_empty());
        }
    }

    /// Pushed JSON: any document is readings or named rejections.
    #[test]
    fn pushed_json(doc in prop_oneof![json().prop_map(|v| serde_json::to_vec(&v).unwrap()), prop::collection::vec(any::<u8>(), 0..200)]) {
        if let Ok(d) = push::json(decoder(), &doc, NOW) {
            for m in d.messages.iter().flatten() {
                prop_assert!(sample().site(&m.site).is_some());
            }
        }
    }

    /// SL 651: arbitrary bytes, and valid frames with bytes changed,
    /// appended or cut, never panic; a changed frame parses as itself or
    /// not at all (the CRC).
    #[test]
    fn sl651_frames(
        noise in prop::collection::vec(any::<u8>(), 0..300),
        serial in any::<u16>(),
        level in 0.0f64..99.0,
        rain in 0.0f64..99.0,
        at in 0usize..200,
        flip in 1u8..=255,
        cut in 0usize..200,
    ) {
        let _ = frame::next_frame(&noise);
        let _ = frame::parse(&noise);
        let rtu = rtu::Rtu { centre: 1, station: [0x00, 0x12, 0x34, 0x56, 0x78], password: 0, class: b'H' };
        let t = chrono::NaiveDate::from_ymd_opt(2026, 7, 21).unwrap().and_hms_opt(14, 5, 0).unwrap();
        let body = rtu.body(serial, t, &[(t, [rtu::element(0x39, 4, 3, level), rtu::element(0x20, 3, 1, rain)].concat())]);
        let good = rtu.frame(0x32, &body);
        let parsed = frame::parse(&good).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(parsed.header.function, 0x32);
        let mut bad = good.clone();
        let i = at % bad.len();
        bad[i] ^= flip;
        if let Ok(f) = frame::parse(&bad) {
            prop_assert_eq!(f, parsed.clone(), "byte {} changed gave another frame", i);
        }
        let _ = frame::next_frame(&good[..cut.min(good.len())]);
        let stream = [&noise[..], &good[..], &noise[..]].concat();
        let mut buf = &stream[..];
        while !buf.is_empty() {
            match frame::next_frame(buf) {
                Ok(Some((_, used))) => buf = &buf[used.max(1)..],
                Ok(None) => break,
                Err((_, skip)) => buf = &buf[skip.max(1).min(buf.len())..],
            }
        }
    }

    /// Spool records read back as written; any bytes are a record, a torn
    /// tail or corrupt, never a panic.
    #[test]
    fn spool_records(payload in prop::collection::vec(any::<u8>(), 0..2000), at in any::<i64>(), noise in prop::collection::vec(any::<u8>(), 0..100)) {
        let mut buf = Vec::new();
        record::encode(&mut buf, at, &payload);
        match record::parse(&buf) {
            record::Frame::Record { appended_at_ms, payload: p, size } => {
                prop_assert_eq!(appended_at_ms, at);
                prop_assert_eq!(p, &payload[..]);
                prop_assert_eq!(size, buf.len());
            }
            _ => prop_assert!(false, "a record written does not read back"),
        }
        let _ = record::parse(&noise);
        let _ = record::resync(&noise);
        for k in 0..buf.len().min(64) {
            prop_assert!(!matches!(record::parse(&buf[..k]), record::Frame::Record { .. }), "a cut record is not whole");
        }
    }

    /// Ack-link tokens: only what the secret signed verifies.
    #[test]
    fn ack_tokens(token in "[A-Za-z0-9_.-]{0,120}", alert in any::<i64>(), member in "[ -~]{0,12}", tamper in 0usize..100) {
        let secret = b"fuzz-secret-0123456789abcdef0123456789";
        prop_assert!(acklink::verify(secret, &token, 0).is_err());
        let claims = acklink::Claims { a: alert, m: member, e: i64::MAX / 2_000_000_000, n: acklink::nonce(), l: vec![] };
        let signed = acklink::sign(secret, &claims);
        prop_assert_eq!(acklink::verify(secret, &signed, 0), Ok(claims));
        let mut bytes = signed.into_bytes();
        let i = tamper % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(acklink::verify(b"another-secret", &tampered, 0).is_err());
    }

    /// Redaction of free text: any text, no panic; a known secret, a URL's
    /// key and a mobile number never come out.
    #[test]
    fn redaction(before in "\\PC{0,30}", after in "\\PC{0,30}", secret in "[A-Za-z0-9]{8,20}", key in "[A-Za-z0-9]{8,16}", phone in "1[3-9][0-9]{9}") {
        let mut r = Redactor::new();
        r.secret(&secret);
        let text = format!("{before}{secret} http://u:{key}@h/p?k={key} {phone} {after}");
        let out = r.apply(&text);
        prop_assert!(!out.contains(&secret), "{}", out);
        prop_assert!(!out.contains(&key), "{}", out);
        prop_assert!(!out.contains(&phone), "{}", out);
        let _ = r.apply(&before);
    }
}

/// The sample's four files, each case changing one line of one of them.
struct Files {
    dir: tempfile::TempDir,
    originals: Vec<(String, String)>,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let mut originals = Vec::new();
        for f in ["floodguard.toml", "sites.toml", "plan.toml", "teams.toml"] {
            let text = std::fs::read_to_string(sample_dir().join(f)).unwrap();
            std::fs::write(dir.path().join(f), &text).unwrap();
            originals.push((f.to_string(), text));
        }
        Files { dir, originals }
    }
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,20}",
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("\"1h 30m\"".to_string()),
        Just("\"999999999999d\"".to_string()),
        Just("{ file = \"/nonexistent\" }".to_string()),
        Just("\"湖\"".to_string()),
        Just("[1, \"a\", { x = 1 }]".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (cases() / 10).max(100), ..config() })]

    /// Config files: one line of one file changed (its value replaced, the
    /// line dropped, doubled or garbled), plus an environment override:
    /// loading never panics, and every error names its file (or variable)
    /// and a reason. (A tenth of the cases: each loads four files.)
    #[test]
    fn config_files(
        file in 0usize..4,
        at in any::<usize>(),
        how in 0u8..4,
        v in value(),
        env_key in prop::sample::select(vec!["FLOODGUARD__MQTT__URL", "FLOODGUARD__HTTP__LISTEN", "FLOODGUARD__INFLUXDB__BATCH_SIZE", "FLOODGUARD__HTTP__API_TOKEN", "FLOODGUARD__SPOOL__MAX_BYTES", "FLOODGUARD__CHANNELS__ACK__TTL", "FLOODGUARD__X__Y"]),
        env_value in "[ -~]{0,40}",
    ) {
        thread_local! { static FILES: Files = Files::new(); }
        FILES.with(|files| -> Result<(), TestCaseError> {
            let (name, text) = &files.originals[file];
            let lines: Vec<&str> = text.lines().collect();
            let i = at % lines.len();
            let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            match how {
                0 => {
                    if let Some((k, _)) = lines[i].split_once('=') {
                        changed[i] = format!("{k}= {v}");
                    }
                }
                1 => {
                    changed.remove(i);
                }
                2 => changed.insert(i, lines[i].to_string()),
                _ => {
                    let half: String = lines[i].chars().take(lines[i].chars().count() / 2).collect();
                    changed[i] = format!("{half}{v}");
                }
            }
            let path = files.dir.path().join(name);
            std::fs::write(&path, changed.join("\n")).unwrap();
            let env = HashMap::from([(env_key.to_string(), env_value.clone())]);
            let result = load_with_env(&files.dir.path().join("floodguard.toml"), &env);
            std::fs::write(&path, text).unwrap();
            if let Err(errors) = result {
                prop_assert!(!errors.is_empty());
                for e in errors.iter() {
                    let shown = e.to_string();
                    prop_assert!(
                        shown.starts_with(&files.dir.path().display().to_string()) || shown.starts_with("environment FLOODGUARD__"),
                        "an error without its file: {}", shown
                    );
                    prop_assert!(!e.reason.trim().is_empty(), "an error without a reason: {}", shown);
                }
            }
            Ok(())
        })?;
    }
}

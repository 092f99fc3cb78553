//! Trustworthy readings (issue 11), on the real daemon: values as devices
//! send them through Mosquitto, quality flags in InfluxDB and on the API,
//! one alert for a dead gateway or a dead broker; and a noisy storm with
//! injected faults replayed to the clean storm's alerts.

use std::path::Path;
use std::time::Duration;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::Publisher;
use crate::support::{http_get, wait_for};

async fn get_json(fg: &Floodguard, path: &str) -> serde_json::Value {
    let (code, body) = http_get(&fg.url(path)).await.unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The level of `rule` at `site` in `/api/v1/sites` (`None`: normal).
async fn rule_level(fg: &Floodguard, site: &str, rule: &str) -> Option<String> {
    let v = get_json(fg, "/api/v1/sites").await;
    let s = v["sites"].as_array().unwrap().iter().find(|s| s["id"] == site).unwrap().clone();
    let r = s["rules"].as_array().unwrap().iter().find(|r| r["id"] == rule).unwrap().clone();
    r["level"].as_str().map(str::to_string)
}

async fn wait_rule(fg: &Floodguard, site: &str, rule: &str, want: Option<&str>) {
    let what = format!("{site} {rule} at {want:?}");
    wait_for(&what, Duration::from_secs(15), || async {
        (rule_level(fg, site, rule).await.as_deref() == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_as_devices_send_them_are_judged_as_the_plan_expects() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-qc-values");
    // Device times 30 s apart, ending near now (trends look back from now).
    let base = chrono::Utc::now().timestamp_millis() - 16 * 60_000;
    let k = std::cell::Cell::new(0i64);
    let send = |site: &'static str, body: String| {
        k.set(k.get() + 1);
        let payload = format!(r#"{{"ts":{},{body}}}"#, base + k.get() * 30_000);
        (format!("flood/{site}/telemetry"), payload.into_bytes())
    };

    // A pump fault as a gateway sends it — 1, "1", true — raises the
    // pump-fault level (forebay ≥ 1.80 with a pump faulted → Ⅱ) each time;
    // 0, "0", false clear it.
    let pumps = r#""pump2_fault":false,"pump3_fault":false,"pump1_running":true,"pump2_running":true,"pump3_running":false"#;
    for (fault, ok) in [("1", "0"), (r#""1""#, r#""0""#), ("true", "false")] {
        let (t, b) = send("BH-BZ-01", format!(r#""forebay_level_m":1.9,"pump1_fault":{fault},{pumps}"#));
        p.send(&t, b).await;
        wait_rule(&fg, "BH-BZ-01", "forebay_pump_fault", Some("II")).await;
        for _ in 0..2 {
            let (t, b) = send("BH-BZ-01", format!(r#""forebay_level_m":1.9,"pump1_fault":{ok},{pumps}"#));
            p.send(&t, b).await;
        }
        wait_rule(&fg, "BH-BZ-01", "forebay_pump_fault", None).await;
    }

    // pump*_running as 0/1: the forebay rising with pumps 0 and "0" is
    // "no pump running" (Ⅲ); with pump1_running 1 one runs, and it clears.
    for i in 0..8 {
        let level = 0.85 + 0.02 * f64::from(i);
        let (t, b) = send(
            "XC-BZ-01",
            format!(r#""forebay_level_m":{level:.2},"pump1_running":0,"pump2_running":"0""#),
        );
        p.send(&t, b).await;
    }
    wait_rule(&fg, "XC-BZ-01", "forebay_rising_idle", Some("III")).await;
    for i in 8..11 {
        let level = 0.85 + 0.02 * f64::from(i);
        let (t, b) = send(
            "XC-BZ-01",
            format!(r#""forebay_level_m":{level:.2},"pump1_running":1,"pump2_running":"0""#),
        );
        p.send(&t, b).await;
    }
    wait_rule(&fg, "XC-BZ-01", "forebay_rising_idle", None).await;

    // "12.5" is a depth: stored as a number and judged.
    for _ in 0..2 {
        let (t, b) = send("CD-JS-01", r#""water_depth_cm":"12.5""#.into());
        p.send(&t, b).await;
    }
    wait_rule(&fg, "CD-JS-01", "depth", Some("IV")).await;

    // "abc" is counted by cause; the message's other metric is kept.
    let (t, b) = send("CD-JS-03", r#""water_depth_cm":"abc","battery_v":3.61"#.into());
    let abc_ts = base + k.get() * 30_000;
    p.send(&t, b).await;

    let stored = wait_for("the depths and the battery in InfluxDB", Duration::from_secs(20), || async {
        let v = influx
            .query("flood", "SELECT water_depth_cm, battery_v FROM telemetry WHERE site = 'CD-JS-01' OR site = 'CD-JS-03'")
            .await;
        let rows = v["results"][0]["series"][0]["values"].as_array()?.clone();
        (rows.len() == 3).then_some(rows)
    })
    .await;
    assert_eq!(stored[0][1].as_f64(), Some(12.5), "{stored:?}");
    assert_eq!(stored[1][1].as_f64(), Some(12.5), "{stored:?}");
    assert_eq!((stored[2][1].as_f64(), stored[2][2].as_f64()), (None, Some(3.61)), "{stored:?}");
    let v = influx.query("flood", "SELECT battery_v FROM telemetry WHERE site = 'CD-JS-03'").await;
    let t = v["results"][0]["series"][0]["values"][0][0].as_str().unwrap().to_string();
    assert_eq!(chrono::DateTime::parse_from_rfc3339(&t).unwrap().timestamp_millis(), abc_ts);
    assert_eq!(fg.metric(r#"floodguard_decode_errors_total{cause="wrong_type"}"#).await, Some(1.0));
    let bool_fields = influx.query("flood", "SHOW FIELD KEYS FROM telemetry").await;
    let types: Vec<(String, String)> = bool_fields["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()))
        .collect();
    for flag in ["pump1_fault", "pump1_running", "pump2_running"] {
        assert!(
            types.contains(&(flag.to_string(), "boolean".to_string())),
            "{flag} stored as a flag: {types:?}"
        );
    }
    assert!(types.contains(&("water_depth_cm".to_string(), "float".to_string())), "{types:?}");

    // A single spike is held back: shown as suspect on the API, flagged in
    // InfluxDB (telemetry_qc), no level; a spike the next reading confirms
    // raises the level, and the alert says it rested on a suspect value.
    for body in [r#""water_depth_cm":5"#, r#""water_depth_cm":300"#] {
        let (t, b) = send("CD-JS-02", body.into());
        p.send(&t, b).await;
    }
    let shown = wait_for("CD-JS-02's spike shown as suspect", Duration::from_secs(15), || async {
        let v = get_json(&fg, "/api/v1/sites").await;
        let s = v["sites"].as_array()?.iter().find(|s| s["id"] == "CD-JS-02")?.clone();
        (s["values"]["water_depth_cm"]["qc"]["flag"] == "suspect").then_some(s)
    })
    .await;
    assert_eq!(shown["values"]["water_depth_cm"]["value"], 300.0);
    assert_eq!(shown["values"]["water_depth_cm"]["qc"]["test"], "spike");
    assert_eq!(shown["level"], serde_json::Value::Null);
    let (t, b) = send("CD-JS-02", r#""water_depth_cm":5.5"#.into());
    p.send(&t, b).await;
    for body in [r#""water_depth_cm":3"#, r#""water_depth_cm":300"#, r#""water_depth_cm":301"#] {
        let (t, b) = send("XC-JS-01", body.into());
        p.send(&t, b).await;
    }
    wait_rule(&fg, "XC-JS-01", "depth", Some("I")).await;
    assert_eq!(rule_level(&fg, "CD-JS-02", "depth").await, None, "one spike raises nothing");
    let flags = wait_for("two flags in telemetry_qc", Duration::from_secs(20), || async {
        let v = influx
            .query(
                "flood",
                "SELECT value, confirmed, site FROM telemetry_qc WHERE flag = 'suspect' AND test = 'spike'",
            )
            .await;
        let rows = v["results"][0]["series"][0]["values"].as_array()?.clone();
        (rows.len() == 2 && rows.iter().any(|r| r[3] == "XC-JS-01" && r[2] == true)).then_some(rows)
    })
    .await;
    // Columns: time, value, confirmed, site.
    let cd = flags.iter().find(|r| r[3] == "CD-JS-02").unwrap();
    assert_eq!((cd[1].as_f64(), cd[2].as_bool()), (Some(300.0), Some(false)), "{flags:?}");
    let alerts = get_json(&fg, "/api/v1/alerts?state=active").await;
    let xc = alerts["alerts"].as_array().unwrap().iter().find(|a| a["site"] == "XC-JS-01").unwrap();
    let firing = &xc["timeline"][0];
    assert_eq!(firing["event"], "firing");
    assert_eq!(firing["note"], "质控：该值曾判为可疑（突变），已由后续读数确认", "{xc}");
}

/// The sample plan with `edits` (from, to) applied.
fn plan_with(edits: &[(&str, &str)]) -> String {
    let mut plan = std::fs::read_to_string(sample_config_dir().join("plan.toml")).unwrap();
    for (from, to) in edits {
        assert!(plan.contains(from), "plan.toml lacks {from:?}");
        plan = plan.replacen(from, to, 1);
    }
    plan
}

/// The sample sites and twelve points of 新城 on one DTU.
fn dtu_sites() -> String {
    let mut s = std::fs::read_to_string(sample_config_dir().join("sites.toml")).unwrap();
    for k in 1..=12 {
        s.push_str(&format!(
            "\n[[sites]]\nid = \"GW-{k:02}\"\nname = \"新城积水点{k}\"\nkind = \"waterlogging\"\n\
             category = \"road\"\nstreet = \"xincheng\"\nlocation = {{ lat = 30.58, lon = 114.36 }}\n\
             gateway = \"DTU-07\"\n"
        ));
    }
    s
}

/// Alerts of `kind` in the history, as (site, state).
async fn alerts_of(fg: &Floodguard, kind: &str) -> Vec<(String, String)> {
    let v = get_json(fg, "/api/v1/alerts?state=all").await;
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .map(|a| (a["site"].as_str().unwrap().to_string(), a["state"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_sites_on_one_gateway_going_silent_are_one_alert_and_one_going_silent_alone_its_own() {
    let broker = Mosquitto::start();
    let mut opts = Options::new(broker.url());
    opts.sites_toml = Some(dtu_sites());
    // Waterlogging points stale after 6 s; gateway window 4 s (test speed).
    opts.plan_toml = Some(plan_with(&[
        ("stale_after = \"35m\"     # 15-min reports in dry weather: two missed", "stale_after = \"6s\""),
        ("window = \"15m\"", "window = \"4s\""),
    ]));
    let fg = Floodguard::start(opts);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-dtu");
    let report = |skip: Option<u32>| {
        let p = &p;
        async move {
            let now = chrono::Utc::now().timestamp_millis();
            for k in (1..=12).filter(|k| Some(*k) != skip) {
                p.send(
                    &format!("flood/GW-{k:02}/telemetry"),
                    format!(r#"{{"ts":{now},"water_depth_cm":1}}"#).into_bytes(),
                )
                .await;
            }
        }
    };
    for _ in 0..4 {
        report(None).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The DTU dies: all twelve silent.
    let link = wait_for("one link alert for DTU-07", Duration::from_secs(30), || async {
        let a = alerts_of(&fg, "gateway").await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(link.len(), 1, "{link:?}");
    assert_eq!(link[0].0, "DTU-07");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let offline: Vec<_> =
        alerts_of(&fg, "offline").await.into_iter().filter(|(s, _)| s.starts_with("GW-")).collect();
    assert!(offline.is_empty(), "no offline alert per site: {offline:?}");
    let gw = get_json(&fg, "/api/v1/alerts?state=active").await;
    let a = gw["alerts"].as_array().unwrap().iter().find(|a| a["kind"] == "gateway").unwrap();
    assert!(a["rule_name"].as_str().unwrap().contains("12 个站点无数据"), "{a}");
    let sites = get_json(&fg, "/api/v1/sites").await;
    let silent = sites["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with("GW-") && s["offline"] == true);
    assert_eq!(silent.count(), 12, "the page shows them offline");

    // It comes back: one recovery.
    report(None).await;
    wait_for("the link alert resolved", Duration::from_secs(20), || async {
        (alerts_of(&fg, "gateway").await.iter().all(|(_, s)| s == "resolved")).then_some(())
    })
    .await;
    // One site goes silent alone: its own offline alert, no link alert.
    for _ in 0..12 {
        report(Some(5)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let offline: Vec<String> = alerts_of(&fg, "offline")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| s.starts_with("GW-"))
        .collect();
    assert_eq!(offline, ["GW-05"], "{:?}", alerts_of(&fg, "offline").await);
    assert_eq!(alerts_of(&fg, "gateway").await.len(), 1, "still the one link alert of before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_down_is_one_alert_about_floodguards_intake() {
    let mut broker = Mosquitto::start();
    let mut opts = Options::new(broker.url());
    opts.plan_toml = Some(plan_with(&[
        ("stale_after = \"35m\"     # 15-min reports in dry weather: two missed", "stale_after = \"3s\""),
        ("intake_after = \"1m\"", "intake_after = \"2s\""),
    ]));
    let fg = Floodguard::start(opts);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-intake");
    let now = chrono::Utc::now().timestamp_millis();
    for site in ["CD-JS-01", "CD-JS-02", "BH-JS-01", "XC-JS-01"] {
        p.send(
            &format!("flood/{site}/telemetry"),
            format!(r#"{{"ts":{now},"water_depth_cm":1}}"#).into_bytes(),
        )
        .await;
    }
    p.wait_acked(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<_> = alerts_of(&fg, "offline").await;
    broker.stop();
    let link = wait_for("the intake alert", Duration::from_secs(30), || async {
        let a = alerts_of(&fg, "gateway").await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(link.len(), 1, "{link:?}");
    assert_eq!(link[0].0, "mqtt");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<_> = alerts_of(&fg, "offline").await;
    assert_eq!(
        after.len(),
        before.len(),
        "the sites going stale meanwhile have no alert of their own: {after:?}"
    );
    broker.restart();
    wait_for("the intake alert resolved", Duration::from_secs(30), || async {
        (alerts_of(&fg, "gateway").await.iter().all(|(_, s)| s == "resolved")).then_some(())
    })
    .await;
    let active = get_json(&fg, "/api/v1/alerts?state=all").await;
    let a = active["alerts"].as_array().unwrap().iter().find(|a| a["kind"] == "gateway").unwrap();
    assert!(a["rule_name"].as_str().unwrap().starts_with("数据接入中断"), "{a}");
}

// ── A noisy storm with injected faults ──────────────────────────────────────

use floodguard::replay;
use floodguard::simulate::{self, model::Scenario};

/// 2026-07-21 00:00 +08:00: the storm's start (replay takes the recorded times).
const START_MS: i64 = 1_784_563_200_000;
const MIN_MS: i64 = 60_000;

/// The sample config, with a gauge judged on its running total too
/// (`rainstorm_total`: the counter CD-YL-01 sends as rain_total_mm) and a
/// shallow point CD-JS-09 that stays below Ⅳ through the storm.
fn storm_config(dir: &Path, qc: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["floodguard.toml", "teams.toml", "materials.toml"] {
        if sample_config_dir().join(f).exists() {
            std::fs::copy(sample_config_dir().join(f), dir.join(f)).unwrap();
        }
    }
    let mut sites = std::fs::read_to_string(sample_config_dir().join("sites.toml")).unwrap();
    sites.push_str(
        "\n[[sites]]\nid = \"CD-JS-09\"\nname = \"人民路辅道\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
         street = \"chengdong\"\nlocation = { lat = 30.601, lon = 114.342 }\n",
    );
    std::fs::write(dir.join("sites.toml"), sites).unwrap();
    let mut plan = std::fs::read_to_string(sample_config_dir().join("plan.toml")).unwrap();
    plan.push('\n');
    plan.push_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/counter-gauge.toml"),
        )
        .unwrap(),
    );
    if !qc {
        plan = plan.replacen("[qc]\nenabled = true", "[qc]\nenabled = false", 1);
    }
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
}

/// A small deterministic generator for the noise.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The storm as line protocol: clean, or with sensor noise and faults.
fn storm(config: &Path, noisy: bool) -> String {
    let c = floodguard::config::load(&config.join("floodguard.toml")).unwrap();
    let msgs =
        simulate::timeline(Scenario::Rainstorm, &c.sites.sites, 11, None, 1.0, START_MS, Duration::ZERO);
    let mut rng = Lcg(7);
    let mut text = String::new();
    let mut total = 1234.5; // CD-YL-01's counter
    let mut offset = 0.0; // what the counter lost at its reset
    let mut spikes = 0;
    let mut gauge_reports = 0;
    for (ts, m) in msgs {
        let t_min = (ts - START_MS) / MIN_MS;
        let mut fields: Vec<String> = Vec::new();
        for (k, v) in &m.fields {
            let mut value = match v {
                simulate::model::Field::Num(x) => *x,
                simulate::model::Field::Bool(b) => {
                    fields.push(format!("{k}={b}"));
                    continue;
                }
            };
            if m.site == "CD-JS-09" && k == "water_depth_cm" {
                // A shallow spot: 2–8 cm all storm …
                value = round1(5.0 + 3.0 * ((t_min as f64) / 17.0).sin());
                // … whose sensor sticks at 0 in the noisy storm.
                if noisy {
                    value = 0.0;
                }
            } else if noisy && k == "water_depth_cm" && value > 1.0 {
                value = round1(value + (rng.next() - 0.5) * 0.6); // ±0.3 cm of noise
            }
            if noisy && k == "water_depth_cm" {
                // Three spikes at 人民路 within an hour, one at 高铁站.
                let spike = (m.site == "CD-JS-01" && [70, 90, 110].contains(&t_min))
                    || (m.site == "XC-JS-01" && t_min == 150);
                if spike {
                    value += 250.0;
                    spikes += 1;
                }
            }
            if noisy && m.site == "BH-BZ-01" && k == "forebay_level_m" && t_min == 345 {
                value = 5.0; // a forebay spike while a pump is faulted
                spikes += 1;
            }
            fields.push(format!("{k}={value}"));
        }
        if m.site == "CD-YL-01" {
            // The gauge's running total beside its increments.
            let inc = m.fields.iter().find_map(|(k, v)| match v {
                simulate::model::Field::Num(x) if k == "rain_mm" => Some(*x),
                _ => None,
            });
            total += inc.unwrap_or(0.0);
            if noisy && t_min >= 180 && offset == 0.0 {
                offset = total - inc.unwrap_or(0.0); // reset: it counts from 0 again
            }
            fields.push(format!("rain_total_mm={:.1}", total - offset));
            gauge_reports += 1;
            if noisy && gauge_reports % 4 == 0 {
                // Jitter: a report a minute later, 0.1 mm below.
                text.push_str(&format!(
                    "telemetry,site=CD-YL-01 rain_total_mm={:.1} {}\n",
                    total - offset - 0.1,
                    (ts + MIN_MS) * 1_000_000
                ));
            }
        }
        text.push_str(&format!("telemetry,site={} {} {}\n", m.site, fields.join(","), ts * 1_000_000));
    }
    if noisy {
        assert_eq!(spikes, 5, "every planned spike went in");
    }
    // Replay reads in time order anyway; keep the file as an export would be.
    text
}

fn replayed(config: &Path, lp: &str) -> Vec<floodguard::engine::Transition> {
    let c = floodguard::config::load(&config.join("floodguard.toml")).unwrap();
    let rec = replay::load(lp.as_bytes()).unwrap();
    assert_eq!(rec.bad_lines, 0, "{:?}", rec.first_errors);
    replay::run(&c.plan, &rec.readings, 30_000_000_000)
}

#[test]
fn a_noisy_storm_with_faults_replays_to_the_clean_storms_alerts_plus_maintenance_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (on, off) = (dir.path().join("qc"), dir.path().join("noqc"));
    storm_config(&on, true);
    storm_config(&off, false);
    let clean = storm(&on, false);
    let noisy = storm(&on, true);
    let c = replayed(&on, &clean);
    let n = replayed(&on, &noisy);
    let cmp = replay::compare(&c, &n);
    let names = |v: &[(replay::AlertKey, i64)]| -> Vec<String> {
        v.iter().map(|(k, _)| format!("{} {} {}", k.site, k.rule, k.level.as_str())).collect()
    };
    assert!(cmp.same > 30, "a storm of alerts: {}", cmp.same);
    assert!(cmp.vanishes.is_empty(), "no clean alert lost: {:?}", names(&cmp.vanishes));
    // ±0.3 cm of noise may move a crossing by a reading or a few, no more.
    for (k, a, b) in &cmp.moves {
        assert!((b - a).abs() <= 5 * 60_000_000_000, "{k:?} moved from {a} to {b}");
    }
    assert_eq!(
        names(&cmp.appears),
        ["CD-JS-09 qc.water_depth_cm IV", "CD-JS-01 qc.water_depth_cm IV"],
        "only maintenance alerts: the stuck sensor (flatline during rain) and the spiking one"
    );
    // The clean storm passes quality control untouched.
    let clean_flags = c.iter().filter(|t| matches!(t.change, floodguard::engine::Change::Qc(_))).count();
    assert_eq!(clean_flags, 0, "no flags on the clean storm");
    let faults: Vec<&floodguard::engine::qc::SensorFault> = n
        .iter()
        .filter_map(|t| match &t.change {
            floodguard::engine::Change::SensorFault(f) if f.open => Some(f),
            _ => None,
        })
        .collect();
    let tests: Vec<(&str, &str)> = faults.iter().map(|f| (&*f.site, f.test.as_str())).collect();
    assert_eq!(tests, [("CD-JS-09", "flatline"), ("CD-JS-01", "spike")]);

    // What an engineer tuning QC sees: `replay --compare` of the noisy storm
    // with QC on (A) and off (B) — the forebay spike's Ⅱ appears without QC,
    // the maintenance alerts vanish.
    let lp = dir.path().join("noisy.lp");
    std::fs::write(&lp, &noisy).unwrap();
    let out = std::process::Command::new(crate::support::floodguard::BIN)
        .args(["replay", "--input"])
        .arg(&lp)
        .arg("-c")
        .arg(on.join("floodguard.toml"))
        .arg("--compare")
        .arg(off.join("floodguard.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("appears with B   BH-BZ-01 forebay_pump_fault Ⅱ级 (#2)"), "{text}");
    assert!(text.contains("vanishes with B  CD-JS-01 疑似传感器故障 water_depth_cm"), "{text}");
    assert!(text.contains("vanishes with B  CD-JS-09 疑似传感器故障 water_depth_cm"), "{text}");
    assert!(text.contains("quality control and collection links"), "{text}");
    assert!(text.contains("CD-JS-01   water_depth_cm   3 suspect (spike)"), "{text}");
}

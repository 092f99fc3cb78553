//! The command center's whole record, through the binary and real services:
//! the readiness report of the sample district with drills on record, flood
//! materials named in a Ⅱ alert's SMS and issued on its timeline, the event
//! report's rainfall, waterlogging and pump sections from a storm stored in
//! InfluxDB 1.6.7 (checked against InfluxQL, the simulator's model and the
//! engine), and compare-storms of two storms read from the spool.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options, BIN};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::peer::Peer;
use crate::support::publish::Publisher;
use crate::support::{http_get, wait_for};

const TOKEN: &str = "records-test-token-5f0c2a9e7b1d4c36";

fn http_sms(peer: &Peer) -> String {
    format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\nmin_interval = \"0s\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n",
        peer.url("/sms")
    )
}

/// The sample teams told at once (no group wait).
fn quick_teams() -> String {
    let text = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    let start = text.find("[alerting]").unwrap();
    let end = text[start..].find("\n\n").unwrap() + start;
    let alerting = "[alerting]\ngroup_window = \"1s\"\ngroup_wait = { IV = \"0s\", III = \"0s\", II = \"0s\", I = \"0s\" }";
    format!("{}{}{}", &text[..start], alerting, &text[end..])
}

fn toml_file(name: &str) -> toml::Table {
    std::fs::read_to_string(sample_config_dir().join(name)).unwrap().parse().unwrap()
}

fn run(args: &[&str], config: &Path) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).arg("-c").arg(config).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get_json(fg: &Floodguard, path: &str) -> Value {
    let (code, body) = http_get(&fg.url(path)).await.unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// What the sample config says, read by the test itself.
struct Expected {
    member_units: usize,
    upgraded: usize,
    repaired_pumps: i64,
    projects: usize,
    actual_percent: f64,
    teams: usize,
    headcount: i64,
    value_yuan: f64,
    categories: BTreeMap<String, usize>,
}

fn expected() -> Expected {
    let teams = toml_file("teams.toml");
    let sites = toml_file("sites.toml");
    let materials = toml_file("materials.toml");
    let hq = teams["hq"].as_table().unwrap();
    let hq_team = hq["team"].as_str().unwrap();
    let rescue: Vec<&toml::Table> = teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_table().unwrap())
        .filter(|t| t["id"].as_str() != Some(hq_team))
        .collect();
    let works = sites["pump_works"].as_array().unwrap();
    let mut upgraded: Vec<&str> = works
        .iter()
        .filter(|w| w["kind"].as_str() == Some("upgrade"))
        .map(|w| w["site"].as_str().unwrap())
        .collect();
    upgraded.sort();
    upgraded.dedup();
    let renos = sites["renovations"].as_array().unwrap();
    let unit_value = |item: &str| {
        materials["items"][item]["unit_value"]
            .as_float()
            .unwrap_or_else(|| materials["items"][item]["unit_value"].as_integer().unwrap() as f64)
    };
    let mut value_yuan = 0.0;
    for d in materials["depots"].as_array().unwrap() {
        for (item, q) in d["items"].as_table().unwrap() {
            value_yuan += q.as_integer().map(|i| i as f64).or(q.as_float()).unwrap() * unit_value(item);
        }
    }
    let mut categories = BTreeMap::new();
    for s in sites["sites"].as_array().unwrap() {
        *categories.entry(s["category"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    Expected {
        member_units: hq["units"].as_array().unwrap().len(),
        upgraded: upgraded.len(),
        repaired_pumps: works
            .iter()
            .filter(|w| w["kind"].as_str() == Some("repair"))
            .map(|w| w.get("pumps").and_then(|p| p.as_integer()).unwrap_or(1))
            .sum(),
        projects: renos.len(),
        actual_percent: renos.iter().map(|r| r["actual_percent"].as_integer().unwrap() as f64).sum::<f64>()
            / renos.len() as f64,
        teams: rescue.len(),
        headcount: rescue.iter().map(|t| t["headcount"].as_integer().unwrap()).sum(),
        value_yuan,
        categories,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_report_fills_every_blank_from_the_config_and_the_drills_on_record() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let mut o = Options::new(broker.url());
    o.channels = http_sms(&peer);
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    let fg = Floodguard::start(o);
    fg.wait_connected().await;
    let config = fg.config_path();

    // Two drills: team1 reached (3 of 3), team2 with the gateway down (0 of 3).
    let (ok, table, err) = run(&["notify-test", "--team", "team1"], &config);
    assert!(ok, "{table}{err}");
    peer.behave(|b| b.fail_until = Some(std::time::Instant::now() + Duration::from_secs(600)));
    let (ok, table, _) = run(&["notify-test", "--team", "team2"], &config);
    assert!(!ok, "the gateway refused everything: {table}");
    assert!(table.contains("共 3 条，送达 0 条，失败 3 条"), "{table}");

    // On the page's API, newest first.
    let drills = get_json(&fg, "/api/v1/drills").await;
    let list = drills["drills"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{drills}");
    assert_eq!(
        (list[0]["team"].as_str(), list[0]["accepted"].as_u64(), list[0]["sent"].as_u64()),
        (Some("team2"), Some(0), Some(3))
    );
    assert_eq!((list[1]["team_name"].as_str(), list[1]["accepted"].as_u64()), (Some("一队"), Some(3)));
    assert_eq!(list[1]["results"][0]["name"], "张队长");

    let want = expected();
    let (ok, json, err) = run(&["report", "--kind", "readiness", "--format", "json"], &config);
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["hq"]["member_units"].as_u64(), Some(want.member_units as u64));
    assert_eq!(r["pump_stations"]["upgraded"].as_u64(), Some(want.upgraded as u64));
    assert_eq!(r["pump_stations"]["repaired_pumps"].as_i64(), Some(want.repaired_pumps));
    assert_eq!(r["renovations"]["projects"].as_u64(), Some(want.projects as u64));
    assert!((r["renovations"]["actual_percent"].as_f64().unwrap() - want.actual_percent).abs() < 0.006);
    assert_eq!(r["teams"]["count"].as_u64(), Some(want.teams as u64));
    assert_eq!(r["teams"]["headcount"].as_i64(), Some(want.headcount));
    assert_eq!(r["materials"]["value_yuan"].as_f64(), Some(want.value_yuan));
    assert_eq!(r["drills"]["count"], 2);
    assert_eq!(r["drills"]["reach_percent"], 50.0, "3 of 6 messages accepted");
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m-%d").to_string();
    assert!(r["drills"]["last"].as_str().unwrap().starts_with(&today), "{}", r["drills"]);
    let m = &r["monitoring"];
    let c = |k: &str| want.categories.get(k).copied().unwrap_or(0) as u64;
    assert_eq!(m["communities"].as_u64(), Some(c("community")));
    assert_eq!(m["malls"].as_u64(), Some(c("mall")));
    assert_eq!(m["schools"].as_u64(), Some(c("school")));
    assert_eq!(m["sites"].as_u64(), Some(want.categories.values().sum::<usize>() as u64));

    // The district's paragraph, every blank filled with those numbers.
    let (ok, md, _) = run(&["report", "--kind", "readiness"], &config);
    assert!(ok);
    println!("{md}");
    assert!(!md.contains('*'), "a blank is left: {md}");
    for phrase in [
        format!("下设 {} 个成员单位", want.member_units),
        format!("对 {} 个泵站进行改造升级，{} 台泵组进行检修、维护", want.upgraded, want.repaired_pumps),
        format!("{} 处积水点改造项目完成工程量的 73.33%", want.projects),
        format!("全区成立了总人数 {} 人的 {} 支防汛抢险救援队", want.headcount, want.teams),
        format!("已陆续开展防汛应急演练 2 次（2 支队伍参加，最近一次 {today}，通知送达率 50%）"),
        format!("目前已储备价值 {:.2} 万元的防汛物资、设备", want.value_yuan / 10_000.0),
        format!("{} 个居民小区、{} 个商超、{} 所学校", c("community"), c("mall"), c("school")),
    ] {
        assert!(md.contains(&phrase), "missing {phrase:?}");
    }
    let (ok, html, _) = run(&["report", "--kind", "readiness", "--format", "html"], &config);
    assert!(ok && html.starts_with("<!doctype html>") && html.contains("<title>汛前准备情况</title>"));
    assert!(html.contains(&format!("总人数 {} 人", want.headcount)));
}

async fn depth(p: &Publisher, site: &str, cm: f64) {
    p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orange_underpass_names_the_nearest_depot_and_an_issue_of_sandbags_is_on_record() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let mut o = Options::new(broker.url());
    o.channels = http_sms(&peer);
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    o.teams_toml = Some(quick_teams());
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-records-materials");
    // Two readings ≥ 27 cm (the plan's sustain): CD-JS-01, an underpass, at Ⅱ.
    for cm in [28.0, 29.5] {
        depth(&p, "CD-JS-01", cm).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The team lead's SMS names the depot beside the underpass and its keeper.
    let sms = wait_for("the Ⅱ SMS to team1's leader", Duration::from_secs(15), || async {
        peer.accepted("/sms").into_iter().find(|r| r.to.contains("13800000101") && r.text.contains("Ⅱ级"))
    })
    .await;
    println!("SMS: {}", sms.text);
    assert!(sms.text.contains("物资：城东防汛物资仓库（王保管 13800000501）"), "{}", sms.text);
    let alerts = get_json(&fg, "/api/v1/alerts").await;
    let a = alerts["alerts"].as_array().unwrap().iter().find(|a| a["site"] == "CD-JS-01").unwrap().clone();
    assert_eq!(a["level"], "II");
    let supply = &a["supply"][0];
    assert_eq!((supply["depot"].as_str(), supply["keeper"].as_str()), (Some("depot-cd"), Some("王保管")));
    let items: Vec<&str> =
        supply["items"].as_array().unwrap().iter().map(|i| i["item"].as_str().unwrap()).collect();
    assert_eq!(items, ["barrier", "pump_truck", "sandbag", "warning_sign"], "the Ⅱ card's materials");
    let id = a["id"].as_i64().unwrap();

    // The keeper records 200 sandbags issued for it.
    let client = reqwest::Client::new();
    let body = serde_json::json!({"depot": "depot-cd", "item": "sandbag", "kind": "issue", "quantity": 200,
        "alert_id": id, "by": "王保管", "note": "下穿入口封堵"});
    let resp = client.post(fg.url("/api/v1/materials")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401, "a write needs the token");
    let resp = client.post(fg.url("/api/v1/materials")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let stock = |v: &Value| {
        let cd = v["depots"].as_array().unwrap().iter().find(|d| d["id"] == "depot-cd").unwrap().clone();
        cd["stock"].as_array().unwrap().iter().find(|s| s["item"] == "sandbag").unwrap()["quantity"].as_f64()
    };
    let check = |a: Value, m: Value| {
        let e = a["timeline"].as_array().unwrap().iter().find(|e| e["event"] == "material_issued").cloned();
        let e = e.unwrap_or_else(|| panic!("on the timeline: {a}"));
        assert_eq!(e["by"], "王保管");
        assert!(e["note"].as_str().unwrap().contains("编织袋（沙袋） 200 条（城东防汛物资仓库）"), "{e}");
        assert_eq!(stock(&m), Some(2800.0), "3000 less 200");
    };
    check(get_json(&fg, &format!("/api/v1/alerts/{id}")).await, get_json(&fg, "/api/v1/materials").await);
    // More than is left is refused, and changes nothing.
    let too_many = serde_json::json!({"depot": "depot-cd", "item": "sandbag", "kind": "issue", "quantity": 5000, "by": "王保管"});
    let resp =
        client.post(fg.url("/api/v1/materials")).bearer_auth(TOKEN).json(&too_many).send().await.unwrap();
    assert_eq!(resp.status(), 422);

    // It is on record: after a restart, the same.
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
    fg.start_again();
    fg.wait_connected().await;
    check(get_json(&fg, &format!("/api/v1/alerts/{id}")).await, get_json(&fg, "/api/v1/materials").await);
}

/// A storm of the simulator stamped from `start_ms` (model time), published
/// to `broker` as fast as it goes, and written to `file`.
fn simulate(broker: Option<&str>, start_ms: i64, scale: f64, file: &Path) -> usize {
    let start = chrono::DateTime::from_timestamp_millis(start_ms).unwrap().to_rfc3339();
    let mut cmd = Command::new(BIN);
    cmd.args(["simulate", "--scenario", "rainstorm", "--seed", "4", "--speed", "100000", "--start", &start])
        .args(["--rain-scale", &scale.to_string()])
        .arg("--output")
        .arg(file)
        .arg("-c")
        .arg(sample_config_dir().join("floodguard.toml"));
    if let Some(b) = broker {
        cmd.args(["--broker", b]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(file).unwrap().lines().count()
}

/// (site, metric) → [(ts ns, value)] of a line-protocol file.
fn file_series(file: &Path) -> BTreeMap<(String, String), Vec<(i64, f64)>> {
    let mut m: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let mut parts = line.split(' ');
        let (series, fields, ts) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let site = series.split_once("site=").unwrap().1.to_string();
        let ts: i64 = ts.parse().unwrap();
        for f in fields.split(',') {
            let (k, v) = f.split_once('=').unwrap();
            let v = match v {
                "true" => 1.0,
                "false" => 0.0,
                v => v.parse().unwrap(),
            };
            m.entry((site.clone(), k.to_string())).or_default().push((ts, v));
        }
    }
    m
}

/// The engine's level changes for (site, "depth") replaying `file`: (ts ns, to).
fn replayed(file: &Path, site: &str) -> Vec<(i64, Option<String>)> {
    let out = Command::new(BIN)
        .args(["replay", "--format", "json", "--tick", "1s", "--input"])
        .arg(file)
        .arg("-c")
        .arg(sample_config_dir().join("floodguard.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["site"] == site && v["rule"] == "depth")
        .map(|v| {
            let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
            (ts.timestamp_nanos_opt().unwrap(), v["to"].as_str().map(str::to_string))
        })
        .collect()
}

/// Time at Ⅳ or above, and from `peak_at` back below Ⅳ, from level changes.
fn above_and_drain(changes: &[(i64, Option<String>)], peak_at: i64) -> (i64, Option<i64>) {
    let mut above = 0;
    let mut since: Option<i64> = None;
    for (t, to) in changes {
        match (to, since) {
            (Some(_), None) => since = Some(*t),
            (None, Some(s)) => {
                above += t - s;
                since = None;
            }
            _ => {}
        }
    }
    let drain = changes.iter().find(|(t, to)| *t >= peak_at && to.is_none()).map(|(t, _)| t - peak_at);
    (above, drain)
}

fn rfc(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_reports_rain_depth_and_pump_sections_equal_influxql_the_model_and_the_engine() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    // A storm that ended an hour ago, on 5-minute boundaries.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let start_ms = (now_ms - 8 * 3_600_000) / 300_000 * 300_000;
    let dir = crate::support::tempdir("storm-report-");
    let file = dir.path().join("storm.lp");
    let lines = simulate(Some(&broker.url()), start_ms, 1.0, &file);
    wait_for("every storm message in InfluxDB", Duration::from_secs(60), || async {
        let n = influx.count("flood", "SELECT count(battery_v) FROM telemetry").await;
        let m = influx.count("flood", "SELECT count(rain_mm) FROM telemetry").await;
        let p = influx.count("flood", "SELECT count(forebay_level_m) FROM telemetry").await;
        let d = influx.count("flood", "SELECT count(water_depth_cm) FROM telemetry").await;
        let want = file_series(&file);
        let count = |metric: &str| {
            want.iter().filter(|((_, m), _)| m == metric).map(|(_, v)| v.len()).sum::<usize>() as i64
        };
        (n == count("battery_v")
            && m == count("rain_mm")
            && p == count("forebay_level_m")
            && d == count("water_depth_cm"))
        .then_some(())
    })
    .await;
    println!("{lines} messages of the storm stored");
    // Until a minute after the last report: each pump report holds a minute.
    let last = file_series(&file).values().flat_map(|v| v.iter().map(|(t, _)| *t)).max().unwrap();
    let (since, until) = (start_ms * 1_000_000, last + 60_000_000_000);
    let (ok, json, err) = run(
        &["report", "--since", &rfc(since), "--until", &rfc(until), "--format", "json"],
        &fg.config_path(),
    );
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&json).unwrap();
    assert!(r["source"].as_str().unwrap().starts_with("InfluxDB"), "{}", r["source"]);

    // Rainfall: totals and the wettest hour and three hours, as InfluxQL says.
    let range = format!("time >= {since} AND time < {until}");
    let rain = r["rain"].as_array().unwrap();
    assert_eq!(rain.len(), 2);
    for g in rain {
        let site = g["site"].as_str().unwrap();
        let q = |s: &str| format!("{s} WHERE site = '{site}' AND {range}");
        let total = influx.query("flood", &q("SELECT sum(rain_mm) FROM telemetry")).await;
        let total = total["results"][0]["series"][0]["values"][0][1].as_f64().unwrap();
        assert!(
            (g["total_mm"].as_f64().unwrap() - total).abs() < 1e-6,
            "{site}: {} vs InfluxQL {total}",
            g["total_mm"]
        );
        for (key, n) in [("max_1h", 12), ("max_3h", 36)] {
            let inner = q(&format!("SELECT moving_average(sum(rain_mm), {n}) AS m FROM telemetry"));
            let v = influx
                .query("flood", &format!("SELECT max(m) FROM ({inner} GROUP BY time(5m) fill(0))"))
                .await;
            let want = v["results"][0]["series"][0]["values"][0][1].as_f64().unwrap() * n as f64;
            let got = g[key]["value"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-6, "{site} {key}: {got} vs InfluxQL {want}");
        }
        println!(
            "{site}: {} mm, wettest hour {} mm, three hours {} mm",
            total, g["max_1h"]["value"], g["max_3h"]["value"]
        );
    }
    let avg = rain.iter().map(|g| g["total_mm"].as_f64().unwrap()).sum::<f64>() / 2.0;
    assert!((r["district_rain_mm"].as_f64().unwrap() - avg).abs() < 1e-9);

    // Pumps: running hours as the model ran them — each minute's report
    // holds the minute; the last one holds until the end of the period (at
    // most the 10 minutes a station's reading is fresh).
    let model = file_series(&file);
    for st in r["stations"].as_array().unwrap() {
        let site = st["site"].as_str().unwrap();
        for p in st["pumps"].as_array().unwrap() {
            let no = p["no"].as_u64().unwrap();
            let reports = &model[&(site.to_string(), format!("pump{no}_running"))];
            let minutes = reports[..reports.len() - 1].iter().filter(|(_, v)| *v == 1.0).count() as i64;
            let (last_at, last) = *reports.last().unwrap();
            let tail = if last == 1.0 { (until - last_at).min(600_000_000_000) } else { 0 };
            assert_eq!(p["running_ns"].as_i64(), Some(minutes * 60_000_000_000 + tail), "{site} pump {no}");
        }
        let forebay = model[&(site.to_string(), "forebay_level_m".to_string())]
            .iter()
            .map(|(_, v)| *v)
            .fold(f64::MIN, f64::max);
        assert_eq!(st["forebay_peak"]["value"].as_f64(), Some(forebay), "{site}");
    }
    let bz = r["stations"].as_array().unwrap().iter().find(|s| s["site"] == "BH-BZ-01").unwrap();
    assert_eq!(bz["pumps"][1]["faults"], 1, "滨河 pump 2 faulted mid-storm");

    // Waterlogging: the peak is the highest reading; the time at Ⅳ and the
    // drain time are the engine's, replaying the same storm.
    for d in r["depths"].as_array().unwrap() {
        let site = d["site"].as_str().unwrap();
        let series = &model[&(site.to_string(), "water_depth_cm".to_string())];
        let (peak_at, peak) =
            series.iter().fold((0, f64::MIN), |b, (t, v)| if *v > b.1 { (*t, *v) } else { b });
        assert_eq!(d["peak"]["value"].as_f64(), Some(peak), "{site}");
        assert_eq!(d["peak"]["at"].as_i64(), Some(peak_at), "{site}");
        let (above, drain) = above_and_drain(&replayed(&file, site), peak_at);
        assert_eq!(d["above_ns"][0].as_i64(), Some(above), "{site}: time at Ⅳ or above");
        assert_eq!(d["drain_ns"].as_i64(), drain, "{site}: drain time");
        assert!(above > 0, "{site} flooded in the storm");
    }
    // And in Markdown: the sections follow the alert sections.
    let (ok, md, _) = run(&["report", "--since", &rfc(since), "--until", &rfc(until)], &fg.config_path());
    assert!(ok);
    for heading in ["## 七、降雨", "## 八、积水点", "## 九、泵站运行", "全区平均降雨量"]
    {
        assert!(md.contains(heading), "{heading}: {md}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_storms_shows_the_weaker_storm_floods_the_point_less_as_the_model_says() {
    let broker = Mosquitto::start();
    let fg = Floodguard::start(Options::new(broker.url())); // spool only
    fg.wait_connected().await;
    let dir = crate::support::tempdir("compare-storms-");
    let now_ms = chrono::Utc::now().timestamp_millis() / 300_000 * 300_000;
    let a_start = now_ms - 2 * 86_400_000;
    let b_start = now_ms - 86_400_000;
    let (fa, fb) = (dir.path().join("a.lp"), dir.path().join("b.lp"));
    let n =
        simulate(Some(&broker.url()), a_start, 1.0, &fa) + simulate(Some(&broker.url()), b_start, 0.6, &fb);
    wait_for("both storms spooled", Duration::from_secs(60), || async {
        (fg.metric("floodguard_mqtt_messages_received_total").await? >= n as f64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let storm =
        |start: i64| format!("{}..{}", rfc(start * 1_000_000), rfc((start + 7 * 3_600_000) * 1_000_000));
    let (ok, json, err) = run(
        &[
            "compare-storms",
            "--storm",
            &storm(a_start),
            "--storm",
            &storm(b_start),
            "--site",
            "CD-JS-01",
            "--format",
            "json",
        ],
        &fg.config_path(),
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&json).unwrap();
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(p["renovation"][1], "2026-05-20", "the renovated underpass");
    // What the model implies, from the simulator's own files.
    for (side, file) in [("a", &fa), ("b", &fb)] {
        let s = file_series(file);
        let gauge = &p[side]["gauge"];
        assert_eq!(gauge, "街道办楼顶", "CD-YL-01 is nearest the underpass");
        let rain: f64 = s[&("CD-YL-01".to_string(), "rain_mm".to_string())].iter().map(|(_, v)| v).sum();
        assert!((p[side]["rain_mm"].as_f64().unwrap() - rain).abs() < 1e-6, "{side}: rain");
        let depth = &s[&("CD-JS-01".to_string(), "water_depth_cm".to_string())];
        let (peak_at, peak) =
            depth.iter().fold((0, f64::MIN), |b, (t, v)| if *v > b.1 { (*t, *v) } else { b });
        assert_eq!(p[side]["peak"].as_f64(), Some(peak), "{side}: peak depth");
        let (above, drain) = above_and_drain(&replayed(file, "CD-JS-01"), peak_at);
        assert_eq!(p[side]["above_iv_ns"].as_i64(), Some(above), "{side}: time at Ⅳ or above");
        assert_eq!(p[side]["drain_ns"].as_i64(), drain, "{side}: drain time");
    }
    // The weaker storm: 0.6 of the rain, a lower peak, less time flooded.
    let ratio = p["b"]["rain_mm"].as_f64().unwrap() / p["a"]["rain_mm"].as_f64().unwrap();
    assert!((ratio - 0.6).abs() < 0.01, "rain ratio {ratio}");
    assert!(p["b"]["peak"].as_f64() < p["a"]["peak"].as_f64());
    assert!(p["b"]["above_iv_ns"].as_i64() < p["a"]["above_iv_ns"].as_i64());
    let (ok, md, _) =
        run(&["compare-storms", "--storm", &storm(a_start), "--storm", &storm(b_start)], &fg.config_path());
    assert!(ok);
    println!("{md}");
    assert!(md.contains("| CD-JS-01 人民路铁路桥下穿 | 2026-05-20 完成 | 街道办楼顶 |"), "{md}");
}

#[test]
fn a_storm_file_with_no_broker_is_in_model_time_ending_now() {
    let dir = crate::support::tempdir("storm-file-");
    let file = dir.path().join("storm.lp");
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", "rainstorm", "--speed", "100000", "--output"])
        .arg(&file)
        .arg("-c")
        .arg(sample_config_dir().join("floodguard.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let ts: Vec<i64> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let (first, last) = (ts[0], *ts.last().unwrap());
    let hours = (last - first) as f64 / 3.6e12;
    assert!(hours > 6.4 && hours < 6.6, "the 6.5-hour storm spans {hours:.2} h whatever --speed");
    assert!(last <= now && now - last < 120_000_000_000, "it ends now, not in the future");
    // Replayed, the underpass rises at centimetres an hour, not at 1,800,000 cm/h.
    let out = Command::new(BIN)
        .args(["replay", "--format", "json", "--input"])
        .arg(&file)
        .arg("-c")
        .arg(sample_config_dir().join("floodguard.toml"))
        .output()
        .unwrap();
    let changes: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rain: Vec<&Value> = changes.iter().filter(|c| c["site"] == "CD-YL-01").collect();
    assert!(rain.len() >= 2, "the rain levels build and fall: {rain:?}");
    let t = |c: &Value| chrono::DateTime::parse_from_rfc3339(c["ts"].as_str().unwrap()).unwrap().timestamp();
    assert!(t(rain[1]) - t(rain[0]) > 1800, "not every rain window full at once: {rain:?}");
}

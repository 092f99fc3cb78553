//! HTTP push into a real daemon and InfluxDB 1.6.7: line protocol as
//! Telegraf's InfluxDB outputs send it (`/write`, `/api/v2/write`, gzip,
//! the token however the client sends it), floodguard's JSON readings,
//! partial writes, wrong tokens. (The storm through `/write` is in
//! `stages.rs`.)

use std::io::Write;
use std::time::Duration;

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::{http_get, wait_for};

pub const INGEST: &str = "push-ingest-token-0123456789abcdef";

pub fn options(broker: &Mosquitto, influx: &Influx) -> Options {
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.http_extra =
        format!("api_token = \"api-token-not-for-push-0123456789abcdef\"\ningest_token = \"{INGEST}\"\n");
    o
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

async fn depths(influx: &Influx, site: &str) -> Vec<f64> {
    let v = influx
        .query("flood", &format!("SELECT water_depth_cm FROM telemetry WHERE site = '{site}' ORDER BY time"))
        .await;
    v["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r[1].as_f64()).collect())
        .unwrap_or_default()
}

async fn site_level(fg: &Floodguard, site: &str) -> Option<String> {
    let (_, body) = http_get(&fg.url(&format!("/api/v1/sites/{site}"))).await?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["level"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_and_json_pushes_are_stored_and_judged() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut fg = Floodguard::start(options(&broker, &influx));
    fg.wait_connected().await;
    let http = reqwest::Client::new();
    let now_s = chrono::Utc::now().timestamp();

    // Telegraf's 1.x output: /write?db=…&precision=s, basic auth with the
    // token as the password, other tags ignored.
    let body = format!(
        "telemetry,site=CD-JS-01,host=gw-3 water_depth_cm=5,battery_v=3.61 {}\n\
         telemetry,site=CD-JS-01,host=gw-3 water_depth_cm=22.5 {}\n\
         telemetry,site=CD-JS-01,host=gw-3 water_depth_cm=23.0 {}\n",
        now_s - 120,
        now_s - 60,
        now_s - 30
    );
    let r = http
        .post(fg.url("/write?db=telegraf&precision=s"))
        .basic_auth("telegraf", Some(INGEST))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    // 204 means spooled; the readings reach InfluxDB and the engine judges them.
    wait_for("the pushed depths in InfluxDB", Duration::from_secs(20), || async {
        (depths(&influx, "CD-JS-01").await == vec![5.0, 22.5, 23.0]).then_some(())
    })
    .await;
    wait_for("CD-JS-01 at Ⅲ (20 cm, two readings)", Duration::from_secs(20), || async {
        (site_level(&fg, "CD-JS-01").await.as_deref() == Some("III")).then_some(())
    })
    .await;

    let (_, body) = http_get(&fg.url("/api/v1/sites/CD-JS-01")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["source"]["protocol"].as_str(), v["source"]["from"].as_str()),
        (Some("http"), Some("POST /write")),
        "{v}"
    );

    // Telegraf's 2.x output: gzip, `Authorization: Token`, ns precision by default.
    let ns = (now_s - 10) * 1_000_000_000;
    let r = http
        .post(fg.url("/api/v2/write?org=flood&bucket=flood"))
        .header("Authorization", format!("Token {INGEST}"))
        .header("Content-Encoding", "gzip")
        .body(gzip(format!("telemetry,site=CD-JS-02 water_depth_cm=7 {ns}\n").as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());

    // The `u`/`p` query parameters of InfluxDB 1.x clients; JSON readings.
    let r = http
        .post(fg.url(&format!("/write?db=x&u=any&p={INGEST}&precision=ms")))
        .body(format!("telemetry,site=CD-JS-02 water_depth_cm=8 {}", (now_s - 5) * 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(fg.url("/api/v1/readings"))
        .bearer_auth(INGEST)
        .json(&serde_json::json!([
            {"site": "CD-JS-02", "ts": (now_s - 3) * 1000, "water_depth_cm": 9},
            {"site": "CD-JS-02", "ts": (now_s - 2) * 1000, "water_depth_cm": "9.5"},
            {"site": "CD-JS-02", "ts": (now_s - 1) * 1000, "water_depth_cm": "deep"},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "text that is no number is a wrong type");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["detail"]["errors"][0]["index"], 2, "{v}");
    assert_eq!(v["detail"]["accepted"], 2, "a numeric string is a depth, as devices send it: {v}");
    wait_for("CD-JS-02's depths", Duration::from_secs(20), || async {
        (depths(&influx, "CD-JS-02").await == vec![7.0, 8.0, 9.0, 9.5]).then_some(())
    })
    .await;

    // A partial write: the bad lines named (number and cause), the good stored.
    let body = format!(
        "telemetry,site=BH-SW-01 level_m=2.41 {t}\n\
         telemetry,site=NOPE-01 level_m=1 {t}\n\
         cpu,host=gw usage_idle=99 {t}\n\
         telemetry,site=BH-SW-01 level_m=\"high\" {t}\n\
         telemetry,site=BH-SW-01 level_m=2.44 {t2}\n",
        t = (now_s - 20) * 1_000_000_000,
        t2 = (now_s - 19) * 1_000_000_000
    );
    let r = http.post(fg.url("/write?db=flood")).bearer_auth(INGEST).body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    let errors: Vec<(i64, String)> = v["detail"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["cause"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        errors,
        vec![(2, "unknown_site".into()), (3, "unknown_measurement".into()), (4, "wrong_type".into())],
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().starts_with("partial write"), "{v}");
    wait_for("the good lines of the partial write", Duration::from_secs(20), || async {
        let n = influx.count("flood", "SELECT count(level_m) FROM telemetry WHERE site = 'BH-SW-01'").await;
        (n == 2).then_some(())
    })
    .await;

    // Wrong or missing token, the API token: 401, nothing stored.
    for auth in [Some("Token wrong"), None, Some("Bearer api-token-not-for-push-0123456789abcdef")] {
        let mut req = http.post(fg.url("/write?db=flood"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.body("telemetry,site=CD-JS-03 water_depth_cm=1").send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
    }
    let r = http.get(fg.url("/ping")).send().await.unwrap();
    assert_eq!(r.status(), 204);

    let m = fg.metrics().await.unwrap();
    for want in [
        "floodguard_push_requests_total{code=\"204\"} 3",
        "floodguard_push_requests_total{code=\"400\"} 2",
        "floodguard_push_requests_total{code=\"401\"} 3",
        "floodguard_push_rejected_total{cause=\"unknown_site\"} 1",
        "floodguard_push_rejected_total{cause=\"unknown_measurement\"} 1",
        "floodguard_push_rejected_total{cause=\"wrong_type\"} 2",
    ] {
        assert!(m.contains(want), "{want} in\n{m}");
    }
    assert_eq!(
        influx.count("flood", "SELECT count(water_depth_cm) FROM telemetry WHERE site = 'CD-JS-03'").await,
        0
    );
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_bodies_over_the_limit_are_refused_and_gzip_bombs_too() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut o = options(&broker, &influx);
    o.http_extra.push_str("max_push_body = 100000\n");
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let http = reqwest::Client::new();
    let line = "telemetry,site=CD-JS-01 water_depth_cm=1\n";
    let big = line.repeat(100_000 / line.len() + 1);
    let r = http.post(fg.url("/write")).bearer_auth(INGEST).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Small compressed, too large once decompressed.
    let r = http
        .post(fg.url("/write"))
        .bearer_auth(INGEST)
        .header("Content-Encoding", "gzip")
        .body(gzip(big.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = http
        .post(fg.url("/write"))
        .bearer_auth(INGEST)
        .header("Content-Encoding", "gzip")
        .body(b"not gzip at all".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The API's own limit (64 KiB) is not the push limit.
    let r = http.post(fg.url("/write")).bearer_auth(INGEST).body(line.repeat(2000)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

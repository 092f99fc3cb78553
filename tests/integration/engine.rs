//! The plan engine inside the running daemon: live state over the API,
//! area levels in InfluxDB, hot reload by API and SIGHUP.

use std::time::Duration;

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::Publisher;
use crate::support::{http_get, wait_for};

async fn sites(fg: &Floodguard) -> serde_json::Value {
    let (code, body) = http_get(&fg.url("/api/v1/sites")).await.expect("/api/v1/sites");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn site<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["sites"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id} missing"))
}

async fn post(fg: &Floodguard, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(fg.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or_default())
}

async fn depth(p: &Publisher, site: &str, cm: f64) {
    p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_raise_levels_that_the_api_and_influxdb_show() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-engine");

    for cm in [12.0, 14.0, 21.0, 22.5] {
        depth(&p, "CD-JS-01", cm).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let v = wait_for("CD-JS-01 at III", Duration::from_secs(10), || async {
        let v = sites(&fg).await;
        (site(&v, "CD-JS-01")["level"] == "III").then_some(v)
    })
    .await;
    let s = site(&v, "CD-JS-01");
    assert_eq!(s["values"]["water_depth_cm"]["value"], 22.5);
    assert_eq!(s["street"], "chengdong");
    assert_eq!(s["trend"]["direction"], "rising", "{s}");
    assert_eq!(s["eta"]["level"], "II", "{s}");
    assert_eq!(v["streets"][0]["level"], "III");
    assert_eq!(v["district"]["level"], "III");
    assert_eq!(site(&v, "BH-SW-01")["level"], serde_json::Value::Null);

    // Street and district levels are in InfluxDB as area_level.
    let level = wait_for("area_level of chengdong at 2 (Ⅲ)", Duration::from_secs(20), || async {
        let v = influx.query("flood", "SELECT last(level) FROM area_level WHERE street = 'chengdong'").await;
        let l = v["results"][0]["series"][0]["values"][0][1].as_i64()?;
        (l == 2).then_some(l)
    })
    .await;
    assert_eq!(level, 2);
    let v = influx.query("flood", "SELECT level FROM area_level WHERE street = 'chengdong'").await;
    let levels: Vec<i64> = v["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_i64().unwrap())
        .collect();
    assert_eq!(levels, [0, 1, 2], "baseline at start, then Ⅳ, then Ⅲ");
    let v = influx.query("flood", "SELECT last(level) FROM area_level WHERE district = 'mouqu'").await;
    assert_eq!(v["results"][0]["series"][0]["values"][0][1].as_i64(), Some(2));
    assert!(fg.metric(r#"floodguard_engine_transitions_total{type="site"}"#).await.unwrap() >= 2.0);

    // The alert's lifecycle is in InfluxDB as alert_event, for annotations.
    let v = wait_for("alert_event points", Duration::from_secs(20), || async {
        let v = influx
            .query("flood", "SELECT alert_id, value, threshold, message FROM alert_event WHERE site = 'CD-JS-01' GROUP BY event, level")
            .await;
        (v["results"][0]["series"].as_array()?.len() == 2).then_some(v)
    })
    .await;
    let series = v["results"][0]["series"].as_array().unwrap();
    let tags: Vec<(String, String)> = series
        .iter()
        .map(|s| {
            (
                s["tags"]["event"].as_str().unwrap().to_string(),
                s["tags"]["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        [("escalated".to_string(), "III".to_string()), ("firing".to_string(), "IV".to_string())]
    );
    let firing = &series[1]["values"][0];
    assert_eq!(firing[3].as_f64(), Some(10.0), "threshold of Ⅳ: {firing}");
    assert_eq!(firing[4].as_str(), Some("人民路铁路桥下穿 积水深度 firing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_valid_plan_keeps_state_and_refuses_an_invalid_one() {
    let broker = Mosquitto::start();
    let mut opts = Options::new(broker.url());
    opts.http_extra = "api_token = \"s3cret-token-0123456789abcdef0123456789\"\n".into();
    let fg = Floodguard::start(opts);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-reload");
    for cm in [12.0, 12.0] {
        depth(&p, "CD-JS-01", cm).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_for("CD-JS-01 at IV", Duration::from_secs(10), || async {
        (site(&sites(&fg).await, "CD-JS-01")["level"] == "IV").then_some(())
    })
    .await;

    // Without the token: 401.
    assert_eq!(post(&fg, "/api/v1/reload", None).await.0, 401);
    assert_eq!(post(&fg, "/api/v1/reload", Some("wrong")).await.0, 401);

    // A broken plan: refused with every error, the running plan stays.
    let plan = fg.config_path().with_file_name("plan.toml");
    let good = std::fs::read_to_string(&plan).unwrap();
    let bad = good
        .replace(
            "thresholds = { IV = 10, III = 20, II = 27, I = 40 }",
            "thresholds = { IV = 10, III = 8, II = 27, I = 40 }",
        )
        .replace("when = \"sensor_fault\"", "when = \"sensor_faulty\"");
    std::fs::write(&plan, &bad).unwrap();
    let (code, body) = post(&fg, "/api/v1/reload", Some("s3cret-token-0123456789abcdef0123456789")).await;
    assert_eq!(code, 422, "{body}");
    let detail: Vec<String> =
        body["detail"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    assert!(
        detail.iter().any(|d| d.contains("rules[0].thresholds") && d.contains("must rise")),
        "{detail:?}"
    );
    assert!(detail.iter().any(|d| d.contains("unknown metric \"sensor_faulty\"")), "{detail:?}");
    assert_eq!(site(&sites(&fg).await, "CD-JS-01")["rules"][0]["thresholds"]["III"], 20.0);
    assert_eq!(fg.metric(r#"floodguard_config_reloads_total{result="refused"}"#).await, Some(1.0));

    // A valid change: Ⅲ at 11 cm. The site keeps its state (IV) and the next
    // readings are judged by the new numbers.
    std::fs::write(
        &plan,
        good.replace(
            "thresholds = { IV = 10, III = 20, II = 27, I = 40 }",
            "thresholds = { IV = 8, III = 11, II = 27, I = 40 }",
        ),
    )
    .unwrap();
    let (code, body) = post(&fg, "/api/v1/reload", Some("s3cret-token-0123456789abcdef0123456789")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["report"]["sites"], 15);
    let v = sites(&fg).await;
    assert_eq!(site(&v, "CD-JS-01")["level"], "IV", "state carried over");
    assert_eq!(site(&v, "CD-JS-01")["rules"][0]["thresholds"]["III"], 11.0);
    for cm in [12.0, 12.0] {
        depth(&p, "CD-JS-01", cm).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_for("CD-JS-01 at III under the new plan", Duration::from_secs(10), || async {
        (site(&sites(&fg).await, "CD-JS-01")["level"] == "III").then_some(())
    })
    .await;

    // SIGHUP does the same.
    std::fs::write(&plan, &good).unwrap();
    fg.signal("HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(10), || async {
        (fg.metric(r#"floodguard_config_reloads_total{result="applied"}"#).await? == 2.0).then_some(())
    })
    .await;
    assert_eq!(site(&sites(&fg).await, "CD-JS-01")["rules"][0]["thresholds"]["III"], 20.0);
    assert!(fg.log().contains("configuration reloaded"));
}

//! The alert lifecycle through the running daemon: real Mosquitto, the
//! alerts API, the notification log, a SIGKILL in the middle.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options};
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::Publisher;
use crate::support::{http_get, wait_for};

const TOKEN: &str = "alert-test-token-0123456789abcdef0123";

/// The sample teams with the follow-up times of a test.
fn teams(alerting: &str) -> String {
    let text = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    let start = text.find("[alerting]").unwrap();
    let end = text[start..].find("\n\n").unwrap() + start;
    format!("{}{}{}", &text[..start], alerting.trim(), &text[end..])
}

fn start(broker: &Mosquitto, alerting: &str) -> Floodguard {
    let mut o = Options::new(broker.url());
    o.teams_toml = Some(teams(alerting));
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    Floodguard::start(o)
}

async fn get_json(fg: &Floodguard, path: &str) -> Value {
    let (code, body) = http_get(&fg.url(path)).await.unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn post(fg: &Floodguard, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(fg.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or_default())
}

/// Publishes a depth at CD-JS-01 (device time counting up) and waits a little.
async fn depth(p: &Publisher, site: &str, cm: f64) {
    p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes()).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
}

/// `team: kind level [role]` of every intent, oldest first.
async fn intents(fg: &Floodguard) -> Vec<String> {
    let v = get_json(fg, "/api/v1/notifications?limit=1000").await;
    let mut out = Vec::new();
    for n in v["notifications"].as_array().unwrap().iter().rev() {
        for i in n["intents"].as_array().unwrap() {
            let role = i["escalation_role"].as_str().map_or(String::new(), |r| format!(" [{r}]"));
            out.push(format!(
                "{}: {} {} {}{role}",
                n["team"].as_str().unwrap(),
                i["kind"].as_str().unwrap(),
                i["site"].as_str().unwrap(),
                i["level"].as_str().unwrap_or("-")
            ));
        }
    }
    out
}

async fn alert_of(fg: &Floodguard, site: &str, rule: &str) -> Value {
    let v = get_json(fg, "/api/v1/alerts?state=all").await;
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["site"] == site && a["rule"] == rule)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_climbs_is_acked_drops_is_disposed_and_resolves() {
    let broker = Mosquitto::start();
    let fg = start(
        &broker,
        r#"
[alerting]
group_window = "1s"
group_wait = { IV = "0s", III = "0s", II = "0s", I = "0s" }
repeat = { IV = "2h", III = "1h", II = "30m", I = "15m" }
escalate_after = { IV = "60m", III = "30m", II = "15m", I = "10m" }
chain = ["leader", "street_director", "district_hq"]
"#,
    );
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-alert-lifecycle");
    for cm in [12.0, 12.0, 21.0, 21.0, 28.0, 28.0] {
        depth(&p, "CD-JS-01", cm).await;
    }
    let a = wait_for("CD-JS-01 at II", Duration::from_secs(10), || async {
        let a = alert_of(&fg, "CD-JS-01", "depth").await;
        (a["level"] == "II").then_some(a)
    })
    .await;
    let id = a["id"].as_i64().unwrap();
    assert_eq!(a["state"], "firing");

    let (code, v) =
        post(&fg, &format!("/api/v1/alerts/{id}/ack"), serde_json::json!({"by": "张队长", "note": "已到场"}))
            .await;
    assert_eq!(code, 200, "{v}");
    for cm in [22.0, 22.0] {
        depth(&p, "CD-JS-01", cm).await;
    }
    wait_for("de-escalated to III and told (after the 1 s window)", Duration::from_secs(10), || async {
        let a = alert_of(&fg, "CD-JS-01", "depth").await;
        let told = a["timeline"].as_array()?.iter().filter(|e| e["event"] == "notified").count();
        (a["level"] == "III" && told == 8).then_some(())
    })
    .await;
    let (code, v) = post(
        &fg,
        &format!("/api/v1/alerts/{id}/dispose"),
        serde_json::json!({"by": "张队长", "note": "泵车抽排完毕"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    for cm in [2.0, 2.0] {
        depth(&p, "CD-JS-01", cm).await;
    }
    let a = wait_for("resolved and told", Duration::from_secs(10), || async {
        let a = alert_of(&fg, "CD-JS-01", "depth").await;
        let told = a["timeline"].as_array()?.iter().filter(|e| e["event"] == "notified").count();
        (a["state"] == "resolved" && told == 10).then_some(a)
    })
    .await;
    let events: Vec<String> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["level"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        events,
        [
            "firing IV",
            "notified IV",
            "notified IV",
            "escalated III",
            "notified III",
            "notified III",
            "escalated II",
            "notified II",
            "notified II",
            "acked II",
            "deescalated III",
            "notified III",
            "notified III",
            "disposed III",
            "resolved -",
            "notified -",
            "notified -",
        ]
    );
    let acked = a["timeline"].as_array().unwrap().iter().find(|e| e["event"] == "acked").unwrap();
    assert_eq!((acked["by"].as_str(), acked["note"].as_str()), (Some("张队长"), Some("已到场")));
    assert_eq!(a["disposed_by"], "张队长");
    let mine: Vec<String> = intents(&fg).await.into_iter().filter(|i| i.contains("CD-JS-01")).collect();
    assert_eq!(
        mine,
        [
            "hq: firing CD-JS-01 IV",
            "team1: firing CD-JS-01 IV",
            "hq: escalated CD-JS-01 III",
            "team1: escalated CD-JS-01 III",
            "hq: escalated CD-JS-01 II",
            "team1: escalated CD-JS-01 II",
            "hq: deescalated CD-JS-01 III",
            "team1: deescalated CD-JS-01 III",
            "hq: resolved CD-JS-01 -",
            "team1: resolved CD-JS-01 -",
        ]
    );
    // Acking the closed alert is a conflict.
    let (code, _) = post(&fg, &format!("/api/v1/alerts/{id}/ack"), serde_json::json!({"by": "x"})).await;
    assert_eq!(code, 409);

    // The 汛情报告 of the last hour has it, from the same history.
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let out = std::process::Command::new(crate::support::floodguard::BIN)
        .args(["report", "--since", &since, "-c"])
        .arg(fg.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# 某区汛情报告"), "{md}");
    assert!(md.contains("最高预警等级为Ⅱ级（橙色）"), "{md}");
    assert!(md.contains("| CD-JS-01 | 人民路铁路桥下穿 | 城东街道 | 积水深度 | 28 cm |"), "{md}");
    assert!(md.contains("| 一队 | 1 |"), "{md}");
    // Who was told, by what, and how it went (the SMS gateway is down here).
    // The last section: 十 after the readings' three (七 without readings).
    let told = &md[md.find("## 十、通知与送达").expect("section 十")..];
    assert!(told.contains("人民路铁路桥下穿 积水深度（最高Ⅱ级（橙色）"), "{told}");
    assert!(told.contains("张队长 ") && told.contains("后确认"), "{told}");
    assert!(told.contains("| 张队长 | 短信 |"), "{told}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_from_the_api_holds_notices_until_it_ends() {
    let broker = Mosquitto::start();
    let fg = start(
        &broker,
        r#"
[alerting]
group_window = "1s"
group_wait = { IV = "0s", III = "0s", II = "0s", I = "0s" }
"#,
    );
    fg.wait_connected().await;
    let ends = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let (code, v) = post(
        &fg,
        "/api/v1/silences",
        serde_json::json!({"matchers": {"site": "BH-JS-02"}, "ends_at": ends, "created_by": "万达物业", "comment": "车库挡水板检修"}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let p = Publisher::connect(&broker.url(), "pub-alert-silence");
    depth(&p, "BH-JS-02", 22.0).await;
    depth(&p, "BH-JS-02", 22.0).await;
    let a = wait_for("the alert, held", Duration::from_secs(10), || async {
        let a = alert_of(&fg, "BH-JS-02", "depth").await;
        (a["state"] == "pending").then_some(a)
    })
    .await;
    assert!(a["timeline"].as_array().unwrap().iter().any(|e| e["event"] == "silenced"), "{a}");
    assert!(!intents(&fg).await.iter().any(|i| i.contains("BH-JS-02")));
    // It ends on time: then the teams are told.
    let told = wait_for("the notice after the silence", Duration::from_secs(10), || async {
        let i: Vec<String> = intents(&fg).await.into_iter().filter(|i| i.contains("BH-JS-02")).collect();
        (!i.is_empty()).then_some(i)
    })
    .await;
    assert_eq!(told, ["hq: firing BH-JS-02 III", "team2: firing BH-JS-02 III"]);
    assert_eq!(alert_of(&fg, "BH-JS-02", "depth").await["state"], "firing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_an_escalation_pending_then_it_fires_once_on_time() {
    let broker = Mosquitto::start();
    let mut fg = start(
        &broker,
        r#"
[alerting]
group_window = "1s"
group_wait = { IV = "0s", III = "0s", II = "0s", I = "0s" }
repeat = { IV = "2h", III = "1h", II = "1h", I = "1h" }
escalate_after = { IV = "60m", III = "30m", II = "4s", I = "10m" }
chain = ["leader", "street_director", "district_hq"]
"#,
    );
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-alert-kill");
    depth(&p, "BH-JS-01", 28.0).await;
    depth(&p, "BH-JS-01", 28.0).await;
    wait_for("the II notices", Duration::from_secs(10), || async {
        (intents(&fg).await.iter().filter(|i| i.contains("firing BH-JS-01 II")).count() == 2).then_some(())
    })
    .await;
    let raised = Instant::now();
    fg.kill9();
    // Down past the first escalation's deadline (4 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    fg.restart();
    fg.wait_connected().await;
    wait_for("the missed escalation", Duration::from_secs(10), || async {
        intents(&fg).await.iter().any(|i| i.contains("[street_director]")).then_some(())
    })
    .await;
    let first_after_restart = raised.elapsed();
    wait_for("the next escalation, on time", Duration::from_secs(15), || async {
        intents(&fg).await.iter().any(|i| i.contains("[district_hq]")).then_some(())
    })
    .await;
    let second = raised.elapsed() - first_after_restart;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all: Vec<String> = intents(&fg).await.into_iter().filter(|i| i.contains("BH-JS-01")).collect();
    assert_eq!(
        all,
        [
            "hq: firing BH-JS-01 II",
            "team2: firing BH-JS-01 II",
            "team2: escalation BH-JS-01 II [street_director]",
            "team2: escalation BH-JS-01 II [district_hq]",
        ],
        "no notice twice, each escalation once"
    );
    assert!(
        second >= Duration::from_secs(3) && second <= Duration::from_secs(8),
        "the next step ~4 s later: {second:?}"
    );
    let a = alert_of(&fg, "BH-JS-01", "depth").await;
    assert_eq!(a["state"], "firing");
    assert_eq!(a["level"], "II", "the engine resumed at the alert's level");
}

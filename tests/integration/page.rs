//! The live page and its feeds through the running daemon: the series
//! endpoint, the SSE stream, and the page itself in Debian's headless
//! Chromium driven by playwright-core (tests/browser/live_page.mjs), and
//! two nodes' pages on one PostgreSQL state naming their node
//! (tests/browser/cluster_page.mjs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::floodguard::{sample_config_dir, Floodguard, Options};
use crate::support::mosquitto::Mosquitto;
use crate::support::postgres::Postgres;
use crate::support::publish::Publisher;
use crate::support::{http_get, wait_for};

const TOKEN: &str = "page-test-token-0123456789abcdef0123";

/// The sample teams, told at once (no group wait), so the page's
/// notification panel fills during the test.
fn teams() -> String {
    let text = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    let start = text.find("[alerting]").unwrap();
    let end = text[start..].find("\n\n").unwrap() + start;
    let alerting = r#"[alerting]
group_window = "1s"
group_wait = { IV = "0s", III = "0s", II = "0s", I = "0s" }
repeat = { IV = "2h", III = "1h", II = "30m", I = "15m" }
escalate_after = { IV = "60m", III = "30m", II = "15m", I = "10m" }
chain = ["leader", "street_director", "district_hq"]"#;
    format!("{}{}{}", &text[..start], alerting, &text[end..])
}

fn start(broker: &Mosquitto) -> Floodguard {
    let mut o = Options::new(broker.url());
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    o.teams_toml = Some(teams());
    Floodguard::start(o)
}

async fn get_json(fg: &Floodguard, path: &str) -> Value {
    let (code, body) = http_get(&fg.url(path)).await.unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn depth(p: &Publisher, site: &str, cm: f64, ts_ms: Option<i64>) {
    let ts = ts_ms.map_or(String::new(), |t| format!(r#""ts":{t},"#));
    p.send(&format!("flood/{site}/telemetry"), format!(r#"{{{ts}"water_depth_cm":{cm}}}"#).into_bytes())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_endpoint_returns_published_values_with_thresholds() {
    let broker = Mosquitto::start();
    let fg = start(&broker);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-page-series");
    // Device times 30, 20 and 10 minutes ago (three 2-minute buckets), then
    // two readings within the last bucket: the bucket keeps the highest.
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (ago_min, cm) in [(30, 5.5), (20, 12.0), (10, 18.25)] {
        depth(&p, "CD-JS-02", cm, Some(now_ms - ago_min * 60_000)).await;
    }
    p.wait_acked(3, Duration::from_secs(10)).await;
    let v = wait_for("three points of CD-JS-02", Duration::from_secs(10), || async {
        let v = get_json(&fg, "/api/v1/sites/CD-JS-02/series?metric=water_depth_cm&since=1h").await;
        (v["points"].as_array()?.len() == 3).then_some(v)
    })
    .await;
    let values: Vec<f64> =
        v["points"].as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [5.5, 12.0, 18.25]);
    assert_eq!(v["unit"], "cm");
    assert_eq!(v["direction"], "above");
    assert_eq!(v["keep"], "max");
    // CD-JS-02 is a road dip: 15 / 25 / 35 / 50 cm.
    assert_eq!(v["thresholds"], serde_json::json!({"IV": 15.0, "III": 25.0, "II": 35.0, "I": 50.0}));
    assert!(v["points"][0]["ts"].as_str().unwrap().ends_with("+08:00"), "{v}");
    // The default metric is the primary one; `since` narrows.
    let v = get_json(&fg, "/api/v1/sites/CD-JS-02/series?since=15m").await;
    assert_eq!(v["points"].as_array().unwrap().len(), 1, "{v}");
    // Errors: unknown site 404, uncharted metric 404 listing the charted ones, bad since 400.
    let (code, _) = http_get(&fg.url("/api/v1/sites/NOPE/series")).await.unwrap();
    assert_eq!(code, 404);
    let (code, body) = http_get(&fg.url("/api/v1/sites/CD-JS-02/series?metric=battery_v")).await.unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("water_depth_cm"), "{body}");
    let (code, _) = http_get(&fg.url("/api/v1/sites/CD-JS-02/series?since=yesterday")).await.unwrap();
    assert_eq!(code, 400);
}

/// The next SSE frame of `/api/v1/events`: (event name, data).
async fn next_event(body: &mut reqwest::Response, buf: &mut String) -> (String, Value) {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = "message".to_string();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if let Ok(v) = serde_json::from_str(&data) {
                return (event, v);
            }
            continue;
        }
        let chunk = body.chunk().await.unwrap().expect("the stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_change_arrives_as_an_sse_event() {
    let broker = Mosquitto::start();
    let fg = start(&broker);
    fg.wait_connected().await;
    let mut resp = reqwest::Client::new().get(fg.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let (name, first) = next_event(&mut resp, &mut buf).await;
    assert_eq!(name, "sites", "a snapshot at once on connect");
    assert_eq!(first["district"]["level"], Value::Null);
    let p = Publisher::connect(&broker.url(), "pub-page-sse");
    for cm in [12.0, 14.0, 21.0, 22.5] {
        depth(&p, "CD-JS-01", cm, None).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Street Ⅲ as a level event, the alert as an alert event, and a
    // snapshot with the site at Ⅲ, in whatever order they come.
    let (mut street, mut alert, mut site) = (None, None, None);
    let events = async {
        while street.is_none() || alert.is_none() || site.is_none() {
            let (name, v) = next_event(&mut resp, &mut buf).await;
            match name.as_str() {
                "level" if v["scope"] == "street" && v["to"] == "III" => street = Some(v),
                "alert" if alert.is_none() && v["site"] == "CD-JS-01" => alert = Some(v),
                "sites" => {
                    let s = v["sites"].as_array().unwrap().iter().find(|s| s["id"] == "CD-JS-01").unwrap();
                    if s["level"] == "III" {
                        site = Some(s.clone());
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), events).await.expect("events");
    let (street, alert, site) = (street.unwrap(), alert.unwrap(), site.unwrap());
    assert_eq!(street["id"], "chengdong");
    assert_eq!(street["from"], "IV");
    assert!(street["at"].as_str().unwrap().ends_with("+08:00"));
    assert_eq!(alert["event"], "firing");
    assert!(alert["id"].as_i64().is_some());
    assert_eq!(site["values"]["water_depth_cm"]["value"], 22.5);
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A test's own screenshots directory (tests run at once must not wipe
/// each other's).
fn artifacts(test: &str) -> PathBuf {
    let dir = repo().join("target/test-artifacts").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_in_chromium() {
    let browser_dir = repo().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and tests/browser/node_modules: run scripts/test.sh, which installs them"
    );
    let broker = Mosquitto::start();
    let mut fg = start(&broker);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-page-browser");
    let dir = artifacts("live-page");
    let mut node = tokio::process::Command::new("node")
        .arg(browser_dir.join("live_page.mjs"))
        .current_dir(&browser_dir)
        .env("FG_URL", fg.url(""))
        .env("FG_TOKEN", TOKEN)
        .env("ARTIFACTS", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join("browser.log")).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .expect("node (run scripts/test.sh)");
    let mut stdin = node.stdin.take().unwrap();
    let mut out = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut result = None;
    let mut failure = None;
    let script = async {
        while let Some(line) = out.next_line().await.unwrap() {
            let reply = match line.as_str() {
                "CMD publish" => {
                    // Two readings ≥ 20 cm (the plan's sustain) raise CD-JS-01 to Ⅲ.
                    for cm in [12.0, 14.0, 21.0] {
                        depth(&p, "CD-JS-01", cm, None).await;
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    depth(&p, "CD-JS-01", 22.5, None).await;
                    format!("OK {}", chrono::Utc::now().timestamp_millis())
                }
                "CMD spike" => {
                    for cm in [5.0, 300.0] {
                        depth(&p, "CD-JS-02", cm, None).await;
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    "OK".to_string()
                }
                "CMD stop" => {
                    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0), "{}", fg.log());
                    "OK".to_string()
                }
                "CMD start" => {
                    fg.start_again();
                    fg.wait_connected().await;
                    "OK".to_string()
                }
                l if l.starts_with("RESULT ") => {
                    result = Some(serde_json::from_str::<Value>(&l[7..]).unwrap());
                    continue;
                }
                l if l.starts_with("FAIL ") => {
                    failure = Some(l[5..].to_string());
                    continue;
                }
                l => {
                    eprintln!("browser: {l}");
                    continue;
                }
            };
            stdin.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(180), script)
        .await
        .expect("the browser script took over 3 minutes");
    let status = node.wait().await.unwrap();
    let log = std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default();
    if let Some(f) = failure {
        panic!(
            "browser test failed: {f}\nscreenshots in {}\n{log}\nfloodguard:\n{}",
            dir.display(),
            fg.log()
        );
    }
    assert!(status.success(), "node exited with {status}\n{log}");
    let result = result.expect("a RESULT line");
    eprintln!("live page: {result}");
    // The acknowledgement made in the page is the API's.
    let id = result["alert_id"].as_i64().unwrap();
    let a = get_json(&fg, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(a["state"], "acked", "{a}");
    assert_eq!(result["node_shown"], false, "a single node names no node: {result}");
    assert_eq!(a["acked_by"], "王值班");
    let ack = a["timeline"].as_array().unwrap().iter().find(|e| e["event"] == "acked").unwrap();
    assert_eq!(ack["note"], "已通知抢险一队");
    assert!(dir.join("02-yellow.png").exists());
}

/// With `http.read_token` the page asks once for it (tests/browser/read_token.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_once_for_the_read_token() {
    const READ: &str = "page-read-token-0123456789abcdef012345";
    let browser_dir = repo().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and tests/browser/node_modules: run scripts/test.sh, which installs them"
    );
    let broker = Mosquitto::start();
    let mut o = Options::new(broker.url());
    o.http_extra = format!("api_token = \"{TOKEN}\"\nread_token = \"{READ}\"\n");
    let mut fg = Floodguard::start(o);
    wait_for("the daemon answering", Duration::from_secs(30), || async {
        matches!(http_get(&fg.url("/healthz")).await, Some((200, _))).then_some(())
    })
    .await;
    let dir = artifacts("read-token");
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("read_token.mjs"))
        .current_dir(&browser_dir)
        .env("FG_URL", fg.url(""))
        .env("FG_READ_TOKEN", READ)
        .env("ARTIFACTS", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the browser took 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\nscreenshots in {}", dir.display());
    let result: Value =
        serde_json::from_str(stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap()).unwrap();
    eprintln!("read token page: {result}");
    assert_eq!(result["sites"], 15);
    assert_eq!(result["wrong_token_error"], "令牌无效，请重新输入");
    assert_eq!(result["asked_after_reload"], false);
    assert!(result["csp"].as_str().unwrap().contains("script-src 'self'"), "{result}");
    assert_eq!(result["frame"], "DENY");
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
}

/// Two nodes on one PostgreSQL state: each page names its node, its role,
/// the leader and the epoch (Chinese, and English when switched); when the
/// leader stops, the standby's open page shows that it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_of_a_cluster_names_itself_on_its_page() {
    let browser_dir = repo().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and tests/browser/node_modules: run scripts/test.sh, which installs them"
    );
    let broker = Mosquitto::start();
    let pgs = Postgres::start();
    let node = |name: &str| {
        let mut o = Options::new(broker.url());
        o.extra = format!(
            "[state]\nbackend = \"postgres\"\nurl = \"{}\"\n\n[cluster]\nnode_id = \"{name}\"\nlease = \"3s\"\n",
            pgs.url()
        );
        Floodguard::start(o)
    };
    let mut a = node("fg-a");
    let epoch = wait_for("fg-a to lead", Duration::from_secs(30), || async {
        let (code, body) = http_get(&a.url("/api/v1/cluster")).await?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["role"] == "leader").then(|| v["epoch"].as_i64().unwrap())
    })
    .await;
    let b = node("fg-b");
    wait_for("fg-b to see fg-a lead", Duration::from_secs(30), || async {
        let (_, body) = http_get(&b.url("/api/v1/cluster")).await?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (v["leader"] == "fg-a").then_some(())
    })
    .await;
    let dir = artifacts("cluster-page");
    let mut browser = tokio::process::Command::new("node")
        .arg(browser_dir.join("cluster_page.mjs"))
        .current_dir(&browser_dir)
        .env("FG_URL_A", a.url(""))
        .env("FG_URL_B", b.url(""))
        .env("ARTIFACTS", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join("cluster-browser.log")).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .expect("node (run scripts/test.sh)");
    let mut stdin = browser.stdin.take().unwrap();
    let mut out = BufReader::new(browser.stdout.take().unwrap()).lines();
    let (mut result, mut failure) = (None, None);
    let script = async {
        while let Some(line) = out.next_line().await.unwrap() {
            match line.as_str() {
                "CMD stop-leader" => {
                    assert_eq!(a.terminate(Duration::from_secs(20)), Some(0), "{}", a.log());
                    stdin.write_all(b"OK\n").await.unwrap();
                }
                l if l.starts_with("RESULT ") => {
                    result = Some(serde_json::from_str::<Value>(&l[7..]).unwrap())
                }
                l if l.starts_with("FAIL ") => failure = Some(l[5..].to_string()),
                l => eprintln!("browser: {l}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), script).await.expect("the browser took 2 minutes");
    let status = browser.wait().await.unwrap();
    let log = std::fs::read_to_string(dir.join("cluster-browser.log")).unwrap_or_default();
    if let Some(f) = failure {
        panic!("browser test failed: {f}\nscreenshots in {}\n{log}", dir.display());
    }
    assert!(status.success(), "node exited with {status}\n{log}");
    let result = result.expect("a RESULT line");
    eprintln!("cluster pages: {result}");
    assert_eq!(result["a_zh"], format!("本节点 fg-a（主用，任期 {epoch}）"));
    assert_eq!(result["b_zh"], format!("本节点 fg-b（备用）· 主用 fg-a，任期 {epoch}"));
    assert_eq!(result["b_en"], format!("Node fg-b (standby) · leader fg-a, epoch {epoch}"));
    let now = get_json(&b, "/api/v1/cluster").await;
    assert_eq!((now["role"].as_str(), now["leader"].as_str()), (Some("leader"), Some("fg-b")), "{now}");
    let next = now["epoch"].as_i64().unwrap();
    assert!(next > epoch, "a takeover takes a newer epoch: {epoch} then {next}");
    assert_eq!(result["b_after_zh"], format!("本节点 fg-b（主用，任期 {next}）"));
    let mut b = b;
    assert_eq!(b.terminate(Duration::from_secs(20)), Some(0), "fg-b stops on SIGTERM");
}

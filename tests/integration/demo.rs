//! `floodguard demo` with nothing installed, in storm time (checked in a
//! browser), and the simulator's storm: replayed from its `--output`, it
//! gives the level changes the live daemon made from the same messages.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::floodguard::{sample_config_dir, Floodguard, Options, BIN};
use crate::support::mosquitto::Mosquitto;
use crate::support::{free_port, http_get, wait_for};

async fn json(url: &str) -> Option<serde_json::Value> {
    match http_get(url).await {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_needs_nothing_installed_and_its_storm_raises_levels_and_sends_messages() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut demo = Command::new(BIN)
        .args(["demo", "--http", &format!("127.0.0.1:{port}")])
        .env("PATH", "/nonexistent") // no mosquitto, no influxd: nothing outside the binary
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its output, line by line: the token is made fresh at each start and printed.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = demo.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let token = loop {
        let line = lines_rx.recv_timeout(Duration::from_secs(30)).expect("the demo prints its token");
        if let Some(t) = line.trim().strip_prefix("token:") {
            break t.trim().to_string();
        }
    };
    assert!(token.len() >= 32 && token != "demo", "a fresh token, not an example: {token}");
    // Within 150 s (at the default speed an hour of storm a minute: the
    // demo starts with the storm, the first points fill after about an hour).
    let (levels, sent) =
        wait_for("levels above normal and messages in the outbox", Duration::from_secs(150), || {
            let (base, token) = (base.clone(), token.clone());
            async move {
                let sites = json(&format!("{base}/api/v1/sites")).await?;
                let raised: Vec<String> = sites["sites"]
                    .as_array()?
                    .iter()
                    .filter(|s| !s["level"].is_null())
                    .map(|s| {
                        format!("{}={}", s["id"].as_str().unwrap_or(""), s["level"].as_str().unwrap_or(""))
                    })
                    .collect();
                let resp = reqwest::Client::new()
                    .get(format!("{base}/api/v1/outbox"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?;
                let outbox: serde_json::Value = resp.json().await.ok()?;
                let sent = outbox["messages"].as_array()?.iter().filter(|m| m["state"] == "sent").count();
                (!raised.is_empty() && sent > 0).then_some((raised, sent))
            }
        })
        .await;
    println!("demo after {:?}: raised {levels:?}; {sent} messages sent (to the log)", started.elapsed());
    let (code, page) = http_get(&format!("{base}/")).await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("防汛实时监测"), "the live page");

    // Ctrl-C stops everything, cleanly.
    let pid = demo.id().to_string();
    Command::new("/bin/kill").args(["-INT", &pid]).status().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = demo.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "demo still running 20 s after SIGINT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
    let out = reader.join().unwrap();
    assert!(out.contains(&format!("http://127.0.0.1:{port}/")), "the page's address is printed: {out}");
}

/// Per (site, rule): the levels it went through, in order (`-` = normal).
type Path = BTreeMap<(String, String), Vec<String>>;

fn level(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("-").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_storm_replayed_changes_the_levels_the_live_daemon_changed() {
    let broker = Mosquitto::start();
    let fg = Floodguard::start(Options::new(broker.url()));
    fg.wait_connected().await;
    let dir = crate::support::tempdir("simulate-");
    let output = dir.path().join("storm.lp");
    // The 6-hour storm in 39 s, published and written.
    let sim = Command::new(BIN)
        .args([
            "simulate",
            "--broker",
            &broker.url(),
            "--scenario",
            "rainstorm",
            "--speed",
            "600",
            "--seed",
            "9",
        ])
        .arg("--output")
        .arg(&output)
        .arg("-c")
        .arg(sample_config_dir().join("floodguard.toml"))
        .output()
        .unwrap();
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let sent: u64 = std::fs::read_to_string(&output).unwrap().lines().count() as u64;
    wait_for("every message taken", Duration::from_secs(30), || async {
        (fg.metric("floodguard_mqtt_messages_received_total").await? >= sent as f64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Live: the alerts of each (site, rule), in order, with their timelines.
    let alerts = json(&fg.url("/api/v1/alerts?state=all")).await.unwrap();
    let mut alerts: Vec<&serde_json::Value> =
        alerts["alerts"].as_array().unwrap().iter().filter(|a| a["kind"] == "site").collect();
    alerts.sort_by_key(|a| a["id"].as_i64());
    let mut live: Path = BTreeMap::new();
    for a in alerts {
        let key = (a["site"].as_str().unwrap().to_string(), a["rule"].as_str().unwrap().to_string());
        let path = live.entry(key).or_default();
        for e in a["timeline"].as_array().unwrap() {
            match e["event"].as_str().unwrap() {
                "firing" | "escalated" | "deescalated" => path.push(level(&e["level"])),
                "resolved" => path.push("-".into()),
                _ => {}
            }
        }
    }

    // Replayed: the same file through the same plan, ticking as the daemon does.
    let replay = Command::new(BIN)
        .args(["replay", "--format", "json", "--tick", "1s", "--input"])
        .arg(&output)
        .arg("-c")
        .arg(fg.config_path())
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let mut replayed: Path = BTreeMap::new();
    for line in String::from_utf8(replay.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (v["site"].as_str().unwrap().to_string(), v["rule"].as_str().unwrap().to_string());
        replayed.entry(key).or_default().push(level(&v["to"]));
    }
    let changes: usize = replayed.values().map(Vec::len).sum();
    println!("{sent} messages; {} (site, rule) pairs changed level {changes} times", replayed.len());
    assert!(changes > 20, "the storm moves levels: {replayed:?}");
    assert_eq!(live, replayed, "live (left) and replayed (right) level changes per site and rule");
}

/// The storm the demo runs (seed 1) as the engine judges it in storm time:
/// (offset of CD-YL-01's first Ⅰ, offset of BH-YL-01's last report), ns
/// from the storm's start.
fn demo_storm_expected() -> (i64, i64) {
    let dir = crate::support::tempdir("demo-expected-");
    let file = dir.path().join("storm.lp");
    let t0 = "2026-07-21T12:00:00+08:00";
    let t0_ns = chrono::DateTime::parse_from_rfc3339(t0).unwrap().timestamp_nanos_opt().unwrap();
    let config = sample_config_dir().join("floodguard.toml");
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", "rainstorm", "--seed", "1", "--start", t0, "--output"])
        .arg(&file)
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN)
        .args(["replay", "--format", "json", "--tick", "1s", "--input"])
        .arg(&file)
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    let red = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["site"] == "CD-YL-01" && v["rule"] == "rainstorm" && v["to"] == "I")
        .expect("the gauge reaches Ⅰ in the storm");
    let red_at = chrono::DateTime::parse_from_rfc3339(red["ts"].as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    let last = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("telemetry,site=BH-YL-01 "))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .max()
        .unwrap();
    (red_at - t0_ns, last - t0_ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_in_storm_time_in_a_browser() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and tests/browser/node_modules: run scripts/test.sh, which installs them"
    );
    const MIN: i64 = 60_000_000_000;
    let (red_at, silent_from) = demo_storm_expected();
    println!(
        "model: CD-YL-01 Ⅰ at storm {} min, BH-YL-01's last report at {} min",
        red_at / MIN,
        silent_from / MIN
    );
    assert!(red_at >= 180 * MIN, "the 3-hour level needs 3 storm-hours of rain: {} min", red_at / MIN);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut demo = Command::new(BIN)
        .args(["demo", "--http", &format!("127.0.0.1:{port}")])
        .env("PATH", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let clock_url = format!("{base}/api/v1/clock");
    let clock = wait_for("the demo's clock", Duration::from_secs(30), || json(&clock_url)).await;
    assert_eq!(clock["speed"], 60.0, "{clock}");
    let epoch_ms = clock["epoch_ms"].as_i64().unwrap();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/demo-storm");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let node = tokio::process::Command::new("node")
        .arg(browser_dir.join("demo_storm.mjs"))
        .current_dir(&browser_dir)
        .env("FG_URL", &base)
        .env("ARTIFACTS", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join("browser.log")).unwrap()))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(420), node)
        .await
        .expect("the browser took over 7 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default();
    let result: serde_json::Value = match stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
        Some(r) => serde_json::from_str(r).unwrap(),
        None => panic!("browser: {stdout}\n{log}\nscreenshots in {}", dir.display()),
    };
    println!("demo in the browser: {result}");
    assert_eq!(result["depots"], 3, "the materials panel lists the sample's depots");
    assert!(result["clock_mode"].as_str().unwrap().contains("60"), "{}", result["clock_mode"]);
    assert!(result["supply"].as_str().unwrap().contains("防汛物资仓库"), "{}", result["supply"]);

    // The gauge reaches its 3-hour level when the storm says, in storm
    // time — three hours in: three wall minutes after the demo began.
    let ns = |v: &serde_json::Value| v.as_i64().unwrap() * 1_000_000;
    let red_storm = ns(&result["rain_i"]["storm"]) - epoch_ms * 1_000_000;
    let red_wall = ns(&result["rain_i"]["wall"]) - epoch_ms * 1_000_000;
    println!(
        "CD-YL-01 Ⅰ seen at storm {:.1} min ({:.1} wall s); the model says {:.1} min",
        red_storm as f64 / MIN as f64,
        red_wall as f64 / 1e9,
        red_at as f64 / MIN as f64
    );
    assert!(
        red_storm >= red_at - MIN && red_storm <= red_at + 4 * MIN,
        "Ⅰ at storm {red_storm} ns, model {red_at}"
    );
    assert!(red_wall >= 180_000_000_000, "not before 3 wall minutes: {red_wall} ns");
    // The gauge that went silent is offline once its stale time (35 min)
    // has passed in storm time: 35 wall seconds.
    let off_storm = ns(&result["offline"]["storm"]) - epoch_ms * 1_000_000;
    let after = off_storm - silent_from;
    println!(
        "BH-YL-01 offline {:.1} storm min ({:.1} wall s) after its last report",
        after as f64 / MIN as f64,
        after as f64 / MIN as f64
    );
    assert!(
        (35 * MIN..=39 * MIN).contains(&after),
        "offline {after} ns after its last report (stale after 35 min)"
    );

    let pid = demo.id().to_string();
    Command::new("/bin/kill").args(["-INT", &pid]).status().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = demo.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "demo still running 20 s after SIGINT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
}

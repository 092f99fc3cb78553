//! `floodguard demo` with nothing installed, and the simulator's storm:
//! replayed from its `--output`, it gives the level changes the live
//! daemon made from the same messages.

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
    // Within 60 s of storm (the default speed: an hour of storm a minute).
    let (levels, sent) =
        wait_for("levels above normal and messages in the outbox", Duration::from_secs(60), || {
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

//! The storm burst and the calm burst, end to end through a local Mosquitto
//! → floodguard → InfluxDB 1.6.7, with the sample teams told by an HTTP SMS
//! peer and aiosmtpd.
//!
//! - **calm**: 200,000 messages of two readings each
//!   (`{"ts","water_depth_cm","battery_v"}`) below every threshold:
//!   floodguard's CPU seconds (utime + stime from /proc) per message;
//! - **storm**: 200,000 readings of 1,000 sites whose depths cross Ⅳ/Ⅲ/Ⅱ/Ⅰ
//!   tens of thousands of times, pushed by a raw QoS1 publisher as fast as
//!   the broker takes them, while 40 probe sites (each in a street, team and
//!   phone of its own, so no grouping or pacing holds them) cross to Ⅰ:
//!   readings/s end to end against the `mosquitto_sub` ceiling of the same
//!   burst, peak RSS, and the alert latency from the publish of a probe's
//!   crossing reading to the SMS peer's request.
//!
//! `cargo bench --bench storm` (after scripts/test.sh installed the
//! services). Prints the figures recorded in docs/performance.md. Under
//! `cargo test` it does nothing.

mod common;
#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::burst;
use support::floodguard::{sample_config_dir, Floodguard, Options};
use support::influx::Influx;
use support::mosquitto::Mosquitto;
use support::peer::Peer;
use support::publish::Publisher;
use support::rawpub::RawPublisher;
use support::smtp::Smtp;

const N: u64 = 200_000;
const PROBES: usize = 40;

fn phone(i: usize) -> String {
    format!("139{i:08}")
}

/// The burst's sites and the probes, each probe in a street of its own.
fn sites_toml() -> String {
    let mut s = burst::sites_toml();
    for i in 0..PROBES {
        s = s.replacen(
            "\n[[sites]]",
            &format!("\n[[streets]]\nid = \"probe{i}\"\nname = \"探针街道{i}\"\n\n[[sites]]"),
            1,
        );
        s.push_str(&format!(
            "\n[[sites]]\nid = \"P-{i:02}\"\nname = \"探针{i}\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
             street = \"probe{i}\"\nlocation = {{ lat = 30.6, lon = 114.3 }}\n"
        ));
    }
    s
}

/// The sample teams, and a team with one phone per probe street.
fn teams_toml() -> String {
    let mut t = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    for i in 0..PROBES {
        t.push_str(&format!(
            "\n[[teams]]\nid = \"p{i}\"\nname = \"探针队{i}\"\nstreets = [\"probe{i}\"]\n\n\
             [[teams.members]]\nname = \"探针队长{i}\"\nrole = \"leader\"\nphone = \"{}\"\n",
            phone(i)
        ));
    }
    t
}

fn options(broker: &Mosquitto, influx: &Influx, peer: &Peer, smtp: &Smtp) -> Options {
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.http_extra = "api_token = \"storm-bench-token-0123456789abcdef\"\n".into();
    o.sites_toml = Some(sites_toml());
    o.teams_toml = Some(teams_toml());
    o.channels = format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n\
         [channels.email]\nsmtp_url = \"{}\"\nfrom = \"某区防汛指挥部 <flood@example.gov.cn>\"\n",
        peer.url("/sms"),
        smtp.url()
    );
    o
}

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU seconds of each thread of a process, summed by thread name.
/// CPU per message of each thread between two [`cpu_by_thread`] readings,
/// threads that did nothing left out: "fg-outlet 2.1 µs, …".
fn per_thread(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> String {
    let per: Vec<String> = after
        .iter()
        .map(|(name, t)| (name, t - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, t)| *t > 0.0)
        .map(|(name, t)| format!("{name} {:.1} µs", t * 1e6 / N as f64))
        .collect();
    per.join(", ")
}

fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map_or("?", |(_, n)| n).to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0;
        *out.entry(name).or_insert(0.0) += t;
    }
    out
}

fn publish(
    port: u16,
    id: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> std::thread::JoinHandle<(f64, Duration)> {
    let id = id.to_string();
    std::thread::spawn(move || {
        let mut p = RawPublisher::connect(port, &id);
        let n = messages.len() as u64;
        let sent = p.publish_all(messages, 10_000, Duration::from_secs(300));
        p.disconnect();
        assert_eq!(sent.acked, n);
        (sent.rate(), sent.elapsed)
    })
}

async fn readings_judged(fg: &Floodguard, readings: f64) {
    support::wait_for("every reading judged", Duration::from_secs(300), || async {
        (fg.metric("floodguard_stage_handled_total{stage=\"engine\"}").await? >= readings).then_some(())
    })
    .await;
}

async fn stored(influx: &Influx, q: &str, n: u64) {
    support::wait_for("every reading in InfluxDB", Duration::from_secs(300), || async {
        (influx.count("flood", q).await >= n as i64).then_some(())
    })
    .await;
}

/// The same burst and the same probes to `mosquitto_sub` printing each
/// message's arrival time (`%U`): how long a probe's crossing reading waits
/// in the broker's queue for a subscriber that takes the whole stream — the
/// latency no subscriber of this broker beats in this burst (ms, sorted).
async fn floor(broker: &Mosquitto) -> Vec<f64> {
    let base = chrono::Utc::now().timestamp_millis() - 7_200_000;
    let total = N + 2 * PROBES as u64;
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-t", "flood/+/telemetry"])
        .args(["-C", &total.to_string(), "-i", "bench-floor", "-F", "%U %t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let publisher = publish(broker.port, "bench-floor-pub", burst::messages(N, base));
    let probe = Publisher::connect(&broker.url(), "bench-floor-probe");
    let mut sent: Vec<f64> = Vec::new();
    for i in 0..PROBES {
        let topic = format!("flood/P-{i:02}/telemetry");
        let ms = chrono::Utc::now().timestamp_millis();
        probe.send(&topic, format!(r#"{{"ts":{},"water_depth_cm":45}}"#, ms - 1000).into_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        sent.push(unix_now());
        probe.send(&topic, format!(r#"{{"ts":{ms},"water_depth_cm":46}}"#).into_bytes()).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output()).await.unwrap().unwrap();
    publisher.join().unwrap();
    // The second arrival of each probe's topic is its crossing reading.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    let mut floor: Vec<f64> = Vec::new();
    for line in text.lines() {
        let Some((at, topic)) = line.split_once(' ') else { continue };
        let Some(i) =
            topic.strip_prefix("flood/P-").and_then(|r| r.get(..2)).and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let n = seen.entry(topic).or_insert(0);
        *n += 1;
        if let (2, Ok(at)) = (*n, at.parse::<f64>()) {
            floor.push((at - sent[i]) * 1000.0);
        }
    }
    floor.sort_by(f64::total_cmp);
    floor
}

/// Seconds since the epoch, as mosquitto_sub's `%U` prints them.
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn calm(broker: &Mosquitto, influx: &Influx, peer: &Peer, smtp: &Smtp) {
    let mut fg = Floodguard::start(options(broker, influx, peer, smtp));
    fg.wait_connected().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = fg.pid().unwrap();
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let messages: Vec<(String, Vec<u8>)> = (0..N)
        .map(|seq| {
            let site = seq % burst::SITES;
            let ts = base + (seq / burst::SITES) as i64 * 10_000;
            let payload = format!(r#"{{"ts":{ts},"water_depth_cm":{}.5,"battery_v":3.61}}"#, seq % 7);
            (format!("flood/S-{site:04}/telemetry"), payload.into_bytes())
        })
        .collect();
    let cpu0 = cpu_seconds(pid);
    let threads0 = cpu_by_thread(pid);
    let t0 = Instant::now();
    let (rate, _) = publish(broker.port, "bench-calm", messages).join().unwrap();
    readings_judged(&fg, 2.0 * N as f64).await;
    stored(influx, "SELECT count(battery_v) FROM telemetry", N).await;
    let wall = t0.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    let threads = cpu_by_thread(pid);
    println!("calm burst: {N} messages of two readings, below every threshold");
    println!(
        "  published at {rate:.0} msgs/s; all stored and judged after {:.2} s; floodguard CPU {cpu:.2} s = {:.1} µs a message",
        wall.as_secs_f64(),
        cpu * 1e6 / N as f64
    );
    println!("  by thread, per message: {}", per_thread(&threads0, &threads));
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
}

async fn storm(broker: &Mosquitto, influx: &Influx, peer: &Peer, smtp: &Smtp) {
    // The ceiling: mosquitto_sub alone receiving the same burst.
    let base = chrono::Utc::now().timestamp_millis() - 7_200_000;
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-t", "flood/+/telemetry"])
        .args(["-C", &N.to_string(), "-i", "bench-ceiling"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let publisher = publish(broker.port, "bench-ceiling-pub", burst::messages(N, base));
    let mut sub = sub;
    tokio::task::spawn_blocking(move || sub.wait()).await.unwrap().unwrap();
    let ceiling = N as f64 / t0.elapsed().as_secs_f64();
    publisher.join().unwrap();
    let floor = floor(broker).await;

    // floodguard (a session of its own, created now) takes the same burst.
    let mut fg = Floodguard::start(options(broker, influx, peer, smtp));
    fg.wait_connected().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = chrono::Utc::now().timestamp_millis() - (burst::per_site(N) as i64 + 1) * 60_000;
    let probe = Publisher::connect(&broker.url(), "bench-probe");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = |pid: Option<u32>| pid.map_or(0.0, cpu_seconds);
    let cpu0 = [cpu(fg.pid()), cpu(broker.pid()), cpu(influx.pid())];
    let threads0 = cpu_by_thread(fg.pid().unwrap());
    let t0 = Instant::now();
    let publisher = publish(broker.port, "bench-storm", burst::messages(N, base));
    // Probes cross to Ⅰ while the burst runs: the clock starts at the
    // publish of the second reading (the plan's sustain of 2).
    let mut sent_at = Vec::new();
    for i in 0..PROBES {
        let topic = format!("flood/P-{i:02}/telemetry");
        let ms = chrono::Utc::now().timestamp_millis();
        probe.send(&topic, format!(r#"{{"ts":{},"water_depth_cm":45}}"#, ms - 1000).into_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        probe.send(&topic, format!(r#"{{"ts":{ms},"water_depth_cm":46}}"#).into_bytes()).await;
        sent_at.push(t);
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let (pub_rate, pub_took) = tokio::task::spawn_blocking(move || publisher.join().unwrap()).await.unwrap();
    stored(influx, "SELECT count(seq) FROM telemetry WHERE site =~ /^S-/", N).await;
    let e2e = t0.elapsed();
    readings_judged(&fg, 2.0 * N as f64).await;
    let judged = t0.elapsed();
    let cpu1 = [cpu(fg.pid()), cpu(broker.pid()), cpu(influx.pid())];
    let threads1 = cpu_by_thread(fg.pid().unwrap());
    let received = support::wait_for("an SMS for every probe", Duration::from_secs(120), || async {
        let got = peer.accepted("/sms");
        let firsts: Vec<Option<Instant>> =
            (0..PROBES).map(|i| got.iter().filter(|r| r.to == phone(i)).map(|r| r.at).min()).collect();
        firsts.iter().all(Option::is_some).then(|| firsts.into_iter().flatten().collect::<Vec<_>>())
    })
    .await;
    if std::env::var_os("STORM_DEBUG").is_some() {
        let get = |path: &str| {
            let url = fg.url(path);
            async move {
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth("storm-bench-token-0123456789abcdef")
                    .send()
                    .await
                    .ok()?
                    .json::<serde_json::Value>()
                    .await
                    .ok()
            }
        };
        let alerts = get("/api/v1/alerts?state=all&limit=100000").await.unwrap();
        let notes = get("/api/v1/notifications?limit=1000").await.unwrap();
        let outbox = get("/api/v1/outbox?limit=1000").await.unwrap();
        for i in [0usize, 10, 20, 39] {
            let site = format!("P-{i:02}");
            let a = alerts["alerts"].as_array().unwrap().iter().find(|a| a["site"] == site.as_str()).cloned();
            let n = notes["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["team"] == format!("p{i}").as_str())
                .cloned();
            let o = outbox["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["team"] == format!("p{i}").as_str())
                .cloned();
            println!(
                "probe {i}: sent {:?} ago; alert started {:?}; notification {:?}; outbox {:?}",
                sent_at[i].elapsed(),
                a.map(|a| a["started_at"].clone()),
                n.map(|n| n["created_at"].clone()),
                o.map(|o| (o["created_at"].clone(), o["sent_at"].clone()))
            );
        }
        println!("now {}", chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).to_rfc3339());
    }
    let rss = common::peak_rss_mb(fg.pid().unwrap());
    let transitions = fg.metric("floodguard_engine_transitions_total{type=\"site\"}").await.unwrap_or(0.0);
    let notifications = fg.metric("floodguard_alert_notifications_total").await.unwrap_or(0.0);
    let t = Instant::now();
    let code = fg.terminate(Duration::from_secs(30));
    let stop = t.elapsed();

    let mut ms: Vec<f64> =
        received.iter().zip(&sent_at).map(|(r, s)| r.duration_since(*s).as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let rate = N as f64 / e2e.as_secs_f64();
    println!("storm burst: {N} readings of {} sites, {transitions:.0} site level changes, {notifications:.0} notifications", burst::SITES);
    println!("  raw QoS1 publisher: {pub_rate:.0} msgs/s to the broker ({:.2} s)", pub_took.as_secs_f64());
    println!("  ceiling (mosquitto_sub receiving the same burst): {ceiling:.0} msgs/s");
    println!(
        "  floodguard: all in InfluxDB after {:.2} s = {rate:.0} readings/s = {:.2} × ceiling; all judged after {:.2} s",
        e2e.as_secs_f64(),
        rate / ceiling,
        judged.as_secs_f64()
    );
    println!(
        "  alert latency of {PROBES} crossings to Ⅰ during the burst: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    if floor.is_empty() {
        println!("  the same crossings to mosquitto_sub: none timed (its output had no probe lines)");
    } else {
        println!(
            "  the same crossings' readings to a mosquitto_sub stamping each arrival (the broker's queue, the floor): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} of {PROBES})",
            percentile(&floor, 0.5),
            percentile(&floor, 0.9),
            percentile(&floor, 0.99),
            floor[floor.len() - 1],
            floor.len()
        );
    }
    println!(
        "  CPU over those {:.2} s: floodguard {:.2} s, mosquitto {:.2} s, influxd {:.2} s (2 cores: {:.2} s in all)",
        judged.as_secs_f64(),
        cpu1[0] - cpu0[0],
        cpu1[1] - cpu0[1],
        cpu1[2] - cpu0[2],
        2.0 * judged.as_secs_f64()
    );
    println!("  floodguard by thread, per reading: {}", per_thread(&threads0, &threads1));
    println!(
        "  floodguard peak RSS (VmHWM): {rss:.1} MB; SIGTERM → exit {code:?} in {:.1} s",
        stop.as_secs_f64()
    );
}

async fn run() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let peer = Peer::start().await;
    let smtp = Smtp::start();
    // STORM_ONLY=calm or STORM_ONLY=storm runs one of the two (for A/B runs).
    let only = std::env::var("STORM_ONLY").unwrap_or_default();
    if only != "storm" {
        calm(&broker, &influx, &peer, &smtp).await;
    }
    if only != "calm" {
        storm(&broker, &influx, &peer, &smtp).await;
    }
}

fn main() {
    common::bench_main("storm", run);
}

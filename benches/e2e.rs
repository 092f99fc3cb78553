//! End to end: 200,000 readings of 1,000 sites through a local Mosquitto →
//! floodguard → InfluxDB 1.6.7, against the ceiling of the same run: the
//! rate at which `mosquitto_sub` alone receives the same messages.
//!
//! `cargo bench --bench e2e` (after scripts/test.sh installed the services).
//! Prints the figures recorded in docs/performance.md. Under `cargo test`
//! it does nothing.

mod common;
#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::floodguard::{Floodguard, Options};
use support::influx::Influx;
use support::mosquitto::Mosquitto;
use support::publish::Publisher;
use support::wait_for;

const N: u64 = 200_000;
const SITES: u64 = 1_000;

fn sites_toml() -> String {
    let streets: Vec<String> = (0..10).map(|i| format!("street{i}")).collect();
    common::sites_toml(&streets, (0..SITES).map(|i| (format!("S-{i:04}"), format!("street{}", i % 10))))
}

fn teams_toml() -> String {
    let streets: Vec<String> = (0..10).map(|i| format!("\"street{i}\"")).collect();
    format!(
        "[[teams]]\nid = \"bench\"\nname = \"压测队\"\nstreets = [{}]\n\n\
         [[teams.members]]\nname = \"值班\"\nrole = \"leader\"\nphone = \"13800000000\"\n",
        streets.join(", ")
    )
}

fn message(seq: u64, base_ms: i64) -> (String, Vec<u8>) {
    let topic = format!("flood/S-{:04}/telemetry", seq % SITES);
    let payload = format!(r#"{{"ts":{},"water_depth_cm":{}.5}}"#, base_ms + seq as i64, seq % 80);
    (topic, payload.into_bytes())
}

async fn publish_all(p: &Publisher, base: i64) -> Duration {
    let t0 = Instant::now();
    for seq in 0..N {
        let (topic, payload) = message(seq, base);
        p.send(&topic, payload).await;
    }
    t0.elapsed()
}

/// Runs mosquitto_sub with a persistent session until it got `count`
/// messages; `None` count: just create the session and leave.
fn mosquitto_sub(port: u16, id: &str, count: Option<u64>) -> std::process::Child {
    let mut c = Command::new("mosquitto_sub");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        "flood/+/telemetry",
        "-c",
        "-i",
        id,
    ]);
    match count {
        Some(n) => c.args(["-C", &n.to_string()]),
        None => c.args(["-W", "1"]),
    };
    c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("mosquitto_sub")
}

async fn wait_child(mut c: std::process::Child) {
    tokio::task::spawn_blocking(move || c.wait()).await.unwrap().unwrap();
}

/// Every reading appended (n in all) and nothing left in the spool: all of
/// it, and the area levels the engine derived, accepted by InfluxDB.
async fn points_written(fg: &Floodguard, n: u64, what: &str) {
    wait_for(what, Duration::from_secs(300), || async {
        let appended = fg.metric("floodguard_readings_total").await?;
        let pending = fg.metric("floodguard_spool_pending_records").await?;
        (appended >= n as f64 && pending == 0.0).then_some(())
    })
    .await;
}

async fn spooled(fg: &Floodguard, n: u64) {
    wait_for("every reading spooled and acked", Duration::from_secs(300), || async {
        (fg.metric("floodguard_readings_total").await? >= n as f64).then_some(())
    })
    .await;
}

struct Figure {
    what: &'static str,
    secs: f64,
}

impl Figure {
    fn rate(&self) -> f64 {
        N as f64 / self.secs
    }
}

async fn run() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.sites_toml = Some(sites_toml());
    o.teams_toml = Some(teams_toml());
    o.plan_toml = Some(common::plan_toml("S-0001"));
    o.materials_toml = Some(String::new());

    // 1. Backlog drain: the broker holds 200,000 messages for a persistent
    //    session; how fast does each consumer take them?
    wait_child(mosquitto_sub(broker.port, "bench-ceiling", None)).await;
    let mut fg = Floodguard::start(o.clone());
    fg.wait_connected().await;
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
    let p = Publisher::connect(&broker.url(), "bench-pub-backlog");
    publish_all(&p, base).await;
    p.wait_acked(N, Duration::from_secs(120)).await;
    drop(p);
    let t0 = Instant::now();
    wait_child(mosquitto_sub(broker.port, "bench-ceiling", Some(N))).await;
    let ceiling_backlog =
        Figure { what: "backlog: mosquitto_sub drained the broker", secs: t0.elapsed().as_secs_f64() };
    let t0 = Instant::now();
    fg.start_again();
    spooled(&fg, N).await;
    let fg_backlog_ack =
        Figure { what: "backlog: floodguard spooled+acked", secs: t0.elapsed().as_secs_f64() };
    points_written(&fg, N, "the backlog in InfluxDB").await;
    let fg_backlog_stored =
        Figure { what: "backlog: floodguard → InfluxDB", secs: t0.elapsed().as_secs_f64() };
    let rss_backlog = common::peak_rss_mb(fg.pid().unwrap());

    // 2. Live: a publisher pushes as fast as it can while the consumer runs.
    //    (The ceiling session is dropped first so the broker does not queue
    //    for it.)
    wait_child(
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.port.to_string(),
                "-i",
                "bench-ceiling",
                "-t",
                "x",
                "-W",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
    .await;
    let p = Publisher::connect(&broker.url(), "bench-pub-live");
    let t0 = Instant::now();
    publish_all(&p, base + N as i64).await;
    spooled(&fg, 2 * N).await;
    let fg_live_ack = Figure { what: "live: floodguard spooled+acked", secs: t0.elapsed().as_secs_f64() };
    points_written(&fg, 2 * N, "the live run in InfluxDB").await;
    let fg_live_stored = Figure { what: "live: floodguard → InfluxDB", secs: t0.elapsed().as_secs_f64() };
    let rss = common::peak_rss_mb(fg.pid().unwrap());
    drop(p);
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));

    let sub = mosquitto_sub(broker.port, "bench-ceiling-live", Some(N));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = Publisher::connect(&broker.url(), "bench-pub-ceiling");
    let t0 = Instant::now();
    let published = publish_all(&p, base + 2 * N as i64).await;
    wait_child(sub).await;
    let ceiling_live = Figure { what: "live: mosquitto_sub received", secs: t0.elapsed().as_secs_f64() };
    let publisher = Figure { what: "live: the publisher alone sent", secs: published.as_secs_f64() };

    let count = influx.count("flood", "SELECT count(water_depth_cm) FROM telemetry").await;
    println!("end-to-end ingest: {N} readings of {SITES} sites, QoS1, Mosquitto 2.0.11 → floodguard → InfluxDB 1.6.7");
    println!("one machine, all processes sharing its cores; rates in messages (= readings) per second");
    let row = |f: &Figure, ceiling: Option<&Figure>| {
        let ratio = ceiling.map_or(String::new(), |c| format!("{:.2} × ceiling", f.rate() / c.rate()));
        println!("  {:<45} {:>7.2} s {:>9.0}/s  {ratio}", f.what, f.secs, f.rate());
    };
    row(&ceiling_backlog, None);
    row(&fg_backlog_ack, Some(&ceiling_backlog));
    row(&fg_backlog_stored, Some(&ceiling_backlog));
    row(&publisher, None);
    row(&ceiling_live, None);
    row(&fg_live_ack, Some(&ceiling_live));
    row(&fg_live_stored, Some(&ceiling_live));
    println!("  points in InfluxDB: {count} (expected {})", 2 * N);
    println!("  floodguard peak RSS (VmHWM): {rss_backlog:.1} MB after the backlog, {rss:.1} MB at the end");
    assert_eq!(count, 2 * N as i64, "every reading stored exactly once");
}

fn main() {
    common::bench_main("e2e", run);
}

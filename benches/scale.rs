//! Memory against the size of the district: floodguard's peak RSS with
//! 1,000, 10,000 and 100,000 sites, each site having reported three times
//! (so the engine holds a state, a trend window and latest values for every
//! one) through Mosquitto, spool only.
//!
//! `cargo bench --bench scale`. Target: ≤ 64 MB at 10,000 sites. Under
//! `cargo test` it does nothing.

mod common;
#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::floodguard::{Floodguard, Options};
use support::mosquitto::Mosquitto;
use support::publish::Publisher;

const ROUNDS: u64 = 3;

fn teams_toml(streets: usize) -> String {
    let list: Vec<String> = (0..streets).map(|i| format!("\"street{i}\"")).collect();
    format!(
        "[[teams]]\nid = \"bench\"\nname = \"压测队\"\nstreets = [{}]\n\n\
         [[teams.members]]\nname = \"值班\"\nrole = \"leader\"\nphone = \"13800000000\"\n",
        list.join(", ")
    )
}

struct Row {
    sites: usize,
    start_ms: f64,
    idle_mb: f64,
    fed_mb: f64,
    api_kb: f64,
    peak_mb: f64,
    rate: f64,
}

async fn measure(broker: &Mosquitto, sites: usize) -> Row {
    let streets = (sites / 100).max(10);
    let names: Vec<String> = (0..streets).map(|i| format!("street{i}")).collect();
    let mut o = Options::new(broker.url());
    o.sites_toml = Some(common::sites_toml(
        &names,
        (0..sites).map(|i| (format!("S-{i:06}"), format!("street{}", i % streets))),
    ));
    o.teams_toml = Some(teams_toml(streets));
    o.plan_toml = Some(common::plan_toml("S-000001"));
    o.materials_toml = Some(String::new());
    if let Ok(bin) = std::env::var("SCALE_BIN") {
        o.bin = bin; // e.g. a wrapper running floodguard under heaptrack
    }
    let t0 = Instant::now();
    let fg = Floodguard::start(o);
    fg.wait_connected().await;
    let start_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let idle_mb = common::peak_rss_mb(fg.pid().unwrap());

    let p = Publisher::connect(&broker.url(), &format!("scale-pub-{sites}"));
    let base = chrono::Utc::now().timestamp_millis() - 600_000;
    let n = sites as u64 * ROUNDS;
    let t0 = Instant::now();
    for seq in 0..n {
        let site = seq % sites as u64;
        let round = seq / sites as u64;
        let payload = format!(
            r#"{{"ts":{},"water_depth_cm":{}.5,"battery_v":3.6}}"#,
            base + round as i64 * 60_000,
            (seq * 7) % 9
        );
        p.send(&format!("flood/S-{site:06}/telemetry"), payload.into_bytes()).await;
    }
    support::wait_for("every reading taken", Duration::from_secs(600), || async {
        (fg.metric("floodguard_readings_total").await? >= 2.0 * n as f64).then_some(())
    })
    .await;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    // A few ticks over the full state, then the high-water mark.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fed_mb = common::peak_rss_mb(fg.pid().unwrap());
    let (code, body) = support::http_get(&fg.url("/api/v1/sites")).await.expect("/api/v1/sites");
    assert_eq!(code, 200);
    let api_kb = body.len() as f64 / 1024.0;
    let peak_mb = common::peak_rss_mb(fg.pid().unwrap());
    Row { sites, start_ms, idle_mb, fed_mb, peak_mb, api_kb, rate }
}

async fn run() {
    let broker = Mosquitto::start();
    let mut rows = Vec::new();
    let sizes = std::env::var("SCALE_SITES").ok().map_or(vec![1_000, 10_000, 100_000], |v| {
        v.split(',').map(|n| n.trim().parse().expect("SCALE_SITES: numbers")).collect()
    });
    for sites in sizes {
        rows.push(measure(&broker, sites).await);
    }
    println!("peak RSS (VmHWM) of floodguard by district size: waterlogging sites, {ROUNDS} reports each, spool only");
    println!(
        "  {:>8}  {:>8}  {:>11}  {:>11}  {:>18}  {:>16}  {:>8}",
        "sites", "start", "RSS started", "RSS fed", "RSS /api/v1/sites", "/api/v1/sites", "msgs/s"
    );
    for r in &rows {
        println!(
            "  {:>8}  {:>5.0} ms  {:>8.1} MB  {:>8.1} MB  {:>15.1} MB  {:>13.0} KB  {:>8.0}",
            r.sites, r.start_ms, r.idle_mb, r.fed_mb, r.peak_mb, r.api_kb, r.rate
        );
    }
    println!("  target: ≤ 64 MB at 10,000 sites");
}

fn main() {
    common::bench_main("scale", run);
}

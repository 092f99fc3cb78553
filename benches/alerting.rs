//! Alert latency under load: from the publish of the reading that completes
//! a crossing to the SMS gateway receiving the request, while 1,000 other
//! sites publish 10,000 messages a second through Mosquitto → floodguard →
//! InfluxDB 1.6.7.
//!
//! `cargo bench --bench alerting` (after scripts/test.sh installed the
//! services) runs it twice: on the SQLite state (the default) and on a
//! PostgreSQL 15 state the bench starts, the one node leading
//! (`FG_BENCH_BACKEND=sqlite` or `postgres` runs one). Each probe site is
//! in its own street with its own team and phone, so grouping and
//! per-phone pacing never hold a message back: the figure is the
//! pipeline's (ingest, spool, engine, alert manager and its commit, outbox,
//! HTTP), not a configured wait. Under `cargo test` it does nothing.

mod common;
#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::floodguard::{Floodguard, Options};
use support::influx::Influx;
use support::mosquitto::Mosquitto;
use support::peer::Peer;
use support::postgres::Postgres;
use support::publish::Publisher;

const LOAD_SITES: usize = 1_000;
const RATE: u64 = 10_000;
const PROBES: usize = 60;
const PROBE_EVERY: Duration = Duration::from_millis(500);

fn phone(i: usize) -> String {
    format!("139{i:08}")
}

fn teams_toml() -> String {
    let mut t = String::from(
        "[alerting]\ngroup_window = \"30s\"\ngroup_wait = { IV = \"0s\", III = \"0s\", II = \"0s\", I = \"0s\" }\n\n",
    );
    let load: Vec<String> = (0..10).map(|i| format!("\"street{i}\"")).collect();
    t.push_str(&format!(
        "[[teams]]\nid = \"load\"\nname = \"压测队\"\nstreets = [{}]\n\n\
         [[teams.members]]\nname = \"值班\"\nrole = \"leader\"\nphone = \"13800000000\"\n\n",
        load.join(", ")
    ));
    for i in 0..PROBES {
        t.push_str(&format!(
            "[[teams]]\nid = \"t{i}\"\nname = \"探针队{i}\"\nstreets = [\"probe{i}\"]\n\n\
             [[teams.members]]\nname = \"队长{i}\"\nrole = \"leader\"\nphone = \"{}\"\n\n",
            phone(i)
        ));
    }
    t
}

/// 10,000 messages a second from the load sites, below every threshold,
/// in 10 ms slices, until `stop`.
async fn load(p: Publisher, stop: tokio_util::sync::CancellationToken) -> (u64, Duration) {
    let per_slice = RATE / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t0 = Instant::now();
    let mut seq = 0u64;
    while !stop.is_cancelled() {
        tick.tick().await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for _ in 0..per_slice {
            let site = seq as usize % LOAD_SITES;
            let payload = format!(r#"{{"ts":{now_ms},"water_depth_cm":{}.5,"battery_v":3.6}}"#, seq % 8);
            p.send(&format!("flood/S-{site:04}/telemetry"), payload.into_bytes()).await;
            seq += 1;
        }
    }
    (seq, t0.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn run() {
    let which = std::env::var("FG_BENCH_BACKEND").unwrap_or_default();
    for backend in ["sqlite", "postgres"] {
        if which.is_empty() || which == backend {
            run_on(backend).await;
        }
    }
}

async fn run_on(backend: &str) {
    // PostgreSQL: a server of the bench's own, this node alone, leading.
    let pgs = (backend == "postgres").then(Postgres::start);
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let peer = Peer::start().await;
    let mut streets: Vec<String> = (0..10).map(|i| format!("street{i}")).collect();
    streets.extend((0..PROBES).map(|i| format!("probe{i}")));
    let sites = (0..LOAD_SITES)
        .map(|i| (format!("S-{i:04}"), format!("street{}", i % 10)))
        .chain((0..PROBES).map(|i| (format!("P-{i:02}"), format!("probe{i}"))));
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.sites_toml = Some(common::sites_toml(&streets, sites));
    o.teams_toml = Some(teams_toml());
    o.plan_toml = Some(common::plan_toml("S-0001"));
    o.materials_toml = Some(String::new());
    o.channels = format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\nmin_interval = \"0s\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n",
        peer.url("/sms")
    );
    if let Some(pgs) = &pgs {
        o.extra = format!(
            "[state]\nbackend = \"postgres\"\nurl = \"{}\"\n\n[cluster]\nnode_id = \"bench\"\n",
            pgs.url()
        );
    }
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    if pgs.is_some() {
        support::wait_for("the node to lead", Duration::from_secs(30), || async {
            let (_, body) = support::http_get(&fg.url("/api/v1/cluster")).await?;
            body.contains("\"role\":\"leader\"").then_some(())
        })
        .await;
    }

    let stop = tokio_util::sync::CancellationToken::new();
    let loader = tokio::spawn(load(Publisher::connect(&broker.url(), "bench-load"), stop.clone()));
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Each probe: two readings at Ⅰ (the plan's sustain of 2); the clock
    // starts at the publish of the second.
    let probe = Publisher::connect(&broker.url(), "bench-probe");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent_at = Vec::new();
    for i in 0..PROBES {
        let topic = format!("flood/P-{i:02}/telemetry");
        let ms = chrono::Utc::now().timestamp_millis();
        probe.send(&topic, format!(r#"{{"ts":{},"water_depth_cm":45}}"#, ms - 1000).into_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        probe.send(&topic, format!(r#"{{"ts":{ms},"water_depth_cm":46}}"#).into_bytes()).await;
        sent_at.push(t);
        tokio::time::sleep(PROBE_EVERY).await;
    }
    let received = support::wait_for("an SMS for every probe", Duration::from_secs(60), || async {
        let got = peer.accepted("/sms");
        let firsts: Vec<Option<Instant>> =
            (0..PROBES).map(|i| got.iter().filter(|r| r.to == phone(i)).map(|r| r.at).min()).collect();
        firsts.iter().all(Option::is_some).then(|| firsts.into_iter().flatten().collect::<Vec<_>>())
    })
    .await;
    stop.cancel();
    let (published, took) = loader.await.unwrap();
    let rss = common::peak_rss_mb(fg.pid().unwrap());
    let readings = fg.metric("floodguard_readings_total").await.unwrap_or(0.0);

    let mut ms: Vec<f64> =
        received.iter().zip(&sent_at).map(|(r, s)| r.duration_since(*s).as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "alert latency on the {backend} state: publish of the crossing reading → SMS gateway request, \
         {PROBES} crossings to Ⅰ"
    );
    println!(
        "  load: {LOAD_SITES} sites, {published} messages in {:.1} s = {:.0} msgs/s (target {RATE}); \
         floodguard took {readings:.0} readings; Mosquitto → floodguard → InfluxDB 1.6.7",
        took.as_secs_f64(),
        published as f64 / took.as_secs_f64()
    );
    println!(
        "  p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (target p99 < 50 ms)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    println!("  floodguard peak RSS (VmHWM): {rss:.1} MB");
    assert_eq!(fg.terminate(Duration::from_secs(30)), Some(0), "floodguard stops on SIGTERM");
}

fn main() {
    common::bench_main("alerting", run);
}

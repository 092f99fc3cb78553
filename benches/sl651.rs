//! The SL 651 central station: frames decoded per second on one core (the
//! pure codec and mapping), frames per second end to end from 100 RTU
//! links into InfluxDB 1.6.7 while the stations' levels cross Ⅳ … Ⅰ, and
//! the memory of 10,000 idle RTU links.
//!
//! `cargo bench --bench sl651` (after scripts/test.sh installed the
//! services). Prints the figures recorded in docs/performance.md. Under
//! `cargo test` it does nothing.

mod common;
#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Timelike;
use floodguard::catalog::{Catalog, Sl651Station};
use floodguard::config::Kind;
use floodguard::ingest::sl651::{frame, map};
use support::floodguard::{sample_config_dir, Floodguard, Options};
use support::influx::Influx;
use support::mosquitto::Mosquitto;
use support::rtu::{block, element, Link, Rtu};

const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
const LINKS: usize = 100;
const FRAMES: usize = 200;
const IDLE: usize = 10_000;

fn rtu(i: usize, class: u8) -> Rtu {
    let hex = format!("003000{i:04}");
    let mut a = [0u8; 5];
    for (k, b) in a.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).unwrap();
    }
    Rtu { centre: 1, station: a, password: 0x1234, class }
}

fn stage_m(k: usize) -> f64 {
    let t = k % 28;
    4.0 + 0.1 * (if t <= 14 { t } else { 28 - t }) as f64
}

fn now_local() -> chrono::NaiveDateTime {
    chrono::Utc::now().with_timezone(&TZ).naive_local().with_second(0).unwrap().with_nanosecond(0).unwrap()
}

/// The pure part on one core: an hourly report (DRP and DRZ1 blocks, PT, Z,
/// VT) from bytes to readings.
fn decode() {
    let r = rtu(1, b'H');
    let now = now_local();
    let rain: Vec<f64> = (0..12).map(|i| f64::from(i) * 0.5).collect();
    let levels: Vec<f64> = (0..12).map(|i| 4.0 + f64::from(i) / 100.0).collect();
    let elements = [
        block(0xF4, &rain),
        element(0x26, 3, 1, 123.5),
        block(0xF5, &levels),
        element(0x39, 4, 3, 4.12),
        element(0x38, 2, 2, 12.6),
    ]
    .concat();
    let bytes = r.frame(0x34, &r.body(1, now, &[(now - chrono::Duration::hours(1), elements)]));
    let mut catalog = Catalog::from_sites([("S-R0001", Kind::River, "binhe")]);
    catalog.add_sl651("0030000001", Sl651Station { site: Arc::from("S-R0001"), elements: vec![] });
    let n = 1_000_000;
    let t = Instant::now();
    let mut readings = 0usize;
    for _ in 0..n {
        let (f, _) = frame::next_frame(&bytes).unwrap().unwrap();
        let m = map::readings(&catalog, &f.header.station_hex(), f.message().unwrap(), &TZ).unwrap();
        readings += m.messages.iter().map(Vec::len).sum::<usize>();
    }
    let s = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(frame::next_frame(std::hint::black_box(&bytes)).unwrap());
    }
    let s2 = t2.elapsed().as_secs_f64();
    println!(
        "decode, one core: an hourly frame of {} bytes → {} readings: {:.0} frames/s parsed, {:.0} frames/s parsed and mapped to readings",
        bytes.len(),
        readings / n,
        n as f64 / s2,
        n as f64 / s
    );
}

fn sites(n: usize) -> String {
    let mut s = std::fs::read_to_string(sample_config_dir().join("sites.toml")).unwrap();
    for i in 0..n {
        s.push_str(&format!(
            "\n[[sites]]\nid = \"S-R{i:04}\"\nname = \"测站{i}\"\nkind = \"river\"\ncategory = \"river\"\n\
             street = \"binhe\"\nlocation = {{ lat = 30.57, lon = 114.31 }}\n\
             params = {{ warning_level_m = 4.50, guarantee_level_m = 5.20 }}\nsl651_station = \"003000{i:04}\"\n"
        ));
    }
    s
}

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn end_to_end(broker: &Mosquitto, influx: &Influx) {
    let port = support::free_port();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.sites_toml = Some(sites(LINKS));
    o.extra = format!("[sl651]\nlisten = \"127.0.0.1:{port}\"\nidle_timeout = \"10m\"\n");
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = fg.pid().unwrap();
    let baseline = rss_mb(pid);

    // 100 links, each a station sending FRAMES timed reports (Z crossing
    // the river thresholds, VT), each waiting for its confirmation.
    let now = now_local();
    let base = now - chrono::Duration::minutes(FRAMES as i64 + 5);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..LINKS)
        .map(|i| {
            tokio::task::spawn_blocking(move || {
                let r = rtu(i, b'H');
                let mut link = Link::connect(port).unwrap();
                for k in 0..FRAMES {
                    let at = base + chrono::Duration::minutes(k as i64);
                    let body = r.body(
                        k as u16,
                        now,
                        &[(at, [element(0x39, 4, 3, stage_m(k)), element(0x38, 2, 2, 12.5)].concat())],
                    );
                    link.send(&r.frame(0x32, &body));
                    link.reply(Duration::from_secs(30)).expect("a confirmation");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let confirmed = t0.elapsed();
    let n = (LINKS * FRAMES) as i64;
    support::wait_for("every level in InfluxDB", Duration::from_secs(120), || async {
        (influx.count("flood", "SELECT count(level_m) FROM telemetry WHERE site =~ /^S-R/").await >= n)
            .then_some(())
    })
    .await;
    let stored = t0.elapsed();
    let changes = fg.metric("floodguard_engine_transitions_total{type=\"site\"}").await.unwrap_or(0.0);
    println!(
        "end to end: {LINKS} links × {FRAMES} timed reports ({changes:.0} level changes): all confirmed after {:.2} s = {:.0} frames/s, all in InfluxDB after {:.2} s = {:.0} frames/s",
        confirmed.as_secs_f64(),
        n as f64 / confirmed.as_secs_f64(),
        stored.as_secs_f64(),
        n as f64 / stored.as_secs_f64()
    );

    // 10,000 idle links, each having sent one keep-alive.
    let before = rss_mb(pid);
    let links: Vec<Link> = tokio::task::spawn_blocking(move || {
        (0..IDLE)
            .map(|i| {
                let r = rtu(5000 + i % 4000, b'P');
                let mut l = Link::connect(port).unwrap();
                l.send(&r.frame(0x2F, &[(i >> 8) as u8, i as u8, 0x26, 0x07, 0x21, 0x14, 0x05, 0x00]));
                l
            })
            .collect()
    })
    .await
    .unwrap();
    support::wait_for("10,000 links open", Duration::from_secs(60), || async {
        (fg.metric("floodguard_sl651_connections").await? >= IDLE as f64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = rss_mb(pid);
    println!(
        "idle links: RSS {baseline:.1} MB at start, {before:.1} MB after the load, {with:.1} MB with {IDLE} idle links open: {:.1} MB above the daemon's baseline ({:.1} KB a link)",
        with - baseline,
        (with - before) * 1024.0 / IDLE as f64
    );
    let t = Instant::now();
    let code = fg.terminate(Duration::from_secs(20));
    println!("SIGTERM with {IDLE} links open → exit {code:?} in {:.1} s", t.elapsed().as_secs_f64());
    drop(links);
}

async fn run() {
    decode();
    let broker = Mosquitto::start();
    let influx = Influx::start();
    end_to_end(&broker, &influx).await;
}

fn main() {
    common::bench_main("sl651", run);
}

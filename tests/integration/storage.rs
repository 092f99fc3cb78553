//! Every reading published reaches InfluxDB exactly once, with its tags.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::{base_ms, reading, Publisher, SITES};
use crate::support::victoria::Victoria;
use crate::support::wait_for;

const N: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_readings_land_in_influxdb_v1_exactly_once() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;

    let publisher = Publisher::connect(&broker.url(), "pub-v1");
    let base = base_ms();
    for seq in 0..N {
        let (topic, payload) = reading(seq, base);
        publisher.send(&topic, payload).await;
    }
    publisher.wait_acked(N, Duration::from_secs(60)).await;

    let count = wait_for(
        "20,000 points in InfluxDB",
        Duration::from_secs(60),
        || async {
            let c = influx
                .count("flood", "SELECT count(seq) FROM telemetry")
                .await;
            (c >= N as i64).then_some(c)
        },
    )
    .await;
    // Give a straggler time to show up twice, if it were to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        influx
            .count("flood", "SELECT count(seq) FROM telemetry")
            .await,
        N as i64
    );
    assert_eq!(count, N as i64);

    // Tags: every site under its own kind and street.
    let v = influx
        .query(
            "flood",
            "SELECT count(seq) FROM telemetry GROUP BY site, kind, street",
        )
        .await;
    let series = v["results"][0]["series"]
        .as_array()
        .expect("grouped series");
    let mut per_site = BTreeMap::new();
    for s in series {
        let tags = &s["tags"];
        per_site.insert(
            tags["site"].as_str().unwrap().to_string(),
            (
                tags["kind"].as_str().unwrap().to_string(),
                tags["street"].as_str().unwrap().to_string(),
                s["values"][0][1].as_i64().unwrap(),
            ),
        );
    }
    assert_eq!(per_site.len(), SITES.len());
    let (kind, street, n) = &per_site["BH-BZ-01"];
    assert_eq!((kind.as_str(), street.as_str()), ("pump_station", "binhe"));
    assert_eq!(*n, (N / 15) as i64 + i64::from(N % 15 > 6));
    let (kind, street, _) = &per_site["CD-JS-01"];
    assert_eq!(
        (kind.as_str(), street.as_str()),
        ("waterlogging", "chengdong")
    );
    let (kind, street, _) = &per_site["XC-SW-01"];
    assert_eq!((kind.as_str(), street.as_str()), ("river", "xincheng"));

    // Values and timestamps are the device's.
    let v = influx.query("flood", &format!("SELECT forebay_level_m, seq FROM telemetry WHERE site = 'BH-BZ-01' AND time = {}ms", base + 6)).await;
    assert_eq!(
        v["results"][0]["series"][0]["values"][0][1].as_f64(),
        Some(0.6),
        "{v}"
    );
    assert_eq!(
        v["results"][0]["series"][0]["values"][0][2].as_f64(),
        Some(6.0),
        "{v}"
    );

    assert_eq!(
        fg.metric("floodguard_influxdb_points_written_total").await,
        Some(N as f64)
    );
    assert_eq!(
        fg.metric("floodguard_readings_total").await,
        Some(2.0 * N as f64),
        "metric + seq per message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_write_path_reaches_victoriametrics() {
    let broker = Mosquitto::start();
    let vm = Victoria::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(vm.url(), "v2"));
    fg.wait_connected().await;

    let publisher = Publisher::connect(&broker.url(), "pub-v2");
    let base = base_ms();
    for seq in 0..N {
        let (topic, payload) = reading(seq, base);
        publisher.send(&topic, payload).await;
    }
    publisher.wait_acked(N, Duration::from_secs(60)).await;
    wait_for("every point written", Duration::from_secs(60), || async {
        (fg.metric("floodguard_influxdb_points_written_total")
            .await?
            >= N as f64)
            .then_some(())
    })
    .await;

    let series = wait_for(
        "20,000 samples in VictoriaMetrics",
        Duration::from_secs(30),
        || async {
            let series = vm.export(r#"{__name__="telemetry_seq"}"#).await;
            let samples: usize = series
                .iter()
                .map(|s| s["values"].as_array().map_or(0, |v| v.len()))
                .sum();
            (samples >= N as usize).then_some(series)
        },
    )
    .await;
    let samples: usize = series
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(samples, N as usize);
    assert_eq!(series.len(), SITES.len());
    let pump = series
        .iter()
        .find(|s| s["metric"]["site"] == "BH-BZ-01")
        .expect("BH-BZ-01 series");
    assert_eq!(pump["metric"]["kind"], "pump_station");
    assert_eq!(pump["metric"]["street"], "binhe");
}

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

    let count = wait_for("20,000 points in InfluxDB", Duration::from_secs(60), || async {
        let c = influx.count("flood", "SELECT count(seq) FROM telemetry").await;
        (c >= N as i64).then_some(c)
    })
    .await;
    // Give a straggler time to show up twice, if it were to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(influx.count("flood", "SELECT count(seq) FROM telemetry").await, N as i64);
    assert_eq!(count, N as i64);

    // Tags: every site under its own kind and street.
    let v = influx.query("flood", "SELECT count(seq) FROM telemetry GROUP BY site, kind, street").await;
    let series = v["results"][0]["series"].as_array().expect("grouped series");
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
    assert_eq!((kind.as_str(), street.as_str()), ("waterlogging", "chengdong"));
    let (kind, street, _) = &per_site["XC-SW-01"];
    assert_eq!((kind.as_str(), street.as_str()), ("river", "xincheng"));

    // Values and timestamps are the device's.
    let v = influx
        .query(
            "flood",
            &format!(
                "SELECT forebay_level_m, seq FROM telemetry WHERE site = 'BH-BZ-01' AND time = {}ms",
                base + 6
            ),
        )
        .await;
    assert_eq!(v["results"][0]["series"][0]["values"][0][1].as_f64(), Some(0.6), "{v}");
    assert_eq!(v["results"][0]["series"][0]["values"][0][2].as_f64(), Some(6.0), "{v}");

    // Points written: the readings, what the engine and the alert manager
    // derived from them (area_level, alert_event, telemetry_qc: these test
    // values run up to 99.9 m for rivers, forebays and manholes, past their
    // sensors' ranges), and the site catalogue.
    let area = influx.count("flood", "SELECT count(level) FROM area_level").await;
    let events = influx.count("flood", "SELECT count(alert_id) FROM alert_event").await;
    let sites = influx.count("flood", "SELECT count(lat) FROM site_info").await;
    let flags = influx.count("flood", "SELECT count(value) FROM telemetry_qc").await;
    // A suspect reading confirmed later is its point written again (one point kept).
    let confirmed =
        influx.count("flood", "SELECT count(value) FROM telemetry_qc WHERE confirmed = true").await;
    assert!(area >= 4, "a baseline per street and the district");
    assert!(events > 0, "the readings cross thresholds: alerts fire");
    assert!(flags > 0, "readings out of their sensors' range are flagged");
    assert_eq!(sites, 15, "one site_info point per site of the sample district");
    assert_eq!(
        fg.metric("floodguard_influxdb_points_written_total").await,
        Some((N as i64 + area + events + sites + flags + confirmed) as f64)
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
        (fg.metric("floodguard_influxdb_points_written_total").await? >= N as f64).then_some(())
    })
    .await;

    let series = wait_for("20,000 samples in VictoriaMetrics", Duration::from_secs(30), || async {
        let series = vm.export(r#"{__name__="telemetry_seq"}"#).await;
        let samples: usize = series.iter().map(|s| s["values"].as_array().map_or(0, |v| v.len())).sum();
        (samples >= N as usize).then_some(series)
    })
    .await;
    let samples: usize = series.iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(samples, N as usize);
    assert_eq!(series.len(), SITES.len());
    let pump = series.iter().find(|s| s["metric"]["site"] == "BH-BZ-01").expect("BH-BZ-01 series");
    assert_eq!(pump["metric"]["kind"], "pump_station");
    assert_eq!(pump["metric"]["street"], "binhe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_influxdb_refuses_is_set_aside_with_the_reason_and_the_rest_flows() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-reject");
    let base = base_ms();

    // A float field first… (a metric the kind does not declare: stored as
    // sent — a declared one takes its type, and a flag for a depth never
    // reaches InfluxDB)
    p.send("flood/CD-JS-01/telemetry", format!(r#"{{"ts":{base},"vendor_x":12.5}}"#).into_bytes()).await;
    wait_for("the float stored", Duration::from_secs(20), || async {
        (influx.count("flood", "SELECT count(vendor_x) FROM telemetry").await == 1).then_some(())
    })
    .await;
    // …then the same field as a boolean: InfluxDB refuses it (type conflict, HTTP 400).
    p.send("flood/CD-JS-01/telemetry", format!(r#"{{"ts":{},"vendor_x":true}}"#, base + 1).into_bytes())
        .await;
    wait_for("the batch counted as rejected", Duration::from_secs(20), || async {
        (fg.metric("floodguard_influxdb_batches_rejected_total").await? == 1.0).then_some(())
    })
    .await;
    // Later readings are not held up behind it.
    for seq in 0..50 {
        let (topic, payload) = reading(seq, base + 10);
        p.send(&topic, payload).await;
    }
    wait_for("the readings after it stored", Duration::from_secs(20), || async {
        (influx.count("flood", "SELECT count(seq) FROM telemetry").await == 50).then_some(())
    })
    .await;

    let rejected = fg.data_dir().join("rejected");
    let mut files: Vec<_> = std::fs::read_dir(&rejected).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let lines =
        std::fs::read_to_string(files.iter().find(|f| f.extension().unwrap() == "lp").unwrap()).unwrap();
    assert!(lines.contains("site=CD-JS-01") && lines.contains("vendor_x=true"), "{lines}");
    let reason =
        std::fs::read_to_string(files.iter().find(|f| f.to_string_lossy().ends_with(".reason.txt")).unwrap())
            .unwrap();
    assert!(reason.starts_with("HTTP 400") && reason.contains("field type conflict"), "{reason}");
    assert_eq!(fg.metric(r#"floodguard_influxdb_write_failures_total{class="rejected"}"#).await, Some(1.0));
    assert!(fg.log().contains("InfluxDB refused a batch; moved it aside"));
}

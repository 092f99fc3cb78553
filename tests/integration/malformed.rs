//! Bad input is counted by cause and dropped; nothing else is lost, the
//! daemon stays healthy, intake never stalls (no poison message).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::{base_ms, reading, Publisher};
use crate::support::{http_get, wait_for};

/// One bad message of the given cause, `i` making it differ from the others.
fn bad(cause: &str, i: u64, base: i64) -> (String, Vec<u8>) {
    let t = |site: &str| format!("flood/{site}/telemetry");
    let now = chrono::Utc::now().timestamp_millis();
    match cause {
        "malformed_json" => (t("CD-JS-01"), format!("{{\"water_depth_cm\": {i}").into_bytes()),
        "wrong_type" => (t("CD-JS-01"), format!("{{\"water_depth_cm\": \"deep-{i}\"}}").into_bytes()),
        "non_finite" => (t("BH-SW-01"), format!("{{\"level_m\": 1e40{i}}}").into_bytes()),
        "unknown_site" => (t(&format!("ZZ-{i}")), b"{\"water_depth_cm\": 1}".to_vec()),
        // 100 KB and more: past max_payload (64 KiB), far below max_packet_size.
        "oversize" => {
            let pad = "x".repeat(100_000 + i as usize);
            (t("CD-JS-02"), format!("{{\"water_depth_cm\": 1, \"pad\": \"{pad}\"}}").into_bytes())
        }
        "future_timestamp" => (
            t("CD-JS-01"),
            format!("{{\"ts\": {}, \"water_depth_cm\": 1}}", now + 3_600_000 + i as i64).into_bytes(),
        ),
        "bad_timestamp" => {
            (t("CD-JS-01"), format!("{{\"ts\": \"yesterday {i}\", \"water_depth_cm\": 1}}").into_bytes())
        }
        "invalid_metric" => (t("CD-JS-01"), format!("{{\"_x{i}\": 1}}").into_bytes()),
        "no_metrics" => (t("CD-JS-01"), format!("{{\"ts\": {}}}", base + i as i64).into_bytes()),
        "bad_status" => ("flood/CD-JS-01/status".to_string(), format!("sleeping-{i}").into_bytes()),
        "malformed_number" => ("legacy/CD-JS-01/depth_m".to_string(), format!("deep-{i}").into_bytes()),
        other => panic!("no generator for {other}"),
    }
}

const CAUSES: [&str; 11] = [
    "malformed_json",
    "wrong_type",
    "non_finite",
    "unknown_site",
    "oversize",
    "future_timestamp",
    "bad_timestamp",
    "invalid_metric",
    "no_metrics",
    "bad_status",
    "malformed_number",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bad_messages_are_counted_and_nothing_else_is_lost() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut opts = Options::new(broker.url()).influx(influx.url(), "v1");
    opts.mqtt_extra =
        "[[mqtt.mappings]]\nfilter = \"legacy/+/depth_m\"\nsite_segment = 1\npayload = \"number\"\n\
                       metric = \"water_depth_cm\"\nscale = 100.0\n"
            .into();
    let fg = Floodguard::start(opts);
    fg.wait_connected().await;

    // Watch /healthz all along.
    let unhealthy = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(true));
    let watch = tokio::spawn({
        let (unhealthy, watching, url) = (unhealthy.clone(), watching.clone(), fg.url("/healthz"));
        async move {
            while watching.load(Ordering::Relaxed) {
                if http_get(&url).await.map(|(c, _)| c) != Some(200) {
                    unhealthy.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let p = Publisher::connect(&broker.url(), "pub-bad");
    let base = base_ms();
    let per_cause = 1000 / CAUSES.len() as u64 + 1; // 91 × 11 = 1001
    let mut valid = 0u64;
    let mut sent = 0u64;
    for i in 0..per_cause {
        for cause in CAUSES {
            let (topic, payload) = bad(cause, i, base);
            p.send(&topic, payload).await;
            let (topic, payload) = reading(valid, base);
            p.send(&topic, payload).await;
            valid += 1;
            sent += 2;
        }
    }
    p.wait_acked(sent, Duration::from_secs(60)).await;

    // Intake did not stall: one more valid reading goes straight through.
    let (topic, payload) = reading(valid, base);
    p.send(&topic, payload).await;
    valid += 1;
    wait_for("every valid reading stored", Duration::from_secs(30), || async {
        (influx.count("flood", "SELECT count(seq) FROM telemetry").await >= valid as i64).then_some(())
    })
    .await;
    assert_eq!(influx.count("flood", "SELECT count(seq) FROM telemetry").await, valid as i64);

    for cause in CAUSES {
        let n = fg.metric(&format!("floodguard_decode_errors_total{{cause=\"{cause}\"}}")).await;
        assert_eq!(n, Some(per_cause as f64), "cause {cause}");
    }
    assert_eq!(fg.metric("floodguard_mqtt_messages_received_total").await, Some((sent + 1) as f64));
    assert_eq!(
        fg.metric("floodguard_mqtt_connection_errors_total").await,
        Some(0.0),
        "no poison disconnects"
    );
    assert_eq!(fg.metric("floodguard_mqtt_connections_total").await, Some(1.0));

    watching.store(false, Ordering::Relaxed);
    watch.await.unwrap();
    assert!(!unhealthy.load(Ordering::Relaxed), "/healthz failed at some point");
    assert_eq!(fg.readyz().await.unwrap().0, 200);
}

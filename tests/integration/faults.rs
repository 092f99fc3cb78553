//! Faults that must never lose a reading: InfluxDB down, floodguard killed,
//! the broker restarted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::{base_ms, reading, Publisher};
use crate::support::wait_for;

const N: u64 = 20_000;

/// Publishes `range` at about `rate` messages per second.
async fn publish_paced(p: &Publisher, range: std::ops::Range<u64>, base: i64, rate: u64) {
    let start = Instant::now();
    let first = range.start;
    for seq in range {
        let (topic, payload) = reading(seq, base);
        p.send(&topic, payload).await;
        let due = Duration::from_secs_f64((seq - first) as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The distinct `seq` values stored, and the total count of `seq` values.
async fn stored(influx: &Influx) -> (BTreeSet<u64>, i64) {
    let v = influx.query("flood", "SELECT seq FROM telemetry").await;
    let mut set = BTreeSet::new();
    let mut total = 0;
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        for row in s["values"].as_array().unwrap() {
            set.insert(row[1].as_f64().unwrap() as u64);
            total += 1;
        }
    }
    (set, total)
}

/// Waits for all `N` readings in InfluxDB, then checks each is there once.
async fn assert_every_reading_once(influx: &Influx) {
    wait_for("all 20,000 in InfluxDB", Duration::from_secs(60), || async {
        let c = influx.count("flood", "SELECT count(seq) FROM telemetry").await;
        (c >= N as i64).then_some(())
    })
    .await;
    let (set, total) = stored(influx).await;
    assert_eq!(set.len() as u64, N, "every reading present");
    assert_eq!(total, N as i64, "none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_down_for_20_s_loses_nothing_and_duplicates_nothing() {
    let broker = Mosquitto::start();
    let mut influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    let publisher = Publisher::connect(&broker.url(), "pub-outage");
    let base = base_ms();

    publish_paced(&publisher, 0..N / 2, base, 5_000).await;
    wait_for("the first half stored", Duration::from_secs(30), || async {
        (fg.metric("floodguard_influxdb_points_written_total").await? >= (N / 2) as f64).then_some(())
    })
    .await;

    influx.stop();
    let down_at = Instant::now();
    // The second half arrives while InfluxDB is away.
    publish_paced(&publisher, N / 2..N, base, 2_000).await;
    publisher.wait_acked(N, Duration::from_secs(30)).await;
    // /readyz reports the lag once it passes max_lag (5 s here).
    let (code, body) = wait_for("/readyz to report the lag", Duration::from_secs(20), || async {
        let (code, body) = fg.readyz().await?;
        (code == 503).then_some((code, body))
    })
    .await;
    assert_eq!(code, 503);
    assert!(body["problems"][0].as_str().unwrap().contains("falling behind"), "{body}");
    assert!(body["spool_pending_records"].as_i64().unwrap() > 0, "{body}");
    assert!(body["storage"].as_str().unwrap().starts_with("InfluxDB failing"), "{body}");
    let pending = fg.metric("floodguard_spool_pending_records").await.unwrap();
    assert!(pending >= (N / 2) as f64 - 1.0, "the second half waits in the spool: {pending}");
    assert!(fg.metric("floodguard_spool_lag_seconds").await.unwrap() > 5.0);

    if let Some(rest) = Duration::from_secs(20).checked_sub(down_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    influx.start_again();

    assert_every_reading_once(&influx).await;
    wait_for("/readyz ready again", Duration::from_secs(10), || async {
        (fg.readyz().await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(fg.metric("floodguard_spool_pending_records").await, Some(0.0));
    assert!(
        fg.metric(r#"floodguard_influxdb_write_failures_total{class="connection"}"#).await.unwrap() > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_keeps_every_reading() {
    sigkill_mid_stream("5").await;
}

/// The same over MQTT 3.1.1 (`mqtt.protocol`), for brokers without 5: its
/// persistent session keeps what the kill left unacked just the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_over_mqtt_3_1_1_keeps_every_reading() {
    sigkill_mid_stream("3.1.1").await;
}

async fn sigkill_mid_stream(protocol: &str) {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.mqtt_extra = format!("protocol = \"{protocol}\"\n");
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let publisher = Publisher::connect(&broker.url(), "pub-kill");
    let base = base_ms();

    publish_paced(&publisher, 0..N / 4, base, 4_000).await;
    // Killed while messages flow: some spooled but unsent, some unacked.
    let sender = tokio::spawn({
        let client = publisher.client.clone();
        async move {
            for seq in N / 4..N {
                let (topic, payload) = reading(seq, base);
                client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
                if seq % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    fg.kill9();
    let received_before = influx.count("flood", "SELECT count(seq) FROM telemetry").await;
    assert!(received_before < N as i64, "the kill came mid-stream");
    // The broker queues the rest for the persistent session meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    fg.restart();
    sender.await.unwrap();
    publisher.wait_acked(N, Duration::from_secs(60)).await;

    // Redelivered messages are the same points: InfluxDB keeps one.
    assert_every_reading_once(&influx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_survived_with_a_new_subscription() {
    let mut broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    let base = base_ms();

    // Phase 1: delivered and stored before the restart.
    {
        let p = Publisher::connect(&broker.url(), "pub-restart-1");
        publish_paced(&p, 0..5_000, base, 5_000).await;
        p.wait_acked(5_000, Duration::from_secs(30)).await;
    }
    // Phase 2: the broker goes away mid-stream and comes back (sessions lost:
    // persistence is off, so floodguard must subscribe again).
    let p = Publisher::connect(&broker.url(), "pub-restart-2");
    publish_paced(&p, 5_000..7_000, base, 5_000).await;
    broker.restart();
    wait_for("floodguard back on the broker", Duration::from_secs(30), || async {
        (fg.metric("floodguard_mqtt_connections_total").await? >= 2.0).then_some(())
    })
    .await;
    drop(p);
    // Phase 3: after the restart, once floodguard's new subscription is in
    // place (what the broker takes before that has no subscriber to go to):
    // markers until one arrives.
    let p = Publisher::connect(&broker.url(), "pub-restart-3");
    let before = fg.metric("floodguard_mqtt_messages_received_total").await.unwrap_or(0.0);
    let mut marker = 20_000;
    wait_for("floodguard subscribed again", Duration::from_secs(30), || {
        marker += 1;
        let (topic, payload) = reading(marker, base);
        let (p, fg) = (&p, &fg);
        async move {
            p.send(&topic, payload).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            (fg.metric("floodguard_mqtt_messages_received_total").await? > before).then_some(())
        }
    })
    .await;
    publish_paced(&p, 10_000..15_000, base, 5_000).await;
    p.wait_acked(5_000, Duration::from_secs(30)).await;

    wait_for("phase 3 stored", Duration::from_secs(60), || async {
        let (set, _) = stored(&influx).await;
        (set.range(10_000..15_000).count() == 5_000).then_some(())
    })
    .await;
    let (set, total) = stored(&influx).await;
    assert_eq!(set.range(0..5_000).count(), 5_000, "everything before the restart");
    assert_eq!(set.range(10_000..15_000).count(), 5_000, "everything after the restart");
    assert_eq!(total as usize, set.len(), "no reading twice");
    assert!(fg.metric("floodguard_mqtt_subscribes_total").await.unwrap() >= 2.0, "subscribed again");
    // Nothing floodguard received was lost: what it decoded is what is stored.
    wait_for("the writer caught up", Duration::from_secs(10), || async {
        (fg.metric("floodguard_spool_pending_records").await? == 0.0).then_some(())
    })
    .await;
    let decoded = fg.metric("floodguard_readings_total").await.unwrap() / 2.0;
    assert_eq!(decoded as usize, set.len(), "every message floodguard received is stored");
}

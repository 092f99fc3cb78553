//! A QoS1 publisher on rumqttc that counts the broker's PUBACKs, and the
//! test messages: sample-district readings with a sequence number.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// (site, kind's metric) of the sample district.
pub const SITES: [(&str, &str); 15] = [
    ("CD-JS-01", "water_depth_cm"),
    ("CD-JS-02", "water_depth_cm"),
    ("CD-YL-01", "rain_mm"),
    ("CD-JC-01", "distance_m"),
    ("CD-JS-03", "water_depth_cm"),
    ("BH-SW-01", "level_m"),
    ("BH-BZ-01", "forebay_level_m"),
    ("BH-JS-01", "water_depth_cm"),
    ("BH-YL-01", "rain_mm"),
    ("BH-JS-02", "water_depth_cm"),
    ("XC-JS-01", "water_depth_cm"),
    ("XC-BZ-01", "forebay_level_m"),
    ("XC-SW-01", "level_m"),
    ("XC-JC-01", "distance_m"),
    ("XC-JS-02", "water_depth_cm"),
];

/// Reading `seq`: a unique point (its own ms timestamp), carrying `seq`.
pub fn reading(seq: u64, base_ms: i64) -> (String, Vec<u8>) {
    let (site, metric) = SITES[(seq % SITES.len() as u64) as usize];
    let value = (seq % 1000) as f64 / 10.0;
    let payload = format!(r#"{{"ts":{},"{metric}":{value},"seq":{seq}}}"#, base_ms + seq as i64);
    (format!("flood/{site}/telemetry"), payload.into_bytes())
}

/// A start time for test timestamps: an hour ago (well inside any retention,
/// never "in the future").
pub fn base_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() - 3_600_000
}

pub struct Publisher {
    pub client: AsyncClient,
    pub acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub fn connect(url: &str, id: &str) -> Publisher {
        let (host, port) = url.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
        let mut o = MqttOptions::new(id, host, port.parse().unwrap());
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_inflight(200);
        let (client, mut ev) = AsyncClient::new(o, 1000);
        let acked = Arc::new(AtomicU64::new(0));
        let a = acked.clone();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Publisher { client, acked, task }
    }

    pub async fn send(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }

    /// Waits until the broker acked `n` messages in all.
    pub async fn wait_acked(&self, n: u64, timeout: Duration) {
        super::wait_for(&format!("{n} PUBACKs"), timeout, || async {
            (self.acked.load(Ordering::Relaxed) >= n).then_some(())
        })
        .await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

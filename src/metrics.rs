//! The daemon's Prometheus metrics (`GET /metrics`).
//!
//! The `prometheus` crate, with a registry per daemon (tests run several in
//! one process), because it writes the 0.0.4 text format that every scraper
//! and `promtool check metrics` accept; `prometheus-client` writes only
//! OpenMetrics, whose `_total` counters promtool 2.42 reports as lacking help.
//! Each runtime failure is counted here, in one place, by cause.

use std::sync::atomic::Ordering;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::ingest::DecodeError;
use crate::spool::SpoolStats;
use crate::tsdb::retry;

pub struct Metrics {
    registry: Registry,
    pub mqtt_messages: IntCounter,
    pub mqtt_connected: IntGauge,
    pub mqtt_connections: IntCounter,
    pub mqtt_connection_errors: IntCounter,
    pub mqtt_subscribes: IntCounter,
    pub readings: IntCounter,
    pub decode_errors: IntCounterVec,
    pub spool_append_errors: IntCounter,
    spool_pending_records: IntGauge,
    spool_pending_bytes: IntGauge,
    spool_lag_seconds: prometheus::Gauge,
    spool_appended_records: IntCounter,
    spool_corrupt_frames: IntCounter,
    spool_fsyncs: IntCounter,
    pub points_written: IntCounter,
    pub batches_written: IntCounter,
    pub batches_rejected: IntCounter,
    pub write_duration: Histogram,
    pub write_failures: IntCounterVec,
    pub engine_transitions: IntCounterVec,
    pub sites_offline: IntGauge,
    pub reloads: IntCounterVec,
    pub alert_intents: IntCounterVec,
    pub alert_notifications: IntCounter,
    pub notifications_sent: IntCounterVec,
    pub outbox_waiting: prometheus::IntGaugeVec,
    pub outbox_oldest_waiting_seconds: prometheus::Gauge,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, label: &str, values: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    // Every label value is shown from the start, at 0: a cause that never
    // happened is visible as such, and rate() works from the first error.
    for v in values {
        c.with_label_values(&[v]);
    }
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let lag = prometheus::Gauge::new(
            "floodguard_spool_lag_seconds",
            "Age of the oldest reading not yet accepted by InfluxDB (0 when caught up).",
        )
        .expect("valid metric");
        r.register(Box::new(lag.clone())).expect("unique metric");
        let write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "floodguard_influxdb_write_duration_seconds",
                "Time of one write request to InfluxDB, successful or not.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        r.register(Box::new(write_duration.clone())).expect("unique metric");
        Metrics {
            mqtt_messages: counter(&r, "floodguard_mqtt_messages_received_total", "MQTT messages received."),
            mqtt_connected: gauge(&r, "floodguard_mqtt_connected", "1 while connected to the broker."),
            mqtt_connections: counter(
                &r,
                "floodguard_mqtt_connections_total",
                "Successful connections to the broker.",
            ),
            mqtt_connection_errors: counter(
                &r,
                "floodguard_mqtt_connection_errors_total",
                "Connection attempts or connections that failed.",
            ),
            mqtt_subscribes: counter(
                &r,
                "floodguard_mqtt_subscribes_total",
                "Subscriptions sent (at start and whenever the broker lost the session).",
            ),
            readings: counter(&r, "floodguard_readings_total", "Readings decoded from valid messages."),
            decode_errors: counter_vec(
                &r,
                "floodguard_decode_errors_total",
                "Messages dropped because they could not be decoded, by cause.",
                "cause",
                &DecodeError::CAUSES,
            ),
            spool_append_errors: counter(
                &r,
                "floodguard_spool_append_errors_total",
                "Failed appends to the spool (messages stay unacked and come back).",
            ),
            spool_pending_records: gauge(
                &r,
                "floodguard_spool_pending_records",
                "Records in the spool not yet accepted by InfluxDB.",
            ),
            spool_pending_bytes: gauge(
                &r,
                "floodguard_spool_pending_bytes",
                "Bytes of those records on disk.",
            ),
            spool_lag_seconds: lag,
            spool_appended_records: counter(
                &r,
                "floodguard_spool_appended_records_total",
                "Records appended to the spool since start.",
            ),
            spool_corrupt_frames: counter(
                &r,
                "floodguard_spool_corrupt_records_total",
                "Damaged or torn spool records skipped since start.",
            ),
            spool_fsyncs: counter(&r, "floodguard_spool_fsyncs_total", "fsync calls on the spool."),
            points_written: counter(
                &r,
                "floodguard_influxdb_points_written_total",
                "Spool records (points) accepted by InfluxDB.",
            ),
            batches_written: counter(
                &r,
                "floodguard_influxdb_batches_written_total",
                "Write requests accepted.",
            ),
            batches_rejected: counter(
                &r,
                "floodguard_influxdb_batches_rejected_total",
                "Batches InfluxDB refused as invalid, moved to data_dir/rejected/.",
            ),
            write_duration,
            write_failures: counter_vec(
                &r,
                "floodguard_influxdb_write_failures_total",
                "Failed write requests, by class.",
                "class",
                &retry::CLASSES,
            ),
            engine_transitions: counter_vec(
                &r,
                "floodguard_engine_transitions_total",
                "Changes the plan engine made, by type.",
                "type",
                &["site", "offline", "online", "street", "district"],
            ),
            sites_offline: gauge(
                &r,
                "floodguard_sites_offline",
                "Sites currently offline (stale or reported).",
            ),
            reloads: counter_vec(
                &r,
                "floodguard_config_reloads_total",
                "Configuration reloads, by result.",
                "result",
                &["applied", "refused"],
            ),
            alert_intents: counter_vec(
                &r,
                "floodguard_alert_intents_total",
                "Reasons to notify a team, by kind (firing, escalated, deescalated, resolved, repeat, escalation).",
                "kind",
                &["firing", "escalated", "deescalated", "resolved", "repeat", "escalation"],
            ),
            alert_notifications: counter(
                &r,
                "floodguard_alert_notifications_total",
                "Notifications (one message's worth for one team) handed to the outbox.",
            ),
            notifications_sent: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "floodguard_notifications_sent_total",
                        "Outbox messages by channel (sms, email, wecom, dingtalk, webhook) and result: sent, \
                         retry (failed, tried again later), throttled (the provider said too fast), merged \
                         (folded into another message to the same recipient), failed, gave_up.",
                    ),
                    &["channel", "result"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                for ch in crate::notify::CHANNELS {
                    for res in ["sent", "retry", "throttled", "merged", "failed", "gave_up"] {
                        c.with_label_values(&[ch, res]);
                    }
                }
                c
            },
            outbox_waiting: {
                let g = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "floodguard_outbox_waiting",
                        "Outbox messages not yet accepted by their provider (queued or in flight), by channel.",
                    ),
                    &["channel"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                for ch in crate::notify::CHANNELS {
                    g.with_label_values(&[ch]).set(0);
                }
                g
            },
            outbox_oldest_waiting_seconds: {
                let g = prometheus::Gauge::new(
                    "floodguard_outbox_oldest_waiting_seconds",
                    "Age of the oldest outbox message not yet accepted (0 when none waits).",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            registry: r,
        }
    }

    /// The text exposition, with the spool figures read at this moment.
    pub fn render(&self, spool: Option<&SpoolStats>, now_ms: i64) -> String {
        if let Some(s) = spool {
            self.spool_pending_records.set(s.pending_records.load(Ordering::Relaxed).max(0));
            self.spool_pending_bytes.set(s.pending_bytes.load(Ordering::Relaxed).max(0));
            self.spool_lag_seconds.set(lag_seconds(s, now_ms));
            set_counter(&self.spool_appended_records, s.appended_records.load(Ordering::Relaxed));
            set_counter(&self.spool_corrupt_frames, s.corrupt_frames.load(Ordering::Relaxed));
            set_counter(&self.spool_fsyncs, s.fsyncs.load(Ordering::Relaxed));
        }
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// Seconds since the oldest reading not yet in InfluxDB was spooled.
pub fn lag_seconds(s: &SpoolStats, now_ms: i64) -> f64 {
    let oldest = s.oldest_pending_ms.load(Ordering::Relaxed);
    if oldest == 0 || s.pending_records.load(Ordering::Relaxed) <= 0 {
        0.0
    } else {
        ((now_ms - oldest).max(0) as f64) / 1000.0
    }
}

/// Brings a counter mirrored from an atomic up to its value.
fn set_counter(c: &IntCounter, v: u64) {
    let cur = c.get();
    if v > cur {
        c.inc_by(v - cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_and_class_is_exposed_from_the_start() {
        let m = Metrics::new();
        let text = m.render(Some(&SpoolStats::default()), 0);
        for cause in DecodeError::CAUSES {
            assert!(
                text.contains(&format!("floodguard_decode_errors_total{{cause=\"{cause}\"}} 0")),
                "{cause}"
            );
        }
        for class in retry::CLASSES {
            assert!(
                text.contains(&format!("floodguard_influxdb_write_failures_total{{class=\"{class}\"}} 0"))
            );
        }
        assert!(text.contains("# TYPE floodguard_influxdb_write_duration_seconds histogram"));
    }

    #[test]
    fn spool_figures_are_read_at_render_time() {
        let m = Metrics::new();
        let s = SpoolStats::default();
        s.pending_records.store(12, Ordering::Relaxed);
        s.oldest_pending_ms.store(1_000, Ordering::Relaxed);
        s.appended_records.store(40, Ordering::Relaxed);
        let text = m.render(Some(&s), 6_500);
        assert!(text.contains("floodguard_spool_pending_records 12"), "{text}");
        assert!(text.contains("floodguard_spool_lag_seconds 5.5"), "{text}");
        assert!(text.contains("floodguard_spool_appended_records_total 40"), "{text}");
    }
}

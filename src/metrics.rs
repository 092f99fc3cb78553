//! The daemon's Prometheus metrics (`GET /metrics`).
//!
//! The `prometheus` crate, with a registry per daemon (tests run several in
//! one process), because it writes the 0.0.4 text format that every scraper
//! and `promtool check metrics` accept; `prometheus-client` writes only
//! OpenMetrics, whose `_total` counters promtool 2.42 reports as lacking help.
//! Each runtime failure is counted here, in one place, by cause.
//!
//! A leaf: it imports no other module of floodguard. The label values to
//! show from the start (decode causes, write classes, channels, stages) are
//! given by the daemon ([`Labels`]); figures kept elsewhere (the spool's,
//! the stages') are handed in as plain numbers at each scrape.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The label values shown at 0 from the start, so a cause that never
/// happened is visible as such and `rate()` works from the first event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Labels<'a> {
    pub decode_causes: &'a [&'a str],
    pub write_classes: &'a [&'a str],
    pub channels: &'a [&'a str],
    pub send_results: &'a [&'a str],
    pub stages: &'a [&'a str],
    pub push_causes: &'a [&'a str],
    pub sl651_causes: &'a [&'a str],
}

/// The spool's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpoolFigures {
    pub pending_records: i64,
    pub pending_bytes: i64,
    pub lag_seconds: f64,
    pub appended_records: u64,
    pub corrupt_records: u64,
    pub fsyncs: u64,
}

/// One stage's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageFigures<'a> {
    pub stage: &'a str,
    pub queued: i64,
    pub oldest_seconds: f64,
    pub stalled: bool,
    pub handled: u64,
}

pub struct Metrics {
    registry: Registry,
    pub mqtt_messages: IntCounter,
    pub mqtt_connected: IntGauge,
    pub mqtt_connections: IntCounter,
    pub mqtt_connection_errors: IntCounter,
    pub mqtt_subscribes: IntCounter,
    pub mqtt_acks: IntCounter,
    pub outlet_feed_spilled: IntCounter,
    stage_queued: prometheus::IntGaugeVec,
    stage_oldest_seconds: prometheus::GaugeVec,
    stage_stalled: prometheus::IntGaugeVec,
    stage_handled: IntCounterVec,
    pub readings: IntCounter,
    pub decode_errors: IntCounterVec,
    /// HTTP push requests by answer (`204`, `400`, `401`, …).
    pub push_requests: IntCounterVec,
    /// Pushed lines (or JSON items) left out, by cause.
    pub push_rejected: IntCounterVec,
    /// SL 651 frames by function code (`32`, `34`, …).
    pub sl651_frames: IntCounterVec,
    /// SL 651 frames, bytes, elements and connections refused, by cause.
    pub sl651_errors: IntCounterVec,
    pub sl651_confirmations: IntCounter,
    pub sl651_connections: IntCounter,
    pub sl651_connections_open: IntGauge,
    pub sl651_elements_skipped: IntCounter,
    /// Modbus polls by device, answered or not.
    pub modbus_polls: IntCounterVec,
    /// Modbus connects, requests and values that failed, by device and cause.
    pub modbus_errors: IntCounterVec,
    /// 1 while a Modbus device answers every request of its polls.
    pub modbus_up: prometheus::IntGaugeVec,
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
    pub notify_refused: prometheus::IntGaugeVec,
    pub notify_receipts: IntCounterVec,
    /// Requests refused by the per-address rate limit (write API, ack links).
    pub http_rate_limited: IntCounter,
    /// Connections closed at accept: `http.max_connections` were open.
    pub http_connections_refused: IntCounter,
    pub http_connections_open: IntGauge,
    /// 1 while a writer (spool, state.db) finds its disk full.
    pub disk_full: IntGauge,
    /// 1 while this node leads (notifies, runs follow-ups).
    pub cluster_leader: IntGauge,
    /// The leader's epoch as this node last saw it.
    pub cluster_epoch: IntGauge,
    /// Times this node took the lease.
    pub cluster_takeovers: IntCounter,
    /// Times this node stopped leading (lease refused, run out, stopping).
    pub cluster_lease_lost: IntCounter,
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
    for v in values {
        c.with_label_values(&[v]);
    }
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, label: &str) -> prometheus::IntGaugeVec {
    let g = prometheus::IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics with no label values shown in advance.
    pub fn new() -> Self {
        Self::with_labels(&Labels::default())
    }

    pub fn with_labels(labels: &Labels<'_>) -> Self {
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
            mqtt_acks: counter(
                &r,
                "floodguard_mqtt_acks_total",
                "PUBACKs written to the broker (each after its message was in the spool).",
            ),
            outlet_feed_spilled: counter(
                &r,
                "floodguard_outlet_feed_spilled_total",
                "Appends whose in-memory copy the engine was too far behind to take; it read them from the spool.",
            ),
            stage_queued: {
                let g = gauge_vec(&r, "floodguard_stage_queued", "Items waiting for each stage.", "stage");
                for s in labels.stages {
                    g.with_label_values(&[s]).set(0);
                }
                g
            },
            stage_oldest_seconds: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "floodguard_stage_oldest_seconds",
                        "Age of the oldest item waiting for or in the hands of each stage (0 when none).",
                    ),
                    &["stage"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                for s in labels.stages {
                    g.with_label_values(&[s]).set(0.0);
                }
                g
            },
            stage_stalled: {
                let g = gauge_vec(
                    &r,
                    "floodguard_stage_stalled",
                    "1 while a stage has work and has made no progress for 5 s (/readyz fails).",
                    "stage",
                );
                for s in labels.stages {
                    g.with_label_values(&[s]).set(0);
                }
                g
            },
            stage_handled: counter_vec(
                &r,
                "floodguard_stage_handled_total",
                "Items each stage finished (messages, records, batches, rows).",
                "stage",
                labels.stages,
            ),
            readings: counter(&r, "floodguard_readings_total", "Readings decoded from valid messages."),
            decode_errors: counter_vec(
                &r,
                "floodguard_decode_errors_total",
                "Messages dropped because they could not be decoded, by cause.",
                "cause",
                labels.decode_causes,
            ),
            push_requests: counter_vec(
                &r,
                "floodguard_push_requests_total",
                "HTTP push requests (/write, /api/v2/write, /api/v1/readings) by status code.",
                "code",
                &["204", "400", "401"],
            ),
            push_rejected: counter_vec(
                &r,
                "floodguard_push_rejected_total",
                "Pushed lines or JSON items left out, by cause (the rest of their request is kept).",
                "cause",
                labels.push_causes,
            ),
            sl651_frames: counter_vec(
                &r,
                "floodguard_sl651_frames_total",
                "SL 651 frames received whole (CRC right), by function code.",
                "function",
                &[],
            ),
            sl651_errors: counter_vec(
                &r,
                "floodguard_sl651_errors_total",
                "SL 651 input dropped, by cause (frames, bytes, elements, connections).",
                "cause",
                labels.sl651_causes,
            ),
            sl651_confirmations: counter(
                &r,
                "floodguard_sl651_confirmations_total",
                "SL 651 confirmations sent, each after its frame's readings were spooled.",
            ),
            sl651_connections: counter(&r, "floodguard_sl651_connections_total", "RTU connections accepted."),
            sl651_connections_open: gauge(&r, "floodguard_sl651_connections", "RTU connections open."),
            sl651_elements_skipped: counter(
                &r,
                "floodguard_sl651_elements_skipped_total",
                "SL 651 elements with no metric mapped or no value sent.",
            ),
            modbus_polls: counter_vec(
                &r,
                "floodguard_modbus_polls_total",
                "Modbus polls (one read of a device's whole register map), answered or not, by device.",
                "device",
                &[],
            ),
            modbus_errors: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "floodguard_modbus_errors_total",
                        "Modbus connects, requests and values that failed, by device and cause (connect, \
                         timeout, io, exception, protocol, bad_value, unknown_site, …).",
                    ),
                    &["device", "cause"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            modbus_up: gauge_vec(
                &r,
                "floodguard_modbus_device_up",
                "1 while a Modbus device answered every request of its last poll, else 0.",
                "device",
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
                labels.write_classes,
            ),
            engine_transitions: counter_vec(
                &r,
                "floodguard_engine_transitions_total",
                "Changes the plan engine made, by type.",
                "type",
                &["site", "offline", "online", "street", "district", "qc", "sensor_fault", "upstream"],
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
                        "Outbox messages by channel (sms, email, wecom, dingtalk, webhook, voice) and result: \
                         sent, retry (not taken, tried again later), throttled (the provider's limit answer), \
                         held (the recipient's budget), merged (folded into a digest), unknown (sent, the \
                         answer lost), refused (credentials), split (too large: sent in parts), rerouted \
                         (an urgent notice handed to another channel or person), failed, gave_up.",
                    ),
                    &["channel", "result"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                for ch in labels.channels {
                    for res in labels.send_results {
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
                for ch in labels.channels {
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
            notify_refused: {
                let g = gauge_vec(
                    &r,
                    "floodguard_notify_credentials_refused",
                    "1 while a channel's provider refuses floodguard's credentials (its messages wait; /readyz warns).",
                    "channel",
                );
                for ch in labels.channels {
                    g.with_label_values(&[ch]).set(0);
                }
                g
            },
            notify_receipts: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "floodguard_notify_receipts_total",
                        "What became of messages the provider took, by channel and receipt: delivered, failed \
                         (on the handset), unknown (no report in time), answered, busy, no_answer, unreachable.",
                    ),
                    &["channel", "receipt"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            http_rate_limited: counter(
                &r,
                "floodguard_http_rate_limited_total",
                "Write-API and ack-link requests refused (429) by the per-address rate limit.",
            ),
            http_connections_refused: counter(
                &r,
                "floodguard_http_connections_refused_total",
                "HTTP connections closed at accept because http.max_connections were open.",
            ),
            http_connections_open: gauge(&r, "floodguard_http_connections", "HTTP connections open."),
            disk_full: gauge(
                &r,
                "floodguard_disk_full",
                "1 while the spool or state.db cannot write for a full disk (nothing new is acknowledged).",
            ),
            cluster_leader: gauge(
                &r,
                "floodguard_cluster_leader",
                "1 while this node is the leader (records alerts, runs follow-ups, sends); 0 on a standby.",
            ),
            cluster_epoch: gauge(&r, "floodguard_cluster_epoch", "The leader's epoch as this node last saw it."),
            cluster_takeovers: counter(
                &r,
                "floodguard_cluster_takeovers_total",
                "Times this node took the leader's lease.",
            ),
            cluster_lease_lost: counter(
                &r,
                "floodguard_cluster_lease_lost_total",
                "Times this node stopped leading: its lease refused, run out before renewal, or given up at stop.",
            ),
            registry: r,
        }
    }

    /// Sets the spool's gauges (at each scrape).
    pub fn set_spool(&self, s: &SpoolFigures) {
        self.spool_pending_records.set(s.pending_records.max(0));
        self.spool_pending_bytes.set(s.pending_bytes.max(0));
        self.spool_lag_seconds.set(s.lag_seconds);
        set_counter(&self.spool_appended_records, s.appended_records);
        set_counter(&self.spool_corrupt_frames, s.corrupt_records);
        set_counter(&self.spool_fsyncs, s.fsyncs);
    }

    /// Sets one stage's figures (at each scrape).
    pub fn set_stage(&self, s: &StageFigures<'_>) {
        self.stage_queued.with_label_values(&[s.stage]).set(s.queued);
        self.stage_oldest_seconds.with_label_values(&[s.stage]).set(s.oldest_seconds);
        self.stage_stalled.with_label_values(&[s.stage]).set(i64::from(s.stalled));
        set_counter(&self.stage_handled.with_label_values(&[s.stage]), s.handled);
    }

    /// Shows a Modbus device's series from the start: its polls, its errors
    /// for each of `causes`, and its gauge (down until it answers).
    pub fn modbus_device(&self, device: &str, causes: &[&str]) {
        self.modbus_polls.with_label_values(&[device]);
        for c in causes {
            self.modbus_errors.with_label_values(&[device, c]);
        }
        self.modbus_up.with_label_values(&[device]).set(0);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
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
    fn every_label_given_is_exposed_from_the_start() {
        let m = Metrics::with_labels(&Labels {
            decode_causes: &["bad_json", "oversize"],
            write_classes: &["timeout"],
            channels: &["sms"],
            send_results: &["sent"],
            stages: &["outlet"],
            push_causes: &["malformed_line"],
            sl651_causes: &["bad_crc"],
        });
        let text = m.render();
        for want in [
            "floodguard_decode_errors_total{cause=\"bad_json\"} 0",
            "floodguard_decode_errors_total{cause=\"oversize\"} 0",
            "floodguard_push_rejected_total{cause=\"malformed_line\"} 0",
            "floodguard_influxdb_write_failures_total{class=\"timeout\"} 0",
            "floodguard_notifications_sent_total{channel=\"sms\",result=\"sent\"} 0",
            "floodguard_stage_stalled{stage=\"outlet\"} 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert!(text.contains("# TYPE floodguard_influxdb_write_duration_seconds histogram"));
    }

    #[test]
    fn a_modbus_device_is_shown_from_its_start() {
        let m = Metrics::new();
        assert!(!m.render().contains("floodguard_modbus"), "no devices, no series");
        m.modbus_device("BH-BZ-01-plc", &["connect", "timeout"]);
        let text = m.render();
        for want in [
            "floodguard_modbus_polls_total{device=\"BH-BZ-01-plc\"} 0",
            "floodguard_modbus_errors_total{cause=\"connect\",device=\"BH-BZ-01-plc\"} 0",
            "floodguard_modbus_errors_total{cause=\"timeout\",device=\"BH-BZ-01-plc\"} 0",
            "floodguard_modbus_device_up{device=\"BH-BZ-01-plc\"} 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }

    #[test]
    fn spool_and_stage_figures_are_taken_at_scrape_time() {
        let m = Metrics::new();
        m.set_spool(&SpoolFigures {
            pending_records: 12,
            lag_seconds: 5.5,
            appended_records: 40,
            ..Default::default()
        });
        m.set_stage(&StageFigures {
            stage: "alerts",
            queued: 3,
            oldest_seconds: 7.5,
            stalled: true,
            handled: 9,
        });
        let text = m.render();
        for want in [
            "floodguard_spool_pending_records 12",
            "floodguard_spool_lag_seconds 5.5",
            "floodguard_spool_appended_records_total 40",
            "floodguard_stage_queued{stage=\"alerts\"} 3",
            "floodguard_stage_oldest_seconds{stage=\"alerts\"} 7.5",
            "floodguard_stage_stalled{stage=\"alerts\"} 1",
            "floodguard_stage_handled_total{stage=\"alerts\"} 9",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}

//! Liveness and readiness: what `/healthz` and `/readyz` answer.
//!
//! Ready means: connected to the broker, and — when InfluxDB is configured —
//! the spool is not falling behind (its oldest unwritten reading is younger
//! than `influxdb.max_lag`). The decision is a pure function of a snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::spool::SpoolStats;

/// State the I/O tasks report into.
#[derive(Debug)]
pub struct Health {
    pub mqtt_connected: AtomicBool,
    /// The last write error, cleared by the next success.
    pub influx_error: Mutex<Option<String>>,
    /// `None` in spool-only mode.
    pub max_lag: Option<Duration>,
    pub spool: Arc<SpoolStats>,
}

impl Health {
    pub fn new(spool: Arc<SpoolStats>, max_lag: Option<Duration>) -> Self {
        Health { mqtt_connected: AtomicBool::new(false), influx_error: Mutex::new(None), max_lag, spool }
    }

    pub fn set_influx_error(&self, e: Option<String>) {
        *self.influx_error.lock().expect("health lock") = e;
    }

    pub fn readiness(&self, now_ms: i64) -> Readiness {
        judge(Snapshot {
            mqtt_connected: self.mqtt_connected.load(Ordering::Relaxed),
            pending_records: self.spool.pending_records.load(Ordering::Relaxed).max(0),
            lag_seconds: crate::metrics::lag_seconds(&self.spool, now_ms),
            influx_error: self.influx_error.lock().expect("health lock").clone(),
            max_lag: self.max_lag,
        })
    }
}

/// The inputs of the readiness decision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mqtt_connected: bool,
    pub pending_records: i64,
    pub lag_seconds: f64,
    pub influx_error: Option<String>,
    pub max_lag: Option<Duration>,
}

/// The body of `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    pub broker: &'static str,
    pub storage: String,
    pub spool_pending_records: i64,
    pub spool_lag_seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

pub fn judge(s: Snapshot) -> Readiness {
    let mut problems = Vec::new();
    if !s.mqtt_connected {
        problems.push("not connected to the MQTT broker".to_string());
    }
    let storage = match s.max_lag {
        None => "spool only".to_string(),
        Some(max) => {
            if s.lag_seconds > max.as_secs_f64() {
                problems.push(format!(
                    "storage falling behind: oldest unwritten reading is {:.0} s old (limit {} s), {} pending",
                    s.lag_seconds,
                    max.as_secs(),
                    s.pending_records
                ));
            }
            match &s.influx_error {
                Some(e) => format!("InfluxDB failing: {e}"),
                None => "InfluxDB ok".to_string(),
            }
        }
    };
    Readiness {
        ready: problems.is_empty(),
        broker: if s.mqtt_connected { "connected" } else { "disconnected" },
        storage,
        spool_pending_records: s.pending_records,
        spool_lag_seconds: s.lag_seconds,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            mqtt_connected: true,
            pending_records: 0,
            lag_seconds: 0.0,
            influx_error: None,
            max_lag: Some(Duration::from_secs(30)),
        }
    }

    #[test]
    fn ready_when_connected_and_caught_up() {
        let r = judge(snap());
        assert!(r.ready);
        assert_eq!(r.storage, "InfluxDB ok");
    }

    #[test]
    fn not_ready_without_the_broker() {
        let r = judge(Snapshot { mqtt_connected: false, ..snap() });
        assert!(!r.ready);
        assert_eq!(r.broker, "disconnected");
    }

    #[test]
    fn a_short_error_with_little_lag_is_still_ready() {
        let r = judge(Snapshot {
            influx_error: Some("HTTP 503".into()),
            lag_seconds: 2.0,
            pending_records: 10,
            ..snap()
        });
        assert!(r.ready, "a blip is not a reason to be pulled from rotation");
        assert_eq!(r.storage, "InfluxDB failing: HTTP 503");
    }

    #[test]
    fn lag_past_the_limit_is_not_ready() {
        let r = judge(Snapshot {
            lag_seconds: 31.0,
            pending_records: 5000,
            influx_error: Some("connection refused".into()),
            ..snap()
        });
        assert!(!r.ready);
        assert!(r.problems[0].contains("falling behind"), "{:?}", r.problems);
    }

    #[test]
    fn spool_only_ignores_lag() {
        let r = judge(Snapshot { max_lag: None, lag_seconds: 1e6, pending_records: 9, ..snap() });
        assert!(r.ready);
        assert_eq!(r.storage, "spool only");
    }
}

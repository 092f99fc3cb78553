//! A reading: one metric of one site at one instant — the unit every other
//! part of floodguard works on.
//!
//! Metric names carry their unit (`water_depth_cm`, `level_m`, `rain_mm`,
//! `pump1_running`); see DESIGN.md's InfluxDB schema. Telemetry is open: a
//! known site may send metrics floodguard has never heard of, and they are
//! stored like the others.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

/// Nanoseconds since the Unix epoch, UTC. InfluxDB's native precision.
pub type TimestampNs = i64;

/// The value of one metric: sensors send numbers and flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Always finite: the decoder refuses NaN and infinities.
    Float(f64),
    Bool(bool),
}

impl Value {
    /// The value as a number: `true` is 1, `false` is 0.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Float(v) => v,
            Value::Bool(b) => f64::from(u8::from(b)),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One metric of one site at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Site id from `sites.toml` (`CD-JS-01`); shared, as one message yields
    /// several readings of the same site.
    pub site: Arc<str>,
    /// Metric name with its unit (`water_depth_cm`).
    pub metric: Arc<str>,
    pub value: Value,
    /// The device's own timestamp when it sent one, else the receive time.
    pub ts: TimestampNs,
}

/// Metric name under which device status (`flood/{site}/status`) is recorded:
/// `true` when the device says `online`, `false` for `offline` (its last will).
pub const STATUS_METRIC: &str = "online";

/// Can `name` be a metric (an InfluxDB field key)? Not empty, at most 128
/// bytes, no control characters or backslashes, not `time`, and not starting
/// with `_` (InfluxDB 2 reserves those: `_field`, `_value`, `_time` …).
pub fn is_valid_metric(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "time"
        && !name.starts_with('_')
        && !name.chars().any(|c| c.is_control() || c == '\\')
}

/// Converts a UTC instant to nanoseconds since the epoch.
///
/// Instants outside 1677..2262 (the range of an `i64` of nanoseconds) saturate.
pub fn to_ns(t: DateTime<Utc>) -> TimestampNs {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// Converts nanoseconds since the epoch back to a UTC instant.
pub fn from_ns(ns: TimestampNs) -> DateTime<Utc> {
    Utc.timestamp_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 7, 21, 6, 5, 0).unwrap();
        assert_eq!(to_ns(t), 1_784_613_900_000_000_000);
        assert_eq!(from_ns(to_ns(t)), t);
    }

    #[test]
    fn metric_names() {
        for ok in ["water_depth_cm", "pump1_running", "水位", "a b", "a,b=c"] {
            assert!(is_valid_metric(ok), "{ok:?}");
        }
        for bad in ["", "time", "_value", "a\nb", "a\\b", &"m".repeat(129)] {
            assert!(!is_valid_metric(bad), "{bad:?}");
        }
    }

    #[test]
    fn bool_as_number() {
        assert_eq!(Value::Bool(true).as_f64(), 1.0);
        assert_eq!(Value::Bool(false).as_f64(), 0.0);
        assert_eq!(Value::Float(2.5).as_f64(), 2.5);
    }
}

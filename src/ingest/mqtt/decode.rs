//! Decoding MQTT messages into readings: a pure function of the topic, the
//! payload, the receive time and the configuration.
//!
//! Topics, in order:
//! 1. `[[mqtt.mappings]]`, first match wins: the site from a topic segment,
//!    the payload as JSON with field paths or as a bare number;
//! 2. `flood/{site}/telemetry`: a JSON object of metrics (numbers, booleans)
//!    with an optional `ts` (RFC 3339 or epoch ms);
//! 3. `flood/{site}/status`: `online` / `offline` (also a device's last will),
//!    recorded as the boolean metric `online`.
//!
//! Every way a message can be wrong is its own [`DecodeError`] variant with a
//! stable [`cause`](DecodeError::cause) that labels the metrics counter.

use std::fmt;
use std::sync::Arc;

use chrono::DateTime;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value as Json;

use super::mapping::{mapped_json, number_payload, Extract, Mapping};
use crate::catalog::{Catalog, SiteEntry};
use crate::coerce::{self, CoerceError, Raw};
use crate::config::MqttSection;
use crate::reading::{is_valid_metric, Reading, TimestampNs, Value, STATUS_METRIC};

/// Why a message was dropped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {size} bytes exceeds the {limit}-byte limit")]
    Oversize { size: usize, limit: usize },
    #[error("topic matches no telemetry, status or mapped topic")]
    UnknownTopic,
    #[error("unknown site {0:?}")]
    UnknownSite(String),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("payload {0:?} is not a number")]
    MalformedNumber(String),
    #[error("{field}: expected {expected}, found {found}")]
    WrongType { field: String, expected: &'static str, found: &'static str },
    /// A metric's value is not what its kind declares (a flag or a number).
    #[error("{field}: expected {expected}, found {found}")]
    BadValue { field: String, expected: &'static str, found: String },
    #[error("{0}: not a finite number")]
    NonFinite(String),
    #[error("invalid metric name {0:?}")]
    InvalidMetric(String),
    #[error("bad timestamp: {0}")]
    BadTimestamp(String),
    #[error("timestamp {ahead_s} s ahead of the receive time")]
    FutureTimestamp { ahead_s: i64 },
    #[error("no metrics in the message")]
    NoMetrics,
    #[error("status {0:?} is neither online nor offline")]
    BadStatus(String),
}

impl DecodeError {
    /// Every cause, for pre-registering the counters.
    pub const CAUSES: [&'static str; 12] = [
        "oversize",
        "unknown_topic",
        "unknown_site",
        "malformed_json",
        "malformed_number",
        "wrong_type",
        "non_finite",
        "invalid_metric",
        "bad_timestamp",
        "future_timestamp",
        "no_metrics",
        "bad_status",
    ];

    /// The label of this error in `floodguard_decode_errors_total{cause}`.
    pub fn cause(&self) -> &'static str {
        match self {
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::UnknownTopic => "unknown_topic",
            DecodeError::UnknownSite(_) => "unknown_site",
            DecodeError::MalformedJson(_) => "malformed_json",
            DecodeError::MalformedNumber(_) => "malformed_number",
            DecodeError::WrongType { .. } | DecodeError::BadValue { .. } => "wrong_type",
            DecodeError::NonFinite(_) => "non_finite",
            DecodeError::InvalidMetric(_) => "invalid_metric",
            DecodeError::BadTimestamp(_) => "bad_timestamp",
            DecodeError::FutureTimestamp { .. } => "future_timestamp",
            DecodeError::NoMetrics => "no_metrics",
            DecodeError::BadStatus(_) => "bad_status",
        }
    }
}

impl DecodeError {
    /// A value refused by its metric's type.
    pub fn from_coerce(field: &str, e: CoerceError) -> DecodeError {
        match e {
            CoerceError::NonFinite => DecodeError::NonFinite(field.to_string()),
            CoerceError::WrongType { expected, found } => {
                DecodeError::BadValue { field: truncate(field, 64), expected, found }
            }
        }
    }
}

/// One message's readings, and the fields left out of it (each counted
/// by its cause; the rest of the message is kept).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    pub skipped: Vec<DecodeError>,
}

impl std::ops::Deref for Decoded {
    type Target = [Reading];
    fn deref(&self) -> &[Reading] {
        &self.readings
    }
}

/// Device clocks that were never set report 1970; such readings would be
/// stored where nobody looks. Earlier than 2000-01-01 is refused.
const EARLIEST_TS: TimestampNs = 946_684_800_000_000_000;

/// Everything decoding depends on, fixed for one configuration.
#[derive(Debug, Clone)]
pub struct Decoder {
    catalog: Arc<Catalog>,
    mappings: Vec<Mapping>,
    default_topics: bool,
    max_payload: usize,
    max_future_ns: i64,
}

impl Decoder {
    pub fn new(catalog: Arc<Catalog>, mqtt: &MqttSection) -> Self {
        Decoder {
            catalog,
            mappings: mqtt.mappings.iter().map(Mapping::compile).collect(),
            default_topics: mqtt.default_topics,
            max_payload: mqtt.max_payload,
            max_future_ns: i64::try_from(mqtt.max_future.get().as_nanos()).unwrap_or(i64::MAX),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The MQTT topic filters to subscribe to.
    pub fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.mappings.iter().map(|m| m.filter.clone()).collect();
        if self.default_topics {
            f.push("flood/+/telemetry".into());
            f.push("flood/+/status".into());
        }
        f
    }

    /// Decodes one message received at `received_at` (ns since the epoch):
    /// its readings, with the fields left out and why; an error when
    /// nothing of it can be used.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: TimestampNs,
    ) -> Result<Decoded, DecodeError> {
        if payload.len() > self.max_payload {
            return Err(DecodeError::Oversize { size: payload.len(), limit: self.max_payload });
        }
        let mut skipped = Vec::new();
        let readings = if let Some(m) = self.mappings.iter().find(|m| rumqttc::matches(topic, &m.filter)) {
            let seg = topic.split('/').nth(m.site_segment).unwrap_or("");
            let site = self.entry(seg)?;
            match &m.extract {
                Extract::Number { metric, scale } => {
                    number_payload(payload, site, metric.clone(), *scale, received_at)?
                }
                Extract::Json { fields, ts_path } => {
                    mapped_json(payload, site, fields, ts_path.as_deref(), received_at, &mut skipped)?
                }
                Extract::Telemetry => telemetry(payload, site, received_at, &mut skipped)?,
                Extract::Status => status(payload, site.id.clone(), received_at)?,
            }
        } else {
            let mut parts = topic.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("flood"), Some(seg), Some("telemetry"), None) if self.default_topics => {
                    telemetry(payload, self.entry(seg)?, received_at, &mut skipped)?
                }
                (Some("flood"), Some(seg), Some("status"), None) if self.default_topics => {
                    status(payload, self.site(seg)?, received_at)?
                }
                _ => return Err(DecodeError::UnknownTopic),
            }
        };
        let readings = self.checked_with(readings, &mut skipped, received_at)?;
        Ok(Decoded { readings, skipped })
    }

    /// A telemetry object (`{"ts": …, "<metric>": …}`) of a known site, as
    /// other sources than MQTT send it (HTTP push).
    pub fn telemetry_object(
        &self,
        site: &str,
        payload: &[u8],
        received_at: TimestampNs,
    ) -> Result<Decoded, DecodeError> {
        if payload.len() > self.max_payload {
            return Err(DecodeError::Oversize { size: payload.len(), limit: self.max_payload });
        }
        let mut skipped = Vec::new();
        let readings = telemetry(payload, self.entry(site)?, received_at, &mut skipped)?;
        let readings = self.checked_with(readings, &mut skipped, received_at)?;
        Ok(Decoded { readings, skipped })
    }

    /// Like [`Decoder::checked`]; when no reading is left, the first field
    /// that was left out says why.
    fn checked_with(
        &self,
        readings: Vec<Reading>,
        skipped: &mut Vec<DecodeError>,
        received_at: TimestampNs,
    ) -> Result<Vec<Reading>, DecodeError> {
        if readings.is_empty() && !skipped.is_empty() {
            return Err(skipped.remove(0));
        }
        self.checked(readings, received_at)
    }

    /// One message's readings, refused when empty or when their shared
    /// timestamp is before 2000 or too far ahead of the receive time.
    pub fn checked(
        &self,
        readings: Vec<Reading>,
        received_at: TimestampNs,
    ) -> Result<Vec<Reading>, DecodeError> {
        if readings.is_empty() {
            return Err(DecodeError::NoMetrics);
        }
        // All readings of one message share their timestamp.
        let ts = readings[0].ts;
        if ts < EARLIEST_TS {
            return Err(DecodeError::BadTimestamp(format!("{ts} ns is before 2000 (device clock not set?)")));
        }
        if ts.saturating_sub(received_at) > self.max_future_ns {
            return Err(DecodeError::FutureTimestamp { ahead_s: (ts - received_at) / 1_000_000_000 });
        }
        Ok(readings)
    }

    /// The site of `sites.toml` with this id.
    pub fn site(&self, segment: &str) -> Result<Arc<str>, DecodeError> {
        self.entry(segment).map(|e| e.id.clone())
    }

    /// The catalogue's entry of the site with this id.
    pub fn entry(&self, segment: &str) -> Result<&SiteEntry, DecodeError> {
        self.catalog.get(segment).ok_or_else(|| DecodeError::UnknownSite(truncate(segment, 64)))
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub(super) fn json_error(e: serde_json::Error) -> DecodeError {
    let msg = e.to_string();
    // serde_json refuses 1e400 and the like rather than making them infinite.
    if msg.starts_with("number out of range") {
        DecodeError::NonFinite(msg)
    } else {
        DecodeError::MalformedJson(msg)
    }
}

pub(super) fn finite(field: &str, v: f64) -> Result<f64, DecodeError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DecodeError::NonFinite(field.to_string()))
    }
}

/// Multipliers to nanoseconds for an epoch number, told apart by magnitude:
/// seconds below 1e11 (year 5138), milliseconds below 1e14, microseconds
/// below 1e17, nanoseconds above.
fn epoch_scale(magnitude: f64) -> i64 {
    if magnitude < 1e11 {
        1_000_000_000
    } else if magnitude < 1e14 {
        1_000_000
    } else if magnitude < 1e17 {
        1_000
    } else {
        1
    }
}

/// An integer epoch timestamp, converted exactly.
fn timestamp_from_int(v: i64) -> Result<TimestampNs, DecodeError> {
    if v <= 0 {
        return Err(DecodeError::BadTimestamp(format!("{v}")));
    }
    v.checked_mul(epoch_scale(v as f64)).ok_or_else(|| DecodeError::BadTimestamp(format!("{v}")))
}

/// A fractional epoch timestamp (`1784613900.25` seconds).
fn timestamp_from_number(v: f64) -> Result<TimestampNs, DecodeError> {
    if !v.is_finite() || v <= 0.0 {
        return Err(DecodeError::BadTimestamp(format!("{v}")));
    }
    let ns = v * epoch_scale(v) as f64;
    if ns >= i64::MAX as f64 {
        return Err(DecodeError::BadTimestamp(format!("{v}")));
    }
    Ok(ns as i64)
}

pub(super) fn json_timestamp(n: &serde_json::Number) -> Result<TimestampNs, DecodeError> {
    match n.as_i64() {
        Some(i) => timestamp_from_int(i),
        None => timestamp_from_number(n.as_f64().unwrap_or(f64::NAN)),
    }
}

pub(super) fn timestamp_from_str(s: &str) -> Result<TimestampNs, DecodeError> {
    let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
        DecodeError::BadTimestamp(format!("{:?}: {e} (use RFC 3339 with an offset)", truncate(s, 40)))
    })?;
    t.timestamp_nanos_opt().ok_or_else(|| DecodeError::BadTimestamp(truncate(s, 40)))
}

// ── flood/{site}/telemetry ──────────────────────────────────────────────────

/// One value of the telemetry object, as seen by the streaming visitor.
enum Item {
    Int(i64),
    Num(f64),
    Bool(bool),
    Str(String),
    Other(&'static str),
}

impl<'de> de::Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Item, E> {
                Ok(Item::Bool(b))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Item, E> {
                Ok(Item::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Item, E> {
                Ok(i64::try_from(v).map_or(Item::Num(v as f64), Item::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Item, E> {
                Ok(Item::Num(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Str(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Item, E> {
                Ok(Item::Other("null"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Item, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Item, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Item::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Item {
    fn found(&self) -> &'static str {
        match self {
            Item::Int(_) | Item::Num(_) => "a number",
            Item::Bool(_) => "a boolean",
            Item::Str(_) => "a string",
            Item::Other(what) => what,
        }
    }
}

/// The telemetry object, read in one pass with no intermediate tree.
struct Telemetry {
    ts: Option<Result<TimestampNs, DecodeError>>,
    metrics: Vec<(String, Item)>,
}

impl<'de> de::Deserialize<'de> for Telemetry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Telemetry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of metrics")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Telemetry, A::Error> {
                let mut t = Telemetry { ts: None, metrics: Vec::with_capacity(4) };
                while let Some(key) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    let item: Item = a.next_value()?;
                    if key == "ts" {
                        t.ts = Some(match item {
                            Item::Int(v) => timestamp_from_int(v),
                            Item::Num(v) => timestamp_from_number(v),
                            Item::Str(s) => timestamp_from_str(&s),
                            other => Err(DecodeError::WrongType {
                                field: "ts".into(),
                                expected: "RFC 3339 text or epoch milliseconds",
                                found: other.found(),
                            }),
                        });
                    } else {
                        t.metrics.push((key.into_owned(), item));
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

/// The telemetry object of `site`; each field whose name or value is not
/// right goes to `skipped`, the others are kept.
fn telemetry(
    payload: &[u8],
    site: &SiteEntry,
    received_at: TimestampNs,
    skipped: &mut Vec<DecodeError>,
) -> Result<Vec<Reading>, DecodeError> {
    let t: Telemetry = match serde_json::from_slice(payload) {
        Ok(t) => t,
        Err(e) if e.is_data() => {
            // Valid JSON, but not an object.
            let found = match serde_json::from_slice::<Json>(payload) {
                Ok(Json::Array(_)) => "an array",
                Ok(Json::Number(_)) => "a number",
                Ok(Json::String(_)) => "a string",
                Ok(Json::Bool(_)) => "a boolean",
                Ok(Json::Null) => "null",
                _ => return Err(json_error(e)),
            };
            return Err(DecodeError::WrongType { field: "payload".into(), expected: "a JSON object", found });
        }
        Err(e) => return Err(json_error(e)),
    };
    let ts = t.ts.transpose()?.unwrap_or(received_at);
    let mut out: Vec<Reading> = Vec::with_capacity(t.metrics.len());
    for (name, item) in t.metrics {
        if !is_valid_metric(&name) {
            skipped.push(DecodeError::InvalidMetric(truncate(&name, 64)));
            continue;
        }
        let raw = match &item {
            Item::Int(v) => Raw::Number(*v as f64),
            Item::Num(v) => Raw::Number(*v),
            Item::Bool(b) => Raw::Bool(*b),
            Item::Str(s) => Raw::Text(s),
            other => {
                skipped.push(DecodeError::WrongType {
                    field: truncate(&name, 64),
                    expected: "a number or a boolean",
                    found: other.found(),
                });
                continue;
            }
        };
        match coerce::coerce(site.metric_type(&name), raw) {
            Ok(value) => {
                push_dedup(&mut out, Reading { site: site.id.clone(), metric: Arc::from(name), value, ts })
            }
            Err(e) => skipped.push(DecodeError::from_coerce(&name, e)),
        }
    }
    Ok(out)
}

/// A metric repeated in one message: the last value wins, as in a JSON object.
pub(super) fn push_dedup(out: &mut Vec<Reading>, r: Reading) {
    match out.iter_mut().find(|x| x.metric == r.metric) {
        Some(x) => *x = r,
        None => out.push(r),
    }
}

// ── flood/{site}/status ─────────────────────────────────────────────────────

fn status(payload: &[u8], site: Arc<str>, received_at: TimestampNs) -> Result<Vec<Reading>, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError::BadStatus("<not UTF-8>".into()))?;
    let trimmed = text.trim();
    let (word, ts) = if trimmed.starts_with('{') {
        let v: Json = serde_json::from_str(trimmed).map_err(json_error)?;
        let word = v.get("status").and_then(Json::as_str).unwrap_or("").to_string();
        let ts = match v.get("ts") {
            None => received_at,
            Some(Json::String(s)) => timestamp_from_str(s)?,
            Some(Json::Number(n)) => json_timestamp(n)?,
            Some(_) => return Err(DecodeError::BadTimestamp("ts must be text or a number".into())),
        };
        (word, ts)
    } else {
        (trimmed.trim_matches('"').to_string(), received_at)
    };
    let online = match word.to_ascii_lowercase().as_str() {
        "online" | "1" | "true" => true,
        "offline" | "0" | "false" => false,
        _ => return Err(DecodeError::BadStatus(truncate(&word, 32))),
    };
    Ok(vec![Reading { site, metric: Arc::from(STATUS_METRIC), value: Value::Bool(online), ts }])
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;

//! HTTP push, the pure part: request bodies decoded into readings, each bad
//! line or item named with its cause while the good ones are kept — as
//! InfluxDB answers a partial write.
//!
//! - line protocol (`POST /write`, `POST /api/v2/write`): measurement
//!   `telemetry`, tag `site` (other tags ignored: kind and street come from
//!   sites.toml), fields as the metric holds them (`crate::coerce`: numbers
//!   and numeric strings; flags as booleans, 1/0, `"on"`/`"off"` …; a bad
//!   field is named and the line's others kept) —
//!   and a timestamp in the request's precision (none: the receive time);
//! - JSON (`POST /api/v1/readings`): floodguard's MQTT telemetry object with
//!   a `site` field, or an array of them.
//!
//! Each line (each object) is one message: one site at one instant, one
//! spool record. The handlers in `http::push` do the I/O.

use std::sync::Arc;

use super::mqtt::decode::{self, DecodeError, Decoder};
use crate::catalog::SiteEntry;
use crate::coerce::{self, Raw};
use crate::reading::{is_valid_metric, Reading, TimestampNs, Value};
use crate::tsdb::line_parse::{parse_line, FieldValue};

/// The unit of line-protocol timestamps (`precision=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
    M,
    H,
}

impl Precision {
    /// InfluxDB 1.x names (`n`, `u`, `ms`, `s`, `m`, `h`) and 2.x names
    /// (`ns`, `us`, `ms`, `s`); absent is nanoseconds.
    pub fn parse(s: Option<&str>) -> Result<Precision, String> {
        Ok(match s.unwrap_or("ns") {
            "" | "n" | "ns" => Precision::Ns,
            "u" | "us" | "µ" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            "m" => Precision::M,
            "h" => Precision::H,
            other => return Err(format!("precision {other:?} is not one of ns, us, ms, s, m, h")),
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        }
    }
}

/// A line (or JSON item) left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Line number from 1 (line protocol), or item index from 0 (JSON).
    pub at: usize,
    /// Stable cause, the label of `floodguard_push_rejected_total`.
    pub cause: &'static str,
    pub error: String,
}

/// What a body gave.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One group of readings per good line or item.
    pub messages: Vec<Vec<Reading>>,
    pub rejected: Vec<Rejected>,
}

/// Causes of a rejected line or item besides the decoder's.
pub const CAUSES: [&str; 4] = ["malformed_line", "unknown_measurement", "missing_site", "malformed_json"];

/// Every cause a rejected line or item may carry, for the counters.
pub fn all_causes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = CAUSES.to_vec();
    v.extend(DecodeError::CAUSES.iter().copied().filter(|c| !CAUSES.contains(c)));
    v
}

/// The measurement pushed readings are written to.
const MEASUREMENT: &str = "telemetry";

fn reject(at: usize, e: DecodeError) -> Rejected {
    Rejected { at, cause: e.cause(), error: e.to_string() }
}

/// A field as a reading's value, as its metric holds it: numbers and
/// booleans, and what devices send for them as text (`crate::coerce`).
fn coerce(site: &SiteEntry, name: &str, v: &FieldValue) -> Result<Value, DecodeError> {
    let raw = match v {
        FieldValue::Float(x) => Raw::Number(*x),
        FieldValue::Int(i) => Raw::Number(*i as f64),
        FieldValue::UInt(u) => Raw::Number(*u as f64),
        FieldValue::Bool(b) => Raw::Bool(*b),
        FieldValue::Str(s) => Raw::Text(s),
    };
    coerce::coerce(site.metric_type(name), raw).map_err(|e| DecodeError::from_coerce(name, e))
}

/// A line's readings, and its fields left out (named).
type Line = (Vec<Reading>, Vec<Rejected>);

/// One line of line protocol as one message, with the fields left out of it.
fn line(
    decoder: &Decoder,
    text: &str,
    precision: Precision,
    received_at: TimestampNs,
) -> Result<Option<Line>, Rejected> {
    let at = 0;
    let l = match parse_line(text) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Rejected { at, cause: "malformed_line", error: e }),
    };
    if l.measurement != MEASUREMENT {
        return Err(Rejected {
            at,
            cause: "unknown_measurement",
            error: format!("measurement {:?} is not {MEASUREMENT:?}", truncate(&l.measurement)),
        });
    }
    let Some(site) = l.tag("site") else {
        return Err(Rejected { at, cause: "missing_site", error: "no site tag".into() });
    };
    let entry = decoder.entry(site).map_err(|e| reject(at, e))?;
    let ts = match l.ts {
        None => received_at,
        Some(t) => t.checked_mul(precision.nanos()).ok_or_else(|| {
            reject(at, DecodeError::BadTimestamp(format!("{t} is out of range at precision {precision:?}")))
        })?,
    };
    let mut readings: Vec<Reading> = Vec::with_capacity(l.fields.len());
    let mut skipped: Vec<Rejected> = Vec::new();
    for (name, v) in &l.fields {
        if !is_valid_metric(name) {
            skipped.push(reject(at, DecodeError::InvalidMetric(truncate(name))));
            continue;
        }
        let value = match coerce(entry, name, v) {
            Ok(v) => v,
            Err(e) => {
                skipped.push(reject(at, e));
                continue;
            }
        };
        let r = Reading { site: entry.id.clone(), metric: Arc::from(&**name), value, ts };
        // A field repeated in a line: the last one wins, as in InfluxDB.
        match readings.iter_mut().find(|x| x.metric == r.metric) {
            Some(x) => *x = r,
            None => readings.push(r),
        }
    }
    if readings.is_empty() && !skipped.is_empty() {
        return Err(skipped.remove(0));
    }
    let readings = decoder.checked(readings, received_at).map_err(|e| reject(at, e))?;
    Ok(Some((readings, skipped)))
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A line-protocol body: every good line a message, every bad one named by
/// its number (from 1).
pub fn line_protocol(
    decoder: &Decoder,
    body: &str,
    precision: Precision,
    received_at: TimestampNs,
) -> Decoded {
    let mut out = Decoded::default();
    for (i, text) in body.split('\n').enumerate() {
        match line(decoder, text, precision, received_at) {
            Ok(Some((m, skipped))) => {
                out.messages.push(m);
                // The line's good fields are kept; each bad one is named.
                for mut r in skipped {
                    r.at = i + 1;
                    out.rejected.push(r);
                }
            }
            Ok(None) => {}
            Err(mut r) => {
                r.at = i + 1;
                out.rejected.push(r);
            }
        }
    }
    out
}

/// A JSON body: one telemetry object with `site`, or an array of them
/// (items named by their index from 0). Err: the body is not JSON at all.
pub fn json(decoder: &Decoder, body: &[u8], received_at: TimestampNs) -> Result<Decoded, Rejected> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| Rejected {
        at: 0,
        cause: "malformed_json",
        error: e.to_string(),
    })?;
    let items = match v {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let mut out = Decoded::default();
    for (at, item) in items.into_iter().enumerate() {
        match json_item(decoder, item, received_at) {
            Ok(d) => {
                out.messages.push(d.readings);
                for e in d.skipped {
                    out.rejected.push(reject(at, e));
                }
            }
            Err(e) => out.rejected.push(Rejected { at, ..e }),
        }
    }
    Ok(out)
}

fn json_item(
    decoder: &Decoder,
    item: serde_json::Value,
    received_at: TimestampNs,
) -> Result<decode::Decoded, Rejected> {
    let serde_json::Value::Object(mut map) = item else {
        return Err(reject(
            0,
            DecodeError::WrongType {
                field: "item".into(),
                expected: "a JSON object",
                found: json_kind(&item),
            },
        ));
    };
    let site = match map.remove("site") {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => {
            return Err(reject(
                0,
                DecodeError::WrongType {
                    field: "site".into(),
                    expected: "a string",
                    found: json_kind(&other),
                },
            ))
        }
        None => return Err(Rejected { at: 0, cause: "missing_site", error: "no site field".into() }),
    };
    decoder.entry(&site).map_err(|e| reject(0, e))?;
    let payload = serde_json::to_vec(&map).expect("a JSON map serializes");
    decoder.telemetry_object(&site, &payload, received_at).map_err(|e| reject(0, e))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;

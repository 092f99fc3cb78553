//! Topic mappings (`[[mqtt.mappings]]`): devices that publish elsewhere, or
//! a bare number, or JSON of their own shape, mapped onto readings.

use std::sync::Arc;

use serde_json::Value as Json;

use super::decode::{
    finite, json_error, json_timestamp, push_dedup, timestamp_from_str, truncate, DecodeError,
};
use crate::config::{MappingConfig, PayloadFormat};
use crate::reading::{Reading, TimestampNs, Value};

#[derive(Debug, Clone)]
pub(super) enum Extract {
    Number { metric: Arc<str>, scale: f64 },
    Json { fields: Vec<(Vec<String>, Arc<str>, f64)>, ts_path: Option<Vec<String>> },
    Telemetry,
    Status,
}

#[derive(Debug, Clone)]
pub(super) struct Mapping {
    pub filter: String,
    pub site_segment: usize,
    pub extract: Extract,
}

impl Mapping {
    pub fn compile(m: &MappingConfig) -> Self {
        let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        let extract = match m.payload {
            PayloadFormat::Number => Extract::Number {
                metric: Arc::from(m.metric.as_deref().unwrap_or_default()),
                scale: m.scale.unwrap_or(1.0),
            },
            PayloadFormat::Json => Extract::Json {
                fields: m
                    .fields
                    .iter()
                    .map(|f| (path(&f.path), Arc::from(f.metric.as_str()), f.scale))
                    .collect(),
                ts_path: m.ts_path.as_deref().map(path),
            },
            PayloadFormat::Telemetry => Extract::Telemetry,
            PayloadFormat::Status => Extract::Status,
        };
        Mapping { filter: m.filter.clone(), site_segment: m.site_segment, extract }
    }
}

pub(super) fn number_payload(
    payload: &[u8],
    site: Arc<str>,
    metric: Arc<str>,
    scale: f64,
    received_at: TimestampNs,
) -> Result<Vec<Reading>, DecodeError> {
    let text =
        std::str::from_utf8(payload).map_err(|_| DecodeError::MalformedNumber("<not UTF-8>".into()))?;
    let v: f64 = text.trim().parse().map_err(|_| DecodeError::MalformedNumber(truncate(text.trim(), 32)))?;
    let v = finite(&metric, finite(&metric, v)? * scale)?;
    Ok(vec![Reading { site, metric, value: Value::Float(v), ts: received_at }])
}

fn lookup<'j>(root: &'j Json, path: &[String]) -> Option<&'j Json> {
    path.iter().try_fold(root, |v, seg| match v {
        Json::Object(m) => m.get(seg),
        Json::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

pub(super) fn mapped_json(
    payload: &[u8],
    site: Arc<str>,
    fields: &[(Vec<String>, Arc<str>, f64)],
    ts_path: Option<&[String]>,
    received_at: TimestampNs,
) -> Result<Vec<Reading>, DecodeError> {
    let root: Json = serde_json::from_slice(payload).map_err(json_error)?;
    let ts = match ts_path.and_then(|p| lookup(&root, p)) {
        None => received_at,
        Some(Json::String(s)) => timestamp_from_str(s)?,
        Some(Json::Number(n)) => json_timestamp(n)?,
        Some(_) => return Err(DecodeError::BadTimestamp("the timestamp must be text or a number".into())),
    };
    let mut out = Vec::with_capacity(fields.len());
    for (path, metric, scale) in fields {
        // A device may leave a field out of one message: that is not an error.
        let Some(v) = lookup(&root, path) else {
            continue;
        };
        let value = match v {
            Json::Number(n) => Value::Float(finite(metric, n.as_f64().unwrap_or(f64::NAN) * scale)?),
            Json::Bool(b) => Value::Bool(*b),
            // Gateways often send numbers as text.
            Json::String(s) => match s.trim().parse::<f64>() {
                Ok(x) => Value::Float(finite(metric, finite(metric, x)? * scale)?),
                Err(_) => {
                    return Err(DecodeError::WrongType {
                        field: path.join("."),
                        expected: "a number or a boolean",
                        found: "a string",
                    })
                }
            },
            Json::Null => continue,
            Json::Array(_) | Json::Object(_) => {
                return Err(DecodeError::WrongType {
                    field: path.join("."),
                    expected: "a number or a boolean",
                    found: if v.is_array() { "an array" } else { "an object" },
                })
            }
        };
        push_dedup(&mut out, Reading { site: site.clone(), metric: metric.clone(), value, ts });
    }
    Ok(out)
}

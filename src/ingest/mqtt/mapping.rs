//! Topic mappings (`[[mqtt.mappings]]`): devices that publish elsewhere, or
//! a bare number, or JSON of their own shape, mapped onto readings.

use std::sync::Arc;

use serde_json::Value as Json;

use super::decode::{
    finite, json_error, json_timestamp, push_dedup, timestamp_from_str, truncate, DecodeError,
};
use crate::catalog::SiteEntry;
use crate::coerce::{self, Raw};
use crate::config::{MappingConfig, PayloadFormat};
use crate::reading::{Reading, TimestampNs};

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

/// A bare number (or, for a flag metric, a flag word) as the payload.
pub(super) fn number_payload(
    payload: &[u8],
    site: &SiteEntry,
    metric: Arc<str>,
    scale: f64,
    received_at: TimestampNs,
) -> Result<Vec<Reading>, DecodeError> {
    let text =
        std::str::from_utf8(payload).map_err(|_| DecodeError::MalformedNumber("<not UTF-8>".into()))?;
    let ty = site.metric_type(&metric);
    let value = match text.trim().parse::<f64>() {
        Ok(v) => {
            let v = finite(&metric, finite(&metric, v)? * scale)?;
            coerce::number(ty, v).map_err(|e| DecodeError::from_coerce(&metric, e))?
        }
        // A flag metric's payload may be "on"/"off", "true"/"false".
        Err(_) if ty == Some(coerce::MetricType::Flag) => {
            coerce::coerce(ty, Raw::Text(text)).map_err(|e| DecodeError::from_coerce(&metric, e))?
        }
        Err(_) => return Err(DecodeError::MalformedNumber(truncate(text.trim(), 32))),
    };
    Ok(vec![Reading { site: site.id.clone(), metric, value, ts: received_at }])
}

fn lookup<'j>(root: &'j Json, path: &[String]) -> Option<&'j Json> {
    path.iter().try_fold(root, |v, seg| match v {
        Json::Object(m) => m.get(seg),
        Json::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Fields of a JSON payload by path; a field whose value is not right goes
/// to `skipped`, the others are kept.
pub(super) fn mapped_json(
    payload: &[u8],
    site: &SiteEntry,
    fields: &[(Vec<String>, Arc<str>, f64)],
    ts_path: Option<&[String]>,
    received_at: TimestampNs,
    skipped: &mut Vec<DecodeError>,
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
        let ty = site.metric_type(metric);
        let value = match v {
            // The scale applies to numbers, not to flags.
            Json::Number(n) => match finite(metric, n.as_f64().unwrap_or(f64::NAN)) {
                Ok(x) if ty == Some(coerce::MetricType::Flag) => coerce::number(ty, x),
                Ok(x) => coerce::number(ty, x * scale),
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            },
            Json::Bool(b) => coerce::flag(ty, *b),
            // Gateways often send numbers and flags as text.
            Json::String(s) => match (ty, s.trim().parse::<f64>()) {
                (Some(coerce::MetricType::Flag), _) | (_, Err(_)) => coerce::coerce(ty, Raw::Text(s)),
                (_, Ok(x)) => coerce::coerce(ty, Raw::Number(x * scale)),
            },
            Json::Null => continue,
            Json::Array(_) | Json::Object(_) => {
                skipped.push(DecodeError::WrongType {
                    field: path.join("."),
                    expected: "a number or a boolean",
                    found: if v.is_array() { "an array" } else { "an object" },
                });
                continue;
            }
        };
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                skipped.push(DecodeError::from_coerce(&path.join("."), e));
                continue;
            }
        };
        push_dedup(&mut out, Reading { site: site.id.clone(), metric: metric.clone(), value, ts });
    }
    Ok(out)
}

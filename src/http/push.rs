//! HTTP push: floodguard as an InfluxDB write endpoint and a JSON readings
//! endpoint, so Telegraf's InfluxDB outputs, IoT platforms and 4G devices
//! can push to it.
//!
//! - `POST /write?db=&precision=` (InfluxDB 1.x) and
//!   `POST /api/v2/write?org=&bucket=&precision=` (2.x): line protocol,
//!   `Content-Encoding: gzip` or plain; `db`, `org`, `bucket` are accepted
//!   and ignored (floodguard has one destination);
//! - `POST /api/v1/readings`: a telemetry object with `site`, or an array;
//! - `GET /ping`: 204, as InfluxDB answers, for clients that check first.
//!
//! Auth: the ingest token (`http.ingest_token`, not the API token) as
//! `Authorization: Token …` or `Bearer …`, as the password of basic auth,
//! or as the `p` query parameter — the ways InfluxDB clients send it.
//!
//! The answer comes once the readings are in the spool: 204 means durable.
//! Bad lines are listed in a 400 (line number, cause, error) while the good
//! lines of the same request are kept, as InfluxDB does for a partial
//! write; senders that retry a 400 would only be refused again. While the
//! outlet's queue is full the answer waits: backpressure reaches the sender.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::config::Secret;
use crate::ingest::mqtt::Decoder;
use crate::ingest::push::{self, Decoded, Precision, Rejected};
use crate::ingest::Intake;
use crate::outlet::Confirm;

/// Messages handed to the outlet per submission at most.
const GROUP: usize = 1000;
/// Rejected lines listed in a 400 at most (all are counted).
const LISTED: usize = 100;

/// What the push endpoints need.
pub struct Push {
    pub intake: Intake,
    /// The decoder of the running configuration (its catalogue of sites).
    pub decoder: Arc<RwLock<Arc<Decoder>>>,
    pub token: Secret,
    /// Largest body, compressed and decompressed.
    pub max_body: usize,
}

/// The way readings were pushed.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    LineProtocol,
    Json,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    // `error` for InfluxDB 1.x clients and floodguard's API shape, `code` and
    // `message` for 2.x clients.
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::PAYLOAD_TOO_LARGE => "request too large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "invalid",
    };
    (status, Json(json!({ "error": msg, "code": code, "message": msg, "detail": null }))).into_response()
}

/// The ingest token, however the client sent it.
fn authorize(p: &Push, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<(), Response> {
    let expected = p.token.expose().as_bytes();
    if expected.is_empty() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "push endpoints are off: set http.ingest_token (FLOODGUARD__HTTP__INGEST_TOKEN)",
        ));
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let given: Option<String> =
        if let Some(t) = auth.strip_prefix("Token ").or_else(|| auth.strip_prefix("Bearer ")) {
            Some(t.trim().to_string())
        } else if let Some(b) = auth.strip_prefix("Basic ") {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|userpass| userpass.split_once(':').map(|(_, pass)| pass.to_string()))
        } else {
            query.get("p").cloned()
        };
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(expected)) => Ok(()),
        _ => Err(error(StatusCode::UNAUTHORIZED, "missing or wrong ingest token")),
    }
}

/// The body as sent, un-gzipped when it says so, within the limit.
fn body_text(headers: &HeaderMap, body: &Bytes, limit: usize) -> Result<Vec<u8>, Response> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(&body[..]).take(limit as u64 + 1);
            d.read_to_end(&mut out)
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the gzip body cannot be read: {e}")))?;
            if out.len() > limit {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {limit} bytes once decompressed (http.max_push_body)"),
                ));
            }
            Ok(out)
        }
        other => {
            Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("content encoding {other:?} is not gzip")))
        }
    }
}

/// Told by the outlet that a submission is spooled.
struct Spooled(tokio::sync::oneshot::Sender<()>);

impl Confirm for Spooled {
    fn confirm(self: Box<Self>) {
        let _ = self.0.send(());
    }
}

async fn handle(
    s: AppState,
    format: Format,
    path: &str,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = receive(&s, format, path, &query, &headers, &body).await;
    s.metrics.push_requests.with_label_values(&[response.status().as_str()]).inc();
    response
}

async fn receive(
    s: &AppState,
    format: Format,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(p) = s.push.clone() else {
        return error(StatusCode::NOT_FOUND, "push endpoints are not available");
    };
    if let Err(r) = authorize(&p, headers, query) {
        return r;
    }
    let precision = match Precision::parse(query.get("precision").map(String::as_str)) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let raw = match body_text(headers, body, p.max_body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let decoder = p.decoder.read().expect("decoder lock").clone();
    let catalog = decoder.catalog().clone();
    let received_at = s.clock.now();
    // Parsing megabytes of text is CPU work: off the async workers.
    let decoded = super::blocking(move || -> Result<Decoded, Rejected> {
        match format {
            Format::Json => push::json(&decoder, &raw, received_at),
            Format::LineProtocol => match std::str::from_utf8(&raw) {
                Ok(text) => Ok(push::line_protocol(&decoder, text, precision, received_at)),
                Err(e) => Err(Rejected {
                    at: 0,
                    cause: "malformed_line",
                    error: format!("the body is not UTF-8: {e}"),
                }),
            },
        }
    })
    .await;
    let decoded = match decoded {
        Ok(d) => d,
        Err(r) => {
            s.metrics.push_rejected.with_label_values(&[r.cause]).inc();
            return error(StatusCode::BAD_REQUEST, r.error);
        }
    };
    for r in &decoded.rejected {
        s.metrics.push_rejected.with_label_values(&[r.cause]).inc();
    }
    let accepted = decoded.messages.len();
    let now_ms = chrono::Utc::now().timestamp_millis();
    for m in &decoded.messages {
        p.intake.seen(&m[0].site, &format!("POST {path}"), now_ms);
    }
    let mut waits = Vec::new();
    let mut messages = decoded.messages;
    while !messages.is_empty() {
        let rest = messages.split_off(messages.len().min(GROUP));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now_ms = chrono::Utc::now().timestamp_millis();
        if p.intake.submit(catalog.clone(), messages, Box::new(Spooled(tx)), now_ms).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "floodguard is stopping; send again");
        }
        waits.push(rx);
        messages = rest;
    }
    for rx in waits {
        if rx.await.is_err() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "floodguard stopped before the readings were spooled; send again",
            );
        }
    }
    if decoded.rejected.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let key = if format == Format::Json { "index" } else { "line" };
    let listed: Vec<serde_json::Value> = decoded
        .rejected
        .iter()
        .take(LISTED)
        .map(|r| json!({ key: r.at, "cause": r.cause, "error": r.error }))
        .collect();
    let first = &decoded.rejected[0];
    let msg = format!(
        "partial write: {} of {} rejected ({key} {}: {}); the other {accepted} are stored",
        decoded.rejected.len(),
        decoded.rejected.len() + accepted,
        first.at,
        first.error
    );
    let detail = json!({ "accepted": accepted, "rejected": decoded.rejected.len(), "errors": listed });
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg, "code": "invalid", "message": msg, "detail": detail })),
    )
        .into_response()
}

/// `POST /write` (InfluxDB 1.x).
pub async fn write_v1(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(s, Format::LineProtocol, "/write", q, headers, body).await
}

/// `POST /api/v2/write` (InfluxDB 2.x).
pub async fn write_v2(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(s, Format::LineProtocol, "/api/v2/write", q, headers, body).await
}

/// Push readings: a telemetry object with `site` (`{"site": "CD-JS-01",
/// "ts": 1784613840000, "water_depth_cm": 12.5}`) or an array of them.
/// Auth: the ingest token (`Authorization: Token …` or `Bearer …`). 204 once
/// spooled; 400 lists the bad items (`detail.errors[].index`, `cause`) while
/// the good ones are kept.
#[utoipa::path(post, path = "/api/v1/readings", request_body = serde_json::Value,
    responses((status = 204), (status = 400), (status = 401), (status = 413)), security(("ingest" = [])))]
pub async fn readings(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(s, Format::Json, "/api/v1/readings", q, headers, body).await
}

/// `GET /ping`: InfluxDB's liveness answer.
pub async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("X-Influxdb-Version", "floodguard")]).into_response()
}

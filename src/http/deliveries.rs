//! What became of an alert's messages, and what providers report back:
//! `GET /api/v1/alerts/{id}/deliveries` (who was told on which channel,
//! whether it reached them, who acknowledged, how long each step took) and
//! `POST /callbacks/tencent-voice/{token}` (Tencent VMS's call results,
//! the path's secret token standing in for the signature Tencent does not
//! send).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::api::{authorize, ApiError};
use super::{blocking, AppState};
use crate::alerts::OpError;
use crate::engine::rfc3339;
use crate::notify::{classify, trail};

/// The trail of an alert's messages. Names recipients, so it needs the
/// bearer token.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/deliveries",
    responses((status = 200), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn deliveries(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let (Some(manager), Some(outbox)) = (s.alerts.clone(), s.outbox.clone()) else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "nothing is sent here"));
    };
    let tz = s.live.timezone;
    let (alert, rows) = blocking(move || (manager.alert(id), outbox.deliveries(&[id]))).await;
    let alert = alert?.ok_or(OpError::NoAlert(id))?;
    let steps = trail::steps(alert.started_at, &rows);
    let t = |x: Option<i64>| x.map(|x| rfc3339(x, tz));
    Ok(Json(json!({
        "alert": alert.id,
        "started_at": rfc3339(alert.started_at, tz),
        "acked_at": t(alert.acked_at),
        "acked_by": alert.acked_by,
        "acked_after_s": alert.acked_at.map(|a| (a - alert.started_at) as f64 / 1e9),
        "disposed_at": t(alert.disposed_at),
        "disposed_by": alert.disposed_by,
        "steps": steps,
    }))
    .into_response())
}

/// Tencent VMS's status callback (`{"voiceprompt_callback": {...}}`),
/// configured in Tencent's console as
/// `https://<host>/callbacks/tencent-voice/<channels.voice.callback_token>`.
pub async fn tencent_voice(State(s): State<AppState>, Path(token): Path<String>, body: Bytes) -> Response {
    let Some(outbox) = s.outbox.clone() else { return StatusCode::NOT_FOUND.into_response() };
    let expected = outbox.callback_token().unwrap_or_default();
    if expected.is_empty() || !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let Some((call_id, receipt, note)) = classify::tencent_voice_callback(&text) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"result": 1, "errmsg": "not a voiceprompt_callback"})))
            .into_response();
    };
    let known = blocking(move || outbox.call_result(&call_id, receipt, &note)).await;
    if !known {
        tracing::info!("a call result for a call not waiting here");
    }
    Json(json!({"result": 0, "errmsg": "OK"})).into_response()
}

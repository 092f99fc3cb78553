//! `/api/v1/alerts` and `/api/v1/silences`: the alerts with their timelines,
//! acknowledge and dispose, maintenance windows.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::api::{authorize, ApiError};
use super::{blocking, AppState};
use crate::alerts::model::{Alert, Matchers, Silence};
use crate::alerts::{AlertManager, OpError};
use crate::engine::rfc3339;
use crate::level::Level;
use crate::reading::TimestampNs;

/// One timeline entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// RFC 3339 with offset.
    pub ts: String,
    pub event: String,
    pub level: Option<Level>,
    pub by: Option<String>,
    pub note: Option<String>,
}

/// An alert as the API shows it (DESIGN.md's shape, with more fields).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub id: i64,
    /// site, offline, street or district.
    pub kind: String,
    pub site: String,
    pub site_name: String,
    pub street: String,
    pub rule: String,
    pub rule_name: String,
    pub level: Option<Level>,
    pub peak_level: Option<Level>,
    /// pending, firing, acked, disposed or resolved.
    pub state: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: String,
    /// The value when the episode reached its highest level (the report's
    /// 峰值 column); the highest reading is in the event report.
    pub peak_value: Option<f64>,
    pub started_at: String,
    pub acked_at: Option<String>,
    pub acked_by: Option<String>,
    pub disposed_at: Option<String>,
    pub disposed_by: Option<String>,
    pub resolved_at: Option<String>,
    pub timeline: Vec<EventView>,
    /// While active with a plan card naming materials: the nearest depots
    /// that hold them, with their keepers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supply: Vec<crate::materials::Supply>,
}

impl AlertView {
    pub fn new(a: &Alert, tz: chrono_tz::Tz) -> Self {
        let t = |x: Option<TimestampNs>| x.map(|x| rfc3339(x, tz));
        AlertView {
            id: a.id,
            kind: a.kind.map_or("site", |k| k.as_str()).to_string(),
            site: a.site.clone(),
            site_name: a.site_name.clone(),
            street: a.street.clone(),
            rule: a.rule.clone(),
            rule_name: a.rule_name.clone(),
            level: a.level,
            peak_level: a.peak_level,
            state: a.state.as_str().to_string(),
            value: a.value,
            threshold: a.threshold,
            unit: a.unit.clone(),
            peak_value: a.peak_value,
            started_at: rfc3339(a.started_at, tz),
            acked_at: t(a.acked_at),
            acked_by: a.acked_by.clone(),
            disposed_at: t(a.disposed_at),
            disposed_by: a.disposed_by.clone(),
            resolved_at: t(a.resolved_at),
            timeline: a
                .timeline
                .iter()
                .map(|e| EventView {
                    ts: rfc3339(e.ts, tz),
                    event: e.event.clone(),
                    level: e.level,
                    by: e.by.clone(),
                    note: e.note.clone(),
                })
                .collect(),
            supply: Vec::new(),
        }
    }

    /// With the nearest depots for the card's materials, while active.
    fn supplied(mut self, m: &AlertManager, a: &Alert) -> Self {
        if a.is_active() {
            self.supply = m.supply_for(&a.site, a.card.as_deref());
        }
        self
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AlertQuery {
    /// `active` (default) or `all` (the latest `limit`).
    pub state: Option<String>,
    /// With `state=all`: how many of the latest (default 1000, at most 100000).
    pub limit: Option<usize>,
}

/// `{"by": "张队长", "note": "已到场"}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    /// Who acts (recorded in the timeline and the report).
    pub by: String,
    /// For dispose: what was done (required).
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceView {
    pub id: i64,
    pub matchers: Matchers,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
    /// From teams.toml; ends by editing the file.
    pub from_config: bool,
    /// Stored matchers that cannot be read: it silences nothing (fails
    /// closed); delete it and add it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}

impl SilenceView {
    fn new(s: &Silence, tz: chrono_tz::Tz) -> Self {
        SilenceView {
            id: s.id,
            matchers: s.matchers.clone(),
            starts_at: rfc3339(s.starts_at, tz),
            ends_at: rfc3339(s.ends_at, tz),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            from_config: s.from_config,
            unreadable: s.matchers.unreadable,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceList {
    pub silences: Vec<SilenceView>,
}

/// A new maintenance window.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    pub matchers: Matchers,
    /// RFC 3339 with offset; now when absent.
    pub starts_at: Option<String>,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

pub(super) fn manager(s: &AppState) -> Result<Arc<AlertManager>, ApiError> {
    s.alerts.clone().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "alerting is not running"))
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let status = match e {
            OpError::NoAlert(_) | OpError::NoSilence(_) => StatusCode::NOT_FOUND,
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OpError::Storage(_) | OpError::Fenced(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A JSON body, or the error that says what is wrong with it: 400 for
/// broken JSON, 413 past `http.max_body`, 422 for the wrong fields.
pub(super) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match b {
        Ok(Json(t)) => Ok(t),
        Err(r) => {
            let status = match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                StatusCode::UNPROCESSABLE_ENTITY => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, "invalid request body").detail(json!(r.body_text())))
        }
    }
}

/// Alerts with their timelines.
#[utoipa::path(get, path = "/api/v1/alerts", params(AlertQuery), responses((status = 200, body = AlertList)))]
pub async fn list(State(s): State<AppState>, Query(q): Query<AlertQuery>) -> Result<Response, ApiError> {
    let active = match q.state.as_deref() {
        None | Some("active") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("state must be active or all, not {other:?}"),
            ))
        }
    };
    let m = manager(&s)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let tz = s.live.timezone;
    let views = blocking(move || -> Result<Vec<AlertView>, OpError> {
        Ok(m.alerts(active, limit)?.iter().map(|a| AlertView::new(a, tz).supplied(&m, a)).collect())
    })
    .await?;
    Ok(Json(AlertList { alerts: views }).into_response())
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", responses((status = 200, body = AlertView), (status = 404)))]
pub async fn one(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let (m, tz) = (manager(&s)?, s.live.timezone);
    let view = blocking(move || -> Result<Option<AlertView>, OpError> {
        Ok(m.alert(id)?.map(|a| AlertView::new(&a, tz).supplied(&m, &a)))
    })
    .await?;
    match view {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(OpError::NoAlert(id).into()),
    }
}

/// Acknowledge: someone takes it. 409 when resolved or already acked.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", request_body = ActBody,
    responses((status = 200, body = AlertView), (status = 401), (status = 404), (status = 409), (status = 413), (status = 422)),
    security(("bearer" = [])))]
pub async fn ack(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    b: Result<Json<ActBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let b = body(b)?;
    let (m, now) = (manager(&s)?, s.clock.now());
    let a = blocking(move || m.ack(id, &b.by, b.note.as_deref(), now)).await?;
    Ok(Json(AlertView::new(&a, s.live.timezone)).into_response())
}

/// Dispose (处置完成): the team reports what it did; `note` is required.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/dispose", request_body = ActBody,
    responses((status = 200, body = AlertView), (status = 401), (status = 404), (status = 409), (status = 413), (status = 422)),
    security(("bearer" = [])))]
pub async fn dispose(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    b: Result<Json<ActBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let b = body(b)?;
    let (m, now) = (manager(&s)?, s.clock.now());
    let a = blocking(move || m.dispose(id, &b.by, b.note.as_deref().unwrap_or(""), now)).await?;
    Ok(Json(AlertView::new(&a, s.live.timezone)).into_response())
}

/// Silences in force or to come.
#[utoipa::path(get, path = "/api/v1/silences", responses((status = 200, body = SilenceList)))]
pub async fn silences(State(s): State<AppState>) -> Result<Response, ApiError> {
    let tz = s.live.timezone;
    let (m, now) = (manager(&s)?, s.clock.now());
    let list = blocking(move || m.silences(now, false)).await?;
    Ok(Json(SilenceList { silences: list.iter().map(|x| SilenceView::new(x, tz)).collect() }).into_response())
}

fn parse_time(field: &str, v: &str) -> Result<TimestampNs, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v).ok().and_then(|t| t.timestamp_nanos_opt()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {v:?} is not RFC 3339 with an offset"),
        )
    })
}

/// Add a maintenance window.
#[utoipa::path(post, path = "/api/v1/silences", request_body = SilenceBody,
    responses((status = 201, body = SilenceView), (status = 401), (status = 413), (status = 422)),
    security(("bearer" = [])))]
pub async fn add_silence(
    State(s): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<SilenceBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let b = body(b)?;
    let now = s.clock.now();
    let starts_at = match &b.starts_at {
        Some(t) => parse_time("starts_at", t)?,
        None => now,
    };
    let ends_at = parse_time("ends_at", &b.ends_at)?;
    let silence = Silence {
        id: 0,
        matchers: b.matchers,
        starts_at,
        ends_at,
        created_by: b.created_by,
        comment: b.comment,
        from_config: false,
    };
    let m = manager(&s)?;
    let created = blocking(move || m.add_silence(silence, now)).await?;
    Ok((StatusCode::CREATED, Json(SilenceView::new(&created, s.live.timezone))).into_response())
}

/// End a maintenance window now.
#[utoipa::path(delete, path = "/api/v1/silences/{id}",
    responses((status = 204), (status = 401), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn delete_silence(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let (m, now) = (manager(&s)?, s.clock.now());
    blocking(move || m.expire_silence(id, now)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct NotificationQuery {
    /// How many, newest first (default 100).
    pub limit: Option<usize>,
}

/// The notification log: what was handed to the outbox, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", params(NotificationQuery), responses((status = 200)))]
pub async fn notifications(
    State(s): State<AppState>,
    Query(q): Query<NotificationQuery>,
) -> Result<Response, ApiError> {
    let m = manager(&s)?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let list = blocking(move || m.notifications(limit)).await?;
    let tz = s.live.timezone;
    let items: Vec<serde_json::Value> = list
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "team": n.team,
                "created_at": rfc3339(n.created_at, tz),
                "intents": n.intents.iter().map(|i| json!({
                    "kind": i.kind.as_str(),
                    "alert_id": i.alert.id,
                    "site": i.alert.site,
                    "rule": i.alert.rule,
                    "level": i.alert.level,
                    "escalation_role": i.escalation_role,
                    "recipients": i.recipients.iter().map(|r| &r.name).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "notifications": items })).into_response())
}

/// The outbox: the latest messages per recipient and channel, newest
/// first, with their state (queued, sending, sent, unknown — taken or not,
/// to be told by the receipt —, merged into a digest, rerouted to another
/// channel or person, failed), `held` (budget, limit, refused) while they
/// wait, the provider's `receipt` (waiting, delivered, failed, unknown;
/// for calls answered, busy, no_answer, unreachable), `alert_ids` and
/// `fallback_of`. Names recipients, so it needs the bearer token.
#[utoipa::path(get, path = "/api/v1/outbox", params(NotificationQuery), responses((status = 200), (status = 401)),
    security(("bearer" = [])))]
pub async fn outbox(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NotificationQuery>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let Some(outbox) = s.outbox.clone() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "nothing is sent here"));
    };
    let (limit, tz) = (q.limit.unwrap_or(100).min(1000), s.live.timezone);
    let messages = blocking(move || outbox.recent(limit, tz)).await;
    Ok(Json(json!({ "messages": messages })).into_response())
}

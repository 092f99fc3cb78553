//! `/api/v1`: the sites' live state and the reload endpoint.
//!
//! Errors are JSON `{"error": "...", "detail": ...}`. Write endpoints need
//! `Authorization: Bearer <http.api_token>`, compared in constant time; with
//! no token configured they are refused (401) rather than left open.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;

/// A JSON error response.
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: serde_json::Value,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError { status, error: error.into(), detail: serde_json::Value::Null }
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.error, "detail": self.detail }))).into_response()
    }
}

/// Checks the bearer token of a write request.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = state.api_token.expose().as_bytes();
    if expected.is_empty() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "write endpoints are disabled")
            .detail(json!("set http.api_token (FLOODGUARD__HTTP__API_TOKEN) to enable them")));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
    }
}

/// District, streets and every site with its values, level, trend and ETA.
#[utoipa::path(get, path = "/api/v1/sites", responses((status = 200, body = crate::live::SitesView)))]
pub async fn sites(State(s): State<AppState>) -> Response {
    let body = s.live.sites_json(s.clock.now());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The daemon's clock: wall time, or the demo's storm time.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClockView {
    /// The clock's time now, RFC 3339 with offset.
    pub now: String,
    /// Clock seconds per wall second (1: wall time; 60 in the demo).
    pub speed: f64,
    /// Where the clock and the wall agree, RFC 3339.
    pub epoch: String,
    /// The same, ms since the Unix epoch (for the page's clock).
    pub epoch_ms: i64,
}

/// The time the daemon judges by: in the demo, storm time.
#[utoipa::path(get, path = "/api/v1/clock", responses((status = 200, body = ClockView)))]
pub async fn clock(State(s): State<AppState>) -> Response {
    let tz = s.live.timezone;
    Json(ClockView {
        now: crate::engine::rfc3339(s.clock.now(), tz),
        speed: s.clock.speed(),
        epoch: crate::engine::rfc3339(s.clock.epoch_ns(), tz),
        epoch_ms: s.clock.epoch_ns() / 1_000_000,
    })
    .into_response()
}

/// This node in its cluster (DESIGN.md, "State and cluster").
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// This node's `cluster.node_id` (or host name).
    pub node: String,
    pub role: crate::cluster::Role,
    /// The node holding the leader's lease as last seen.
    pub leader: Option<String>,
    /// The leader's epoch (0: the single-node SQLite state).
    pub epoch: i64,
    /// When the leader took the lease, RFC 3339.
    pub since: Option<String>,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub lease_seconds: f64,
    /// Times this node took the lease since it started.
    pub takeovers: u64,
    /// Why the lease cannot be kept or read now.
    pub problem: Option<String>,
}

/// Which node this is, its role, who leads, at which epoch and since when.
#[utoipa::path(get, path = "/api/v1/cluster", responses((status = 200, body = ClusterView)))]
pub async fn cluster(State(s): State<AppState>) -> Response {
    let c = &s.health.cluster;
    let st = c.status();
    Json(ClusterView {
        node: st.node,
        role: st.role,
        leader: st.leader,
        epoch: st.epoch,
        since: st.since.map(|t| crate::engine::rfc3339(t, s.live.timezone)),
        backend: st.backend,
        lease_seconds: st.lease_seconds,
        takeovers: c.takeovers(),
        problem: st.problem.map(|p| crate::redact::text(&p)),
    })
    .into_response()
}

/// One site.
#[utoipa::path(get, path = "/api/v1/sites/{id}", responses((status = 200, body = crate::engine::SiteView), (status = 404)))]
pub async fn site(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match s.live.site(&id, s.clock.now()) {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no site {id:?}"))),
    }
}

/// Re-read every config file: 200 with what changed, or 422 with every
/// error (the running configuration stays).
#[utoipa::path(post, path = "/api/v1/reload", responses((status = 200), (status = 401), (status = 422)), security(("bearer" = [])))]
pub async fn reload(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let reloader =
        s.reloader.clone().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "reload is not available"))?;
    match tokio::task::spawn_blocking(move || reloader.reload()).await {
        Ok(Ok(report)) => Ok(Json(json!({ "reloaded": true, "report": report })).into_response()),
        Ok(Err(errors)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid configuration; the running one stays",
        )
        .detail(json!(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()))),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reload failed: {e}"))),
    }
}

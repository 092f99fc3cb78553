//! The HTTP server (axum): health, readiness, metrics and the `/api/v1` API.

pub mod api;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::config::Secret;
use crate::health::Health;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::reload::Reloader;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub live: Arc<Live>,
    /// `None` where the configuration cannot be reloaded (tests).
    pub reloader: Option<Arc<Reloader>>,
    pub api_token: Secret,
    /// Largest request body, bytes.
    pub max_body: usize,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/sites", get(api::sites))
        .route("/api/v1/sites/{id}", get(api::site))
        .route("/api/v1/reload", post(api::reload))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: broker connected and storage keeping up; 503 with the reasons
/// otherwise.
async fn readyz(State(s): State<AppState>) -> Response {
    let r = s.health.readiness(chrono::Utc::now().timestamp_millis());
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(r)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics.render(Some(&s.health.spool), chrono::Utc::now().timestamp_millis());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Reading;
    use crate::spool::SpoolStats;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn state() -> AppState {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let config = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let live = Arc::new(Live::new(
            config.plan.clone(),
            Arc::new(crate::live::LogSink),
            None,
            metrics.clone(),
            config.timezone,
            0,
        ));
        AppState {
            metrics,
            health: Arc::new(Health::new(
                Arc::new(SpoolStats::default()),
                Some(std::time::Duration::from_secs(30)),
            )),
            live,
            reloader: None,
            api_token: Secret::new("t0ken"),
            max_body: 1024,
        }
    }

    async fn send(app: Router, req: Request<Body>) -> (StatusCode, String) {
        let resp = app.oneshot(req).await.unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        send(app, Request::get(path).body(Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn health_ready_and_metrics() {
        let s = state();
        let app = router(s.clone());
        assert_eq!(get(app.clone(), "/healthz").await, (StatusCode::OK, "ok\n".into()));
        let (code, body) = get(app.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("not connected to the MQTT broker"), "{body}");
        s.health.mqtt_connected.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (code, body) = get(app, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("floodguard_mqtt_messages_received_total 0"), "{body}");
    }

    #[tokio::test]
    async fn sites_in_the_shape_of_design_md() {
        let s = state();
        let now = crate::reading::to_ns(chrono::Utc::now());
        let r = |v: f64, dt: i64| Reading {
            site: "CD-JS-01".into(),
            metric: "water_depth_cm".into(),
            value: crate::reading::Value::Float(v),
            ts: now + dt,
        };
        s.live.readings(&[r(21.0, -60_000_000_000)], now - 60_000_000_000);
        s.live.readings(&[r(22.0, 0)], now);
        let (code, body) = get(router(s.clone()), "/api/v1/sites").await;
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["district"]["level"], "III");
        assert_eq!(v["district"]["name"], "某区");
        let streets = v["streets"].as_array().unwrap();
        assert_eq!(streets.len(), 3);
        assert_eq!(streets[0]["id"], "chengdong");
        assert_eq!(streets[0]["level"], "III");
        assert_eq!(streets[1]["level"], serde_json::Value::Null);
        let sites = v["sites"].as_array().unwrap();
        assert_eq!(sites.len(), 15);
        let s0 = &sites[0];
        assert_eq!(s0["id"], "CD-JS-01");
        assert_eq!(s0["kind"], "waterlogging");
        assert_eq!(s0["street"], "chengdong");
        assert_eq!(s0["level"], "III");
        assert_eq!(s0["values"]["water_depth_cm"]["value"], 22.0);
        assert_eq!(s0["values"]["water_depth_cm"]["unit"], "cm");
        assert!(s0["values"]["water_depth_cm"]["ts"].as_str().unwrap().ends_with("+08:00"), "{s0}");
        assert!(s0.get("trend").is_some() && s0.get("eta").is_some());
        assert_eq!(s0["rules"][0]["thresholds"]["II"], 27.0);
        let (code, body) = get(router(s.clone()), "/api/v1/sites/BH-SW-01").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("\"id\":\"BH-SW-01\""));
        let (code, body) = get(router(s), "/api/v1/sites/NOPE").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"], "no site \"NOPE\"");
    }

    #[tokio::test]
    async fn reload_needs_the_bearer_token() {
        let s = state();
        let post = |auth: Option<&str>| {
            let mut b = Request::post("/api/v1/reload");
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(send(router(s.clone()), post(None)).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(router(s.clone()), post(Some("Bearer nope"))).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(router(s.clone()), post(Some("t0ken"))).await.0, StatusCode::UNAUTHORIZED);
        // The right token passes auth (this state has no reloader: 404).
        assert_eq!(send(router(s.clone()), post(Some("Bearer t0ken"))).await.0, StatusCode::NOT_FOUND);
        let open = AppState { api_token: Secret::default(), ..s };
        let (code, body) = send(router(open), post(Some("Bearer "))).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert!(body.contains("write endpoints are disabled"), "{body}");
    }
}

//! The HTTP server (axum): the live page, health, readiness, metrics and the
//! `/api/v1` API with its event stream.

pub mod acklink;
pub mod alerts;
pub mod api;
pub mod deliveries;
pub mod events;
pub mod guard;
pub mod openapi;
pub mod page;
pub mod push;
pub mod records;
pub mod series;
pub mod server;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
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
    /// `None` where alerting does not run (tests of other parts).
    pub alerts: Option<Arc<crate::alerts::AlertManager>>,
    /// `None` where nothing is sent (tests of other parts).
    pub outbox: Option<Arc<crate::notify::Outbox>>,
    /// `None` where the configuration cannot be reloaded (tests).
    pub reloader: Option<Arc<Reloader>>,
    pub api_token: Secret,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// `None` where pushed readings have nowhere to go (tests of other parts).
    pub push: Option<Arc<push::Push>>,
    /// Read token, Host check, rate limits, event-stream places (`guard`).
    pub guard: Arc<guard::Guard>,
    /// The time of acks, disposals and views: the wall, or storm time in the demo.
    pub clock: crate::clock::Clock,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    let max_push = state.push.as_ref().map_or(max_body, |p| p.max_body);
    // Reads need the read token when one is set; writes and ack links are
    // rate limited per client address (they check their own tokens).
    let read =
        |m: MethodRouter<AppState>| m.route_layer(from_fn_with_state(state.clone(), guard::require_read));
    let limited =
        |m: MethodRouter<AppState>| m.route_layer(from_fn_with_state(state.clone(), guard::rate_limit));
    let push_routes = Router::new()
        .route("/write", post(push::write_v1))
        .route("/api/v2/write", post(push::write_v2))
        .route("/api/v1/readings", post(push::readings))
        .layer(DefaultBodyLimit::max(max_push));
    Router::new()
        .route("/ping", get(push::ping).head(push::ping))
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::app_js))
        .route("/assets/map.js", get(page::map_js))
        .route("/assets/chart.js", get(page::chart_js))
        .route("/assets/app.css", get(page::app_css))
        .route("/assets/records.js", get(page::records_js))
        .route("/assets/ack.css", get(page::ack_css))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(metrics).route_layer(from_fn_with_state(state.clone(), guard::require_metrics)),
        )
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/events", read(get(events::events)))
        .route("/api/v1/sites/{id}/series", read(get(series::series)))
        .route("/api/v1/sites", read(get(api::sites)))
        .route("/api/v1/sites/{id}", read(get(api::site)))
        .route("/api/v1/alerts", read(get(alerts::list)))
        .route("/api/v1/alerts/{id}", read(get(alerts::one)))
        .route("/api/v1/notifications", read(get(alerts::notifications)))
        .route("/api/v1/outbox", read(get(alerts::outbox)))
        .route("/api/v1/alerts/{id}/deliveries", read(get(deliveries::deliveries)))
        .route("/api/v1/clock", read(get(api::clock)))
        .route("/api/v1/cluster", read(get(api::cluster)))
        .route("/api/v1/materials", read(get(records::materials)).merge(limited(post(records::record))))
        .route("/api/v1/drills", read(get(records::drills)))
        .route("/api/v1/silences", read(get(alerts::silences)).merge(limited(post(alerts::add_silence))))
        .route("/api/v1/silences/{id}", limited(delete(alerts::delete_silence)))
        .route("/api/v1/reload", limited(post(api::reload)))
        .route("/api/v1/alerts/{id}/ack", limited(post(alerts::ack)))
        .route("/api/v1/alerts/{id}/dispose", limited(post(alerts::dispose)))
        .route("/ack/{token}", limited(get(acklink::show).post(acklink::confirm)))
        .route("/callbacks/tencent-voice/{token}", limited(post(deliveries::tencent_voice)))
        .layer(DefaultBodyLimit::max(max_body))
        .merge(push_routes)
        .layer(from_fn_with_state(state.clone(), guard::outer))
        .with_state(state)
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::json()).into_response()
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
    let body = tokio::task::spawn_blocking(move || {
        if let Some(outbox) = &s.outbox {
            // A query of state.db: off the async workers.
            outbox.observe(&s.metrics, s.clock.now());
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        s.health.cluster.observe_metrics();
        s.metrics.set_spool(&s.health.spool.figures(now_ms));
        s.metrics.disk_full.set(i64::from(s.health.disk.is_full()));
        for p in s.health.stages.snapshots() {
            let st = crate::stage::judge(&p, now_ms, crate::stage::STALL_AFTER);
            s.metrics.set_stage(&crate::metrics::StageFigures {
                stage: p.name,
                queued: st.queued,
                oldest_seconds: st.oldest_s,
                stalled: !st.ok,
                handled: p.handled,
            });
        }
        s.metrics.render()
    })
    .await
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Runs a blocking call (a query or a transaction on `state.db`) on
/// tokio's blocking pool, never on an async worker.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("a blocking call of a handler panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Reading;
    use crate::spool::SpoolStats;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    pub(crate) fn state() -> AppState {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let config = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let alerts = Arc::new(
            crate::alerts::AlertManager::new(
                crate::alerts::store::Store::memory().unwrap(),
                config.teams.clone(),
                crate::alerts::Places::from_config(&config),
                Arc::new(crate::alerts::LogNotifier),
                None,
                None,
            )
            .unwrap()
            .with_materials(config.materials.clone())
            .unwrap(),
        );
        let live = Arc::new(Live::new(config.plan.clone(), metrics.clone(), config.timezone, 0));
        AppState {
            metrics,
            health: Arc::new(Health::new(
                Arc::new(SpoolStats::default()),
                Some(std::time::Duration::from_secs(30)),
            )),
            live,
            alerts: Some(alerts),
            outbox: None,
            reloader: None,
            api_token: Secret::new("t0ken"),
            max_body: 1024,
            push: None,
            guard: Default::default(),
            clock: crate::clock::Clock::wall(),
        }
    }

    /// Judges readings and records the transitions, as the engine and the
    /// alert stage do in the daemon.
    pub(crate) fn feed(s: &AppState, readings: &[Reading], now: i64) {
        let t = s.live.readings(readings, now);
        s.alerts.as_ref().unwrap().handle(&t, None).unwrap();
    }

    pub(crate) async fn send(app: Router, req: Request<Body>) -> (StatusCode, String) {
        let resp = app.oneshot(req).await.unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    pub(crate) async fn get(app: Router, path: &str) -> (StatusCode, String) {
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
    async fn the_cluster_and_the_role_in_readyz_and_metrics() {
        let mut s = state();
        let metrics = s.metrics.clone();
        let cluster = crate::cluster::Cluster::single("fg-a".into()).with_metrics(metrics);
        let health = Health::new(Arc::new(crate::spool::SpoolStats::default()), None).with_cluster(cluster);
        health.mqtt_connected.store(true, std::sync::atomic::Ordering::Relaxed);
        s.health = Arc::new(health);
        let (code, body) = get(router(s.clone()), "/api/v1/cluster").await;
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&v["node"], &v["role"], &v["leader"], &v["epoch"], &v["backend"]),
            (
                &serde_json::json!("fg-a"),
                &serde_json::json!("leader"),
                &serde_json::json!("fg-a"),
                &serde_json::json!(0),
                &serde_json::json!("sqlite")
            ),
            "{body}"
        );
        let (code, body) = get(router(s.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains(r#""role":"leader""#), "{body}");
        let (_, body) = get(router(s), "/metrics").await;
        assert!(body.contains("floodguard_cluster_leader 1"), "{body}");
        assert!(body.contains("floodguard_cluster_takeovers_total 0"), "{body}");
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
        feed(&s, &[r(21.0, -60_000_000_000)], now - 60_000_000_000);
        feed(&s, &[r(22.0, 0)], now);
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
        // Written site by site, it is the document the views make.
        let views = serde_json::to_value(s.live.sites(now)).unwrap();
        let streamed: serde_json::Value = serde_json::from_slice(&s.live.sites_json(now)).unwrap();
        assert_eq!(streamed, views);
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

    pub(crate) fn post_json(path: &str, token: Option<&str>, body: &str) -> Request<Body> {
        let mut b = Request::post(path).header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    /// Raises CD-JS-01 to Ⅲ through the engine; the alert's id.
    async fn raise(s: &AppState) -> i64 {
        let now = crate::reading::to_ns(chrono::Utc::now());
        for k in 0..2 {
            let r = Reading {
                site: "CD-JS-01".into(),
                metric: "water_depth_cm".into(),
                value: crate::reading::Value::Float(22.0),
                ts: now + k,
            };
            feed(s, &[r], now + k);
        }
        let (code, body) = get(router(s.clone()), "/api/v1/alerts").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let a =
            v["alerts"].as_array().unwrap().iter().find(|a| a["site"] == "CD-JS-01").expect("alert").clone();
        assert_eq!(a["level"], "III");
        assert_eq!(a["state"], "pending");
        assert_eq!(a["timeline"][0]["event"], "firing");
        assert!(a["started_at"].as_str().unwrap().ends_with("+08:00"));
        a["id"].as_i64().unwrap()
    }

    #[tokio::test]
    async fn ack_and_dispose_need_the_token_and_follow_the_lifecycle() {
        let s = state();
        let id = raise(&s).await;
        let ack = format!("/api/v1/alerts/{id}/ack");
        let body = r#"{"by":"张队长","note":"已到场"}"#;
        assert_eq!(send(router(s.clone()), post_json(&ack, None, body)).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            send(router(s.clone()), post_json(&ack, Some("nope"), body)).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Bad bodies: broken JSON 400, a missing field 422, too large 413.
        assert_eq!(
            send(router(s.clone()), post_json(&ack, Some("t0ken"), "{by:")).await.0,
            StatusCode::BAD_REQUEST
        );
        let (code, err) = send(router(s.clone()), post_json(&ack, Some("t0ken"), r#"{"note":"x"}"#)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&err).unwrap()["error"], "invalid request body");
        let big = format!(r#"{{"by":"x","note":"{}"}}"#, "y".repeat(2000));
        assert_eq!(
            send(router(s.clone()), post_json(&ack, Some("t0ken"), &big)).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let (code, _) = send(router(s.clone()), post_json(&ack, Some("t0ken"), r#"{"by":"  "}"#)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        // Acked.
        let (code, out) = send(router(s.clone()), post_json(&ack, Some("t0ken"), body)).await;
        assert_eq!(code, StatusCode::OK, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "acked");
        assert_eq!(v["acked_by"], "张队长");
        assert_eq!(v["timeline"].as_array().unwrap().last().unwrap()["note"], "已到场");
        // Twice: conflict. Unknown: 404.
        assert_eq!(
            send(router(s.clone()), post_json(&ack, Some("t0ken"), body)).await.0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/alerts/999/ack", Some("t0ken"), body)).await.0,
            StatusCode::NOT_FOUND
        );
        // Dispose needs a note.
        let dispose = format!("/api/v1/alerts/{id}/dispose");
        assert_eq!(
            send(router(s.clone()), post_json(&dispose, Some("t0ken"), r#"{"by":"张队长"}"#)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let (code, out) = send(
            router(s.clone()),
            post_json(&dispose, Some("t0ken"), r#"{"by":"张队长","note":"抽排完毕"}"#),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{out}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["state"], "disposed");
    }

    #[tokio::test]
    async fn acking_a_resolved_alert_is_a_conflict() {
        let s = state();
        let id = raise(&s).await;
        let now = crate::reading::to_ns(chrono::Utc::now()) + 1_000_000_000;
        for k in 0..2 {
            let r = Reading {
                site: "CD-JS-01".into(),
                metric: "water_depth_cm".into(),
                value: crate::reading::Value::Float(1.0),
                ts: now + k,
            };
            feed(&s, &[r], now + k);
        }
        let (_, body) = get(router(s.clone()), &format!("/api/v1/alerts/{id}")).await;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["state"], "resolved");
        let (code, body) = send(
            router(s.clone()),
            post_json(&format!("/api/v1/alerts/{id}/ack"), Some("t0ken"), r#"{"by":"x"}"#),
        )
        .await;
        assert_eq!(code, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("is resolved"));
        let (_, body) = get(router(s.clone()), "/api/v1/alerts?state=active").await;
        assert!(!body.contains("CD-JS-01"));
        let (_, body) = get(router(s.clone()), "/api/v1/alerts?state=all").await;
        assert!(body.contains("CD-JS-01"));
        assert_eq!(get(router(s), "/api/v1/alerts?state=some").await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn silences_over_the_api() {
        let s = state();
        let body = r#"{"matchers":{"site":"BH-BZ-01"},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"泵站所","comment":"检修"}"#;
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/silences", None, body)).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (code, out) = send(router(s.clone()), post_json("/api/v1/silences", Some("t0ken"), body)).await;
        assert_eq!(code, StatusCode::CREATED, "{out}");
        let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_i64().unwrap();
        let (_, list) = get(router(s.clone()), "/api/v1/silences").await;
        assert!(list.contains("\"comment\":\"检修\""), "{list}");
        let empty = r#"{"matchers":{},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#;
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/silences", Some("t0ken"), empty)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Matchers that do not parse, or name nothing that exists: 422, never "silence everything".
        for bad in [
            r#"{"matchers":{"sitee":"BH-BZ-01"},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#,
            r#"{"matchers":{"site":42},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#,
            r#"{"matchers":{"site":"BH-BZ-1"},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#,
            r#"{"matchers":{"street":"nowhere"},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#,
            r#"{"matchers":{"kind":"pumpstation"},"ends_at":"2099-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#,
        ] {
            let (code, out) =
                send(router(s.clone()), post_json("/api/v1/silences", Some("t0ken"), bad)).await;
            assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {out}");
        }
        let past = r#"{"matchers":{"site":"x"},"ends_at":"2000-01-01T00:00:00+08:00","created_by":"a","comment":"b"}"#;
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/silences", Some("t0ken"), past)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let del = |id: i64, token: Option<&str>| {
            let mut b = Request::delete(format!("/api/v1/silences/{id}"));
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(send(router(s.clone()), del(id, None)).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(router(s.clone()), del(id, Some("t0ken"))).await.0, StatusCode::NO_CONTENT);
        assert_eq!(send(router(s.clone()), del(id + 50, Some("t0ken"))).await.0, StatusCode::NOT_FOUND);
        let (_, list) = get(router(s), "/api/v1/silences").await;
        assert!(!list.contains("\"comment\":\"检修\""), "ended: {list}");
    }

    /// Every read of DESIGN.md's API (and the page's data).
    const READS: [&str; 10] = [
        "/api/v1/sites",
        "/api/v1/sites/CD-JS-01",
        "/api/v1/sites/CD-JS-01/series?metric=water_depth_cm",
        "/api/v1/alerts",
        "/api/v1/alerts/1",
        "/api/v1/silences",
        "/api/v1/notifications",
        "/api/v1/outbox",
        "/api/v1/events",
        "/metrics",
    ];

    fn guarded(read: &str, metrics: &str) -> AppState {
        let h = crate::config::HttpSection {
            read_token: Secret::new(read),
            metrics_token: Secret::new(metrics),
            ..Default::default()
        };
        AppState { guard: Arc::new(guard::Guard::new(&h, "https://ack.example.gov.cn")), ..state() }
    }

    async fn status(app: Router, path: &str, headers: &[(&str, &str)]) -> StatusCode {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        app.oneshot(b.body(Body::empty()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn with_a_read_token_every_read_needs_it_and_health_stays_open() {
        let s = guarded("read-token", "");
        let app = router(s);
        for path in READS {
            assert_eq!(
                status(app.clone(), path, &[]).await,
                StatusCode::UNAUTHORIZED,
                "{path} without a token"
            );
            assert_eq!(
                status(app.clone(), path, &[("authorization", "Bearer wrong")]).await,
                StatusCode::UNAUTHORIZED,
                "{path} with a wrong token"
            );
        }
        let resp =
            app.clone().oneshot(Request::get("/api/v1/sites").body(Body::empty()).unwrap()).await.unwrap();
        assert!(resp.headers().get("www-authenticate").is_some());
        // The read token as a bearer or the page's cookie; the API token too.
        for auth in [
            ("authorization", "Bearer read-token"),
            ("cookie", "x=1; fg_read=read-token"),
            ("authorization", "Bearer t0ken"),
        ] {
            assert_eq!(status(app.clone(), "/api/v1/sites", &[auth]).await, StatusCode::OK, "{auth:?}");
            assert_eq!(status(app.clone(), "/metrics", &[auth]).await, StatusCode::OK, "{auth:?}");
        }
        // The outbox names recipients: it needs the API token, the read token is not enough.
        assert_eq!(
            status(app.clone(), "/api/v1/outbox", &[("cookie", "fg_read=read-token")]).await,
            StatusCode::UNAUTHORIZED
        );
        for open in ["/healthz", "/", "/assets/app.js", "/assets/ack.css", "/api/v1/openapi.json"] {
            assert_eq!(status(app.clone(), open, &[]).await, StatusCode::OK, "{open} stays open");
        }
        assert_eq!(
            status(app.clone(), "/readyz", &[]).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "open (not ready here)"
        );
        // Without a read token, reads are open as before.
        assert_eq!(status(router(state()), "/api/v1/sites", &[]).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_may_have_a_token_of_its_own() {
        let app = router(guarded("", "scrape-token"));
        assert_eq!(status(app.clone(), "/metrics", &[]).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(app.clone(), "/metrics", &[("authorization", "Bearer scrape-token")]).await,
            StatusCode::OK
        );
        assert_eq!(status(app.clone(), "/api/v1/sites", &[]).await, StatusCode::OK, "reads stay open");
        assert_eq!(
            status(app, "/api/v1/sites", &[("authorization", "Bearer scrape-token")]).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers_and_hosts_are_checked() {
        let app = router(guarded("", ""));
        for path in ["/", "/healthz", "/api/v1/sites", "/nope"] {
            let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            let h = resp.headers();
            let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
            assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
            assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
        }
        for (host, code) in [
            ("127.0.0.1:8080", StatusCode::OK),
            ("localhost:8080", StatusCode::OK),
            ("ack.example.gov.cn", StatusCode::OK),
            ("attacker.example:8080", StatusCode::MISDIRECTED_REQUEST),
        ] {
            assert_eq!(status(app.clone(), "/api/v1/sites", &[("host", host)]).await, code, "{host}");
            assert_eq!(status(app.clone(), "/", &[("host", host)]).await, code, "{host}");
        }
        // Monitoring and devices reach their paths by any name.
        assert_eq!(status(app.clone(), "/healthz", &[("host", "floodguard.lan:8080")]).await, StatusCode::OK);
        assert_eq!(status(app.clone(), "/metrics", &[("host", "floodguard.lan:8080")]).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_page_has_no_inline_script_or_style() {
        for (name, html) in [("index.html", include_str!("page/index.html"))] {
            let lower = html.to_lowercase();
            assert!(!lower.contains("<style"), "{name}: inline <style>");
            assert!(!lower.contains(" style="), "{name}: a style attribute");
            assert!(!lower.contains(" onclick=") && !lower.contains(" onload="), "{name}: an inline handler");
            for tag in lower.split("<script").skip(1) {
                let head = &tag[..tag.find('>').unwrap()];
                assert!(head.contains("src="), "{name}: an inline <script>");
            }
        }
        for js in [include_str!("page/app.js"), include_str!("page/map.js"), include_str!("page/chart.js")] {
            assert!(
                !js.contains("setAttribute(\"style\"") && !js.contains("innerHTML"),
                "scripts build DOM nodes, no markup"
            );
        }
    }

    #[tokio::test]
    async fn the_openapi_document_describes_every_endpoint() {
        let (code, body) = get(router(state()), "/api/v1/openapi.json").await;
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/api/v1/sites",
            "/api/v1/sites/{id}",
            "/api/v1/reload",
            "/api/v1/alerts",
            "/api/v1/alerts/{id}",
            "/api/v1/alerts/{id}/ack",
            "/api/v1/alerts/{id}/dispose",
            "/api/v1/silences",
            "/api/v1/silences/{id}",
            "/api/v1/notifications",
            "/api/v1/sites/{id}/series",
            "/api/v1/events",
            "/api/v1/readings",
        ] {
            assert!(v["paths"].get(path).is_some(), "{path} missing");
        }
        assert!(v["components"]["schemas"].get("AlertView").is_some());
        assert!(v["components"]["securitySchemes"].get("bearer").is_some());
    }
}

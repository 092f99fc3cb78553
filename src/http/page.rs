//! `GET /`: the command-center live page, embedded in the binary (closed
//! networks: no CDN, no map tiles). Plain HTML, CSS and JavaScript in
//! `src/http/page/`; the page reads `/api/v1/*` and follows `/api/v1/events`.
//! No inline script or style anywhere (the Content-Security-Policy forbids
//! them): `ack.css` styles the ack page of a message's link.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");
const MAP_JS: &str = include_str!("page/map.js");
const CHART_JS: &str = include_str!("page/chart.js");
const RECORDS_JS: &str = include_str!("page/records.js");
const ACK_CSS: &str = include_str!("page/ack.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    // Revalidate every time: a new binary serves a new page.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn map_js() -> Response {
    asset("text/javascript; charset=utf-8", MAP_JS)
}

pub async fn chart_js() -> Response {
    asset("text/javascript; charset=utf-8", CHART_JS)
}

pub async fn records_js() -> Response {
    asset("text/javascript; charset=utf-8", RECORDS_JS)
}

pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

pub async fn ack_css() -> Response {
    asset("text/css; charset=utf-8", ACK_CSS)
}

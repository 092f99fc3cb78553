//! `GET /`: the live page for the command center, embedded in the binary
//! (closed networks have no CDN). One HTML file with its CSS and script;
//! it reads `/api/v1/sites`, `/api/v1/alerts` and `/api/v1/notifications`
//! every second and acks or disposes through the API with the bearer token
//! it asks for once.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("page.html");

pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE)
        .into_response()
}

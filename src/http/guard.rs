//! Who may use the HTTP server, and how much: the read token, the Host
//! check, security headers, per-address rate limits, the request deadline
//! and the cap on event-stream clients.
//!
//! | what | who | needs |
//! |---|---|---|
//! | `/healthz`, `/readyz`, `/`, `/assets/*`, `/api/v1/openapi.json`, `/ping` | anyone | nothing |
//! | every other `GET /api/v1/…` and the event stream | the page, scripts | `http.read_token` when set (or the API token): `Authorization: Bearer …` or the page's cookie `fg_read` |
//! | `/metrics` | Prometheus | `http.metrics_token` (or the read or API token) when either is set |
//! | writes (`POST/DELETE /api/v1/…`, `GET /api/v1/outbox`) | operators | the API token (`api::authorize`), rate limited per address |
//! | `/ack/{token}` | a phone | the link's own signed token, rate limited per address |
//! | push (`/write`, …) | devices | the ingest token (`push`) |
//!
//! Every response carries a Content-Security-Policy without inline script
//! or style, `X-Frame-Options: DENY`, `nosniff` and `Referrer-Policy:
//! no-referrer` (an ack link's token must not leak in a Referer). A request
//! naming a host that is neither an IP address, `localhost`, one of
//! `http.hosts` nor the host of `channels.ack.base_url` is refused (421):
//! a page on another site cannot reach the API through DNS rebinding. The
//! paths of machines (health, metrics, push) are spared: Prometheus and
//! Telegraf reach them by name.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::ApiError;
use super::AppState;
use crate::config::{HttpSection, Secret};

/// The cookie in which the live page keeps the read token (for the event
/// stream, which cannot send a header).
pub const READ_COOKIE: &str = "fg_read";

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The guard's settings and state, shared by the handlers.
pub struct Guard {
    pub read_token: Secret,
    pub metrics_token: Secret,
    /// Host names answered besides IP addresses and `localhost` (lower case).
    pub hosts: Vec<String>,
    pub request_timeout: Duration,
    /// Event-stream clients at once.
    pub sse: Arc<Semaphore>,
    /// Write API and ack links, per client address (None: no limit).
    pub rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// One-time tokens of the ack page's form.
    pub forms: super::acklink::FormTokens,
}

impl Default for Guard {
    /// Open: no read token, any host, no rate limit (tests of other parts).
    fn default() -> Self {
        Guard {
            read_token: Secret::default(),
            metrics_token: Secret::default(),
            hosts: Vec::new(),
            request_timeout: Duration::from_secs(30),
            sse: Arc::new(Semaphore::new(64)),
            rate: None,
            forms: Default::default(),
        }
    }
}

impl Guard {
    /// From `[http]`; `ack_base_url`'s host is answered too.
    pub fn new(h: &HttpSection, ack_base_url: &str) -> Guard {
        let mut hosts: Vec<String> = h.hosts.iter().map(|x| x.to_ascii_lowercase()).collect();
        if let Some(host) =
            reqwest::Url::parse(ack_base_url).ok().and_then(|u| u.host_str().map(str::to_string))
        {
            hosts.push(host.to_ascii_lowercase());
        }
        let rate = NonZeroU32::new(h.rate_limit).map(|per_minute| {
            let burst = NonZeroU32::new(h.rate_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
        });
        Guard {
            read_token: h.read_token.clone(),
            metrics_token: h.metrics_token.clone(),
            hosts,
            request_timeout: h.request_timeout.get(),
            sse: Arc::new(Semaphore::new(h.max_sse_clients)),
            rate,
            forms: Default::default(),
        }
    }

    /// Is `host` (a Host header's value) one this server answers to?
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.is_empty() {
            return false;
        }
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// A place on the event stream, or `None` when it is full.
    pub fn sse_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.sse.clone().try_acquire_owned().ok()
    }

    /// Takes one request of `ip`'s allowance; false when it is spent.
    pub fn rate_ok(&self, ip: IpAddr) -> bool {
        match &self.rate {
            None => true,
            Some(r) => {
                // Forget addresses that are quiet (bounded memory).
                if r.len() > 10_000 {
                    r.retain_recent();
                }
                r.check_key(&ip).is_ok()
            }
        }
    }
}

/// The host part of a Host header: `[::1]:8080` → `::1`, `a.b:80` → `a.b`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn token_matches(given: &str, expected: &Secret) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

/// The bearer token of a request, or the page's read cookie.
fn presented(headers: &HeaderMap) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(b) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        v.push(b.trim().to_string());
    }
    for cookie in headers.get_all(header::COOKIE).iter().filter_map(|c| c.to_str().ok()) {
        for part in cookie.split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k == READ_COOKIE {
                    let decoded = percent_encoding::percent_decode_str(val).decode_utf8_lossy().to_string();
                    v.push(decoded);
                }
            }
        }
    }
    v
}

fn unauthorized(what: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, format!("{what} needs the read token"))
        .detail(json!("Authorization: Bearer <http.read_token>"))
        .into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"floodguard\""));
    r
}

/// Reads: the read token (or the API token) when one is set.
pub async fn require_read(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let g = &s.guard;
    if g.read_token.is_empty() {
        return next.run(req).await;
    }
    let ok = presented(req.headers())
        .iter()
        .any(|t| token_matches(t, &g.read_token) || token_matches(t, &s.api_token));
    if ok {
        next.run(req).await
    } else {
        unauthorized("reading")
    }
}

/// `/metrics`: its own token, or the read or API token, when either of the
/// first two is set.
pub async fn require_metrics(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let g = &s.guard;
    if g.read_token.is_empty() && g.metrics_token.is_empty() {
        return next.run(req).await;
    }
    let ok = presented(req.headers()).iter().any(|t| {
        token_matches(t, &g.metrics_token)
            || token_matches(t, &g.read_token)
            || token_matches(t, &s.api_token)
    });
    if ok {
        next.run(req).await
    } else {
        unauthorized("/metrics")
    }
}

/// The client's address (absent in in-process tests: 0.0.0.0).
fn client(req: &Request) -> IpAddr {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// The write API and ack links: `http.rate_limit` per client address.
pub async fn rate_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let ip = client(&req);
    if s.guard.rate_ok(ip) {
        return next.run(req).await;
    }
    s.metrics.http_rate_limited.inc();
    let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests from this address")
        .detail(json!("http.rate_limit"))
        .into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    r
}

/// Paths no browser page uses, reached by name from monitoring and devices
/// (Prometheus, Telegraf, gateways): the Host check spares them (they hold
/// no page to rebind to, and the push endpoints have their token).
fn machine_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/ping" | "/write" | "/api/v2/write" | "/api/v1/readings"
    )
}

/// Every request: the Host check, the deadline, the security headers.
pub async fn outer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|_| !machine_path(req.uri().path()))
        .map(str::to_string);
    let mut resp = match host {
        Some(h) if !s.guard.host_allowed(&h) => {
            ApiError::new(StatusCode::MISDIRECTED_REQUEST, "this server does not answer to that host name")
                .detail(json!("add it to http.hosts"))
                .into_response()
        }
        _ => match tokio::time::timeout(s.guard.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out; try again")
                .detail(json!("http.request_timeout"))
                .into_response(),
        },
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_name_ip_or_list() {
        let h = HttpSection { hosts: vec!["Flood.Example.gov.cn".into()], ..Default::default() };
        let g = Guard::new(&h, "https://ack.example.gov.cn/");
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
            "LOCALHOST:1",
            "flood.example.gov.cn",
            "ack.example.gov.cn:443",
            "10.1.2.3",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for refused in ["evil.example", "flood.example.gov.cn.evil.example:8080", "", "127.0.0.1.nip.io"] {
            assert!(!g.host_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn tokens_come_as_bearer_or_the_page_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        h.append(header::COOKIE, HeaderValue::from_static("lang=zh; fg_read=r%2Fx"));
        assert_eq!(presented(&h), ["abc", "r/x"]);
        assert!(!token_matches("", &Secret::default()), "an unset token matches nothing");
    }

    #[test]
    fn the_rate_limit_is_per_address() {
        let h = HttpSection { rate_limit: 60, rate_burst: 3, ..Default::default() };
        let g = Guard::new(&h, "");
        let a = IpAddr::from([10, 0, 0, 1]);
        assert!((0..3).all(|_| g.rate_ok(a)));
        assert!(!g.rate_ok(a), "the burst is spent");
        assert!(g.rate_ok(IpAddr::from([10, 0, 0, 2])), "another address has its own");
        let off = Guard::new(&HttpSection { rate_limit: 0, ..Default::default() }, "");
        assert!((0..1000).all(|_| off.rate_ok(a)));
    }
}

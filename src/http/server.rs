//! The HTTP server's accept loop (hyper's HTTP/1 server under the axum
//! router), with the limits `axum::serve` lacks:
//!
//! - a connection must send a request's headers within
//!   `http.header_read_timeout` — a slow sender (slowloris) and an idle
//!   keep-alive connection are closed after it;
//! - at most `http.max_connections` connections are open; more are closed
//!   at accept (counted), so the process keeps its file descriptors and
//!   memory for the ones it serves;
//! - every connection has its own task: a slow one never holds up
//!   another, and `/healthz` answers while hundreds idle.
//!
//! The request deadline, rate limits and the event-stream cap are the
//! router's (`guard`). Each request carries the peer's address
//! (`ConnectInfo`) for the rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// The server's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(h: &crate::config::HttpSection) -> Limits {
        Limits { header_read_timeout: h.header_read_timeout.get(), max_connections: h.max_connections }
    }
}

/// Serves `app` on `listener` until `stop`; then lets open requests finish
/// for up to `drain` (an event stream ends with the engine).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    let mut refused_logged: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a moment, go on.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.http_connections_refused.inc();
            if refused_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(peer = %peer, max = limits.max_connections, "HTTP connections at http.max_connections: closing new ones");
                refused_logged = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let (stop, metrics) = (stop.clone(), metrics.clone());
        metrics.http_connections_open.inc();
        tasks.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            metrics.http_connections_open.dec();
            drop(permit);
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(drain, tasks.wait()).await;
}

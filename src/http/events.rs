//! `GET /api/v1/events`: the live page's Server-Sent Events stream.
//!
//! Events (name → JSON data):
//! - `sites`: the whole `/api/v1/sites` view, at once on connect, then at
//!   most once per [`SNAPSHOT_EVERY`] while readings or levels change;
//! - `level`: a site, street or the district changed level, or a site went
//!   offline / came back (`crate::events::LevelChange`), as it happens;
//! - `alert`: an alert was created, escalated, acked, disposed, resolved,
//!   notified … (`crate::events::AlertChange`), after the commit;
//! - `resync`: this client fell behind and missed events: reload everything.
//!
//! A `ping` event goes out after 15 s of silence; `retry: 2000` asks browsers
//! to reconnect after 2 s. The stream ends when the engine stops (shutdown).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::ApiError;
use super::AppState;
use crate::events::{self, Event as LiveEvent};
use crate::live::Live;

/// At most one `sites` snapshot per this interval.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// One client's stream state.
struct Feed {
    live: std::sync::Arc<Live>,
    levels: broadcast::Receiver<LiveEvent>,
    alerts: Option<broadcast::Receiver<LiveEvent>>,
    changes: watch::Receiver<u64>,
    closed: CancellationToken,
    /// Something changed since the last snapshot.
    dirty: bool,
    /// When the next snapshot may go.
    next_snapshot: Instant,
    started: bool,
    /// This client's place among `http.max_sse_clients`, given back when
    /// the stream ends.
    _place: tokio::sync::OwnedSemaphorePermit,
    /// The time the snapshots are judged at (storm time in the demo).
    clock: crate::clock::Clock,
}

async fn recv(
    rx: &mut Option<broadcast::Receiver<LiveEvent>>,
) -> Result<LiveEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Feed {
    fn snapshot(&mut self) -> Event {
        self.dirty = false;
        self.next_snapshot = Instant::now() + SNAPSHOT_EVERY;
        // Written site by site (the views of 10,000 sites at once cost 28 MB).
        let json = self.live.sites_json(self.clock.now());
        Event::default().event("sites").data(String::from_utf8_lossy(&json))
    }

    fn encode(&self, e: &LiveEvent) -> Event {
        let (name, data) = events::encode(e, self.live.timezone);
        Event::default().event(name).data(data)
    }

    /// The next event, or `None` at shutdown.
    async fn next(&mut self) -> Option<Event> {
        if !self.started {
            self.started = true;
            return Some(self.snapshot().retry(Duration::from_secs(2)));
        }
        loop {
            tokio::select! {
                _ = self.closed.cancelled() => return None,
                r = self.levels.recv() => match r {
                    Ok(e) => return Some(self.encode(&e)),
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(resync()),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                r = recv(&mut self.alerts) => match r {
                    Ok(e) => return Some(self.encode(&e)),
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(resync()),
                    Err(broadcast::error::RecvError::Closed) => self.alerts = None,
                },
                r = self.changes.changed() => match r {
                    Ok(()) => self.dirty = true,
                    Err(_) => return None,
                },
                _ = tokio::time::sleep_until(self.next_snapshot), if self.dirty => {
                    return Some(self.snapshot());
                }
            }
        }
    }
}

fn resync() -> Event {
    Event::default().event("resync").data("{}")
}

/// Live updates for the page: level changes, alert changes, throttled
/// snapshots of every site.
#[utoipa::path(get, path = "/api/v1/events", responses((status = 200, content_type = "text/event-stream"), (status = 503)))]
pub async fn events(State(s): State<AppState>) -> Response {
    let Some(place) = s.guard.sse_permit() else {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many live pages follow the event stream")
            .detail(serde_json::json!("http.max_sse_clients"))
            .into_response();
    };
    stream(&s, place).into_response()
}

fn stream(
    s: &AppState,
    place: tokio::sync::OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = s.live.watch_changes();
    changes.mark_unchanged();
    let feed = Feed {
        levels: s.live.subscribe(),
        alerts: s.alerts.as_ref().map(|a| a.subscribe()),
        changes,
        closed: s.live.closed(),
        live: s.live.clone(),
        dirty: false,
        next_snapshot: Instant::now(),
        started: false,
        _place: place,
        clock: s.clock,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let e = feed.next().await?;
        Some((Ok(e), feed))
    });
    // A named keep-alive event (comments are invisible to scripts), so the
    // page can tell a quiet stream from a dead one.
    let ping = Event::default().event("ping").data("{}");
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).event(ping))
}

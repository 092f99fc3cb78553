//! The live engine: the compiled plan and the engine's state behind one lock,
//! fed by ingest and a one-second ticker, read by the API, reloaded in place.
//!
//! Every transition goes to one [`TransitionSink`] (the alert manager; a
//! logging sink until it exists). Street and district level changes are also
//! written to InfluxDB, through the spool, as `area_level` points.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Change, Input, SiteView, State, Transition};
use crate::events::{Event, LevelChange};
use crate::history::History;
use crate::level::{self, Level};
use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::reading::{to_ns, Reading, TimestampNs};
use crate::spool::Appender;
use crate::tsdb::line_protocol::{self, Field};

/// Where the engine's transitions go.
pub trait TransitionSink: Send + Sync {
    fn deliver(&self, transitions: &[Transition]);
}

/// Logs transitions; stands in for the alert manager.
pub struct LogSink;

impl TransitionSink for LogSink {
    fn deliver(&self, transitions: &[Transition]) {
        for t in transitions {
            match &t.change {
                Change::Site(c) => tracing::info!(
                    site = %c.site, rule = %c.rule,
                    from = level_str(c.from), to = level_str(c.to),
                    value = ?c.value, threshold = ?c.threshold,
                    "level change"
                ),
                Change::Offline { site, reason, .. } => tracing::warn!(%site, ?reason, "site offline"),
                Change::Online { site } => tracing::info!(%site, "site online"),
                Change::Street { street, from, to, .. } => {
                    tracing::info!(%street, from = level_str(*from), to = level_str(*to), "street level")
                }
                Change::District { from, to } => {
                    tracing::info!(from = level_str(*from), to = level_str(*to), "district level")
                }
            }
        }
    }
}

fn level_str(l: Option<Level>) -> &'static str {
    l.map_or("none", |l| l.as_str())
}

/// Measurement of street and district levels in InfluxDB.
pub const AREA_LEVEL: &str = "area_level";

/// `area_level,street=… level=2i ts` (or `district=…`).
pub fn area_line(out: &mut String, tag: &str, id: &str, level: Option<Level>, ts: TimestampNs) {
    line_protocol::line(
        out,
        AREA_LEVEL,
        &[(tag, id)],
        [("level", Field::Int(i64::from(level::rank(level))))],
        ts,
    );
}

struct Inner {
    plan: Arc<Plan>,
    state: State,
}

/// The plan and its state, shared by the engine task, the API and reloads.
pub struct Live {
    inner: Mutex<Inner>,
    sink: Arc<dyn TransitionSink>,
    /// For `area_level` points; `None` in tests and replays.
    spool: Option<Arc<Mutex<Appender>>>,
    metrics: Arc<Metrics>,
    pub timezone: chrono_tz::Tz,
    /// Recent values for the page's charts (`/api/v1/sites/{id}/series`).
    pub history: Mutex<History>,
    /// Level changes for `/api/v1/events`.
    events: broadcast::Sender<Event>,
    /// Counts batches that changed something; `/api/v1/events` sends a
    /// throttled `sites` snapshot when it moves.
    version: watch::Sender<u64>,
    /// Cancelled when the engine task stops, so event streams end and the
    /// HTTP server can shut down gracefully.
    closed: CancellationToken,
}

/// `/api/v1/sites`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SitesView {
    /// The server's time, RFC 3339 in the configured time zone.
    pub now: String,
    /// The configured time zone (`Asia/Shanghai`).
    pub timezone: String,
    pub district: AreaView,
    pub streets: Vec<AreaView>,
    pub sites: Vec<SiteView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AreaView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    pub level: Option<Level>,
}

/// The sites document serialized straight from the engine's state.
struct SitesJson<'a> {
    plan: &'a Plan,
    state: &'a State,
    now: TimestampNs,
    tz: chrono_tz::Tz,
}

impl Serialize for SitesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct Streets<'a>(&'a SitesJson<'a>);
        impl Serialize for Streets<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let (plan, state) = (self.0.plan, self.0.state);
                let mut seq = ser.serialize_seq(Some(plan.streets.len()))?;
                for (s, l) in plan.streets.iter().zip(&state.streets) {
                    seq.serialize_element(&AreaView {
                        id: s.id.to_string(),
                        name: s.name.to_string(),
                        name_en: s.name_en.as_deref().map(str::to_string),
                        level: *l,
                    })?;
                }
                seq.end()
            }
        }
        struct Sites<'a>(&'a SitesJson<'a>);
        impl Serialize for Sites<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let d = self.0;
                let mut seq = ser.serialize_seq(Some(d.plan.sites.len()))?;
                for i in 0..d.plan.sites.len() {
                    seq.serialize_element(&engine::site_view(d.plan, d.state, i, d.now, d.tz))?;
                }
                seq.end()
            }
        }
        let district = AreaView {
            id: self.plan.district_id.to_string(),
            name: self.plan.district_name.to_string(),
            name_en: self.plan.district_name_en.as_deref().map(str::to_string),
            level: self.state.district,
        };
        let mut doc = ser.serialize_struct("SitesView", 5)?;
        doc.serialize_field("now", &engine::rfc3339(self.now, self.tz))?;
        doc.serialize_field("timezone", self.tz.name())?;
        doc.serialize_field("district", &district)?;
        doc.serialize_field("streets", &Streets(self))?;
        doc.serialize_field("sites", &Sites(self))?;
        doc.end()
    }
}

fn now_ns() -> TimestampNs {
    to_ns(chrono::Utc::now())
}

impl Live {
    pub fn new(
        plan: Arc<Plan>,
        sink: Arc<dyn TransitionSink>,
        spool: Option<Arc<Mutex<Appender>>>,
        metrics: Arc<Metrics>,
        timezone: chrono_tz::Tz,
        now: TimestampNs,
    ) -> Self {
        Self::resume(plan, sink, spool, metrics, timezone, now, &[], &[])
    }

    /// Like `new`, with the engine seeded from the alerts still active
    /// (see `State::seed`).
    #[allow(clippy::too_many_arguments)]
    pub fn resume(
        plan: Arc<Plan>,
        sink: Arc<dyn TransitionSink>,
        spool: Option<Arc<Mutex<Appender>>>,
        metrics: Arc<Metrics>,
        timezone: chrono_tz::Tz,
        now: TimestampNs,
        levels: &[(String, String, Level)],
        offline: &[String],
    ) -> Self {
        let mut state = State::new(&plan, now);
        state.seed(&plan, levels, offline);
        let live = Live {
            inner: Mutex::new(Inner { plan, state }),
            sink,
            spool,
            metrics,
            timezone,
            history: Mutex::new(History::new()),
            events: broadcast::channel(crate::events::CHANNEL_CAPACITY).0,
            version: watch::channel(0).0,
            closed: CancellationToken::new(),
        };
        live.record_baseline(now);
        live
    }

    /// Every street and the district at their present level, so graphs
    /// start from a known value after a (re)start.
    fn record_baseline(&self, now: TimestampNs) {
        let inner = self.inner.lock().expect("live lock");
        let mut text = String::new();
        for (i, s) in inner.plan.streets.iter().enumerate() {
            area_line(&mut text, "street", &s.id, inner.state.streets[i], now);
        }
        area_line(&mut text, "district", &inner.plan.district_id, inner.state.district, now);
        drop(inner);
        self.spool_lines(&text);
    }

    fn spool_lines(&self, text: &str) {
        let Some(spool) = &self.spool else { return };
        if text.is_empty() {
            return;
        }
        let records = text.split_inclusive('\n').map(str::as_bytes);
        let now_ms = chrono::Utc::now().timestamp_millis();
        if let Err(e) = spool.lock().expect("spool lock").append(records, now_ms) {
            self.metrics.spool_append_errors.inc();
            tracing::error!(error = %e, "cannot spool area levels");
        }
    }

    fn handle(&self, plan: &Plan, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let mut text = String::new();
        for t in &transitions {
            let kind = match &t.change {
                Change::Site(_) => "site",
                Change::Offline { .. } => "offline",
                Change::Online { .. } => "online",
                Change::Street { street, to, .. } => {
                    area_line(&mut text, "street", street, *to, t.at);
                    "street"
                }
                Change::District { to, .. } => {
                    area_line(&mut text, "district", &plan.district_id, *to, t.at);
                    "district"
                }
            };
            self.metrics.engine_transitions.with_label_values(&[kind]).inc();
        }
        self.spool_lines(&text);
        for c in LevelChange::from_transitions(&plan.district_id, &transitions) {
            let _ = self.events.send(Event::Level(c));
        }
        self.version.send_modify(|v| *v += 1);
        LogSink.deliver(&transitions);
        self.sink.deliver(&transitions);
    }

    pub fn readings(&self, readings: &[Reading], now: TimestampNs) {
        let mut inner = self.inner.lock().expect("live lock");
        let Inner { plan, state } = &mut *inner;
        let out = engine::step(state, plan, Input::Readings(readings), now);
        let plan = plan.clone();
        drop(inner);
        self.record_history(&plan, readings);
        self.handle(&plan, out);
        self.version.send_modify(|v| *v += 1);
    }

    fn record_history(&self, plan: &Plan, readings: &[Reading]) {
        let mut history = self.history.lock().expect("history lock");
        for r in readings {
            let Some((_, site)) = plan.site(&r.site) else { continue };
            if let (Some(keep), crate::reading::Value::Float(v)) =
                (crate::history::keep_for(site, &r.metric), r.value)
            {
                history.record(&r.site, &r.metric, r.ts, v, keep);
            }
        }
    }

    /// Level changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Cancelled once the engine task has stopped (shutdown).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Moves whenever readings arrive or levels change.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn tick(&self, now: TimestampNs) {
        let mut inner = self.inner.lock().expect("live lock");
        let Inner { plan, state } = &mut *inner;
        let out = engine::step(state, plan, Input::Tick, now);
        let offline = state.sites.iter().filter(|s| s.offline).count();
        let plan = plan.clone();
        drop(inner);
        self.metrics.sites_offline.set(offline as i64);
        self.handle(&plan, out);
    }

    /// Switches to a new plan, carrying state over.
    pub fn reload(&self, new: Arc<Plan>, now: TimestampNs) {
        let mut inner = self.inner.lock().expect("live lock");
        let old = inner.plan.clone();
        let state = std::mem::replace(&mut inner.state, State::new(&new, now));
        let (state, out) = state.carry_over(&old, &new, now);
        inner.state = state;
        inner.plan = new.clone();
        drop(inner);
        self.history.lock().expect("history lock").retain(|site, _| new.site(site).is_some());
        self.handle(&new, out);
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.inner.lock().expect("live lock").plan.clone()
    }

    pub fn sites(&self, now: TimestampNs) -> SitesView {
        let inner = self.inner.lock().expect("live lock");
        let (plan, state) = (&inner.plan, &inner.state);
        SitesView {
            now: engine::rfc3339(now, self.timezone),
            timezone: self.timezone.name().to_string(),
            district: AreaView {
                id: plan.district_id.to_string(),
                name: plan.district_name.to_string(),
                name_en: plan.district_name_en.as_deref().map(str::to_string),
                level: state.district,
            },
            streets: plan
                .streets
                .iter()
                .zip(&state.streets)
                .map(|(s, l)| AreaView {
                    id: s.id.to_string(),
                    name: s.name.to_string(),
                    name_en: s.name_en.as_deref().map(str::to_string),
                    level: *l,
                })
                .collect(),
            sites: (0..plan.sites.len())
                .map(|i| engine::site_view(plan, state, i, now, self.timezone))
                .collect(),
        }
    }

    /// `/api/v1/sites` as JSON bytes, the same document as [`Live::sites`],
    /// written one site at a time: at 10,000 sites the views of all sites
    /// at once cost several times the 6 MB of JSON they make.
    pub fn sites_json(&self, now: TimestampNs) -> Vec<u8> {
        let inner = self.inner.lock().expect("live lock");
        let mut out = Vec::with_capacity(1024 + inner.plan.sites.len() * 700);
        let doc = SitesJson { plan: &inner.plan, state: &inner.state, now, tz: self.timezone };
        serde_json::to_writer(&mut out, &doc).expect("serializing to memory");
        out
    }

    pub fn site(&self, id: &str, now: TimestampNs) -> Option<SiteView> {
        let inner = self.inner.lock().expect("live lock");
        let (i, _) = inner.plan.site(id)?;
        Some(engine::site_view(&inner.plan, &inner.state, i, now, self.timezone))
    }

    /// The engine task: readings from ingest, a tick every second.
    pub async fn run(
        self: Arc<Self>,
        mut readings: mpsc::UnboundedReceiver<Vec<Reading>>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = readings.recv() => match batch {
                    Some(b) => self.readings(&b, now_ns()),
                    None => break,
                },
                _ = tick.tick() => self.tick(now_ns()),
                _ = stop.cancelled() => break,
            }
        }
        self.closed.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_lines() {
        let mut s = String::new();
        area_line(&mut s, "street", "chengdong", Some(Level::III), 5);
        area_line(&mut s, "district", "mouqu", None, 6);
        assert_eq!(s, "area_level,street=chengdong level=2i 5\narea_level,district=mouqu level=0i 6\n");
    }
}
